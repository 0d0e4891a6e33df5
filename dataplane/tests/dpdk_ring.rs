//! The DPDK backend on a real EAL: `net_ring` and `net_null` vdevs, mbufs, bursts, and the
//! worker forwarding over DPDK queues.
//!
//! Each test runs in its own process (EAL starts once per process and never quite leaves):
//! `eal_test!` re-runs the test binary for that one test, one EAL process at a time, so that
//! no test sees another's devices, mbufs or lcores. A `net_ring` vdev created with `--vdev=net_ringN` (or probed by name) has
//! one ring per queue pair: what TX queue q sends, RX queue q receives.
//!
//! Needs root and free hugepages; without them each test prints a warning and passes, and
//! with them an EAL failure fails every test:
//!
//! ```text
//! echo 256 > /proc/sys/vm/nr_hugepages
//! cargo test -p rampart-dataplane --test dpdk_ring
//! ```

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam::queue::ArrayQueue;
use rampart_dataplane::io::dpdk::{
    missing_prerequisites, DpdkError, DpdkQueue, Eal, EthPort, Mbuf, Mempool, PortConfig,
};
use rampart_dataplane::io::{PacketBuf, Port, BURST};
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::wire::build::{l4_checksum_ok, TcpFrame, UdpFrame};
use rampart_dataplane::wire::parse::parse_frame;
use rampart_dataplane::wire::{checksum, MacAddr, TcpFlags};
use rampart_dataplane::worker::{DropReason, Shared, Worker};

const EAL_ARGS: &[&str] = &[
    "-l",
    "0,1",
    "--no-pci",
    "--in-memory",
    "--no-telemetry",
    "--vdev=net_ring0",
    "--vdev=net_ring1",
    "--vdev=net_ring2",
];

/// A `#[test]` whose body runs in a process of its own (see the module docs).
macro_rules! eal_test {
    (fn $name:ident() $body:block) => {
        #[test]
        fn $name() {
            in_own_process(stringify!($name), || $body);
        }
    };
}

/// Runs `body` here if this process is the child started for `name`; otherwise starts that
/// child (this test binary, `name --exact`) and checks that it ran the test and passed.
fn in_own_process(name: &str, body: impl FnOnce()) {
    const CHILD: &str = "RAMPART_EAL_TEST";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return;
    }
    // One EAL at a time: they share the machine's hugepages and its two CPUs.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .expect("starting the test in its own process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The child's warnings (a skip, EAL's complaints) reach the log as they would have.
    let _ = std::io::stderr().write_all(&out.stderr);
    assert!(
        out.status.success(),
        "{name} failed in its own process ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child process did not run {name}:\n{stdout}"
    );
}

