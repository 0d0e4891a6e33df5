//! Every class of configuration error names the exact FILE:LINE:COL and what was expected.

use std::path::{Path, PathBuf};

use rampart_conf::{load, load_str, Diagnostic, Severity};

const BASE: &str = r#"
[[interface]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.1/24"]

[[interface]]
name = "wan"
device = "net_null1"
addresses = ["198.51.100.1/24"]
"#;

/// Lines of BASE (it starts with a newline, so its first text line is line 2).
const BASE_LINES: usize = 10;

fn diags(text: &str) -> Vec<Diagnostic> {
    match load_str(Path::new("fw.toml"), text) {
        Ok(l) => l.warnings,
        Err(d) => d,
    }
}

/// `LINE:COL: message` of every error, in file order.
fn errors(text: &str) -> Vec<String> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect()
}

fn warnings(text: &str) -> Vec<String> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect()
}

/// BASE followed by `extra`; returns errors with line numbers relative to `extra`'s first line = 1.
fn errors_after_base(extra: &str) -> Vec<String> {
    let text = format!("{BASE}{extra}");
    errors(&text)
        .into_iter()
        .map(|e| {
            let (line, rest) = e.split_once(':').unwrap();
            format!("{}:{rest}", line.parse::<usize>().unwrap() - BASE_LINES)
        })
        .collect()
}

#[test]
fn base_is_valid() {
    assert_eq!(errors(BASE), Vec::<String>::new());
}

#[test]
fn display_is_file_line_col_message() {
    let d = &diags("[applianc]\n")[0];
    assert_eq!(
        d.to_string(),
        "fw.toml:1:2: unknown key `applianc` (did you mean `appliance`?), expected one of `policy_file`, `appliance`, `dpdk`, `interface`, `route`, `neighbor`, `carp`, `pfsync`, `control`, `limits`, `timeouts`, `tables`, `policy`, `rule`"
    );
}

#[test]
fn toml_syntax_error() {
    let e = errors("[appliance]\nname = \"fw\n");
    assert_eq!(
        e,
        ["2:11: TOML syntax: invalid basic string, expected `\"`"]
    );
    // Several syntax errors are all reported.
    let e = errors("[appliance\nname = 3 4\n[[rule]]\naction = pass\n");
    assert!(e.len() >= 2, "{e:?}");
    assert!(e.iter().all(|m| m.contains("TOML syntax")), "{e:?}");
}

#[test]
fn unknown_key_in_section() {
    assert_eq!(
        errors("[appliance]\nname = \"fw\"\ncolour = \"red\"\n"),
        ["3:1: unknown key `colour`, expected `name` or `host_id`"]
    );
}

#[test]
fn unknown_key_in_rule_suggests_the_right_one() {
    let e = errors_after_base("\n[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nto_prot = 22\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("5:1: unknown key `to_prot` (did you mean `to_port`?), expected one of"),
        "{e:?}"
    );
}

#[test]
fn unknown_dotted_timeout() {
    let e = errors("[timeouts]\ntcp.first = 30\ntcp.fist = 20\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("3:5: unknown key `fist` (did you mean `first`?)"),
        "{e:?}"
    );
}

#[test]
fn wrong_types() {
    let e = errors("[[interface]]\nname = \"lan\"\ndevice = \"net_null0\"\nmtu = \"big\"\n");
    assert_eq!(e, ["4:7: invalid type: string \"big\", expected u32"]);
    let e = errors_after_base("\n[[rule]]\naction = \"pass\"\nquick = \"yes\"\n");
    assert_eq!(e, ["4:9: invalid type: string \"yes\", expected a boolean"]);
    let e = errors_after_base("\n[[rule]]\naction = \"pass\"\nfrom = 7\n");
    assert_eq!(
        e,
        ["4:8: invalid type: integer `7`, expected an address, a CIDR, \"any\", \"self\", \"<table>\" or a list of those"]
    );
}

#[test]
fn unknown_enum_value() {
    assert_eq!(
        errors_after_base("\n[[rule]]\naction = \"allow\"\n"),
        ["3:10: unknown variant `allow`, expected `pass` or `block`"]
    );
    assert_eq!(
        errors_after_base("\n[[rule]]\naction = \"pass\"\ndirection = \"both\"\n"),
        ["4:13: unknown variant `both`, expected `in` or `out`"]
    );
}

