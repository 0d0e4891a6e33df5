//! `rampart run -c FILE`: the appliance on DPDK ports.
//!
//! EAL is started from `[dpdk]`; each `[[interface]]` becomes a DPDK port (a PCI device or a
//! vdev string) with one RX/TX queue pair per worker and one more TX queue for the control
//! core. One worker runs on each worker lcore; the control core (this thread, DPDK's main
//! lcore) resolves neighbours, expires states and answers the management socket. SIGINT or
//! SIGTERM stops everything cleanly and prints the final counters.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam::queue::ArrayQueue;
use rampart_conf::{Config, MacAddr, PollMode};
use rampart_control::ctl::CtlServer;
use rampart_control::report::{self, DeviceStats, ReportContext};
use rampart_control::runtime::{ControlPlane, Outgoing};
use rampart_dataplane::io::dpdk::{Eal, EthPort, Mbuf, Mempool, PortConfig};
use rampart_dataplane::io::{PacketBuf, Port};
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::worker::{InjectionQueue, Shared, ToControl, Worker, WorkerStats};

#[derive(clap::Args)]
pub struct Args {
    /// The appliance configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
}

pub fn run(args: Args) -> ExitCode {
    let config = match rampart_conf::load(&args.config) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("{w}");
            }
            l.config
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return ExitCode::FAILURE;
        }
    };
    match run_appliance(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `0000:03:00.0` or `03:00.0`: a PCI address (anything else is a vdev string).
fn is_pci_address(device: &str) -> bool {
    let parts: Vec<&str> = device.split([':', '.']).collect();
    let hex = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [d, b, s, f] => hex(d, 4) && hex(b, 2) && hex(s, 2) && f.len() == 1,
        [b, s, f] => hex(b, 2) && hex(s, 2) && f.len() == 1,
        _ => false,
    }
}

/// EAL's command line from `[dpdk]` and the interfaces' devices.
pub fn eal_args(config: &Config) -> Result<Vec<String>> {
    let d = &config.dpdk;
    let mut lcores = vec![d.control_lcore];
    lcores.extend(&d.worker_lcores);
    let mut args = Vec::new();
    // `--lcores` in eal_args maps lcores to CPUs (e.g. two workers' lcores on one CPU);
    // EAL takes one lcore list or the other, and then lcore N need not run on CPU N.
    let mapped = d
        .eal_args
        .iter()
        .any(|a| a == "--lcores" || a.starts_with("--lcores="));
    if !mapped {
        args.push("-l".to_string());
        args.push(
            lcores
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    args.push("--main-lcore".to_string());
    args.push(d.control_lcore.to_string());
    let no_pci = d.eal_args.iter().any(|a| a == "--no-pci");
    for i in &config.interfaces {
        if is_pci_address(&i.device) {
            if no_pci {
                bail!(
                    "interface `{}` is PCI device {} but [dpdk] eal_args has --no-pci",
                    i.name,
                    i.device
                );
            }
            args.push("-a".to_string());
            args.push(i.device.clone());
        } else {
            args.push(format!("--vdev={}", i.device));
        }
    }
    args.extend(d.eal_args.iter().cloned());
    Ok(args)
}

/// The worker's loop on its lcore: poll until told to stop, backing off when idle in
/// adaptive mode (as DPDK's l3fwd-power and VPP's adaptive mode do), so cores can be shared.
fn worker_loop<P: Port>(
    mut worker: Worker<P>,
    stop: Arc<AtomicBool>,
    mode: PollMode,
    start: Instant,
) -> i32 {
    let mut idle: u32 = 0;
    let stats = worker.stats();
    while !stop.load(Ordering::Relaxed) {
        let now_ms = start.elapsed().as_millis() as u64;
        if worker.poll(now_ms) > 0 {
            idle = 0;
            continue;
        }
        idle = idle.saturating_add(1);
        if mode == PollMode::Adaptive && idle > 64 {
            // 10 µs after a run of empty polls, growing to 1 ms while the ports stay quiet.
            let us = (10u64 << ((idle - 64) / 64).min(7)).min(1000);
            std::thread::sleep(Duration::from_micros(us));
            stats.naps.inc();
            stats.nap_us.add(us);
        }
    }
    0
}

/// The CPUs this process may run on (its affinity mask), in order.
fn allowed_cpus() -> Vec<u32> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it, and CPU_ISSET reads within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as u32)
            .filter(|&c| libc::CPU_ISSET(c as usize, &set))
            .collect()
    }
}

