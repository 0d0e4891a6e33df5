//! rampart's appliance configuration.
//!
//! One TOML file describes an appliance (see `docs/policy.md` for every key). [`load`] reads
//! it — and the separate policy file it may name — and either returns a validated
//! [`Config`] or every problem found, each as `FILE:LINE:COL: message`, in the spirit of
//! `pfctl -nf`.

pub mod diag;
mod load;
pub mod model;
mod raw;
mod validate;

pub use diag::{Diagnostic, Severity, SourceFile};
pub use load::{load, load_str, Loaded};
pub use model::*;
