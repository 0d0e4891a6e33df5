/* What bindgen reads: the DPDK headers rampart binds (narrowed further by the allowlist in
 * build.rs) and the shim's own declarations. */
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "shim/shim.h"