/// With `-l`, lcore N runs on CPU N: say which lcore has no CPU here, before EAL buries it
/// in its usage text.
fn check_lcores_have_cpus(config: &Config, eal_args: &[String], cpus: &[u32]) -> Result<()> {
    if cpus.is_empty() || !eal_args.iter().any(|a| a == "-l") {
        return Ok(());
    }
    let d = &config.dpdk;
    let lcores = std::iter::once(("control_lcore", d.control_lcore))
        .chain(d.worker_lcores.iter().map(|&l| ("worker_lcores", l)));
    for (key, lcore) in lcores {
        if !cpus.contains(&lcore) {
            let list = cpus
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            bail!(
                "[dpdk] {key}: lcore {lcore} runs on CPU {lcore}, which this process cannot use \
                 (its CPUs: {list}). Use lcores among those, or place lcores on CPUs with \
                 [dpdk] eal_args = [\"--lcores=...\"] (docs/operations.md, section 4)"
            );
        }
    }
    Ok(())
}

/// The Linux interfaces a vdev string attaches to (`iface=` of net_af_xdp and
/// net_af_packet; net_pcap's `iface=`, `rx_iface=`, `rx_iface_in=` and `tx_iface=`).
fn linux_interfaces(device: &str) -> impl Iterator<Item = &str> {
    device.split(',').skip(1).filter_map(|kv| {
        let (key, value) = kv.split_once('=')?;
        matches!(key, "iface" | "rx_iface" | "rx_iface_in" | "tx_iface").then_some(value)
    })
}

/// A vdev on a Linux interface that does not exist fails deep in its driver with an errno
/// that says little (EPERM for AF_XDP): name the interface instead.
fn check_linux_interfaces_exist(config: &Config) -> Result<()> {
    for i in &config.interfaces {
        for name in linux_interfaces(&i.device) {
            let Ok(c_name) = std::ffi::CString::new(name) else {
                bail!(
                    "interface `{}`: device {} names Linux interface {name:?}, which cannot exist",
                    i.name,
                    i.device
                );
            };
            // SAFETY: a NUL-terminated string we own.
            if unsafe { libc::if_nametoindex(c_name.as_ptr()) } == 0 {
                bail!(
                    "interface `{}`: device {} attaches to Linux interface {name}, which does \
                     not exist here (ip link show {name})",
                    i.name,
                    i.device
                );
            }
        }
    }
    Ok(())
}

