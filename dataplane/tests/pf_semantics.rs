//! pf's rule semantics, pinned case by case.
//!
//! Each case is a ruleset written in rampart's TOML (appended to a base appliance with
//! interfaces `lan`, `wan` and `dmz` and a CARP VIP), one packet, and the verdict pf would
//! give, and names the pf behaviour it pins down. Packets are written like
//! `rampart trace`'s arguments: `in lan tcp 192.0.2.10:40000 198.51.100.7:80 S`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use rampart_conf::{proto, tcp_flags, Action, Direction};
use rampart_dataplane::filter::{CompiledPolicy, PacketMeta};

const BASE: &str = r#"
[[interface]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.1/24", "2001:db8:1::1/64"]

[[interface]]
name = "wan"
device = "net_null1"
addresses = ["198.51.100.1/24", "2001:db8:2::1/64"]

[[interface]]
name = "dmz"
device = "net_null2"
addresses = ["203.0.113.1/24"]

[[carp]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.254"]
passphrase = "secret"
"#;

struct Case {
    /// The pf behaviour this case pins down.
    pf: &'static str,
    rules: &'static str,
    packet: &'static str,
    /// `pass@2`, `block@1`, `pass@default`, `block@default`; optional words after:
    /// `quick`, `state`, `nostate`, `return`, `log`, `matched=1,2`.
    want: &'static str,
}

const CASES: &[Case] = &[
    // --- The default ---------------------------------------------------------------
    Case {
        pf: "no rule matches: rampart's default blocks (the one deliberate difference from pf)",
        rules: "",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "block@default nostate matched=",
    },
    Case {
        pf: "[policy] default = pass restores pf's implicit pass, which never creates state",
        rules: "[policy]\ndefault = \"pass\"\n",
        packet: "in lan udp 192.0.2.10:5353 198.51.100.7:53",
        want: "pass@default nostate",
    },
    Case {
        pf: "block-policy return also applies to the default block",
        rules: "[policy]\nblock_policy = \"return\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "block@default return",
    },
    // --- Last match wins, quick ------------------------------------------------------
    Case {
        pf: "last matching rule wins: pass after block",
        rules: "[[rule]]\naction = \"block\"\n[[rule]]\naction = \"pass\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "pass@2 state matched=1,2",
    },
    Case {
        pf: "last matching rule wins: block after pass",
        rules: "[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "block@2 matched=1,2",
    },
    Case {
        pf: "a later rule that does not match does not change the verdict",
        rules: "[[rule]]\naction = \"block\"\n[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\nproto = \"udp\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "pass@2 matched=1,2",
    },
    Case {
        pf: "quick: the first matching quick rule ends evaluation",
        rules: "[[rule]]\naction = \"block\"\nquick = true\n[[rule]]\naction = \"pass\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "block@1 quick matched=1",
    },
    Case {
        pf: "quick: of two matching quick rules the first decides",
        rules: "[[rule]]\naction = \"pass\"\nquick = true\nproto = \"tcp\"\n[[rule]]\naction = \"block\"\nquick = true\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "pass@1 quick state matched=1",
    },
    Case {
        pf: "quick: a quick rule that does not match does not stop evaluation",
        rules: "[[rule]]\naction = \"block\"\nquick = true\nproto = \"udp\"\n[[rule]]\naction = \"pass\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "pass@2 matched=2",
    },
    Case {
        pf: "quick: a quick rule after non-quick matches decides, and the earlier matches are listed",
        rules: "[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\nquick = true\nto = \"198.51.100.7\"\n[[rule]]\naction = \"pass\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "block@2 quick matched=1,2",
    },
    // --- Direction and interface ------------------------------------------------------
    Case {
        pf: "direction in does not match outbound packets",
        rules: "[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\ndirection = \"in\"\n",
        packet: "out wan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "pass@1 matched=1",
    },
    Case {
        pf: "direction out matches outbound packets",
        rules: "[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\ndirection = \"out\"\n",
        packet: "out wan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "block@2 matched=1,2",
    },
    Case {
        pf: "no direction matches both directions",
        rules: "[[rule]]\naction = \"pass\"\ndirection = \"in\"\n",
        packet: "out wan udp 192.0.2.10:5000 198.51.100.7:53",
        want: "block@default",
    },
    Case {
        pf: "on IFACE matches only that interface",
        rules: "[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\non = \"wan\"\n",
        packet: "in lan tcp 192.0.2.10:40000 198.51.100.7:80 S",
        want: "pass@1",
    },
    Case {
        pf: "on IFACE matches packets on that interface",
        rules: "[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\non = \"wan\"\n",
        packet: "in wan tcp 198.51.100.7:40000 192.0.2.10:22 S",
        want: "block@2",
    },
    Case {
        pf: "no `on` matches every interface",
        rules: "[[rule]]\naction = \"pass\"\ndirection = \"in\"\n",
        packet: "in dmz udp 203.0.113.5:5000 198.51.100.7:53",
        want: "pass@1",
    },
    // --- Address family ---------------------------------------------------------------
    Case {
        pf: "af inet does not match IPv6 packets",
        rules: "[[rule]]\naction = \"pass\"\naf = \"inet\"\n",
        packet: "in lan udp [2001:db8:1::10]:5000 [2001:db8:2::7]:53",
        want: "block@default",
    },
    Case {
        pf: "af inet6 matches IPv6 packets",
        rules: "[[rule]]\naction = \"pass\"\naf = \"inet6\"\n",
        packet: "in lan udp [2001:db8:1::10]:5000 [2001:db8:2::7]:53",
        want: "pass@1",
    },
    Case {
        pf: "an IPv4 address gives the rule af inet: a negated IPv4 item never matches IPv6",
        rules: "[[rule]]\naction = \"pass\"\nfrom = \"!192.0.2.0/24\"\n",
        packet: "in lan udp [2001:db8:1::10]:5000 [2001:db8:2::7]:53",
        want: "block@default",
    },
    // --- Addresses ----------------------------------------------------------------------
    Case {
        pf: "a CIDR matches addresses inside it",
        rules: "[[rule]]\naction = \"pass\"\nfrom = \"192.0.2.0/24\"\n",
        packet: "in lan udp 192.0.2.77:5000 198.51.100.7:53",
        want: "pass@1",
    },
    Case {
        pf: "a host address matches only itself",
        rules: "[[rule]]\naction = \"pass\"\nto = \"198.51.100.7\"\n",
        packet: "in lan udp 192.0.2.77:5000 198.51.100.8:53",
        want: "block@default",
    },
    Case {
        pf: "a negated CIDR matches addresses outside it",
        rules: "[[rule]]\naction = \"pass\"\nfrom = \"!192.0.2.0/24\"\n",
        packet: "in wan udp 198.51.100.5:5000 192.0.2.7:53",
        want: "pass@1",
    },
    Case {
        pf: "a negated CIDR does not match addresses inside it",
        rules: "[[rule]]\naction = \"pass\"\nfrom = \"!192.0.2.0/24\"\n",
        packet: "in lan udp 192.0.2.10:5000 198.51.100.7:53",
        want: "block@default",
    },
    Case {
        pf: "a list matches when any item matches (pf expands lists into rules)",
        rules: "[[rule]]\naction = \"pass\"\nfrom = [\"192.0.2.0/24\", \"203.0.113.0/24\"]\n",
        packet: "in dmz udp 203.0.113.9:5000 198.51.100.7:53",
        want: "pass@1",
    },
    Case {
        pf: "negation inside a list negates one item only: { 192.0.2.0/24, !192.0.2.7 } still matches 192.0.2.7",
        rules: "[[rule]]\naction = \"pass\"\nfrom = [\"192.0.2.0/24\", \"!192.0.2.7\"]\n",
        packet: "in lan udp 192.0.2.7:5000 198.51.100.7:53",
        want: "pass@1",
    },
    Case {
        pf: "a list of two negations matches an address inside one of them (it is outside the other)",
        rules: "[[rule]]\naction = \"block\"\nfrom = [\"!192.0.2.0/24\", \"!203.0.113.0/24\"]\n[[rule]]\naction = \"pass\"\nquick = true\nto = \"198.51.100.99\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:53",
        want: "block@1",
    },
    Case {
        pf: "`!any` matches nothing",
        rules: "[[rule]]\naction = \"pass\"\nto = \"!any\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:53",
        want: "block@default",
    },
    Case {
        pf: "`self` matches the appliance's own interface addresses",
        rules: "[[rule]]\naction = \"pass\"\nto = \"self\"\n",
        packet: "in lan udp 192.0.2.10:5000 192.0.2.1:53",
        want: "pass@1",
    },
    Case {
        pf: "`self` matches the CARP virtual addresses too",
        rules: "[[rule]]\naction = \"pass\"\nto = \"self\"\n",
        packet: "in lan udp 192.0.2.10:5000 192.0.2.254:53",
        want: "pass@1",
    },
    Case {
        pf: "`self` does not match other hosts on a connected network",
        rules: "[[rule]]\naction = \"pass\"\nto = \"self\"\n",
        packet: "in lan udp 192.0.2.10:5000 192.0.2.9:53",
        want: "block@default",
    },
    // --- Tables ---------------------------------------------------------------------------
    Case {
        pf: "table: the most specific entry decides (nested positive inside negated inside positive)",
        rules: "[tables]\nt = [\"10.0.0.0/8\", \"!10.1.0.0/16\", \"10.1.2.0/24\"]\n[[rule]]\naction = \"pass\"\nfrom = \"<t>\"\n",
        packet: "in wan udp 10.1.2.3:5000 192.0.2.7:53",
        want: "pass@1",
    },
    Case {
        pf: "table: a negated entry excludes addresses inside a larger entry",
        rules: "[tables]\nt = [\"10.0.0.0/8\", \"!10.1.0.0/16\", \"10.1.2.0/24\"]\n[[rule]]\naction = \"pass\"\nfrom = \"<t>\"\n",
        packet: "in wan udp 10.1.5.5:5000 192.0.2.7:53",
        want: "block@default",
    },
    Case {
        pf: "table: an address under only the widest entry is in the table",
        rules: "[tables]\nt = [\"10.0.0.0/8\", \"!10.1.0.0/16\", \"10.1.2.0/24\"]\n[[rule]]\naction = \"pass\"\nfrom = \"<t>\"\n",
        packet: "in wan udp 10.200.0.1:5000 192.0.2.7:53",
        want: "pass@1",
    },
    Case {
        pf: "table: an address under no entry is not in the table",
        rules: "[tables]\nt = [\"10.0.0.0/8\", \"!10.1.0.0/16\"]\n[[rule]]\naction = \"pass\"\nfrom = \"<t>\"\n",
        packet: "in wan udp 11.0.0.1:5000 192.0.2.7:53",
        want: "block@default",
    },
    Case {
        pf: "negated table: `!<t>` matches what the table excludes",
        rules: "[tables]\nt = [\"10.0.0.0/8\", \"!10.1.0.0/16\"]\n[[rule]]\naction = \"pass\"\nfrom = \"!<t>\"\n",
        packet: "in wan udp 10.1.5.5:5000 192.0.2.7:53",
        want: "pass@1",
    },
    Case {
        pf: "negated table: `!<t>` does not match table members",
        rules: "[tables]\nt = [\"10.0.0.0/8\", \"!10.1.0.0/16\"]\n[[rule]]\naction = \"pass\"\nfrom = \"!<t>\"\n",
        packet: "in wan udp 10.9.9.9:5000 192.0.2.7:53",
        want: "block@default",
    },
    Case {
        pf: "a table holds both address families",
        rules: "[tables]\nt = [\"192.0.2.0/24\", \"2001:db8:1::/48\"]\n[[rule]]\naction = \"pass\"\nfrom = \"<t>\"\n",
        packet: "in lan udp [2001:db8:1:5::1]:5000 [2001:db8:2::7]:53",
        want: "pass@1",
    },
    Case {
        pf: "an empty table matches nothing",
        rules: "[tables]\nt = []\n[[rule]]\naction = \"pass\"\nfrom = \"<t>\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:53",
        want: "block@default",
    },
    // --- Protocols and ports ------------------------------------------------------------
    Case {
        pf: "proto tcp does not match udp",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:53",
        want: "block@default",
    },
    Case {
        pf: "a protocol list matches any of its protocols",
        rules: "[[rule]]\naction = \"pass\"\nproto = [\"tcp\", \"udp\"]\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:53",
        want: "pass@1",
    },
    Case {
        pf: "a protocol by number",
        rules: "[[rule]]\naction = \"pass\"\nproto = 47\n",
        packet: "in lan 47 192.0.2.5 198.51.100.7",
        want: "pass@1",
    },
    Case {
        pf: "port = N matches exactly N",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nto_port = 80\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:81 S",
        want: "block@default",
    },
    Case {
        pf: "a port range lo:hi includes its low end",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"udp\"\nto_port = \"1024:2048\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:1024",
        want: "pass@1",
    },
    Case {
        pf: "a port range lo:hi includes its high end",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"udp\"\nto_port = \"1024:2048\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:2048",
        want: "pass@1",
    },
    Case {
        pf: "a port range lo:hi excludes hi+1",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"udp\"\nto_port = \"1024:2048\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:2049",
        want: "block@default",
    },
    Case {
        pf: "a port list matches any listed port",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nto_port = [22, 443]\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:443 S",
        want: "pass@1",
    },
    Case {
        pf: "source ports are matched like destination ports",
        rules: "[[rule]]\naction = \"block\"\nproto = \"udp\"\nfrom_port = 53\n[[rule]]\naction = \"pass\"\nproto = \"udp\"\n",
        packet: "in wan udp 198.51.100.7:53 192.0.2.5:5000",
        want: "pass@2",
    },
    Case {
        pf: "a port rule never matches ICMP",
        rules: "[[rule]]\naction = \"pass\"\n[[rule]]\naction = \"block\"\nproto = \"tcp\"\nto_port = \"0:65535\"\n",
        packet: "in lan icmp 192.0.2.5 198.51.100.7",
        want: "pass@1",
    },
    Case {
        pf: "icmp6 with af inet6",
        rules: "[[rule]]\naction = \"pass\"\naf = \"inet6\"\nproto = \"icmp6\"\n",
        packet: "in lan icmp6 2001:db8:1::10 2001:db8:2::7",
        want: "pass@1",
    },
    // --- TCP flags and state --------------------------------------------------------------
    Case {
        pf: "pass rules default to flags S/SA: a SYN matches",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 S",
        want: "pass@1 state",
    },
    Case {
        pf: "pass rules default to flags S/SA: a bare ACK (no state) does not match",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 A",
        want: "block@default",
    },
    Case {
        pf: "flags S/SA: a SYN+ACK does not match",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 SA",
        want: "block@default",
    },
    Case {
        pf: "flags S/SA ignores flags outside the mask: an ECN SYN (S+E+W) matches",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 SEW",
        want: "pass@1",
    },
    Case {
        pf: "`pass all` keeps state and so tests S/SA on TCP: a stateless ACK falls through",
        rules: "[[rule]]\naction = \"pass\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 A",
        want: "block@default",
    },
    Case {
        pf: "flags apply to TCP only: `pass all` matches UDP",
        rules: "[[rule]]\naction = \"pass\"\n",
        packet: "in lan udp 192.0.2.5:40000 198.51.100.7:53",
        want: "pass@1 state",
    },
    Case {
        pf: "flags any: every TCP packet matches",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nflags = \"any\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 A",
        want: "pass@1 state",
    },
    Case {
        pf: "no state: a stateless pass rule gets no default flags",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nkeep_state = false\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 A",
        want: "pass@1 nostate",
    },
    Case {
        pf: "flags SF/SF needs both SYN and FIN set: a plain SYN does not match",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nflags = \"any\"\n[[rule]]\naction = \"block\"\nproto = \"tcp\"\nflags = \"SF/SF\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 S",
        want: "pass@1",
    },
    Case {
        pf: "explicit flags on a block rule match the flags they name",
        rules: "[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nflags = \"any\"\n[[rule]]\naction = \"block\"\nproto = \"tcp\"\nflags = \"SF/SF\"\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:80 SF",
        want: "block@2",
    },
    Case {
        pf: "block return answers (RST/ICMP) instead of dropping",
        rules: "[[rule]]\naction = \"block\"\nreturn = true\nlog = true\n",
        packet: "in lan tcp 192.0.2.5:40000 198.51.100.7:113 S",
        want: "block@1 return log",
    },
    Case {
        pf: "block_policy = return makes plain block rules return",
        rules: "[policy]\nblock_policy = \"return\"\n[[rule]]\naction = \"block\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:53",
        want: "block@1 return",
    },
    Case {
        pf: "a plain block drops silently by default",
        rules: "[[rule]]\naction = \"block\"\n",
        packet: "in lan udp 192.0.2.5:5000 198.51.100.7:53",
        want: "block@1 nostate",
    },
];

fn parse_endpoint(s: &str) -> (IpAddr, u16) {
    if let Ok(sa) = SocketAddr::from_str(s) {
        return (sa.ip(), sa.port());
    }
    (
        IpAddr::from_str(s).unwrap_or_else(|_| panic!("bad endpoint {s}")),
        0,
    )
}

fn parse_packet(config: &rampart_conf::Config, text: &str) -> PacketMeta {
    let w: Vec<&str> = text.split_whitespace().collect();
    let dir = match w[0] {
        "in" => Direction::In,
        "out" => Direction::Out,
        d => panic!("bad direction {d}"),
    };
    let iface = config.interface_index(w[1]).expect("interface") as u16;
    let protocol = match w[2] {
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        "icmp" => proto::ICMP,
        "icmp6" => proto::ICMP6,
        n => n.parse().expect("protocol"),
    };
    let (src, sport) = parse_endpoint(w[3]);
    let (dst, dport) = parse_endpoint(w[4]);
    let mut flags = 0;
    if let Some(f) = w.get(5) {
        for c in f.chars() {
            flags |= tcp_flags::LETTERS
                .iter()
                .find(|(l, _)| *l == c)
                .expect("flag")
                .1;
        }
    }
    PacketMeta {
        iface,
        dir,
        src,
        dst,
        proto: protocol,
        sport,
        dport,
        tcp_flags: flags,
    }
}

#[test]
fn pf_semantics_table() {
    assert!(CASES.len() >= 40);
    let mut failures = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let text = format!("{BASE}\n{}", case.rules);
        let config = match rampart_conf::load_str(Path::new("case.toml"), &text) {
            Ok(l) => l.config,
            Err(d) => panic!("case {n} ({}): config invalid: {d:?}", case.pf),
        };
        let policy = CompiledPolicy::compile(&config);
        let pkt = parse_packet(&config, case.packet);
        let trace = policy.trace(&pkt);
        let v = trace.verdict;
        assert_eq!(
            policy.evaluate(&pkt),
            v,
            "case {n}: evaluate and trace disagree"
        );

        let mut words = case.want.split_whitespace();
        let (action, rule) = words.next().unwrap().split_once('@').unwrap();
        let want_action = if action == "pass" {
            Action::Pass
        } else {
            Action::Block
        };
        let want_rule = if rule == "default" {
            None
        } else {
            Some(rule.parse::<u32>().unwrap() - 1)
        };
        let mut problems = Vec::new();
        if v.action != want_action || v.rule != want_rule {
            problems.push(format!(
                "got {}@{:?}",
                v.action.as_str(),
                v.rule.map(|r| r + 1)
            ));
        }
        let mut want_quick = false;
        for word in words {
            match word {
                "quick" => want_quick = true,
                "state" if !v.keep_state => problems.push("want keep_state".into()),
                "nostate" if v.keep_state => problems.push("want no state".into()),
                "return" if !v.return_ => problems.push("want return".into()),
                "log" if !v.log => problems.push("want log".into()),
                m if m.starts_with("matched=") => {
                    let want: Vec<u32> = m[8..]
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().unwrap())
                        .collect();
                    let got: Vec<u32> = trace.matched.iter().map(|r| r + 1).collect();
                    if got != want {
                        problems.push(format!("matched {got:?}, want {want:?}"));
                    }
                }
                _ => {}
            }
        }
        if v.quick != want_quick {
            problems.push(format!("quick = {}", v.quick));
        }
        if !case.want.contains("return") && v.return_ {
            problems.push("unexpected return".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case {n}: {}\n    packet {} want {}: {}",
                case.pf,
                case.packet,
                case.want,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pf cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