/// The process's EAL, or `None` (after a loud warning) where DPDK cannot run at all.
fn eal() -> Option<&'static Eal> {
    static EAL: OnceLock<Result<Option<Eal>, String>> = OnceLock::new();
    let eal = EAL.get_or_init(|| {
        if missing_prerequisites().is_some() {
            return Ok(None);
        }
        let args: Vec<String> = EAL_ARGS.iter().map(|a| a.to_string()).collect();
        Eal::init(&args).map(Some).map_err(|e| {
            format!("EAL failed to start although running as root with free hugepages: {e}")
        })
    });
    match eal {
        Ok(Some(eal)) => Some(eal),
        Ok(None) => {
            // Straight to stderr: libtest would swallow eprintln! of a passing test.
            let why = missing_prerequisites().unwrap_or_default();
            let _ = writeln!(std::io::stderr(), "WARNING: skipping DPDK test: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A pool for one test (so its leak check sees only its own mbufs).
fn pool(eal: &Eal, name: &str, mbufs: u32) -> Mempool {
    Mempool::new(eal, name, mbufs, 32, 2176).expect("mbuf pool")
}

fn open(device: &str, pool: &Mempool) -> EthPort {
    EthPort::open(
        device,
        &PortConfig {
            rx_desc: 512,
            tx_desc: 512,
            ..PortConfig::default()
        },
        pool,
    )
    .unwrap_or_else(|e| panic!("open {device}: {e}"))
}

/// An mbuf holding `frame`.
fn mbuf_with(port: &mut impl Port<Buf = Mbuf>, frame: &[u8]) -> Mbuf {
    let mut m = port.alloc().expect("an mbuf");
    assert!(m.set_frame_len(frame.len()));
    m.data_mut().copy_from_slice(frame);
    m
}

fn udp_frame(i: u16) -> Vec<u8> {
    UdpFrame {
        sport: 1000 + i,
        payload: i.to_be_bytes().repeat(20),
        ..UdpFrame::default()
    }
    .to_bytes()
}

/// Everything waiting on `queue`'s RX side.
fn drain(queue: &mut DpdkQueue) -> Vec<Mbuf> {
    let mut got = Vec::new();
    while queue.rx_burst(&mut got, BURST) > 0 {}
    got
}

eal_test! {
fn ring_port_loops_tx_back_to_its_own_rx() {
    let Some(eal) = eal() else { return };
    let pool = pool(eal, "loop", 1023);
    let port = open("net_ring0", &pool);
    assert!(!port.rss_enabled(), "net_ring has no RSS");
    let mut q = port.queue(0).unwrap();

    let frames: Vec<Vec<u8>> = (0..40).map(udp_frame).collect();
    let mut bufs: Vec<Mbuf> = frames.iter().map(|f| mbuf_with(&mut q, f)).collect();
    assert_eq!(pool.in_use(), 40);
    assert_eq!(q.tx_burst(&mut bufs), 40);
    assert!(bufs.is_empty(), "sent frames leave the caller's Vec");
    assert_eq!(
        pool.in_use(),
        40,
        "sent mbufs now belong to the ring, not freed"
    );

    let mut got = Vec::new();
    assert_eq!(q.rx_burst(&mut got, BURST), BURST);
    assert_eq!(q.rx_burst(&mut got, BURST), 8);
    assert_eq!(q.rx_burst(&mut got, BURST), 0);
    let got_bytes: Vec<&[u8]> = got.iter().map(|m| m.data()).collect();
    let want_bytes: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    assert_eq!(got_bytes, want_bytes, "same frames, same order");

    let stats = port.stats().unwrap();
    assert_eq!((stats.opackets, stats.ipackets), (40, 40), "{stats:?}");
    drop(got);
    assert_eq!(
        pool.in_use(),
        0,
        "every mbuf back in the pool, none freed twice"
    );
}
}

eal_test! {
fn full_tx_ring_leaves_unsent_frames_with_the_caller() {
    let Some(eal) = eal() else { return };
    let pool = pool(eal, "full", 2047);
    let port = open("net_ring1", &pool);
    let mut q = port.queue(0).unwrap();

    // A net_ring ring has 1024 slots, 1023 usable: one tx_burst of 1100 frames fills it.
    let mut bufs: Vec<Mbuf> = (0..1100)
        .map(|i| mbuf_with(&mut q, &udp_frame(i)))
        .collect();
    let sent = q.tx_burst(&mut bufs);
    assert_eq!(sent, 1023);
    assert_eq!(
        bufs.len(),
        1100 - sent,
        "unsent frames stay with the caller"
    );
    assert_eq!(
        bufs[0].data(),
        &udp_frame(sent as u16)[..],
        "the unsent ones are the tail, in order"
    );
    assert_eq!(q.tx_burst(&mut bufs), 0, "the ring is still full");
    assert_eq!(pool.in_use(), 1100);
    drop(bufs);
    assert_eq!(
        pool.in_use(),
        sent as u32,
        "dropping the unsent frames frees exactly those"
    );

    let got = drain(&mut q);
    assert_eq!(got.len(), sent);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, m)| m.data() == &udp_frame(i as u16)[..]));
    drop(got);
    assert_eq!(pool.in_use(), 0);
}
}

