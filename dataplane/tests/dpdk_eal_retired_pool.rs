//! An mbuf may outlive every handle to its pool: the pool is then retired rather than
//! freed, and EAL refuses to clean up under it, so the mbuf never points into freed memory.
//!
//! Its own test binary (EAL starts once per process). Needs root and free hugepages:
//!
//! ```text
//! echo 256 > /proc/sys/vm/nr_hugepages
//! cargo test -p rampart-dataplane --test dpdk_eal_retired_pool
//! ```

use rampart_dataplane::io::dpdk::{missing_prerequisites, DpdkError, Eal, Mempool};
use rampart_dataplane::io::PacketBuf;
use std::io::Write;

#[test]
fn an_mbuf_outliving_its_pool_keeps_the_memory_alive() {
    if let Some(why) = missing_prerequisites() {
        // Straight to stderr: libtest would swallow eprintln! of a passing test.
        let _ = writeln!(std::io::stderr(), "WARNING: skipping DPDK test: {why}");
        return;
    }
    let eal_args: Vec<String> = ["-l", "0", "--no-pci", "--in-memory", "--no-telemetry"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let eal =
        Eal::init(&eal_args).expect("EAL must start when running as root with free hugepages");
    let pool = Mempool::new(&eal, "retired", 63, 0, 2176).unwrap();
    let mut held = pool.alloc().unwrap();
    drop(pool);

    assert!(
        held.set_frame_len(1500),
        "the retired pool's memory is still mapped"
    );
    held.data_mut().fill(0x5a);
    assert_eq!(
        eal.shutdown(),
        Err(DpdkError::MbufsOutstanding {
            pool: "retired".into(),
            in_use: 1
        }),
        "no cleanup while an mbuf is out"
    );
    assert!(
        held.data().iter().all(|&b| b == 0x5a),
        "EAL memory still mapped after the refused cleanup"
    );
    drop(held);
}
