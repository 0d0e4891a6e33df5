//! The control plane: CARP and pfsync engines and the control-core loop.
//!
//! Empty for now: CARP and pfsync arrive with their own work. Nothing here pretends to work.
