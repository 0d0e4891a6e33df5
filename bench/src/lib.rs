//! The pktgen-style traffic generator and benchmark scenarios.
//!
//! Empty for now: the generator arrives with the benchmark work. The policy and dataplane
//! micro-benchmarks live beside their code as criterion benches (`dataplane/benches/`).
