/* See shim.h. Every function is a one-line forwarder to DPDK's inline API. */
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "shim.h"

uint16_t rampart_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, pkts, nb_pkts);
}

uint16_t rampart_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, pkts, nb_pkts);
}

struct rte_mbuf *rampart_pktmbuf_alloc(struct rte_mempool *pool)
{
	return rte_pktmbuf_alloc(pool);
}

void rampart_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void *rampart_mtod(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t rampart_data_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

bool rampart_set_len(struct rte_mbuf *m, uint32_t len)
{
	if (m->nb_segs != 1 || len > (uint32_t)m->buf_len - m->data_off)
		return false;
	m->data_len = (uint16_t)len;
	m->pkt_len = len;
	return true;
}

int rampart_errno(void)
{
	return rte_errno;
}

unsigned int rampart_lcore_id(void)
{
	return rte_lcore_id();
}

void rampart_prefetch0(const void *p)
{
	rte_prefetch0(p);
}

const uint64_t rampart_eth_rss_ip = RTE_ETH_RSS_IP;
const uint64_t rampart_eth_rss_tcp = RTE_ETH_RSS_TCP;
const uint64_t rampart_eth_rss_udp = RTE_ETH_RSS_UDP;
