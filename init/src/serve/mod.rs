//! The boot service host0 runs for the rest of the cluster: proxyDHCP points PXE clients at
//! host0, TFTP and HTTP serve them the boot files, and the status page shows the hosts.

pub mod bootfiles;
pub mod files;
pub mod http;
pub mod proxydhcp;
pub mod service;
pub mod supervise;
pub mod tftp;