eal_test! {
fn hot_plugged_null_device_sources_and_sinks_frames() {
    let Some(eal) = eal() else { return };
    let pool = pool(eal, "null", 1023);
    // Not among EAL's --vdev arguments: probed by EthPort::open.
    let port = open("net_null0,size=64", &pool);
    assert_eq!(port.name(), "net_null0");
    let mut q = port.queue(0).unwrap();

    let mut got = Vec::new();
    assert_eq!(
        q.rx_burst(&mut got, BURST),
        BURST,
        "net_null receives as fast as it is polled"
    );
    assert!(got
        .iter()
        .all(|m| m.data().len() == 64 && m.segments() == 1));
    assert_eq!(pool.in_use(), BURST as u32);
    assert_eq!(
        q.tx_burst(&mut got),
        BURST,
        "net_null's TX swallows everything"
    );
    assert_eq!(pool.in_use(), 0, "and frees it");
    assert_eq!(port.stats().unwrap().opackets, BURST as u64);
    assert!(port.link_up().unwrap());
}
}

eal_test! {
fn ports_queues_and_pools_are_each_claimed_once() {
    let Some(eal) = eal() else { return };
    let pool = pool(eal, "claims", 511);
    assert!(
        matches!(
            Mempool::new(eal, "claims", 511, 0, 2176),
            Err(DpdkError::Call { .. })
        ),
        "pool names are unique"
    );
    assert!(matches!(
        Mempool::new(eal, "tiny", 511, 0, 64),
        Err(DpdkError::InvalidArgument(_))
    ));

    let config = PortConfig {
        rx_queues: 1,
        tx_queues: 2,
        rx_desc: 256,
        tx_desc: 256,
        rss: true,
    };
    let port = EthPort::open("net_ring4", &config, &pool).unwrap();
    assert!(port.promiscuous(), "promiscuous, for CARP's virtual MACs");
    assert!(matches!(
        EthPort::open("net_ring4", &config, &pool),
        Err(DpdkError::PortInUse(_))
    ));

    let worker_queue = port.queue(0).unwrap();
    assert!(matches!(
        port.queue(0),
        Err(DpdkError::QueueInUse { queue: 0, .. })
    ));
    let mut control_queue = port.queue(1).unwrap();
    assert!(matches!(port.queue(2), Err(DpdkError::InvalidArgument(_))));
    drop(worker_queue);
    let _again = port.queue(0).expect("a dropped queue can be taken again");

    // Queue 1 is TX-only (1 RX queue, 2 TX queues): the control core's.
    let mut none = Vec::new();
    assert_eq!(control_queue.rx_burst(&mut none, BURST), 0);
    let mut out = vec![mbuf_with(&mut control_queue, &udp_frame(1))];
    assert_eq!(control_queue.tx_burst(&mut out), 1);

    assert!(EthPort::open("net_nosuchdriver0", &config, &pool).is_err());
    assert!(matches!(
        EthPort::open(
            "net_ring5",
            &PortConfig {
                rx_queues: 64,
                ..config.clone()
            },
            &pool
        ),
        Err(DpdkError::InvalidArgument(_))
    ));
    assert_eq!(Eal::init(&[]).err(), Some(DpdkError::AlreadyInitialized));
}
}

eal_test! {
fn mbuf_accessors_agree_with_dpdks_own_macros() {
    let Some(eal) = eal() else { return };
    let pool = pool(eal, "accessors", 63);
    let mut m = pool.alloc().unwrap();
    assert_eq!(m.data().len(), 0);
    assert_eq!(
        m.room(),
        2048,
        "2176 bytes of data room less 128 of headroom"
    );
    assert!(m.set_frame_len(100));
    assert!(m.data().iter().all(|&b| b == 0), "grown bytes are zeroed");
    m.data_mut()[99] = 0xab;
    // SAFETY: reads of an mbuf we own, through the C shim's DPDK macros.
    let (mtod, data_len) = unsafe {
        (
            rampart_sys::rampart_mtod(m.as_ptr()),
            rampart_sys::rampart_data_len(m.as_ptr()),
        )
    };
    assert_eq!(mtod.cast::<u8>().cast_const(), m.data().as_ptr());
    assert_eq!(data_len, 100);
    assert!(m.set_frame_len(2048));
    assert!(!m.set_frame_len(2049), "beyond the room");
    assert_eq!(m.data().len(), 2048, "a refused length changes nothing");
    // SAFETY: as above; the shim's length setter, for comparison.
    let (shim_fits, shim_too_long) = unsafe {
        (
            rampart_sys::rampart_set_len(m.as_ptr(), 80),
            rampart_sys::rampart_set_len(m.as_ptr(), 2049),
        )
    };
    assert!(
        shim_fits && !shim_too_long,
        "the C shim draws the same line"
    );
    assert_eq!(m.data().len(), 80);
    assert!(m.set_frame_len(60));
    assert_eq!(m.data().len(), 60);
    // SAFETY: as above.
    assert_eq!(
        unsafe { (*m.as_ptr()).pkt_len },
        60,
        "pkt_len follows data_len"
    );
    drop(m);
    assert_eq!(pool.in_use(), 0);
}
}

