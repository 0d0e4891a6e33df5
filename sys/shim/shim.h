/*
 * rampart's C shim over DPDK: exported, non-inline wrappers for what DPDK only offers as
 * static inline functions, macros or thread-locals (the fast-path burst calls, mbuf
 * alloc/free, rte_errno, rte_lcore_id), which bindgen cannot link against.
 *
 * Compiled by sys/build.rs with `pkg-config --cflags libdpdk` (which carries
 * `-march=corei7 -include rte_config.h`; rte_memcpy.h does not build without them).
 * Bindgen reads this header too, so the Rust declarations always match.
 */
#ifndef RAMPART_SHIM_H
#define RAMPART_SHIM_H

#include <stdbool.h>
#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* rte_eth_rx_burst / rte_eth_tx_burst. */
uint16_t rampart_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t nb_pkts);
uint16_t rampart_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t nb_pkts);

/* rte_pktmbuf_alloc / rte_pktmbuf_free (the whole chain; NULL is a no-op). */
struct rte_mbuf *rampart_pktmbuf_alloc(struct rte_mempool *pool);
void rampart_pktmbuf_free(struct rte_mbuf *m);

/* rte_pktmbuf_mtod(m, void *): the first data byte of the first segment. */
void *rampart_mtod(struct rte_mbuf *m);
/* The first segment's data length. */
uint16_t rampart_data_len(const struct rte_mbuf *m);
/* Sets data_len and pkt_len of a single-segment mbuf to `len` if it fits between the data
 * offset and the end of the buffer; returns false (and changes nothing) otherwise. */
bool rampart_set_len(struct rte_mbuf *m, uint32_t len);

/* rte_errno (a thread-local) and rte_lcore_id() (a thread-local; LCORE_ID_ANY on threads
 * EAL did not create or register). */
int rampart_errno(void);
unsigned int rampart_lcore_id(void);

/* rte_prefetch0. */
void rampart_prefetch0(const void *p);

/* RSS hash-type masks, which DPDK defines as RTE_BIT64() expressions bindgen cannot
 * evaluate. */
extern const uint64_t rampart_eth_rss_ip;
extern const uint64_t rampart_eth_rss_tcp;
extern const uint64_t rampart_eth_rss_udp;

#endif
