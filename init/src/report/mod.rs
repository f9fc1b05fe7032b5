//! The hosts' online report: every host, host0 included, tells host0 over HTTP that its dom0
//! is up, so host0 stops waking it and shows it online.
//!
//! [`wire`] is the report itself (JSON, signed with the cluster secret) and what host0 does
//! with a request body: verify, then parse and check. [`local`] gathers this host's report,
//! and [`client`] sends it to host0 and retries until it is accepted.

pub mod client;
pub mod local;
pub mod wire;