eal_test! {
fn jobs_run_on_worker_lcores() {
    let Some(eal) = eal() else { return };
    assert_eq!(eal.main_lcore(), 0);
    assert_eq!(eal.worker_lcores(), vec![1]);
    eal.launch(1, || {
        rampart_dataplane::io::dpdk::current_lcore().map_or(-1, |l| l as i32 + 100)
    })
    .unwrap();
    assert_eq!(
        eal.wait(1),
        101,
        "the job ran on lcore 1 and its value came back"
    );
    eal.launch(1, || panic!("deliberate panic: Eal::launch must catch it"))
        .unwrap();
    assert_eq!(eal.wait(1), -1, "a panic is caught at the FFI boundary");
}
}

// --- The worker over DPDK queues ---------------------------------------------------------

const LAN_MAC: &str = "02:00:00:00:01:01";
const WAN_MAC: &str = "02:00:00:00:02:01";
const CLIENT_MAC: &str = "02:00:00:00:01:10";
const SERVER_MAC: &str = "02:00:00:00:02:07";
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

/// `lan` is a vdev EAL created (`--vdev=net_ring2`); `wan` is probed when opened.
const CONFIG: &str = r#"
[[interface]]
name = "lan"
device = "net_ring2"
mac = "02:00:00:00:01:01"
addresses = ["198.18.0.1/15"]

[[interface]]
name = "wan"
device = "net_ring3"
mac = "02:00:00:00:02:01"
addresses = ["203.0.113.1/24"]

[[neighbor]]
interface = "wan"
address = "203.0.113.7"
mac = "02:00:00:00:02:07"

[[neighbor]]
interface = "lan"
address = "198.18.0.2"
mac = "02:00:00:00:01:10"

[[rule]]
action = "pass"
direction = "in"
on = "lan"

[[rule]]
action = "pass"
direction = "out"
on = "wan"
"#;

/// A TCP segment `src` → `dst` (address, port), sent to `dst_mac`.
fn tcp(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    dst_mac: &str,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    TcpFrame {
        src_mac: "02:00:00:00:99:99".parse().unwrap(),
        dst_mac: dst_mac.parse().unwrap(),
        src: IpAddr::V4(src.0),
        dst: IpAddr::V4(dst.0),
        sport: src.1,
        dport: dst.1,
        seq,
        ack,
        flags,
        ttl: 64,
        ..TcpFrame::default()
    }
    .to_bytes()
}

/// Puts `frame` on `port`'s wire: transmitted on the worker's own queue of a net_ring port,
/// it comes back on that queue's RX side, where the worker polls.
fn inject(worker: &mut Worker<DpdkQueue>, port: usize, frame: &[u8]) {
    let q = &mut worker.ports_mut()[port];
    let mut bufs = vec![mbuf_with(q, frame)];
    assert_eq!(q.tx_burst(&mut bufs), 1);
}

