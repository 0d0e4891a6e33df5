//! The HA lab, end to end: two rampart nodes running CARP between real Linux hosts.
//!
//! Each test brings up its own lab with `tests/lab/ha.sh` (a client and a server namespace, two
//! Linux bridges in a switch namespace, and rampart nodes fw-a and fw-b in their own namespaces on
//! AF_XDP vdevs; or fw-b replaced by Debian's ucarp), checks one thing with the hosts' tools,
//! tshark, ucarp, `tests/lab/carp.py` (an independent implementation of OpenBSD's HMAC, a
//! forger and a 10 ms prober) and `rampart ctl carp --json`, tears the lab down and asserts
//! that no namespace, process or file of it is left.
//!
//! They need root (network namespaces) and free hugepages (two DPDK processes). Without root,
//! or where a namespace, veth or bridge cannot be created, each test prints `WARNING: skipping
//! HA lab test: <reason>` and passes: that is the only allowed skip. The tests run one at a time.
//! Every measured figure is printed (`ha figure: ...`); see docs/ha.md for the medians.
//!
//! Run them alone with `cargo test --test ha -- --nocapture`; the same lab by hand with
//! `tests/lab/ha.sh up` (see docs/ha.md).

mod ha_lab {
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output, Stdio};
    use std::sync::Mutex;
    use std::thread::sleep;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    const PASS: &str = "mekmitasdigoat";
    const VIP_LAN: &str = "192.0.2.1";
    const VIP_WAN: &str = "198.51.100.1";
    const A_LAN: &str = "192.0.2.2";
    const A_WAN: &str = "198.51.100.2";
    const B_LAN: &str = "192.0.2.3";

    /// One lab at a time (two DPDK processes already share the two vCPUs).
    static ONE_LAB: Mutex<()> = Mutex::new(());

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// Runs a command to completion; it must be bounded by its own options or waits.
    fn run(cmd: &mut Command) -> Output {
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    fn starttime(pid: u32) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(19).map(str::to_string)
    }

    /// The key=value pairs of the last `ha-result` line.
    fn result(out: &str) -> HashMap<String, String> {
        let line = out
            .lines()
            .rev()
            .find(|l| l.starts_with("ha-result "))
            .unwrap_or_else(|| panic!("no ha-result line in:\n{out}"));
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ms(r: &HashMap<String, String>, key: &str) -> f64 {
        r.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number {key} in {r:?}"))
    }

    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    struct Ha {
        prefix: String,
        dir: PathBuf,
        settings: Vec<(&'static str, String)>,
        down: bool,
    }

    impl Ha {
        fn cmd_for(prefix: &str, dir: &Path, settings: &[(&'static str, String)]) -> Command {
            let mut c = Command::new("bash");
            c.arg(repo().join("tests/lab/ha.sh"))
                .env("HA_PREFIX", prefix)
                .env("HA_DIR", dir)
                .env("RAMPART", env!("CARGO_BIN_EXE_rampart"))
                .env("HA_TIMEOUT", "20");
            for (k, v) in settings {
                c.env(k, v);
            }
            c
        }

        fn cmd(&self) -> Command {
            Ha::cmd_for(&self.prefix, &self.dir, &self.settings)
        }

        /// Brings a lab up (fw-a MASTER, fw-b BACKUP, the client reaching the server), or
        /// returns `None`, after saying so loudly, where it cannot run.
        fn up(tag: &str, settings: &[(&'static str, &str)]) -> Option<Ha> {
            let prefix = format!("hat{}{tag}", std::process::id() % 100_000);
            let dir = std::env::temp_dir().join(format!("rampart-ha-{prefix}"));
            let settings: Vec<(&'static str, String)> =
                settings.iter().map(|(k, v)| (*k, v.to_string())).collect();
            let probe = run(Ha::cmd_for(&prefix, &dir, &settings).arg("prereqs"));
            if probe.status.code() == Some(77) {
                let _ = writeln!(
                    std::io::stderr(),
                    "WARNING: skipping HA lab test: {}",
                    text(&probe.stdout).trim()
                );
                return None;
            }
            assert!(probe.status.success(), "ha.sh prereqs: {probe:?}");
            let started = Instant::now();
            let out = run(Ha::cmd_for(&prefix, &dir, &settings).arg("up"));
            eprint!("{}", text(&out.stderr));
            assert!(
                out.status.success(),
                "ha.sh up failed:\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            eprintln!(
                "HA lab {prefix} up in {:.1?} ({settings:?})",
                started.elapsed()
            );
            Some(Ha {
                prefix,
                dir,
                settings,
                down: false,
            })
        }

        /// `ha.sh ARGS` must succeed; its stdout.
        fn ok(&self, args: &[&str]) -> String {
            self.ok_env(args, &[])
        }

        fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
            let mut c = self.cmd();
            c.args(args);
            for (k, v) in env {
                c.env(k, v);
            }
            let out = run(&mut c);
            assert!(
                out.status.success(),
                "ha.sh {args:?} failed:\n{}{}",
                text(&out.stdout),
                text(&out.stderr)
            );
            text(&out.stdout)
        }

        fn carp(&self, node: &str) -> Value {
            let out = self.ok(&["ctl", node, "carp", "--json"]);
            serde_json::from_str(&out).expect("rampart ctl carp --json prints JSON")
        }

        fn group(carp: &Value, vhid: u64) -> &Value {
            carp["groups"]
                .as_array()
                .and_then(|g| g.iter().find(|g| g["vhid"] == vhid))
                .unwrap_or_else(|| panic!("no vhid {vhid} in {carp}"))
        }

        fn state(&self, node: &str, vhid: u32) -> String {
            self.ok(&["state", node, &vhid.to_string()])
                .trim()
                .to_string()
        }

        fn wait(&self, node: &str, vhid: u32, state: &str, secs: u32) {
            let out =
                run(self
                    .cmd()
                    .args(["wait", node, &vhid.to_string(), state, &secs.to_string()]));
            assert!(
                out.status.success(),
                "{node} vhid {vhid} did not become {state} within {secs} s: {}",
                text(&out.stderr)
            );
        }

        fn file(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
        }

        fn client(&self, args: &[&str]) -> Output {
            let mut c = self.cmd();
            c.args(["exec", "client"]).args(args);
            run(&mut c)
        }

        /// Every process the lab recorded (name, pid, start time).
        fn recorded(&self) -> Vec<(String, u32, String)> {
            let Ok(entries) = std::fs::read_dir(self.dir.join("pids")) else {
                return Vec::new();
            };
            entries
                .flatten()
                .filter_map(|e| {
                    let line = std::fs::read_to_string(e.path()).ok()?;
                    let mut it = line.split_whitespace();
                    let pid = it.next()?.parse().ok()?;
                    let start = it.next()?.to_string();
                    Some((e.file_name().to_string_lossy().into_owned(), pid, start))
                })
                .collect()
        }

        fn teardown(&mut self) {
            if self.down {
                return;
            }
            self.down = true;
            let out = run(self.cmd().arg("down"));
            if !out.status.success() {
                eprintln!("ha.sh down: {out:?}");
            }
        }

        /// Tears the lab down and asserts nothing of it is left.
        fn finish(mut self) {
            let recorded = self.recorded();
            self.teardown();
            for (name, pid, start) in &recorded {
                assert_ne!(
                    starttime(*pid).as_ref(),
                    Some(start),
                    "{name} (pid {pid}) is still running"
                );
            }
            let netns = run(Command::new("ip").args(["netns", "list"]));
            let leftover: Vec<String> = text(&netns.stdout)
                .lines()
                .filter(|l| l.starts_with(&format!("{}-", self.prefix)))
                .map(str::to_string)
                .collect();
            assert!(leftover.is_empty(), "namespaces left behind: {leftover:?}");
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

    impl Drop for Ha {
        fn drop(&mut self) {
            if std::thread::panicking() && !self.down {
                // What the nodes said, before the lab's directory goes.
                for name in ["fw-a.log", "fw-b.log", "fw-a.old.log", "fw-b.old.log"] {
                    let log = self.file(name);
                    if !log.is_empty() {
                        let tail: Vec<&str> = log.lines().rev().take(30).collect();
                        eprintln!("---- {name} (last 30 lines, newest first)");
                        for l in tail {
                            eprintln!("{l}");
                        }
                    }
                }
            }
            self.teardown();
        }
    }

    /// One tshark field line of `ha.sh decode`, by name.
    struct Advert(HashMap<&'static str, String>);

    const FIELDS: [&str; 16] = [
        "version",
        "type",
        "vhid",
        "advskew",
        "authlen",
        "demotion",
        "adver_int",
        "counter",
        "hmac",
        "checksum",
        "ttl",
        "eth_src",
        "ip_src",
        "dsfield",
        "df",
        "time",
    ];

    fn adverts(decoded: &str) -> Vec<Advert> {
        decoded
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), FIELDS.len(), "unexpected tshark line {l:?}");
                Advert(
                    FIELDS
                        .iter()
                        .copied()
                        .zip(f.iter().map(|s| s.to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    /// Test 1: the adverts on both bridges, decoded by tshark's CARP dissector, and their HMAC
    /// recomputed by an independent implementation of OpenBSD's formula (tests/lab/carp.py).
    #[test]
    fn adverts_on_the_wire_match_openbsd() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up("w", &[]) else { return };
        let capture = |bridge: &str| {
            let file = lab.dir.join(format!("{bridge}.pcap"));
            lab.ok(&["capture", bridge, "4", file.to_str().unwrap()]);
            lab.ok(&["decode", file.to_str().unwrap()])
        };
        // Both bridges at once: 4 s of each.
        let (lan, wan) = std::thread::scope(|s| {
            let lan = s.spawn(|| capture("br-lan"));
            let wan = s.spawn(|| capture("br-wan"));
            (lan.join().unwrap(), wan.join().unwrap())
        });
        for (decoded, vhid, src, vip, mac) in [
            (&lan, "1", A_LAN, VIP_LAN, "00:00:5e:00:01:01"),
            (&wan, "2", A_WAN, VIP_WAN, "00:00:5e:00:01:02"),
        ] {
            eprintln!("vhid {vhid}: tshark -d ip.proto==112,carp:\n{decoded}");
            let ads = adverts(decoded);
            assert!(
                ads.len() >= 3,
                "fewer than 3 adverts of vhid {vhid} in 4 s:\n{decoded}"
            );
            for a in &ads {
                let a = &a.0;
                for (field, want) in [
                    ("version", "2"),
                    ("type", "1"),
                    ("vhid", vhid),
                    ("advskew", "0"),
                    ("authlen", "7"),
                    ("demotion", "0"),
                    ("adver_int", "1"),
                    ("checksum", "1"), // tshark: 1 = good
                    ("ttl", "255"),
                    ("eth_src", mac),
                    ("ip_src", src), // fw-a's address: the BACKUP fw-b sends nothing
                    ("dsfield", "0x10"),
                    ("df", "1"),
                ] {
                    assert_eq!(a[field], want, "{field} of an advert of vhid {vhid}: {a:?}");
                }
            }
            // OpenBSD's counter is a constant cookie per vhid.
            assert!(
                ads.iter().all(|a| a.0["counter"] == ads[0].0["counter"]),
                "the counter of vhid {vhid} changed between adverts"
            );
            // One advert per advbase (1 s).
            let times: Vec<f64> = ads.iter().map(|a| a.0["time"].parse().unwrap()).collect();
            let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
            eprintln!("ha figure: vhid {vhid} advert intervals {gaps:.4?} s");
            assert!(
                gaps.iter().all(|g| (0.95..1.05).contains(g)),
                "intervals of vhid {vhid}: {gaps:?}"
            );
            // The HMAC, recomputed from the passphrase, vhid, VIP and counter.
            let check = |pass: &str| {
                let mut c = Command::new("python3");
                c.arg(repo().join("tests/lab/carp.py"))
                    .args(["check", "--pass", pass, "--vip", vip])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped());
                let mut child = c.spawn().expect("python3 tests/lab/carp.py");
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(decoded.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            };
            let good = check(PASS);
            eprint!("{}", text(&good.stdout));
            assert!(
                good.status.success()
                    && text(&good.stdout).matches(",hmac-ok").count() == ads.len(),
                "the HMAC of vhid {vhid} differs from OpenBSD's formula:\n{}",
                text(&good.stdout)
            );
            // The oracle discriminates: another passphrase gives another HMAC.
            let bad = check("mekmitasdigoaX");
            assert!(
                !bad.status.success() && text(&bad.stdout).contains("hmac-BAD"),
                "carp.py check accepted a wrong passphrase"
            );
        }
        lab.finish();
    }

    /// Test 2: both nodes up: exactly one MASTER per vhid (fw-a, the lower advskew), and it
    /// stays so for 10 s; fw-b never became MASTER.
    #[test]
    fn election_converges_without_split_brain() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up("e", &[]) else { return };
        let a0 = lab.carp("fw-a");
        let b0 = lab.carp("fw-b");
        eprintln!("fw-a: {}", lab.ok(&["ctl", "fw-a", "carp"]));
        eprintln!("fw-b: {}", lab.ok(&["ctl", "fw-b", "carp"]));
        let end = Instant::now() + Duration::from_secs(10);
        let mut samples = 0;
        let mut last_since = [0.0f64; 2];
        while Instant::now() < end {
            let (a, b) = (lab.carp("fw-a"), lab.carp("fw-b"));
            for (i, vhid) in [1u64, 2].into_iter().enumerate() {
                let (ga, gb) = (Ha::group(&a, vhid), Ha::group(&b, vhid));
                let masters = [ga, gb].iter().filter(|g| g["state"] == "MASTER").count();
                assert_eq!(masters, 1, "vhid {vhid}: fw-a {ga} / fw-b {gb}");
                assert_eq!(ga["state"], "MASTER", "vhid {vhid} on fw-a: {ga}");
                assert_eq!(gb["state"], "BACKUP", "vhid {vhid} on fw-b: {gb}");
                let since = ga["since_s"].as_f64().unwrap();
                assert!(
                    since > last_since[i],
                    "fw-a's vhid {vhid} changed state: {ga}"
                );
                last_since[i] = since;
                let heard = &gb["last_heard"];
                assert_eq!(
                    heard["from"],
                    if vhid == 1 { A_LAN } else { A_WAN },
                    "fw-b hears fw-a: {gb}"
                );
                assert!(
                    heard["ago_s"].as_f64().unwrap() < 1.5,
                    "fw-b last heard fw-a long ago: {gb}"
                );
            }
            samples += 1;
            sleep(Duration::from_millis(500));
        }
        let (a1, b1) = (lab.carp("fw-a"), lab.carp("fw-b"));
        for vhid in [1u64, 2] {
            let (ga0, ga1) = (Ha::group(&a0, vhid), Ha::group(&a1, vhid));
            let (gb0, gb1) = (Ha::group(&b0, vhid), Ha::group(&b1, vhid));
            assert_eq!(
                ga1["counters"]["became_master"], 1,
                "fw-a vhid {vhid}: {ga1}"
            );
            assert_eq!(
                gb1["counters"]["became_master"], 0,
                "fw-b vhid {vhid}: {gb1}"
            );
            let sent = ga1["counters"]["sent"].as_u64().unwrap()
                - ga0["counters"]["sent"].as_u64().unwrap();
            let heard = gb1["counters"]["accepted"].as_u64().unwrap()
                - gb0["counters"]["accepted"].as_u64().unwrap();
            eprintln!(
                "ha figure: vhid {vhid}: fw-a sent {sent} adverts, fw-b accepted {heard}, in ~10 s"
            );
            assert!(
                sent >= 9 && heard + 1 >= sent,
                "vhid {vhid}: sent {sent}, heard {heard}"
            );
        }
        for (name, c) in [("fw-a", &a1), ("fw-b", &b1)] {
            for k in [
                "bad_hmac",
                "bad_ttl",
                "unknown_vhid",
                "own_loop",
                "bad_checksum",
            ] {
                assert_eq!(c["counters"][k], 0, "{name} counter {k}: {}", c["counters"]);
            }
        }
        eprintln!("{samples} samples over 10 s: one MASTER (fw-a) per vhid in each");
        // The client's gateway is the VIP, at the virtual MAC.
        let neigh = text(&lab.client(&["ip", "neigh", "show", VIP_LAN]).stdout);
        assert!(
            neigh.contains("00:00:5e:00:01:01"),
            "client's ARP entry: {neigh}"
        );
        lab.finish();
    }

    /// Test 3a, advbase 1 (fw-a advskew 0, fw-b 100): SIGKILL of the MASTER, measured from the
    /// client's 10 ms probes of the VIP; fw-a restarts and preempts back; SIGTERM's bow-out.
    #[test]
    fn failover_advbase_1_kill_failback_and_bow_out() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up("f", &[]) else { return };
        // fw-b's master-down interval: 3 × (1 + 100/256) s.
        let master_down = 3.0 * (1.0 + 100.0 / 256.0) * 1000.0;

        // Maintenance first: `carp demote 1` on fw-a hands the VIPs to fw-b at once (fw-a
        // advertises its demotion immediately); `carp promote` and fw-a preempts back when it
        // next hears fw-b.
        let out = lab.ok(&["switchover"]);
        eprint!("{out}");
        let r = result(&out);
        assert_eq!(
            (r["fw_a"].as_str(), r["fw_b"].as_str()),
            ("MASTER", "BACKUP"),
            "{r:?}"
        );
        let (demote, promote) = (ms(&r, "demote_ms"), ms(&r, "promote_ms"));
        let (demote_gap, promote_gap) = (ms(&r, "demote_gap_ms"), ms(&r, "promote_gap_ms"));
        eprintln!(
            "ha figure: advbase 1, carp demote 1 -> fw-b's first advert {demote} ms, longest gap {demote_gap} ms; carp promote -> fw-a's first advert {promote} ms, longest gap {promote_gap} ms"
        );
        assert!(
            demote < 300.0,
            "fw-b took over {demote} ms after the demotion"
        );
        // fw-a preempts when it next hears fw-b (every 1.39 s), plus startup slack.
        assert!(
            promote < 1391.0 + 300.0,
            "fw-a preempted {promote} ms after promote"
        );
        // A switch learns the virtual MAC again at the new master's next advert at the latest.
        assert!(
            demote_gap < 1391.0 + 300.0,
            "outage at demotion: {demote_gap} ms"
        );
        assert!(
            promote_gap < 1000.0 + 300.0,
            "outage at promotion: {promote_gap} ms"
        );
        let a = lab.carp("fw-a");
        assert_eq!(a["demotion"], 0, "promote released the demotion: {a}");
        let b = lab.carp("fw-b");
        assert!(
            b["events"].as_array().unwrap().iter().any(|e| e
                .as_str()
                .unwrap()
                .contains("master 192.0.2.2 is demoted (1)")),
            "fw-b took over because fw-a was demoted: {}",
            b["events"]
        );

        let out = lab.ok(&["failover", "kill"]);
        eprint!("{out}");
        let r = result(&out);
        assert_eq!(r["other"], "MASTER", "{r:?}");
        assert_eq!(r["victim_rc"], "137", "fw-a died of SIGKILL: {r:?}");
        let answer = ms(&r, "answer_ms");
        let takeover = ms(&r, "takeover_ms");
        eprintln!(
            "ha figure: advbase 1, skew 0/100, SIGKILL -> fw-b takeover {takeover} ms, first answer {answer} ms (bound {master_down:.0} ms + 20)"
        );
        // The kill falls somewhere in fw-a's 1 s interval: fw-b times out 3.17-4.17 s later.
        assert!(
            (master_down - 1000.0 - 50.0..=master_down + 250.0).contains(&answer),
            "first answer from fw-b {answer} ms after the kill (master down {master_down:.0} ms)"
        );
        let b = lab.carp("fw-b");
        assert!(
            Ha::group(&b, 1)["reason"]
                .as_str()
                .unwrap()
                .starts_with("master down"),
            "{b}"
        );
        assert_eq!(
            Ha::group(&b, 2)["state"],
            "MASTER",
            "vhid 2 failed over too: {b}"
        );

        // fw-a comes back and, with preempt and the lower advskew, takes over again.
        let out = lab.ok(&["failback"]);
        eprint!("{out}");
        let r = result(&out);
        assert_eq!(r["other"], "BACKUP", "{r:?}");
        for vhid in [1, 2] {
            assert_eq!(lab.state("fw-a", vhid), "MASTER");
            assert_eq!(lab.state("fw-b", vhid), "BACKUP");
        }
        let a = lab.carp("fw-a");
        assert!(
            Ha::group(&a, 1)["reason"]
                .as_str()
                .unwrap()
                .starts_with("preempting slower master 192.0.2.3"),
            "{a}"
        );
        let gap = ms(&r, "gap_ms");
        eprintln!(
            "ha figure: advbase 1, failback (fw-a restarts, preempts): longest gap between answers {gap} ms, {} probes lost{}",
            r["lost"],
            if gap > 100.0 {
                " (the old MASTER answers the new one's gratuitous ARP from the virtual MAC: \
                 the switch sends the VIP's traffic to the BACKUP until fw-a's next advert; \
                 see docs/ha.md)"
            } else {
                ""
            }
        );
        // Whatever the switch learned, fw-a's next advert (1 s) moves it back.
        assert!(gap < 1000.0 + 300.0, "outage at failback: {gap} ms");

        // A clean stop: SIGTERM's bow-out makes fw-b take over at once.
        lab.ok(&["converge", "10"]);
        sleep(Duration::from_millis(500));
        let out = lab.ok(&["failover", "term"]);
        eprint!("{out}");
        let r = result(&out);
        assert_eq!(r["victim_rc"], "0", "rampart exits 0 on SIGTERM: {r:?}");
        assert_eq!(r["other"], "MASTER", "{r:?}");
        let takeover = ms(&r, "takeover_ms");
        let gap = ms(&r, "gap_ms");
        eprintln!(
            "ha figure: advbase 1, SIGTERM (bow-out) -> fw-b takeover {takeover} ms on the wire; longest gap between answers {gap} ms, {} probes lost",
            r["lost"]
        );
        assert!(takeover < 200.0, "bow-out takeover after {takeover} ms");
        assert!(gap < 250.0, "outage at bow-out: {gap} ms");
        let log = lab.file("fw-a.log");
        assert!(log.contains("rampart: stopping"), "fw-a's log:\n{log}");
        // And fw-a comes back as MASTER.
        lab.ok(&["start", "fw-a"]);
        lab.wait("fw-a", 1, "MASTER", 10);
        lab.wait("fw-b", 1, "BACKUP", 5);
        lab.finish();
    }

    /// Test 3b, sub-second: advbase 0, fw-a advskew 10, fw-b 20 (intervals 39 and 78 ms, fw-b's
    /// master-down 234 ms). Three SIGKILL failovers, each followed by a failback, and a bow-out.
    #[test]
    fn failover_subsecond_kill_and_bow_out() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up(
            "s",
            &[
                ("HA_ADVBASE", "0"),
                ("HA_SKEW_A", "10"),
                ("HA_SKEW_B", "20"),
            ],
        ) else {
            return;
        };
        let master_down = 3.0 * 20.0 / 256.0 * 1000.0;
        let (mut answers, mut takeovers, mut failbacks) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=3 {
            lab.ok(&["converge", "10"]);
            // A stable pair first: fw-b never timed out while fw-a advertised every 39 ms.
            let b = lab.carp("fw-b");
            let became = Ha::group(&b, 1)["counters"]["became_master"]
                .as_u64()
                .unwrap();
            assert_eq!(became, round - 1, "fw-b took over without a failover: {b}");
            sleep(Duration::from_millis(300));
            let out = lab.ok(&["failover", "kill"]);
            eprint!("round {round}: {out}");
            let r = result(&out);
            assert_eq!(r["other"], "MASTER", "{r:?}");
            answers.push(ms(&r, "answer_ms"));
            takeovers.push(ms(&r, "takeover_ms"));
            let out = lab.ok(&["failback"]);
            eprint!("round {round}: {out}");
            let r = result(&out);
            assert_eq!(r["other"], "BACKUP", "{r:?}");
            failbacks.push(ms(&r, "gap_ms"));
        }
        let answer = median(&answers);
        eprintln!(
            "ha figure: advbase 0, skew 10/20, SIGKILL -> fw-b takeover {takeovers:?} ms, first answer {answers:?} ms: median {answer:.1} ms (expected <= {master_down:.0} + 20 ms; the issue's goal is <= 150 ms)"
        );
        eprintln!("ha figure: advbase 0, skew 10/20, failback: longest gaps {failbacks:?} ms");
        // fw-b times out 3 intervals (234 ms) after fw-a's last advert, 195-234 ms after the kill.
        for a in &answers {
            assert!(
                (master_down - 40.0 - 20.0..=master_down + 150.0).contains(a),
                "first answer {a} ms after the kill: {answers:?}"
            );
        }
        assert!(answer <= master_down + 20.0 + 30.0, "median {answer} ms");
        for g in &failbacks {
            assert!(*g < 300.0, "failback outages {failbacks:?} ms");
        }

        lab.ok(&["converge", "10"]);
        sleep(Duration::from_millis(300));
        let out = lab.ok(&["failover", "term"]);
        eprint!("{out}");
        let r = result(&out);
        assert_eq!(r["victim_rc"], "0", "{r:?}");
        assert_eq!(r["other"], "MASTER", "{r:?}");
        let (takeover, gap) = (ms(&r, "takeover_ms"), ms(&r, "gap_ms"));
        eprintln!(
            "ha figure: advbase 0, skew 10/20, SIGTERM (bow-out) -> fw-b takeover {takeover} ms on the wire, longest gap between answers {gap} ms"
        );
        assert!(
            takeover < 78.0,
            "bow-out takeover {takeover} ms (one interval is 78 ms)"
        );
        assert!(gap < 100.0, "outage at bow-out: {gap} ms");
        lab.finish();
    }

    /// Test 4: Debian's ucarp as fw-b. rampart MASTER (advskew 0), ucarp BACKUP (advskew 100):
    /// ucarp stays BACKUP without "Bad digest"; SIGKILL of rampart -> ucarp MASTER; rampart
    /// restarts and preempts it (so each accepts the other's HMAC); then a wrong passphrase on
    /// ucarp: rampart counts bad_hmac and ucarp logs "Bad digest".
    #[test]
    fn ucarp_interop_both_ways() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up("u", &[("HA_PEER_B", "ucarp")]) else {
            return;
        };
        // rampart MASTER, ucarp BACKUP: ucarp hears rampart's adverts for 4 s and stays.
        sleep(Duration::from_secs(4));
        let ucarp = lab.file("fw-b.log");
        eprintln!("ucarp:\n{ucarp}");
        assert!(
            !ucarp.contains("Bad digest"),
            "ucarp rejected rampart's HMAC:\n{ucarp}"
        );
        assert_eq!(
            ucarp.matches("Switching to state").count(),
            1,
            "ucarp left BACKUP:\n{ucarp}"
        );
        assert_eq!(lab.state("fw-b", 1), "BACKUP");
        assert_eq!(lab.state("fw-a", 1), "MASTER");

        // rampart dies: ucarp takes the VIP (on its own MAC, by its upscript).
        let out = lab.ok(&["failover", "kill"]);
        eprint!("{out}");
        let r = result(&out);
        assert_eq!(r["other"], "MASTER", "{r:?}");
        eprintln!(
            "ha figure: ucarp (advbase 1, advskew 100) after SIGKILL of rampart: takeover {} ms on the wire, first answer {} ms",
            r["takeover_ms"], r["answer_ms"]
        );
        let addrs = lab.ok(&["exec", "fw-b", "ip", "-br", "addr", "show", "lan"]);
        assert!(
            addrs.contains(VIP_LAN),
            "ucarp's upscript added the VIP: {addrs}"
        );

        // rampart comes back with preempt and the lower advskew: it accepts ucarp's adverts
        // (their HMAC), preempts, and ucarp accepts rampart's and steps down.
        let before = lab.file("fw-b.log").len();
        let out = lab.ok(&["failback"]);
        eprint!("{out}");
        let a = lab.carp("fw-a");
        let g = Ha::group(&a, 1);
        eprintln!("rampart after the failback: {g}");
        assert_eq!(g["state"], "MASTER");
        assert!(
            g["reason"]
                .as_str()
                .unwrap()
                .starts_with("preempting slower master 192.0.2.3"),
            "{g}"
        );
        assert!(g["counters"]["accepted"].as_u64().unwrap() >= 1, "{g}");
        assert_eq!(g["counters"]["bad_hmac"], 0, "{g}");
        assert_eq!(g["last_heard"]["from"], B_LAN, "{g}");
        assert_eq!(g["last_heard"]["advskew"], 100, "{g}");
        lab.wait("fw-b", 1, "BACKUP", 5);
        let ucarp = lab.file("fw-b.log");
        eprintln!("ucarp:\n{ucarp}");
        assert!(
            ucarp[before..].contains("Switching to state: BACKUP"),
            "ucarp did not step down"
        );
        assert!(
            !ucarp.contains("Bad digest"),
            "ucarp rejected rampart's HMAC:\n{ucarp}"
        );
        let addrs = lab.ok(&["exec", "fw-b", "ip", "-br", "addr", "show", "lan"]);
        assert!(
            !addrs.contains(VIP_LAN),
            "ucarp's downscript removed the VIP: {addrs}"
        );
        let ping = lab.client(&["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", VIP_LAN]);
        assert!(
            ping.status.success(),
            "the VIP answers from rampart again: {ping:?}"
        );
        let neigh = text(&lab.client(&["ip", "neigh", "show", VIP_LAN]).stdout);
        assert!(
            neigh.contains("00:00:5e:00:01:01"),
            "client's ARP entry: {neigh}"
        );

        // A wrong passphrase on ucarp: neither accepts the other (and both end up MASTER).
        lab.ok(&["stop", "fw-b", "TERM"]);
        lab.ok_env(
            &["start", "fw-b"],
            &[("HA_UCARP_PASS", "not-the-passphrase")],
        );
        let deadline = Instant::now() + Duration::from_secs(8);
        let (mut bad_hmac, mut digest) = (0, false);
        while Instant::now() < deadline && !(bad_hmac > 0 && digest) {
            sleep(Duration::from_millis(250));
            bad_hmac = lab.carp("fw-a")["counters"]["bad_hmac"].as_u64().unwrap();
            digest = lab.file("fw-b.log").contains("Bad digest");
        }
        let ucarp = lab.file("fw-b.log");
        eprintln!("ucarp with a wrong passphrase:\n{ucarp}");
        let a = lab.carp("fw-a");
        eprintln!(
            "rampart: counters {}, events {}",
            a["counters"], a["events"]
        );
        assert!(digest, "ucarp did not log Bad digest");
        assert!(
            bad_hmac > 0,
            "rampart did not count bad_hmac: {}",
            a["counters"]
        );
        assert_eq!(Ha::group(&a, 1)["counters"]["bad_hmac"], bad_hmac);
        assert_eq!(Ha::group(&a, 1)["state"], "MASTER");
        assert!(
            lab.file("fw-a.log").contains("failed authentication"),
            "rampart warns about the HMAC"
        );
        lab.finish();
    }

    /// Test 5: adverts forged from the client (a wrong HMAC, TTL 64, an unknown vhid), each
    /// claiming a much more frequent master, change nothing; the counters count them. A valid
    /// advert from the same forger (the right key) is the control: it is accepted.
    #[test]
    fn forged_adverts_change_nothing() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up("x", &[]) else { return };
        let (a0, b0) = (lab.carp("fw-a"), lab.carp("fw-b"));
        let n = 20u64;
        let count = n.to_string();
        let common = [
            "--vip",
            VIP_LAN,
            "--advbase",
            "0",
            "--advskew",
            "1",
            "--count",
            &count,
        ];
        for (what, args) in [
            (
                "wrong HMAC",
                vec!["--pass", "not-the-passphrase", "--vhid", "1"],
            ),
            ("TTL 64", vec!["--pass", PASS, "--vhid", "1", "--ttl", "64"]),
            ("unknown vhid 7", vec!["--pass", PASS, "--vhid", "7"]),
        ] {
            let mut all = vec!["forge"];
            all.extend(args);
            all.extend(common);
            let out = lab.ok(&all);
            eprint!("{what}: {out}");
        }
        sleep(Duration::from_millis(500));
        let (a1, b1) = (lab.carp("fw-a"), lab.carp("fw-b"));
        for (name, c0, c1, state) in [("fw-a", &a0, &a1, "MASTER"), ("fw-b", &b0, &b1, "BACKUP")] {
            let delta =
                |k: &str| c1["counters"][k].as_u64().unwrap() - c0["counters"][k].as_u64().unwrap();
            eprintln!(
                "ha figure: {name} after {n} forgeries of each kind: bad_hmac +{}, bad_ttl +{}, unknown_vhid +{}, accepted +{}",
                delta("bad_hmac"),
                delta("bad_ttl"),
                delta("unknown_vhid"),
                delta("accepted")
            );
            for k in ["bad_hmac", "bad_ttl", "unknown_vhid"] {
                assert_eq!(delta(k), n, "{name} {k}: {}", c1["counters"]);
            }
            for vhid in [1u64, 2] {
                let (g0, g1) = (Ha::group(c0, vhid), Ha::group(c1, vhid));
                assert_eq!(g1["state"], state, "{name} vhid {vhid}: {g1}");
                assert_eq!(
                    g1["counters"]["became_master"], g0["counters"]["became_master"],
                    "{name} vhid {vhid}"
                );
                assert!(
                    g1["since_s"].as_f64() > g0["since_s"].as_f64(),
                    "{name} vhid {vhid} changed state: {g1}"
                );
            }
            assert_eq!(
                Ha::group(c1, 1)["counters"]["bad_hmac"].as_u64().unwrap()
                    - Ha::group(c0, 1)["counters"]["bad_hmac"].as_u64().unwrap(),
                n,
                "{name}: vhid 1 counts the bad HMACs"
            );
        }
        assert!(lab.file("fw-a.log").contains("failed authentication"));

        // The control: the same forger with the right key is believed (advskew and advbase are
        // not authenticated), so the three forgeries failed only where they were meant to.
        let out = lab.ok(&[
            "forge",
            "--pass",
            PASS,
            "--vhid",
            "1",
            "--vip",
            VIP_LAN,
            "--advbase",
            "0",
            "--advskew",
            "1",
        ]);
        eprint!("valid forgery: {out}");
        sleep(Duration::from_millis(300));
        let a2 = lab.carp("fw-a");
        let g = Ha::group(&a2, 1);
        assert_eq!(
            g["counters"]["accepted"].as_u64().unwrap(),
            Ha::group(&a1, 1)["counters"]["accepted"].as_u64().unwrap() + 1,
            "{g}"
        );
        assert_eq!(
            g["state"], "BACKUP",
            "fw-a yields to the more frequent 'master': {g}"
        );
        assert!(g["reason"].as_str().unwrap().contains("192.0.2.10"), "{g}");
        // The forger stays silent: fw-a times out (3 s) and is MASTER again.
        lab.wait("fw-a", 1, "MASTER", 6);
        lab.wait("fw-b", 1, "BACKUP", 2);
        lab.finish();
    }

    fn pfsync(lab: &Ha, node: &str) -> Value {
        let out = lab.ok(&["pfsync", node]);
        serde_json::from_str(&out).expect("rampart ctl pfsync --json prints JSON")
    }

    fn states_total(lab: &Ha, node: &str) -> u64 {
        let out = lab.ok(&["ctl", node, "states", "--json"]);
        let v: Value = serde_json::from_str(&out).expect("ctl states --json");
        v["total"].as_u64().unwrap()
    }

    /// pfsync test 1: 300 TCP connections and an iperf3 stream opened through fw-a survive
    /// its SIGKILL (sub-second CARP: advbase 0, advskew 10/20); with the sync link cut
    /// before they open, the same test loses them.
    #[test]
    fn pfsync_connections_survive_failover_and_are_lost_without_it() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up(
            "p",
            &[
                ("HA_ADVBASE", "0"),
                ("HA_SKEW_A", "10"),
                ("HA_SKEW_B", "20"),
            ],
        ) else {
            return;
        };
        // Both nodes finished their bulk update at start (each other's table).
        for node in ["fw-a", "fw-b"] {
            let s = pfsync(&lab, node);
            assert_eq!(s["bulk"]["status"], "done", "{node}: {s}");
            assert_eq!(s["interface"], "sync", "{s}");
        }

        let out = lab.ok(&["survive", "300", "12"]);
        eprint!("{out}");
        let r = result(&out);
        assert_eq!(r["sync"], "on", "{r:?}");
        assert_eq!(r["opened"], "300", "{r:?}");
        assert_eq!(r["reset"], "0", "no connection was reset: {r:?}");
        assert_eq!(r["alive"], "300", "every connection survived: {r:?}");
        assert_eq!(r["iperf_ok"], "1", "the iperf3 stream completed: {r:?}");
        let states_b: u64 = r["states_b"].parse().unwrap();
        assert!(
            states_b >= 301,
            "fw-b held the states before the kill: {r:?}"
        );
        let (takeover, stall, wait) = (
            ms(&r, "takeover_ms"),
            ms(&r, "iperf_stall_ms"),
            ms(&r, "longest_wait_ms"),
        );
        eprintln!(
            "ha figure: pfsync on, advbase 0 skew 10/20: SIGKILL -> fw-b MASTER {takeover} ms; 300/300 connections alive, 0 reset; iperf3 longest stall {stall} ms; longest echo wait {wait} ms"
        );
        // TCP resends after its retransmission timeout (200 ms at first, doubling), so the
        // stream's stall is the takeover plus at most about two RTOs.
        assert!(
            stall <= takeover + 1000.0,
            "stall {stall} ms, takeover {takeover} ms"
        );
        let s = pfsync(&lab, "fw-b");
        assert!(s["states_received"].as_u64().unwrap() >= 300, "{s}");
        assert_eq!(s["errors"]["bad_version"], 0, "{s}");
        assert_eq!(s["errors"]["malformed"], 0, "{s}");

        // fw-a comes back: it gets fw-b's table by bulk update before it preempts.
        let out = lab.ok(&["failback"]);
        eprint!("{out}");
        let s = pfsync(&lab, "fw-a");
        assert_eq!(s["bulk"]["status"], "done", "{s}");
        assert_eq!(s["bulk"]["received"], 1, "{s}");

        // The same test with the sync link cut before the connections open.
        lab.ok(&["converge", "10"]);
        lab.ok(&["sync", "cut"]);
        let out = lab.ok(&["survive", "300", "12"]);
        eprint!("{out}");
        let r = result(&out);
        lab.ok(&["sync", "restore"]);
        assert_eq!(r["sync"], "cut", "{r:?}");
        assert_eq!(r["opened"], "300", "{r:?}");
        let alive: u64 = r["alive"].parse().unwrap();
        eprintln!(
            "ha figure: pfsync cut: SIGKILL -> fw-b MASTER {} ms; {alive}/300 connections alive, {} reset, {} stalled; iperf3 ok={}",
            r["takeover_ms"], r["reset"], r["stalled"], r["iperf_ok"]
        );
        assert_eq!(alive, 0, "without pfsync fw-b drops them all: {r:?}");
        assert_eq!(r["iperf_ok"], "0", "{r:?}");
        lab.finish();
    }

    /// pfsync test 2: fw-b starts while fw-a holds 500 connections: it gets them all by bulk
    /// update (the same `ctl states` count on both), stays demoted until the BUS END, and every
    /// pfsync frame on the sync link parses under an independent decoder
    /// (tests/lab/pfsync_decode.py, written from protocols.md). Both nodes run with
    /// `split_states`, as with an OpenBSD peer: each forwarded connection crosses as pf's two
    /// states, and fw-b folds them back into one record each.
    #[test]
    fn pfsync_bulk_update_on_start_and_frames_decode_independently() {
        let _one = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let Some(lab) = Ha::up("q", &[("HA_SPLIT_STATES", "1")]) else {
            return;
        };
        lab.ok(&["stop", "fw-b"]);
        lab.ok(&["hold", "500", "60"]);
        let held = states_total(&lab, "fw-a");
        assert!(held >= 500, "fw-a holds {held} states");
        // Capture the sync link while fw-b starts, asks and receives the bulk.
        let pcap = lab.dir.join("sync.pcap");
        let mut capture = lab.cmd();
        capture.args(["capture", "br-sync", "8", pcap.to_str().unwrap()]);
        let capture = capture.stdin(Stdio::null()).spawn().expect("ha.sh capture");
        sleep(Duration::from_secs(2));
        lab.ok(&["start", "fw-b"]);
        lab.wait("fw-b", 1, "BACKUP", 10);
        let mut equal = None;
        for _ in 0..50 {
            let (a, b) = (states_total(&lab, "fw-a"), states_total(&lab, "fw-b"));
            if a == b {
                equal = Some(a);
                break;
            }
            sleep(Duration::from_millis(100));
        }
        let equal = equal.unwrap_or_else(|| {
            panic!(
                "state counts differ: fw-a {} fw-b {}",
                states_total(&lab, "fw-a"),
                states_total(&lab, "fw-b")
            )
        });
        assert!(equal >= 500, "{equal}");
        let b = pfsync(&lab, "fw-b");
        assert_eq!(b["bulk"]["status"], "done", "{b}");
        assert_eq!(b["bulk"]["received"], 1, "{b}");
        assert!(b["states_received"].as_u64().unwrap() >= 1000, "{b}");
        // Each connection's second pf state merged into its record, none refused.
        assert!(b["merged_states"].as_u64().unwrap() >= 500, "{b}");
        assert_eq!(b["errors"]["insert_failures"], 0, "{b}");
        assert_eq!(b["pf_states_received"], 0, "{b}");
        let a = pfsync(&lab, "fw-a");
        assert_eq!(a["split_states"], true, "{a}");
        assert!(a["bulk"]["states_sent"].as_u64().unwrap() >= 1000, "{a}");
        // fw-b's CARP demotion: +32 from its start until the BUS END, 0 after.
        let carp = lab.carp("fw-b");
        assert_eq!(carp["demotion"], 0, "{carp}");
        let events: Vec<&str> = carp["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let at = |needle: &str| {
            events
                .iter()
                .position(|e| e.contains(needle))
                .unwrap_or_else(|| panic!("no event {needle:?} in {events:#?}"))
        };
        assert!(
            at("bulk update started: CARP demoted") < at("bulk update done"),
            "{events:#?}"
        );
        // A connection opened now reaches fw-b by live sync within about a second.
        let before = states_total(&lab, "fw-b");
        let out = lab.client(&["ping", "-n", "-c", "1", "-W", "1", "198.51.100.7"]);
        assert!(out.status.success(), "{out:?}");
        let t0 = Instant::now();
        while states_total(&lab, "fw-b") <= before && t0.elapsed() < Duration::from_secs(3) {
            sleep(Duration::from_millis(20));
        }
        let lag = t0.elapsed();
        eprintln!("ha figure: pfsync live sync: a new state on fw-a present on fw-b after {lag:?} (polled every 20 ms)");
        assert!(
            lag < Duration::from_secs(3),
            "the new state did not reach fw-b"
        );

        let out = capture.wait_with_output().expect("ha.sh capture");
        assert!(out.status.success(), "capture: {out:?}");
        let decoded = lab.ok(&["pfsync-decode", pcap.to_str().unwrap()]);
        let d: Value = serde_json::from_str(&decoded).expect("pfsync_decode.py --json");
        eprintln!(
            "independent decoder: {} frames, {} ok, actions {}",
            d["frames"], d["frames_ok"], d["actions"]
        );
        assert!(d["frames"].as_u64().unwrap() > 0, "{d}");
        assert_eq!(d["frames"], d["frames_ok"], "{d}");
        assert_eq!(d["errors"].as_array().map(Vec::len), Some(0), "{d}");
        assert!(d["bulk_requests"].as_u64().unwrap() >= 1, "{d}");
        assert!(d["actions"]["BUS_START"].as_u64().unwrap_or(0) >= 1, "{d}");
        assert!(d["actions"]["BUS_END"].as_u64().unwrap_or(0) >= 1, "{d}");
        // Both states of every connection went over the link.
        assert!(d["states"].as_u64().unwrap() >= 1000, "{d}");
        lab.finish();
    }
}
