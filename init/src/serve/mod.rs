//! The boot service host0 runs for the rest of the cluster.

pub mod proxydhcp;