/// Checks a forwarded copy of `sent`: same packet, TTL one less, checksums right, MACs
/// rewritten to `src_mac` → `dst_mac`.
fn assert_forwarded(got: &Mbuf, sent: &[u8], src_mac: &str, dst_mac: &str) {
    let out = got.data();
    assert_eq!(out.len(), sent.len());
    assert_eq!(
        &out[0..6],
        &dst_mac.parse::<MacAddr>().unwrap().0,
        "destination MAC is the next hop's"
    );
    assert_eq!(
        &out[6..12],
        &src_mac.parse::<MacAddr>().unwrap().0,
        "source MAC is the egress port's"
    );
    let parsed = parse_frame(out).expect("forwarded frame parses");
    let ip = parsed.l3_offset as usize;
    assert_eq!(sent[ip + 8], 64);
    assert_eq!(out[ip + 8], 63, "TTL decremented");
    assert!(
        checksum::verify(&out[ip..ip + 20]),
        "IPv4 header checksum updated"
    );
    assert!(
        l4_checksum_ok(&parsed.src, &parsed.dst, 6, &out[ip + 20..]),
        "TCP checksum still right"
    );
    let unchanged = |f: &[u8]| [&f[12..ip + 8], &f[ip + 12..]].concat();
    assert_eq!(unchanged(out), unchanged(sent), "nothing else changed");
}

eal_test! {
fn worker_forwards_between_dpdk_ports_and_decrements_ttl() {
    let Some(eal) = eal() else { return };
    let config = rampart_conf::load_str(Path::new("dpdk_ring.toml"), CONFIG)
        .expect("test config")
        .config;
    let pool = pool(eal, "worker", 1023);
    let ports: Vec<EthPort> = config
        .interfaces
        .iter()
        .map(|i| open(&i.device, &pool))
        .collect();
    let macs: Vec<MacAddr> = config
        .interfaces
        .iter()
        .zip(&ports)
        .map(|(i, p)| i.mac.unwrap_or(MacAddr(p.mac())))
        .collect();
    let mut table = StateTableConfig::from_config(&config, 16, 1, 1);
    table.limit = 1024;
    let shared = Shared::from_config(&config, &macs, table);
    let states = shared.states.clone();
    let queues: Vec<DpdkQueue> = ports.iter().map(|p| p.queue(0).unwrap()).collect();
    let mut worker = Worker::new(0, queues, &shared, Arc::new(ArrayQueue::new(64)));
    let stats = worker.stats();
    let (lan, wan) = (0, 1);

    // lan → wan: the client's SYN passes `in on lan` and `out on wan`, creating a state.
    let syn = tcp(
        (CLIENT, 40000),
        (SERVER, 443),
        LAN_MAC,
        TcpFlags::SYN,
        1000,
        0,
    );
    inject(&mut worker, lan, &syn);
    assert_eq!(worker.poll(1000), 1);
    let got = drain(&mut worker.ports_mut()[wan]);
    assert_eq!(
        got.len(),
        1,
        "the SYN came out on wan; drops: {}",
        stats.total_drops()
    );
    assert_forwarded(&got[0], &syn, WAN_MAC, SERVER_MAC);
    assert_eq!(states.len(), 1);

    // wan → lan: the SYN-ACK finds the state (no rule passes anything in on wan).
    let syn_ack = tcp(
        (SERVER, 443),
        (CLIENT, 40000),
        WAN_MAC,
        TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0),
        5000,
        1001,
    );
    inject(&mut worker, wan, &syn_ack);
    assert_eq!(worker.poll(1001), 1);
    let back = drain(&mut worker.ports_mut()[lan]);
    assert_eq!(
        back.len(),
        1,
        "the SYN-ACK came back on lan; drops: {}",
        stats.total_drops()
    );
    assert_forwarded(&back[0], &syn_ack, LAN_MAC, CLIENT_MAC);

    // A connection opened from wan matches no pass rule: blocked, nothing reaches lan.
    let stray = tcp((SERVER, 5555), (CLIENT, 22), WAN_MAC, TcpFlags::SYN, 1, 0);
    inject(&mut worker, wan, &stray);
    assert_eq!(worker.poll(1002), 1);
    assert!(drain(&mut worker.ports_mut()[lan]).is_empty());
    assert_eq!(stats.dropped(DropReason::Match), 1);
    assert_eq!(stats.forwarded.get(), 2);
    assert_eq!(stats.state_inserts.get(), 1);

    drop((got, back));
    assert_eq!(
        pool.in_use(),
        0,
        "every mbuf the worker saw went back to the pool"
    );
    let lan_stats = ports[lan].stats().unwrap();
    assert_eq!(
        (lan_stats.ipackets, lan_stats.opackets),
        (2, 2),
        "{lan_stats:?}"
    );
}
}
