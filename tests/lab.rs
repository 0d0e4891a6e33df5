//! The lab, end to end: rampart between real Linux hosts in network namespaces.
//!
//! Each test brings up its own lab with `tests/lab/lab.sh` (a client namespace, a server
//! namespace, and rampart driving the two veth ends in a third one through DPDK vdevs), checks
//! one thing with the hosts' own tools (ping, ip neigh, iperf3, nc) and `rampart ctl`, tears
//! the lab down and asserts that no namespace, veth or process is left behind.
//!
//! They need root (network namespaces) and free hugepages (DPDK). Without root, or where a
//! namespace or a veth cannot be created, each test prints `WARNING: skipping lab test:
//! <reason>` and passes: that is the only allowed skip. The tests run one at a time (one
//! rampart worker per vCPU; two labs at once would share the machine's two vCPUs).
//!
//! Run them alone with `cargo test --test lab -- --nocapture`; the same lab by hand with
//! `tests/lab/lab.sh up` (see docs/operations.md).

mod netns_lab {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::sync::Mutex;
    use std::thread::sleep;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    const CLIENT4: &str = "192.0.2.10";
    const CLIENT6: &str = "2001:db8:1::10";
    const LAN4: &str = "192.0.2.1";
    const LAN6: &str = "2001:db8:1::1";
    const SERVER4: &str = "198.51.100.7";
    const SERVER6: &str = "2001:db8:2::7";

    /// One lab at a time.
    static ONE_LAB: Mutex<()> = Mutex::new(());

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// Runs a command to completion; it must be bounded by its own options or `timeout`.
    fn run(cmd: &mut Command) -> Output {
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    /// The start time of a process (field 22 of /proc/PID/stat), if it exists.
    fn starttime(pid: u32) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces: count from after its closing ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(19).map(str::to_string)
    }

    struct Lab {
        prefix: String,
        dir: PathBuf,
        /// rampart's PID and start time, as the lab recorded them.
        rampart: Option<(u32, String)>,
        /// Processes a test started in the lab (listeners, iperf3): killed at teardown.
        children: Vec<Child>,
        down: bool,
    }

    impl Lab {
        fn cmd(prefix: &str, dir: &Path) -> Command {
            let mut c = Command::new("bash");
            c.arg(script())
                .env("RL_PREFIX", prefix)
                .env("RL_DIR", dir)
                .env("RAMPART", env!("CARGO_BIN_EXE_rampart"))
                .env("RL_TIMEOUT", "20");
            c
        }

        /// Brings a lab up, or returns `None` (after saying so loudly) where it cannot run.
        fn up(tag: &str) -> Option<Lab> {
            let prefix = format!("rlt{}{tag}", std::process::id() % 100_000);
            let dir = std::env::temp_dir().join(format!("rampart-lab-{prefix}"));
            let probe = run(Lab::cmd(&prefix, &dir).arg("prereqs"));
            if probe.status.code() == Some(77) {
                // Straight to stderr, past the test harness's output capture: a skip is loud.
                let _ = writeln!(
                    std::io::stderr(),
                    "WARNING: skipping lab test: {}",
                    text(&probe.stdout).trim()
                );
                return None;
            }
            assert!(probe.status.success(), "lab.sh prereqs: {probe:?}");
            let started = Instant::now();
            let out = run(Lab::cmd(&prefix, &dir).arg("up"));
            eprint!("{}", text(&out.stderr));
            assert!(
                out.status.success(),
                "lab.sh up failed:\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            eprintln!("lab {prefix} up in {:.1?}", started.elapsed());
            let pid_line = std::fs::read_to_string(dir.join("pids/rampart"))
                .expect("the lab records rampart's PID");
            let mut it = pid_line.split_whitespace();
            let pid: u32 = it.next().and_then(|p| p.parse().ok()).expect("a PID");
            let start = it.next().expect("a start time").to_string();
            Some(Lab {
                prefix,
                dir,
                rampart: Some((pid, start)),
                children: Vec::new(),
                down: false,
            })
        }

        fn ns(&self, host: &str) -> String {
            format!("{}-{host}", self.prefix)
        }

        /// A command inside one of the lab's namespaces.
        fn exec(&self, host: &str, args: &[&str]) -> Command {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.ns(host)]).args(args);
            c
        }

        fn sh(&self, host: &str, args: &[&str]) -> Output {
            run(&mut self.exec(host, args))
        }

