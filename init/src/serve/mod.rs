//! The boot service host0 runs for the rest of the cluster: the boot files over the network.

pub mod files;
pub mod http;
