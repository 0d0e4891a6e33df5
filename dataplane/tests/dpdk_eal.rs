//! The EAL's life in one process: it starts once, stays up while pools and ports use it,
//! cleans up when the last goes, and cannot start again.
//!
//! Its own test binary (EAL starts once per process). Needs root and free hugepages:
//!
//! ```text
//! echo 256 > /proc/sys/vm/nr_hugepages
//! cargo test -p rampart-dataplane --test dpdk_eal
//! ```

use rampart_dataplane::io::dpdk::{
    missing_prerequisites, DpdkError, Eal, EthPort, Mempool, PortConfig,
};
use rampart_dataplane::io::{PacketBuf, Port, BURST};
use std::io::Write;

fn args(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[test]
fn eal_starts_once_and_cleans_up_after_its_last_user() {
    if let Some(why) = missing_prerequisites() {
        // Straight to stderr: libtest would swallow eprintln! of a passing test.
        let _ = writeln!(std::io::stderr(), "WARNING: skipping DPDK test: {why}");
        return;
    }
    let eal_args = args(&[
        "-l",
        "0",
        "--no-pci",
        "--in-memory",
        "--no-telemetry",
        "--vdev=net_ring0",
    ]);
    let eal =
        Eal::init(&eal_args).expect("EAL must start when running as root with free hugepages");
    assert_eq!(
        Eal::init(&eal_args).err(),
        Some(DpdkError::AlreadyInitialized)
    );

    let pool = Mempool::new(&eal, "lifecycle", 511, 0, 2176).unwrap();
    assert_eq!((pool.capacity(), pool.available()), (511, 511));
    let port = EthPort::open("net_ring0", &PortConfig::default(), &pool).unwrap();
    let mut queue = port.queue(0).unwrap();
    let mut frames: Vec<_> = (0..10u8)
        .map(|i| {
            let mut m = queue.alloc().unwrap();
            assert!(m.set_frame_len(64));
            m.data_mut().fill(i);
            m
        })
        .collect();
    assert_eq!(queue.tx_burst(&mut frames), 10);
    assert_eq!(queue.rx_burst(&mut frames, BURST), 10);
    assert_eq!(frames[9].data(), &[9u8; 64][..]);

    // Pools and ports hold the EAL up.
    assert_eq!(eal.clone().shutdown(), Err(DpdkError::EalInUse));
    assert_eq!(
        port.stats().unwrap().ipackets,
        10,
        "EAL still up after the refused shutdown"
    );

    drop(frames);
    drop(queue);
    drop(port);
    assert_eq!(pool.in_use(), 0);
    drop(pool);
    assert_eq!(eal.shutdown(), Ok(()), "rte_eal_cleanup ran");
    assert_eq!(
        Eal::init(&eal_args).err(),
        Some(DpdkError::AlreadyInitialized),
        "and EAL cannot restart"
    );
}