fn run_appliance(config: Config) -> Result<()> {
    // Before EAL starts, so that a signal during start-up also ends in a clean stop (ports
    // stopped, counters printed) once the appliance is up; a second one exits at once, in
    // case start-up itself hangs.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let eal_args = eal_args(&config)?;
    check_lcores_have_cpus(&config, &eal_args, &allowed_cpus())?;
    check_linux_interfaces_exist(&config)?;
    eprintln!("rampart: EAL {}", eal_args.join(" "));
    let eal = Eal::init(&eal_args).context(
        "starting DPDK failed; EAL's own messages above say why (common causes: no free \
         hugepages, echo 256 > /proc/sys/vm/nr_hugepages; a device string EAL does not know; \
         an eal_args option it does not take)",
    )?;
    let d = &config.dpdk;
    let workers = d.worker_lcores.len() as u16;
    let pool = Mempool::new(&eal, "rampart_mbufs", d.mbufs, d.mbuf_cache, 2048 + 128)
        .context("creating the mbuf pool")?;
    // One RX/TX queue pair per worker, and one more TX queue for the control core where the
    // device has it. Devices with a single queue pair (AF_XDP or AF_PACKET on a veth) get
    // none: the control core hands its frames to worker 0, which sends them in its bursts.
    let mut ports = Vec::new();
    let mut control_has_queue = Vec::new();
    for i in &config.interfaces {
        let max_tx = rampart_dataplane::io::dpdk::max_queues(&i.device)
            .with_context(|| format!("querying interface `{}` ({})", i.name, i.device))?
            .map_or(u16::MAX, |(_, tx)| tx);
        let own_queue = max_tx > workers;
        let port_config = PortConfig {
            rx_queues: workers,
            tx_queues: if own_queue { workers + 1 } else { workers },
            rx_desc: d.rx_descriptors,
            tx_desc: d.tx_descriptors,
            rss: workers > 1,
        };
        let port = EthPort::open(&i.device, &port_config, &pool)
            .with_context(|| format!("opening interface `{}` ({})", i.name, i.device))?;
        if !own_queue {
            eprintln!(
                "rampart: interface {} has no spare TX queue: control frames go through worker 0",
                i.name
            );
        }
        ports.push(port);
        control_has_queue.push(own_queue);
    }
    let macs: Vec<MacAddr> = config
        .interfaces
        .iter()
        .zip(&ports)
        .map(|(i, p)| i.mac.unwrap_or(MacAddr(p.mac())))
        .collect();
    for (i, (iface, m)) in config.interfaces.iter().zip(&macs).enumerate() {
        eprintln!(
            "rampart: interface {} = {} port {} mac {}",
            iface.name,
            iface.device,
            ports[i].port_id(),
            m
        );
    }

    let host_id = config
        .appliance
        .host_id
        .unwrap_or_else(|| derived_host_id(&config));
    let start = Instant::now();
    let boot_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // pf seeds state ids from the boot time so they don't repeat across restarts. Bit 63
    // stays clear: it marks the twin a split record is sent with (`[pfsync] split_states`).
    let first_id = (boot_secs & 0x7fff_ffff) << 32;
    let shared = Shared::from_config(
        &config,
        &macs,
        StateTableConfig::from_config(&config, 256, host_id, first_id),
    );
    let control: Arc<ArrayQueue<ToControl<Mbuf>>> = Arc::new(ArrayQueue::new(4096));
    let mut plane = ControlPlane::new(&config, shared.clone(), random_u64)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop_workers = Arc::new(AtomicBool::new(false));
    let mut stats: Vec<Arc<WorkerStats>> = Vec::new();
    let injection: Arc<InjectionQueue<Mbuf>> = Arc::new(ArrayQueue::new(1024));
    let lcores = d.worker_lcores.clone();
    for (w, lcore) in lcores.iter().enumerate() {
        let queues = ports
            .iter()
            .map(|p| p.queue(w as u16))
            .collect::<Result<Vec<_>, _>>()
            .context("taking worker queues")?;
        let mut worker = Worker::new(w as u16, queues, &shared, control.clone());
        if let Some(q) = plane.sync_queue() {
            worker.set_sync_queue(q);
            worker.set_defer(plane.sync().is_some_and(|s| s.defer()));
        }
        if w == 0 {
            worker.set_injection_queue(injection.clone());
        }
        stats.push(worker.stats());
        let stop = stop_workers.clone();
        let mode = d.poll;
        eal.launch(*lcore, move || worker_loop(worker, stop, mode, start))
            .with_context(|| format!("starting the worker on lcore {lcore}"))?;
        eprintln!(
            "rampart: worker {w} on lcore {lcore} ({:?} polling)",
            d.poll
        );
    }
    let mut control_tx = ControlTx {
        queues: ports
            .iter()
            .zip(&control_has_queue)
            .map(|(p, own)| {
                if *own {
                    p.queue(workers).map(Some)
                } else {
                    Ok(None)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .context("taking the control core's TX queues")?,
        injection: injection.clone(),
        pool: pool.clone(),
    };

    let mut ctl = match &config.control.socket {
        Some(path) => Some(
            CtlServer::bind(path)
                .with_context(|| format!("opening the management socket {}", path.display()))?,
        ),
        None => None,
    };
    eprintln!(
        "rampart: {} running: {} interfaces, {} rules, {} workers; stop with SIGINT or SIGTERM",
        config.appliance.name,
        config.interfaces.len(),
        config.rules.len(),
        workers
    );

    if let Some(sync) = plane.sync() {
        let status = sync.status(Duration::ZERO);
        eprintln!(
            "rampart: pfsync on {} to {} (creator {}, maxupd {})",
            status["interface"].as_str().unwrap_or("?"),
            status["peer"].as_str().unwrap_or("?"),
            status["creator"].as_str().unwrap_or("?"),
            status["maxupd"]
        );
    }
    let mut control_sent = 0u64;
    let mut control_tx_failed = 0u64;
    // Links as last seen (assumed up at start), polled every 500 ms.
    let mut links: Vec<bool> = vec![true; ports.len()];
    let mut last_link_check = Duration::ZERO;
    {
        let mut out: Outgoing = Vec::new();
        plane.start(start.elapsed(), &mut out);
        for (iface, frame) in out {
            control_tx.send(iface, &frame);
        }
    }
    // What the control plane produced while told how its last frames fared.
    let mut carried: Outgoing = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        let mut out: Outgoing = std::mem::take(&mut carried);
        if now >= last_link_check + Duration::from_millis(500) {
            last_link_check = now;
            for (i, p) in ports.iter().enumerate() {
                if let Ok(up) = p.link_up() {
                    if up != links[i] {
                        links[i] = up;
                        plane.link_state(i as u16, up, now, &mut out);
                    }
                }
            }
        }
        let mut handled = 0;
        while let Some(msg) = control.pop() {
            plane.handle(msg, now, &mut out);
            handled += 1;
        }
        plane.tick(now, &mut out);
        if let Some(iface) = plane.sync_iface() {
            // A bulk update goes as fast as the sync interface's TX path takes it.
            let room = control_tx.room(iface).saturating_sub(out.len());
            plane.send_bulk(now, room, &mut out);
        }
        if let Some(server) = ctl.as_mut() {
            server.poll(|command| {
                if let Some(reply) = plane.command(command, now, &mut out) {
                    return reply;
                }
                let cx = ReportContext {
                    config: &config,
                    states: &shared.states,
                    workers: &stats,
                    uptime: now,
                    devices: ports
                        .iter()
                        .map(|p| p.stats().ok().map(device_stats))
                        .collect(),
                    control: control_json(&plane, control_sent, control_tx_failed, &shared),
                    now_ms: now.as_millis() as u64,
                };
                match command {
                    "info" => report::info(&cx),
                    "states" => report::states(&cx, 10_000),
                    _ => report::rules(&cx),
                }
            });
        }
        for (iface, frame) in out {
            let ok = control_tx.send(iface, &frame);
            if ok {
                control_sent += 1;
            } else {
                control_tx_failed += 1;
            }
            // CARP counts its adverts that could not leave (send-error demotion).
            plane.transmitted(iface, &frame, ok, now, &mut carried);
        }
        if handled > 0 || plane.busy() || !carried.is_empty() {
            // Frames are arriving (a bulk update, say) or a bulk is going out: no nap.
            std::thread::yield_now();
            continue;
        }
        // The control core does not busy-poll: it shares its CPU. Sleep until the next
        // timer (CARP's, pfsync's) or 1 ms, whichever is sooner.
        let nap = plane.next_timeout().map_or(Duration::from_millis(1), |t| {
            t.saturating_sub(start.elapsed())
                .min(Duration::from_millis(1))
        });
        std::thread::sleep(nap.max(Duration::from_micros(50)));
    }
    // Bow out of every CARP group first, so a backup takes over at once.
    let mut out: Outgoing = Vec::new();
    plane.shutdown(start.elapsed(), &mut out);
    for (iface, frame) in out {
        control_tx.send(iface, &frame);
    }
    // Give worker 0 a moment to send what was handed to it (the bow-out adverts).
    let deadline = Instant::now() + Duration::from_millis(100);
    while !injection.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }

    eprintln!("rampart: stopping");
    stop_workers.store(true, Ordering::Relaxed);
    for lcore in &lcores {
        eal.wait(*lcore);
    }
    drop(control_tx);
    while injection.pop().is_some() {}
    for p in &ports {
        let _ = p.stop();
    }
    let now_ms = start.elapsed().as_millis() as u64;
    let cx = ReportContext {
        config: &config,
        states: &shared.states,
        workers: &stats,
        uptime: start.elapsed(),
        devices: ports
            .iter()
            .map(|p| p.stats().ok().map(device_stats))
            .collect(),
        control: control_json(&plane, control_sent, control_tx_failed, &shared),
        now_ms,
    };
    crate::ctl::print_info(&report::info(&cx));
    // Frames still queued for the control core hold mbufs: free them before the pool goes.
    while control.pop().is_some() {}
    drop(ctl);
    Ok(())
}

/// How the control core transmits: its own TX queue on each port that has one, otherwise
/// through worker 0.
struct ControlTx {
    queues: Vec<Option<rampart_dataplane::io::dpdk::DpdkQueue>>,
    injection: Arc<InjectionQueue<Mbuf>>,
    pool: Mempool,
}

/// Frames of a bulk update the control core puts on its own TX queue per loop.
const CONTROL_TX_ROOM: usize = 32;
/// Room kept in the injection queue for CARP's adverts and neighbour resolution.
const INJECTION_RESERVE: usize = 64;

impl ControlTx {
    /// How many more frames `iface` takes now (what paces a bulk update).
    fn room(&self, iface: u16) -> usize {
        match self.queues.get(iface as usize) {
            Some(Some(_)) => CONTROL_TX_ROOM,
            Some(None) => {
                (self.injection.capacity() - self.injection.len()).saturating_sub(INJECTION_RESERVE)
            }
            None => 0,
        }
    }

    /// Transmits one frame the control core built; `false` if it could not be queued.
    fn send(&mut self, iface: u16, frame: &[u8]) -> bool {
        let Some(mut buf) = self.pool.alloc() else {
            return false;
        };
        if !buf.set_frame_len(frame.len()) {
            return false;
        }
        buf.data_mut().copy_from_slice(frame);
        match self.queues.get_mut(iface as usize) {
            Some(Some(queue)) => {
                let mut batch = vec![buf];
                // A full ring empties in microseconds: retry briefly rather than lose a
                // bulk's states or an advert.
                for _ in 0..1000 {
                    if queue.tx_burst(&mut batch) == 1 {
                        return true;
                    }
                    std::hint::spin_loop();
                }
                false
            }
            Some(None) => self.injection.push((iface, buf)).is_ok(),
            None => false,
        }
    }
}

/// The control core's own counters, for `rampart ctl info`.
fn control_json(
    plane: &ControlPlane,
    sent: u64,
    failed: u64,
    shared: &Shared,
) -> serde_json::Value {
    let c = plane.counters;
    serde_json::json!({
        "frames_sent": sent,
        "frames_send_failed": failed,
        "carp_frames": c.carp_frames,
        "pfsync_frames": c.pfsync_frames,
        "solicitations": c.solicitations,
        "neighbors_learned": c.learned,
        "neighbors": shared.neighbors.load().len(),
    })
}

/// 64 random bits from the kernel (CARP's per-group replay cookies).
fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // Still distinct per process and group: mix the time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_ne_bytes(b)
}

