//! The LAN's own DHCP server, which knows nothing of PXE: what a home router gives.
//!
//! It is QEMU's user-mode network stack (slirp) in a QEMU without a guest
//! (`-machine none`), joined by a QEMU hub to a [`crate::switch`] port. It hands out
//! addresses from [`DHCP_START`] in [`NETWORK`], and is the LAN's gateway ([`GATEWAY`],
//! NAT to the outside) and DNS server ([`DNS`]). It never answers PXE options: network boot
//! needs a proxyDHCP server beside it.
//!
//! The QEMU process is killed when the [`Lan`] is dropped, and with the thread that started
//! it (as a [`crate::Machine`]'s).

use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use pxen::net::mac::MacAddr;

use crate::machine::{die_with_parent, QEMU};
use crate::switch::{netdev_arg, PortPaths};

/// The LAN's network, 10.77.0.0/24.
pub const NETWORK: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 0);
/// The LAN's prefix length.
pub const PREFIX_LEN: u8 = 24;
/// The gateway and DHCP server: slirp's own address.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The DNS server slirp offers.
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// The first address handed out; the next clients get .51, .52, ...
pub const DHCP_START: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 50);
/// The MAC slirp sends from: `52:55` followed by its IPv4 address ([`GATEWAY`]).
pub const SERVER_MAC: MacAddr = MacAddr::new([0x52, 0x55, 10, 77, 0, 2]);

/// Starting the LAN's DHCP server failed.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    /// The log file could not be created.
    #[error(
        "cannot create the DHCP server's log {path}: {source}; check free space and permissions"
    )]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A stale socket of a previous run could not be removed.
    #[error("cannot remove the stale socket {path}: {source}")]
    StaleSocket {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// QEMU could not be started.
    #[error("cannot start {QEMU} for the LAN's DHCP server: {source}; install it with `cargo xtask deps`")]
    Spawn {
        /// Why.
        source: io::Error,
    },
}

/// The running DHCP server. Dropping it stops it.
#[derive(Debug)]
pub struct Lan {
    child: Child,
    log: PathBuf,
}

/// QEMU's arguments for a slirp DHCP server on the switch port `port`.
pub fn qemu_args(port: &PortPaths) -> Vec<String> {
    let user = format!(
        "user,id=slirp,net={NETWORK}/{PREFIX_LEN},host={GATEWAY},dns={DNS},dhcpstart={DHCP_START}"
    );
    [
        "-machine",
        "none",
        "-nographic",
        "-nodefaults",
        "-monitor",
        "none",
        "-netdev",
        &user,
        "-netdev",
        &netdev_arg(port, "lan"),
        // A hub joins the two netdevs: slirp on one port, the switch on the other.
        "-netdev",
        "hubport,id=hub-slirp,hubid=0,netdev=slirp",
        "-netdev",
        "hubport,id=hub-lan,hubid=0,netdev=lan",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

impl Lan {
    /// Starts the DHCP server on the switch port `port`; QEMU's messages go to `log`.
    pub fn start(port: &PortPaths, log: &Path) -> Result<Lan, LanError> {
        remove_stale(&port.machine)?;
        let log_file = File::create(log).map_err(|source| LanError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let log_copy = log_file.try_clone().map_err(|source| LanError::Log {
            path: log.to_path_buf(),
            source,
        })?;
        let mut command = Command::new(QEMU);
        command
            .args(qemu_args(port))
            .stdin(Stdio::null())
            .stdout(log_copy)
            .stderr(log_file);
        die_with_parent(&mut command);
        log::info!(
            "starting the LAN's DHCP server: {QEMU} {:?}",
            qemu_args(port)
        );
        let child = command
            .spawn()
            .map_err(|source| LanError::Spawn { source })?;
        Ok(Lan {
            child,
            log: log.to_path_buf(),
        })
    }

    /// QEMU's messages.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

/// Removes a socket file a previous run left behind: QEMU cannot bind over it.
pub(crate) fn remove_stale(path: &Path) -> Result<(), LanError> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(LanError::StaleSocket {
            path: path.to_path_buf(),
            source: error,
        }),
        _ => Ok(()),
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Already exited is fine; anything else is only worth a warning on the way out.
        if let Err(error) = self.child.kill() {
            if error.kind() != io::ErrorKind::InvalidInput {
                log::warn!("cannot stop the LAN's DHCP server: {error}");
            }
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slirp_and_the_switch_port_are_joined_by_a_hub() {
        let port = PortPaths {
            name: "lan".into(),
            machine: "/s/lan.vm.sock".into(),
            switch: "/s/lan.sw.sock".into(),
        };
        let args = qemu_args(&port);
        let netdevs: Vec<&str> = args
            .windows(2)
            .filter(|w| w[0] == "-netdev")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(
            netdevs,
            [
                "user,id=slirp,net=10.77.0.0/24,host=10.77.0.2,dns=10.77.0.3,dhcpstart=10.77.0.50",
                "dgram,id=lan,local.type=unix,local.path=/s/lan.vm.sock,remote.type=unix,remote.path=/s/lan.sw.sock",
                "hubport,id=hub-slirp,hubid=0,netdev=slirp",
                "hubport,id=hub-lan,hubid=0,netdev=lan",
            ]
        );
        assert!(args.windows(2).any(|w| w == ["-machine", "none"]));
    }

    #[test]
    fn the_server_mac_embeds_the_gateway_address() {
        assert_eq!(SERVER_MAC.octets()[2..], GATEWAY.octets());
    }
}
