//! The configuration as written: serde types that keep every value's span.
//!
//! Each section is deserialized on its own (and each `[[rule]]` element on its own), so one
//! mistake does not hide the next: the loader reports every section's first structural
//! error, then `validate` checks meaning (references, addresses, ports) and reports all of
//! those. Unknown keys are errors everywhere (`deny_unknown_fields`).

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appliance {
    pub name: Option<Spanned<String>>,
    pub host_id: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Poll {
    Busy,
    Adaptive,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpdk {
    pub control_lcore: Option<Spanned<u32>>,
    pub worker_lcores: Option<Spanned<Vec<Spanned<u32>>>>,
    pub eal_args: Option<Vec<Spanned<String>>>,
    pub mbufs: Option<Spanned<u32>>,
    pub mbuf_cache: Option<Spanned<u32>>,
    pub rx_descriptors: Option<Spanned<u32>>,
    pub tx_descriptors: Option<Spanned<u32>>,
    pub poll: Option<Poll>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: Spanned<String>,
    pub device: Spanned<String>,
    pub mac: Option<Spanned<String>>,
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    pub mtu: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub destination: Spanned<String>,
    pub gateway: Spanned<String>,
    pub interface: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbor {
    pub interface: Spanned<String>,
    pub address: Spanned<String>,
    pub mac: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carp {
    pub vhid: Spanned<u32>,
    pub interface: Spanned<String>,
    pub addresses: Spanned<Vec<Spanned<String>>>,
    pub advbase: Option<Spanned<u32>>,
    pub advskew: Option<Spanned<u32>>,
    pub passphrase: Option<Spanned<String>>,
    #[serde(default)]
    pub preempt: bool,
    pub peer: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pfsync {
    pub interface: Spanned<String>,
    pub peer: Option<Spanned<String>>,
    #[serde(default)]
    pub defer: bool,
    pub maxupd: Option<Spanned<u32>>,
    pub bulk_rate: Option<Spanned<u32>>,
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub split_states: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub socket: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub states: Option<Spanned<u32>>,
    pub table_entries: Option<Spanned<u32>>,
}

/// `[timeouts]` with pf's dotted names: `tcp.first = 60` is TOML for `tcp = { first = 60 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub tcp: Option<TcpTimeouts>,
    pub udp: Option<SingleMultipleTimeouts>,
    pub icmp: Option<IcmpTimeouts>,
    pub other: Option<SingleMultipleTimeouts>,
    pub frag: Option<u32>,
    pub interval: Option<Spanned<u32>>,
    pub adaptive: Option<AdaptiveTimeouts>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpTimeouts {
    pub first: Option<u32>,
    pub opening: Option<u32>,
    pub established: Option<u32>,
    pub closing: Option<u32>,
    pub finwait: Option<u32>,
    pub closed: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleMultipleTimeouts {
    pub first: Option<u32>,
    pub single: Option<u32>,
    pub multiple: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpTimeouts {
    pub first: Option<u32>,
    pub error: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveTimeouts {
    pub start: Option<Spanned<u32>>,
    pub end: Option<Spanned<u32>>,
}

/// A table written as a table: `bogons = { file = "bogons.txt" }`, optionally with inline
/// `addresses` too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    pub file: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pass,
    Block,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockPolicy {
    Drop,
    Return,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub default: Option<Action>,
    pub block_policy: Option<BlockPolicy>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Af {
    Inet,
    Inet6,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub action: Spanned<Action>,
    pub direction: Option<Direction>,
    #[serde(default)]
    pub quick: bool,
    pub on: Option<Spanned<String>>,
    pub af: Option<Spanned<Af>>,
    pub proto: Option<Spanned<OneOrMany<Proto>>>,
    pub from: Option<Spanned<OneOrMany<String>>>,
    pub to: Option<Spanned<OneOrMany<String>>>,
    pub from_port: Option<Spanned<OneOrMany<Port>>>,
    pub to_port: Option<Spanned<OneOrMany<Port>>>,
    pub flags: Option<Spanned<String>>,
    pub keep_state: Option<Spanned<bool>>,
    #[serde(default)]
    pub log: bool,
    pub label: Option<Spanned<String>>,
    #[serde(rename = "return")]
    pub return_: Option<Spanned<bool>>,
}

/// A value or a list of values: `from = "10.0.0.0/8"` or `from = ["10.0.0.0/8", "<t>"]`.
/// List elements keep their own spans; a lone value takes the span of the whole field.
#[derive(Debug)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<Spanned<T>>),
}

impl<T> OneOrMany<T> {
    pub fn is_empty(&self) -> bool {
        matches!(self, OneOrMany::Many(v) if v.is_empty())
    }

    /// Every item with its span (`outer` is the span of the whole field).
    pub fn items(&self, outer: std::ops::Range<usize>) -> Vec<(std::ops::Range<usize>, &T)> {
        match self {
            OneOrMany::One(v) => vec![(outer, v)],
            OneOrMany::Many(vs) => vs.iter().map(|v| (v.span(), v.get_ref())).collect(),
        }
    }
}

/// Something that can stand alone or in a list, with what to say when it is neither.
pub trait Expecting {
    const EXPECTING: &'static str;
}

impl Expecting for String {
    const EXPECTING: &'static str =
        "an address, a CIDR, \"any\", \"self\", \"<table>\" or a list of those";
}

impl Expecting for Proto {
    const EXPECTING: &'static str =
        "a protocol (tcp, udp, icmp, icmp6, a name or a number 0-255) or a list of those";
}

impl Expecting for Port {
    const EXPECTING: &'static str =
        "a port number, an inclusive range \"lo:hi\", or a list of those";
}

impl<'de, T> Deserialize<'de> for OneOrMany<T>
where
    T: Deserialize<'de> + Expecting,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Expecting> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
            // A lone scalar: hand it to T's own deserializer.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(de::value::StrDeserializer::<E>::new(v)).map(OneOrMany::One)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::<E>::new(v))
                    .map(OneOrMany::One)
                    .map_err(|_: E| E::invalid_type(de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A protocol as written: a name or a number.
#[derive(Debug, Clone)]
pub enum Proto {
    Name(String),
    Number(i64),
}

impl<'de> Deserialize<'de> for Proto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Proto;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a protocol name or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Proto, E> {
                Ok(Proto::Name(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Proto, E> {
                Ok(Proto::Number(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A port as written: a number or a string (`"80"`, `"1024:65535"`).
#[derive(Debug, Clone)]
pub enum Port {
    Text(String),
    Number(i64),
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or an inclusive range \"lo:hi\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Ok(Port::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                Ok(Port::Number(v))
            }
        }
        d.deserialize_any(V)
    }
}