fn device_stats(s: rampart_dataplane::io::dpdk::PortStats) -> DeviceStats {
    DeviceStats {
        ipackets: s.ipackets,
        opackets: s.opackets,
        ibytes: s.ibytes,
        obytes: s.obytes,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    }
}

/// A stable host id when `[appliance] host_id` is not set: a hash of the appliance's name
/// (FNV-1a), never 0. Two nodes of a pair must have different names or set `host_id`.
fn derived_host_id(config: &Config) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in config.appliance.name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dpdk: &str) -> Config {
        let text = format!(
            "[dpdk]\n{dpdk}\n[[interface]]\nname = \"lan\"\ndevice = \"net_null0\"\n\
             addresses = [\"192.0.2.1/24\"]\n"
        );
        rampart_conf::load_str(std::path::Path::new("t.toml"), &text)
            .map_err(|d| format!("{d:?}"))
            .unwrap()
            .config
    }

    #[test]
    fn eal_gets_the_lcore_list_unless_lcores_maps_them() {
        let args = eal_args(&config("worker_lcores = [1]\neal_args = [\"--no-pci\"]")).unwrap();
        assert_eq!(
            args,
            [
                "-l",
                "0,1",
                "--main-lcore",
                "0",
                "--vdev=net_null0",
                "--no-pci"
            ]
        );
        // Two workers on CPU 1: --lcores replaces -l; the main lcore is still rampart's.
        let args = eal_args(&config(
            "worker_lcores = [1, 2]\neal_args = [\"--lcores=0@0,1@1,2@1\"]",
        ))
        .unwrap();
        assert_eq!(
            args,
            [
                "--main-lcore",
                "0",
                "--vdev=net_null0",
                "--lcores=0@0,1@1,2@1"
            ]
        );
    }

    #[test]
    fn an_lcore_without_a_cpu_is_named_before_eal_starts() {
        let two = config("worker_lcores = [1, 2]");
        let args = eal_args(&two).unwrap();
        let err = check_lcores_have_cpus(&two, &args, &[0, 1])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("[dpdk] worker_lcores: lcore 2 runs on CPU 2"),
            "{err}"
        );
        assert!(
            err.contains("its CPUs: 0,1") && err.contains("--lcores"),
            "{err}"
        );
        assert!(check_lcores_have_cpus(&two, &args, &[0, 1, 2, 3]).is_ok());
        // Affinity without CPU 0: the control lcore is the one named.
        let err = check_lcores_have_cpus(&two, &args, &[1, 2])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("[dpdk] control_lcore: lcore 0"), "{err}");
        // --lcores places lcores where the operator says: EAL checks that map itself.
        let mapped = config("worker_lcores = [1, 2]\neal_args = [\"--lcores=0@0,(1,2)@1\"]");
        let args = eal_args(&mapped).unwrap();
        assert!(check_lcores_have_cpus(&mapped, &args, &[0, 1]).is_ok());
    }

    #[test]
    fn vdevs_on_linux_interfaces_name_them() {
        fn names(d: &str) -> Vec<&str> {
            linux_interfaces(d).collect()
        }
        assert_eq!(
            names("net_af_xdp0,iface=veth-lan,start_queue=0"),
            ["veth-lan"]
        );
        assert_eq!(
            names("net_pcap0,rx_iface_in=fw-lan,tx_iface=fw-lan,tx_iface=fw-lan"),
            ["fw-lan", "fw-lan", "fw-lan"]
        );
        assert!(names("net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap").is_empty());
        assert!(names("net_null0").is_empty());
        let mut c = config("worker_lcores = [1]");
        c.interfaces[0].device = "net_af_xdp0,iface=lo".into();
        assert!(check_linux_interfaces_exist(&c).is_ok());
        c.interfaces[0].device = "net_af_xdp0,iface=rampart-none0".into();
        let err = check_linux_interfaces_exist(&c).unwrap_err().to_string();
        assert!(
            err.contains("Linux interface rampart-none0, which does not exist"),
            "{err}"
        );
    }

    #[test]
    fn pci_addresses_and_vdevs_are_told_apart() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.1"));
        assert!(!is_pci_address("net_af_xdp0,iface=veth0"));
        assert!(!is_pci_address("net_null0"));
        assert!(!is_pci_address("0000:03:00"));
    }
}