        /// Starts a long-running command in a namespace; it is killed at teardown.
        fn spawn(&mut self, host: &str, args: &[&str]) -> usize {
            let child = self
                .exec(host, args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
            self.children.push(child);
            self.children.len() - 1
        }

        /// Waits (bounded) until a TCP port listens in a namespace.
        fn wait_listening(&self, host: &str, port: u16) {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let out = self.sh(host, &["ss", "-Htln"]);
                if text(&out.stdout).contains(&format!(":{port} ")) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "nothing listens on port {port} in {host} after 5 s"
                );
                sleep(Duration::from_millis(50));
            }
        }

        fn ctl(&self, what: &str) -> Value {
            let out = run(Command::new(env!("CARGO_BIN_EXE_rampart")).args([
                "ctl",
                "-s",
                self.dir.join("rampart.sock").to_str().unwrap(),
                what,
                "--json",
            ]));
            assert!(out.status.success(), "rampart ctl {what}: {out:?}");
            serde_json::from_slice(&out.stdout).expect("rampart ctl --json prints JSON")
        }

        /// Packets a block rule or the default dropped (`packets.blocked`).
        fn blocked(&self) -> u64 {
            self.ctl("info")["packets"]["blocked"]
                .as_u64()
                .expect("packets.blocked in rampart ctl info --json")
        }

        fn file(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.join(name))
                .unwrap_or_else(|e| panic!("{}: {e}", self.dir.join(name).display()))
                .trim()
                .to_string()
        }

        /// Pings until one answer comes back (the first packet may be dropped while rampart
        /// resolves the next hop), bounded to 5 tries.
        fn warm_up(&self, dst: &str) {
            for _ in 0..5 {
                if self
                    .sh("client", &["ping", "-n", "-c", "1", "-W", "1", dst])
                    .status
                    .success()
                {
                    return;
                }
            }
            panic!("no answer from {dst} through the lab in 5 tries");
        }

        /// Stops rampart with SIGINT through the lab; its exit status and what it printed.
        fn stop(&mut self) -> (Option<i32>, String) {
            let out = run(Lab::cmd(&self.prefix, &self.dir).arg("stop"));
            (out.status.code(), text(&out.stdout) + &text(&out.stderr))
        }

        fn teardown(&mut self) {
            if self.down {
                return;
            }
            self.down = true;
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            let out = run(Lab::cmd(&self.prefix, &self.dir).arg("down"));
            if !out.status.success() {
                eprintln!("lab.sh down: {out:?}");
            }
        }

        /// Tears the lab down and asserts nothing of it is left.
        fn finish(mut self) {
            self.teardown();
            let netns = run(Command::new("ip").args(["netns", "list"]));
            let leftover: Vec<String> = text(&netns.stdout)
                .lines()
                .filter(|l| l.starts_with(&format!("{}-", self.prefix)))
                .map(str::to_string)
                .collect();
            assert!(leftover.is_empty(), "namespaces left behind: {leftover:?}");
            let links = run(Command::new("ip").args(["-br", "link", "show", "type", "veth"]));
            let links = text(&links.stdout);
            assert!(
                !links.contains("fw-lan") && !links.contains("fw-wan"),
                "veths left behind in the root namespace:\n{links}"
            );
            if let Some((pid, start)) = &self.rampart {
                assert_ne!(
                    starttime(*pid).as_ref(),
                    Some(start),
                    "rampart (pid {pid}) is still running"
                );
            }
            for c in &mut self.children {
                assert!(
                    c.try_wait().expect("try_wait").is_some(),
                    "a process the test started is still running"
                );
            }
            // No process anywhere still refers to the lab (its config, socket or logs).
            let dir = self.dir.to_string_lossy().into_owned();
            for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
                if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                    let cmdline = text(&cmdline).replace('\0', " ");
                    assert!(
                        !cmdline.contains(&dir),
                        "process {} still refers to the lab: {cmdline}",
                        entry.file_name().to_string_lossy()
                    );
                }
            }
            assert!(!self.dir.exists(), "{} is left behind", self.dir.display());
        }
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            // A failed assertion unwinds through here: never leave a lab up.
            self.teardown();
        }
    }

    fn ping_ok(out: &Output) -> bool {
        out.status.success() && text(&out.stdout).contains(" 0% packet loss")
    }

    #[test]
    fn ping_through_the_firewall() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Lab::up("p") else { return };
        lab.warm_up(SERVER4);
        let v4 = lab.sh(
            "client",
            &["ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", SERVER4],
        );
        assert!(ping_ok(&v4), "IPv4 ping through rampart: {v4:?}");
        // The reply crossed rampart: its TTL was decremented once (64 -> 63).
        assert!(text(&v4.stdout).contains("ttl=63"), "{}", text(&v4.stdout));

        lab.warm_up(SERVER6);
        let v6 = lab.sh(
            "client",
            &[
                "ping", "-n", "-6", "-c", "5", "-i", "0.2", "-W", "2", SERVER6,
            ],
        );
        assert!(ping_ok(&v6), "IPv6 ping through rampart: {v6:?}");
        assert!(text(&v6.stdout).contains("ttl=63"), "{}", text(&v6.stdout));

        // And the server reaches the client on the connections the client opened: its pings
        // are new connections from the wan side, which the policy blocks.
        let back = lab.sh(
            "server",
            &["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", CLIENT4],
        );
        assert!(
            !back.status.success(),
            "the server pinged the client: {back:?}"
        );
        lab.finish();
    }

    #[test]
    fn firewall_answers_arp_and_ping_on_its_addresses() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Lab::up("a") else { return };
        let answered_before = lab.ctl("info")["packets"]["answered"].as_u64().unwrap();
        let v4 = lab.sh(
            "client",
            &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", LAN4],
        );
        assert!(ping_ok(&v4), "ping 192.0.2.1: {v4:?}");
        assert!(text(&v4.stdout).contains("ttl=64"), "{}", text(&v4.stdout));
        let v6 = lab.sh(
            "client",
            &["ping", "-n", "-6", "-c", "3", "-i", "0.2", "-W", "2", LAN6],
        );
        assert!(ping_ok(&v6), "ping 2001:db8:1::1: {v6:?}");

        // The client learned 192.0.2.1 by ARP: the answer carried fw-lan's MAC, which is the
        // MAC rampart reported for its lan port.
        let fw_lan_mac = text(
            &lab.sh("fw", &["cat", "/sys/class/net/fw-lan/address"])
                .stdout,
        )
        .trim()
        .to_string();
        assert_eq!(fw_lan_mac, lab.file("lan.mac"), "fw-lan's MAC is rampart's");
        let neigh = text(
            &lab.sh("client", &["ip", "neigh", "show", LAN4, "dev", "eth0"])
                .stdout,
        );
        assert!(
            neigh.contains(&format!("lladdr {fw_lan_mac}")),
            "the client's neighbour entry for {LAN4} should be fw-lan's MAC {fw_lan_mac}: {neigh:?}"
        );
        let neigh6 = text(
            &lab.sh("client", &["ip", "-6", "neigh", "show", LAN6])
                .stdout,
        );
        assert!(
            neigh6.contains(&format!("lladdr {fw_lan_mac}")),
            "the client's neighbour entry for {LAN6}: {neigh6:?}"
        );
        let info = lab.ctl("info");
        let answered = info["packets"]["answered"].as_u64().unwrap();
        assert!(
            answered >= answered_before + 6,
            "rampart answered {answered_before} -> {answered} packets (6 echo requests at least)"
        );
        // The one worker's load: it found those frames, and, polling adaptively on a
        // mostly idle link, napped between them.
        let pollers = info["pollers"].as_array().expect("pollers in ctl info");
        assert_eq!(pollers.len(), 1, "{info}");
        let w = &pollers[0];
        let busy = w["busy_polls"].as_u64().unwrap();
        assert!(w["frames"].as_u64().unwrap() >= 6, "{w}");
        assert!(busy >= 1 && busy < w["polls"].as_u64().unwrap(), "{w}");
        assert!(
            w["naps"].as_u64().unwrap() > 0,
            "an adaptive poller naps when idle: {w}"
        );
        lab.finish();
    }

    #[test]
    fn tcp_transfer_is_tracked_as_established() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut lab) = Lab::up("t") else { return };
        lab.warm_up(SERVER4);
        lab.spawn("server", &["iperf3", "-s", "-1", "-B", SERVER4]);
        lab.wait_listening("server", 5201);
        let client = lab.spawn(
            "client",
            &["timeout", "30", "iperf3", "-c", SERVER4, "-t", "4", "-J"],
        );
        // While it runs, the state table lists the connection, established both ways.
        let deadline = Instant::now() + Duration::from_secs(6);
        let mut seen = None;
        while Instant::now() < deadline && seen.is_none() {
            sleep(Duration::from_millis(250));
            let states = lab.ctl("states");
            seen = states["states"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| {
                    s["proto"] == "tcp"
                        && s["dst"] == format!("{SERVER4}:5201")
                        && s["src"].as_str().is_some_and(|a| a.starts_with(CLIENT4))
                        && s["state"] == "ESTABLISHED:ESTABLISHED"
                })
                .cloned();
        }
        let state = seen
            .expect("rampart ctl states lists the iperf3 connection as ESTABLISHED:ESTABLISHED");
        eprintln!("state during the transfer: {state}");
        assert_eq!(state["iface"], "lan");

        let child = lab.children.remove(client);
        let out = child.wait_with_output().expect("iperf3 client");
        assert!(out.status.success(), "iperf3 client: {}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J prints JSON");
        let bytes = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        let bps = report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0);
        eprintln!("iperf3: {bytes} bytes received, {:.0} Mbit/s", bps / 1e6);
        assert!(bytes > 1_000_000, "iperf3 moved only {bytes} bytes");
        lab.finish();
    }

    #[test]
    fn blocked_and_refused_connections() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut lab) = Lab::up("b") else { return };
        lab.warm_up(SERVER4);
        // A control: the client reaches a listener on the server.
        lab.spawn("server", &["nc", "-l", SERVER4, "2223"]);
        lab.wait_listening("server", 2223);
        let ok = lab.sh("client", &["nc", "-z", "-w", "3", SERVER4, "2223"]);
        assert!(
            ok.status.success(),
            "client -> server:2223 should pass: {ok:?}"
        );

        // The server may not open a connection to the client: nothing passes it, the
        // default blocks it, and the "blocked" counter counts it.
        lab.spawn("client", &["nc", "-l", CLIENT4, "2222"]);
        lab.wait_listening("client", 2222);
        let before = lab.blocked();
        let started = Instant::now();
        let blocked = lab.sh("server", &["nc", "-z", "-w", "2", CLIENT4, "2222"]);
        assert!(
            !blocked.status.success(),
            "server -> client:2222 should be blocked"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "a blocked connection times out (it is dropped, not refused): {blocked:?}"
        );
        let after = lab.blocked();
        assert!(
            after > before,
            "the blocked counter did not grow: {before} -> {after}"
        );
        let blocked6 = lab.sh("server", &["nc", "-6", "-z", "-w", "2", CLIENT6, "2222"]);
        assert!(
            !blocked6.status.success(),
            "server -> [{CLIENT6}]:2222 should be blocked"
        );
        let after6 = lab.blocked();
        assert!(
            after6 > after,
            "the blocked counter did not grow for IPv6: {after} -> {after6}"
        );

        // Port 23 is refused at once by rampart's `block return` (an RST), even though the
        // server listens there: the SYN never reaches it.
        lab.spawn("server", &["nc", "-l", SERVER4, "23"]);
        lab.wait_listening("server", 23);
        let rules_before = lab.ctl("rules")["rules"][4]["packets"].as_u64().unwrap();
        let started = Instant::now();
        let refused = lab.sh("client", &["nc", "-zv", "-w", "5", SERVER4, "23"]);
        let took = started.elapsed();
        assert!(
            !refused.status.success(),
            "client -> server:23 should be refused"
        );
        assert!(
            text(&refused.stderr).contains("refused"),
            "nc should say the connection was refused: {refused:?}"
        );
        assert!(took < Duration::from_secs(2), "refused only after {took:?}");
        let rules_after = lab.ctl("rules")["rules"][4]["packets"].as_u64().unwrap();
        assert!(
            rules_after > rules_before,
            "rule 5 (no-telnet) did not count the SYN"
        );
        // IPv6 too.
        let refused6 = lab.sh("client", &["nc", "-6", "-z", "-w", "5", SERVER6, "23"]);
        assert!(
            !refused6.status.success(),
            "[{SERVER6}]:23 should be refused"
        );
        lab.finish();
    }

    #[test]
    fn sigint_stops_rampart_with_final_counters() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut lab) = Lab::up("s") else { return };
        lab.warm_up(SERVER4);
        let (code, output) = lab.stop();
        eprintln!("{output}");
        assert_eq!(
            code,
            Some(0),
            "rampart should exit 0 after SIGINT:\n{output}"
        );
        for want in [
            "rampart: stopping",
            "State Table",
            "forwarded",
            "Interface",
            "lan",
            "wan",
        ] {
            assert!(
                output.contains(want),
                "the final counters lack {want:?}:\n{output}"
            );
        }
        let log = lab.file("rampart.log");
        assert!(!log.contains("panicked"), "rampart panicked:\n{log}");
        lab.finish();
    }
}
