//! The control plane told how its CARP advertisements fared on the wire: three that could
//! not leave in a row demote the node (OpenBSD's "> snderrors", protocols.md §2.4), the
//! demotion is advertised at once, and three that left release it. Other frames the
//! control core sends are not counted.

use std::path::Path;
use std::time::Duration;

use rampart_conf::MacAddr;
use rampart_control::runtime::{ControlPlane, Outgoing};
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::wire::parse::parse_frame;
use rampart_dataplane::worker::Shared;

const CONFIG: &str = r#"
[[interface]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.2/24"]
mac = "02:00:00:00:01:02"

[[carp]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.1"]
advbase = 0
advskew = 10
passphrase = "send errors"
"#;

fn is_advert(frame: &[u8]) -> bool {
    parse_frame(frame).is_ok_and(|f| f.protocol == 112)
}

/// The demote byte of a CARP advertisement (IPv4, no options).
fn demote_byte(frame: &[u8]) -> u8 {
    frame[14 + 20 + 4]
}

#[test]
fn adverts_that_cannot_leave_demote_the_node() {
    let config = rampart_conf::load_str(Path::new("fw.toml"), CONFIG)
        .unwrap()
        .config;
    let macs: Vec<MacAddr> = config.interfaces.iter().map(|i| i.mac.unwrap()).collect();
    let shared = Shared::from_config(
        &config,
        &macs,
        StateTableConfig::from_config(&config, 16, 1, 1),
    );
    let mut plane = ControlPlane::new(&config, shared, || 7).unwrap();
    let mut out = Outgoing::new();
    let mut now = Duration::ZERO;
    plane.start(now, &mut out);
    // Alone on the link, the group becomes MASTER after 3 intervals (3 × 39 ms).
    let advert = loop {
        now += Duration::from_millis(5);
        assert!(now < Duration::from_secs(2), "never became MASTER");
        out.clear();
        plane.tick(now, &mut out);
        if let Some((_, f)) = out.iter().find(|(_, f)| is_advert(f)) {
            break f.clone();
        }
    };
    let demotion = |plane: &ControlPlane, now| plane.carp_status(now)["demotion"].clone();
    assert_eq!(demotion(&plane, now), 0);
    assert_eq!(demote_byte(&advert), 0);

    // A frame that is not an advertisement failing to leave counts for nothing.
    let mut carried = Outgoing::new();
    let not_an_advert = vec![0xffu8; 60];
    for _ in 0..5 {
        plane.transmitted(0, &not_an_advert, false, now, &mut carried);
    }
    assert_eq!(demotion(&plane, now), 0);

    plane.transmitted(0, &advert, false, now, &mut carried);
    plane.transmitted(0, &advert, false, now, &mut carried);
    assert_eq!(demotion(&plane, now), 0);
    assert!(carried.is_empty());
    plane.transmitted(0, &advert, false, now, &mut carried);
    assert_eq!(demotion(&plane, now), 1, "three in a row demote");
    let announced: Vec<_> = carried.iter().filter(|(_, f)| is_advert(f)).collect();
    assert_eq!(announced.len(), 1, "the new demotion is advertised at once");
    assert_eq!(demote_byte(&announced[0].1), 1);
    let status = plane.carp_status(now);
    assert!(
        status["demotion_reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"].as_str().unwrap().contains("SendErrors")),
        "{status}"
    );

    for _ in 0..3 {
        plane.transmitted(0, &advert, true, now, &mut carried);
    }
    assert_eq!(demotion(&plane, now), 0, "three that left release it");
}
