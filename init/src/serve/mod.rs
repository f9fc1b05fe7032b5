//! The boot service host0 runs for the rest of the cluster: proxyDHCP points PXE clients at
//! host0, TFTP and HTTP serve them the boot files, the hosts report when their dom0 is up, and
//! the status page shows them.

pub mod announce;
pub mod bootfiles;
pub mod files;
pub mod http;
pub mod proxydhcp;
pub mod reports;
pub mod service;
pub mod supervise;
pub mod tftp;