#[test]
fn missing_required_key() {
    let e = errors_after_base("\n[[rule]]\nquick = true\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("missing field `action`"), "{e:?}");
    assert!(
        e[0].starts_with("2:1:") || e[0].starts_with("3:1:"),
        "{e:?}"
    );
}

#[test]
fn section_written_as_table_instead_of_array() {
    assert_eq!(
        errors_after_base("\n[rule]\naction = \"pass\"\n"),
        ["2:2: `rule` must be an array of tables: write [[rule]], once per rule"]
    );
}

#[test]
fn duplicate_interface_name_and_device() {
    let e = errors(&format!("{BASE}\n[[interface]]\nname = \"lan\"\ndevice = \"net_null2\"\n\n[[interface]]\nname = \"dmz\"\ndevice = \"net_null1\"\n"));
    assert_eq!(
        e,
        [
            "13:8: interface `lan` is already defined at fw.toml:2:1",
            "18:10: device `net_null1` is already used by interface `wan` at fw.toml:7:1",
        ]
    );
}

#[test]
fn duplicate_table_vhid_route_and_address() {
    let e = errors_after_base(
        r#"
[[route]]
destination = "0.0.0.0/0"
gateway = "198.51.100.254"

[[route]]
destination = "0.0.0.0/0"
gateway = "198.51.100.253"

[[carp]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.254"]
passphrase = "x"

[[carp]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.253"]
passphrase = "x"

[tables]
a = ["192.0.2.0/24"]
"#,
    );
    assert_eq!(
        e,
        [
            "7:15: a route to 0.0.0.0/0 is already defined at fw.toml:12:1",
            "17:8: vhid 1 on `lan` is already defined at fw.toml:20:1",
        ]
    );
}

#[test]
fn duplicate_interface_address() {
    let e = errors(&format!("{BASE}\n[[interface]]\nname = \"dmz\"\ndevice = \"net_null2\"\naddresses = [\"192.0.2.1/25\"]\n"));
    assert_eq!(
        e,
        ["15:14: address 192.0.2.1 is already assigned at fw.toml:5:14"]
    );
}

#[test]
fn references_to_missing_interfaces() {
    let e = errors_after_base(
        r#"
[[rule]]
action = "pass"
on = "lann"

[[route]]
destination = "203.0.113.0/24"
gateway = "192.0.2.254"
interface = "dmz"

[[neighbor]]
interface = "wan0"
address = "198.51.100.9"
mac = "02:00:00:00:00:09"

[[carp]]
vhid = 3
interface = "inside"
addresses = ["192.0.2.100"]

[pfsync]
interface = "sync"
"#,
    );
    assert_eq!(
        e,
        [
            "4:6: unknown interface `lann`; interfaces are: lan, wan",
            "9:13: unknown interface `dmz`; interfaces are: lan, wan",
            "12:13: unknown interface `wan0`; interfaces are: lan, wan",
            "18:13: unknown interface `inside`; interfaces are: lan, wan",
            "22:13: unknown interface `sync`; interfaces are: lan, wan",
        ]
    );
}

#[test]
fn references_to_missing_tables() {
    let e = errors_after_base(
        "\n[tables]\ngood = [\"192.0.2.0/24\"]\n\n[[rule]]\naction = \"block\"\nfrom = [\"<good>\", \"!<bad>\"]\nto = \"<worse>\"\n",
    );
    assert_eq!(
        e,
        [
            "7:19: unknown table <bad>; tables are: <good>",
            "8:6: unknown table <worse>; tables are: <good>",
        ]
    );
}

#[test]
fn bad_cidrs_and_addresses() {
    let e = errors_after_base(
        r#"
[tables]
t = ["192.0.2.0/33", "10.0.0.1"]

[[rule]]
action = "block"
from = ["10.0.0.0/8", "10.0.0.256"]
to = "2001:db8::/129"

[[route]]
destination = "203.0.113.0/40"
gateway = "192.0.2.254"
"#,
    );
    assert_eq!(
        e,
        [
            "3:6: invalid CIDR `192.0.2.0/33`, expected e.g. 192.0.2.0/24 or 2001:db8::/32",
            "7:23: invalid address `10.0.0.256`, expected an address, a CIDR, \"any\", \"self\" or \"<table>\"",
            "8:6: invalid CIDR `2001:db8::/129`, expected e.g. 192.0.2.0/24 or 2001:db8::/32",
            "11:15: invalid destination `203.0.113.0/40`, expected a CIDR such as 0.0.0.0/0 or 2001:db8::/32",
        ]
    );
}

#[test]
fn interface_address_needs_prefix() {
    let e = errors("[[interface]]\nname = \"lan\"\ndevice = \"x\"\naddresses = [\"192.0.2.1\"]\n");
    assert_eq!(
        e,
        ["4:14: interface address `192.0.2.1` needs its prefix length, e.g. `192.0.2.1/24`"]
    );
}

#[test]
fn port_range_out_of_order_and_out_of_range() {
    let e = errors_after_base(
        "\n[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nto_port = \"2000:1000\"\nfrom_port = [22, 70000, \"1024:65535\"]\n",
    );
    assert_eq!(
        e,
        [
            "5:11: port range 2000:1000 is out of order: write lo:hi, inclusive",
            "6:18: port 70000 is out of range (0-65535)",
        ]
    );
}

#[test]
fn ports_need_tcp_or_udp() {
    let e = errors_after_base("\n[[rule]]\naction = \"pass\"\nto_port = 22\n\n[[rule]]\naction = \"pass\"\nproto = \"icmp\"\nto_port = 7\n");
    assert_eq!(
        e,
        [
            "4:11: to_port applies only to tcp and udp: give the rule proto = \"tcp\" or \"udp\" (pf: port only applies to tcp/udp)",
            "9:11: to_port applies only to tcp and udp: give the rule proto = \"tcp\" or \"udp\" (pf: port only applies to tcp/udp)",
        ]
    );
}

#[test]
fn flags_on_non_tcp_rules() {
    let e = errors_after_base("\n[[rule]]\naction = \"pass\"\nproto = \"udp\"\nflags = \"S/SA\"\n");
    assert_eq!(e, ["5:9: flags apply only to TCP: give the rule proto = \"tcp\" (pf: flags only apply to tcp)"]);
}

#[test]
fn malformed_flags() {
    let e = errors_after_base(
        "\n[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nflags = \"SX/SA\"\n\n[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nflags = \"S/A\"\n\n[[rule]]\naction = \"pass\"\nproto = \"tcp\"\nflags = \"S\"\n",
    );
    assert_eq!(
        e,
        [
            "5:9: unknown TCP flag `X` in `SX/SA`; flags are F S R P A U E W",
            "10:9: flags `S/A` can never match: every flag that must be set must also be in the mask",
            "15:9: invalid flags `S`, expected set/mask such as S/SA, or \"any\"",
        ]
    );
}

#[test]
fn address_family_conflicts() {
    let e = errors_after_base(
        "\n[[rule]]\naction = \"pass\"\naf = \"inet6\"\nfrom = \"192.0.2.0/24\"\n\n[[rule]]\naction = \"pass\"\nfrom = \"192.0.2.0/24\"\nto = \"2001:db8::1\"\n\n[[rule]]\naction = \"pass\"\naf = \"inet6\"\nproto = \"icmp\"\n",
    );
    assert_eq!(
        e,
        [
            "5:8: 192.0.2.0/24 is an IPv4 address but the rule says af = \"inet6\"",
            "7:1: this rule can never match: its `from` and `to` addresses are of different address families",
            "15:9: icmp is IPv4's; with af = \"inet6\" use proto icmp6",
        ]
    );
}

#[test]
fn state_and_return_only_where_they_apply() {
    let e = errors_after_base("\n[[rule]]\naction = \"block\"\nkeep_state = true\n\n[[rule]]\naction = \"pass\"\nreturn = true\n");
    assert_eq!(
        e,
        [
            "4:14: keep_state applies only to pass rules",
            "8:10: return applies only to block rules"
        ]
    );
}

#[test]
fn carp_checks() {
    let e = errors_after_base(
        "\n[[carp]]\nvhid = 0\ninterface = \"lan\"\naddresses = [\"192.0.2.9\"]\n\n[[carp]]\nvhid = 2\ninterface = \"lan\"\naddresses = [\"192.0.2.1\", \"192.0.2.7/24\"]\nadvskew = 255\npeer = \"224.0.0.18\"\n",
    );
    assert_eq!(
        e,
        [
            "3:8: vhid must be between 1 and 255, not 0",
            "10:14: 192.0.2.1 is an interface's own address; a virtual address must be distinct",
            "10:27: invalid virtual address `192.0.2.7/24`, expected an IPv4 or IPv6 address (without a prefix length)",
            "11:11: advskew must be between 0 and 254, not 255",
            "12:8: peer 224.0.0.18 must be a unicast IPv4 address (OpenBSD's carppeer)",
        ]
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let e = errors_after_base(
        "\n[appliance]\nnmae = \"x\"\n\n[[rule]]\naction = \"pass\"\non = \"nope\"\n\n[[rule]]\naction = \"pass\"\nproto = \"udp\"\nflags = \"S/SA\"\n",
    );
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn negated_list_items_warn() {
    let text =
        format!("{BASE}\n[[rule]]\naction = \"pass\"\nfrom = [\"192.0.2.0/24\", \"!192.0.2.7\"]\n");
    let w = warnings(&text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("14:8: in a `from` list each item matches on its own"),
        "{w:?}"
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-conf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn policy_file_errors_name_the_policy_file() {
    let dir = temp_dir("policy");
    std::fs::write(
        dir.join("fw.toml"),
        format!("policy_file = \"policy.toml\"\n{BASE}"),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "[[rule]]\naction = \"pass\"\non = \"dmz\"\n\n[[interface]]\nname = \"x\"\n",
    )
    .unwrap();
    let d = load(&dir.join("fw.toml")).unwrap_err();
    let shown: Vec<String> = d.iter().map(|d| d.to_string()).collect();
    let p = dir.join("policy.toml").display().to_string();
    assert_eq!(
        shown,
        [
            format!("{p}:3:6: unknown interface `dmz`; interfaces are: lan, wan"),
            format!("{p}:5:3: `interface` belongs in the main configuration; a policy file holds only [tables], [policy] and [[rule]]"),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policy_file_missing_and_rules_in_both_files() {
    let dir = temp_dir("policy2");
    std::fs::write(
        dir.join("fw.toml"),
        format!("policy_file = \"nope.toml\"\n{BASE}"),
    )
    .unwrap();
    let d = load(&dir.join("fw.toml")).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].column), (1, 15));
    assert!(
        d[0].message.starts_with("cannot read policy_file"),
        "{:?}",
        d[0]
    );

    std::fs::write(
        dir.join("fw.toml"),
        format!("policy_file = \"p.toml\"\n{BASE}\n[[rule]]\naction = \"pass\"\n"),
    )
    .unwrap();
    std::fs::write(dir.join("p.toml"), "[[rule]]\naction = \"block\"\n").unwrap();
    let d = load(&dir.join("fw.toml")).unwrap_err();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].file, dir.join("p.toml"));
    assert_eq!((d[0].line, d[0].column), (1, 3));
    assert!(
        d[0].message.starts_with("rules are already defined at"),
        "{:?}",
        d[0]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn table_file_entries_have_their_own_lines() {
    let dir = temp_dir("tablefile");
    std::fs::write(
        dir.join("fw.toml"),
        format!("{BASE}\n[tables]\nbogons = {{ file = \"bogons.txt\" }}\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("bogons.txt"),
        "# bogons\n10.0.0.0/8\n\n  172.16.0.0/12  # rfc1918\nnot-an-address\n",
    )
    .unwrap();
    let d = load(&dir.join("fw.toml")).unwrap_err();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].file, dir.join("bogons.txt"));
    assert_eq!((d[0].line, d[0].column), (5, 1));
    std::fs::write(
        dir.join("bogons.txt"),
        "10.0.0.0/8\n  172.16.0.0/12  # rfc1918\n!172.16.5.0/24\n",
    )
    .unwrap();
    let cfg = load(&dir.join("fw.toml")).unwrap().config;
    assert_eq!(cfg.tables[0].entries.len(), 3);
    assert!(cfg.tables[0].entries[2].negated);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_config_file() {
    let d = load(Path::new("/nonexistent/rampart.toml")).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].column), (1, 1));
    assert!(d[0].message.starts_with("cannot read the configuration"));
}

#[test]
fn empty_lists_and_protocol_zero_are_refused() {
    let e = errors_after_base("\n[[rule]]\naction = \"pass\"\nfrom = []\nproto = 0\n");
    assert_eq!(
        e,
        [
            "4:8: `from` is an empty list; leave the key out to match any",
            "5:9: protocol 0 cannot be used (pf: proto 0 cannot be used); leave `proto` out to match any protocol",
        ]
    );
}

#[test]
fn adaptive_window_is_checked_against_the_limit_defaults() {
    let e = errors("[limits]\nstates = 1000\n\n[timeouts]\nadaptive.start = 5000\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("4:1: the adaptive window is empty: adaptive.start (5000) must be below adaptive.end (1200)"), "{e:?}");
}

#[test]
fn flags_any_is_fine_on_any_protocol_and_tcp_lists_may_have_flags() {
    let e = errors_after_base("\n[[rule]]\naction = \"pass\"\nproto = \"udp\"\nflags = \"any\"\n\n[[rule]]\naction = \"pass\"\nproto = [\"tcp\", \"udp\"]\nflags = \"S/SA\"\n");
    assert_eq!(e, Vec::<String>::new());
}

#[test]
fn explicit_return_false_overrides_block_policy_return() {
    let text = format!("{BASE}\n[policy]\nblock_policy = \"return\"\n\n[[rule]]\naction = \"block\"\n\n[[rule]]\naction = \"block\"\nreturn = false\n");
    let cfg = load_str(Path::new("fw.toml"), &text).unwrap().config;
    assert!(cfg.rules[0].return_);
    assert!(!cfg.rules[1].return_);
}

#[test]
fn advbase_and_advskew_zero_advertise_every_256th_of_a_second() {
    // OpenBSD accepts both at 0 and uses 1/256 s (protocols.md §2.2): a warning, not an error.
    let text = format!("{BASE}\n[[carp]]\nvhid = 1\ninterface = \"lan\"\naddresses = [\"192.0.2.9\"]\npassphrase = \"x\"\nadvbase = 0\n");
    let e = errors_after_base("\n[[carp]]\nvhid = 1\ninterface = \"lan\"\naddresses = [\"192.0.2.9\"]\npassphrase = \"x\"\nadvbase = 0\n");
    assert!(e.is_empty(), "{e:?}");
    let w = warnings(&text);
    assert!(
        w.iter().any(|w| w.contains("advertises every 1/256 s")),
        "{w:?}"
    );
    let e = errors_after_base("\n[[carp]]\nvhid = 1\ninterface = \"lan\"\naddresses = [\"192.0.2.9\"]\npassphrase = \"x\"\nadvbase = 0\nadvskew = 20\n");
    assert!(e.is_empty(), "{e:?}");
    let w = warnings(&format!("{BASE}\n[[carp]]\nvhid = 1\ninterface = \"lan\"\naddresses = [\"192.0.2.9\"]\npassphrase = \"x\"\nadvbase = 0\nadvskew = 20\n"));
    assert!(!w.iter().any(|w| w.contains("1/256")), "{w:?}");
}

#[test]
fn pfsync_needs_an_ipv4_source_and_a_sane_bulk_rate() {
    let e = errors_after_base(
        r#"
[[interface]]
name = "sync"
device = "net_null2"
addresses = ["2001:db8::1/64"]

[pfsync]
interface = "sync"
bulk_rate = 200000000
"#,
    );
    assert_eq!(
        e,
        [
            "8:13: pfsync interface `sync` has no IPv4 address: pfsync is sent from one",
            "9:13: bulk_rate must be between 0 and 100000000, not 200000000",
        ]
    );
}

#[test]
fn an_empty_pfsync_key_is_refused() {
    let e = errors_after_base("\n[pfsync]\ninterface = \"lan\"\nkey = \"\"\n");
    assert_eq!(
        e,
        ["4:7: key must not be empty (leave it out for plain pfsync)"]
    );
}

#[test]
fn eal_args_may_not_set_the_lcore_list_or_the_main_lcore() {
    let errs = errors_after_base(
        "[dpdk]\neal_args = [\"--no-pci\", \"-l\", \"0,1\", \"-c0x3\", \"--main-lcore=0\"]\n",
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("2:25: `-l`: rampart gives EAL the lcore list"),
        "{errs:?}"
    );
    assert!(errs[0].contains("--lcores"), "{errs:?}");
    assert!(errs[1].starts_with("2:38: `-c0x3`"), "{errs:?}");
    assert!(
        errs[2].starts_with("2:47: `--main-lcore=0`: rampart sets the main lcore"),
        "{errs:?}"
    );
    // --lcores itself is how lcores are placed on CPUs.
    assert_eq!(
        errors_after_base(
            "[dpdk]\nworker_lcores = [1, 2]\neal_args = [\"--lcores=0@0,(1,2)@1\"]\n"
        ),
        Vec::<String>::new()
    );
}

#[test]
fn pfsync_split_states_is_a_boolean_off_by_default() {
    let config = |extra: &str| {
        load_str(
            Path::new("fw.toml"),
            &format!("{BASE}\n[pfsync]\ninterface = \"lan\"\n{extra}"),
        )
        .unwrap()
        .config
        .pfsync
        .unwrap()
    };
    assert!(!config("").split_states);
    assert!(config("split_states = true\n").split_states);
    let e = errors_after_base("\n[pfsync]\ninterface = \"lan\"\nsplit_states = \"yes\"\n");
    assert_eq!(
        e,
        ["4:16: invalid type: string \"yes\", expected a boolean"]
    );
}
