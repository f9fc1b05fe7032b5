//! The LAN's own DHCP server, which knows nothing of PXE: what a home router gives.
//!
//! It is QEMU's user-mode network stack (slirp) in a QEMU without a guest
//! (`-machine none`), joined by a QEMU hub to a [`crate::switch`] port. It hands out
//! addresses from [`DHCP_START`] in [`NETWORK`], and is the LAN's gateway ([`GATEWAY`],
//! NAT to the outside) and DNS server ([`DNS`]). It never answers PXE options: network boot
//! needs a proxyDHCP server beside it.
//!
//! A test reaches a host's TCP port from outside the LAN through a port forward that slirp
//! adds at run time ([`Lan::forward_tcp`]): slirp listens on a port of 127.0.0.1 and relays
//! each connection to the guest address, whose MAC it finds with ARP. Forwards are added with
//! HMP's `hostfwd_add` through the QMP command `human-monitor-command` (QMP itself has no
//! command for it), which answers with HMP's text: empty on success, an error line otherwise.
//!
//! The QEMU process is killed when the [`Lan`] is dropped, and with the thread that started
//! it (as a [`crate::Machine`]'s).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use pxen::net::mac::MacAddr;
use serde_json::json;

use crate::machine::{die_with_parent, qmp_args, QEMU, QMP_CONNECT_TIMEOUT};
use crate::qmp::{Qmp, QmpError};
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
/// The id of slirp's netdev, which `hostfwd_add` and `hostfwd_remove` name.
const SLIRP_NETDEV: &str = "slirp";
/// How many free ports [`Lan::forward_tcp`] tries: another process may take the port it
/// found free before slirp binds it.
const FORWARD_TRIES: usize = 5;
/// What slirp answers when it cannot bind the host port of a forward.
const PORT_TAKEN: &str = "Could not set up host forwarding rule";

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
    /// The private directory of the QMP socket could not be created.
    #[error("cannot create a temporary directory for the LAN's QMP socket: {source}; check that TMPDIR is writable")]
    QmpDir {
        /// Why.
        source: io::Error,
    },
    /// Talking to the LAN's QEMU over QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// No free port could be found on 127.0.0.1.
    #[error("cannot find a free TCP port on 127.0.0.1 to forward to {guest}: {source}")]
    NoFreePort {
        /// The guest address and port to forward to.
        guest: SocketAddrV4,
        /// Why.
        source: io::Error,
    },
    /// slirp refused a forward.
    #[error("slirp refused to forward 127.0.0.1:{host_port} to {guest}: {reply:?}; see the rule syntax of QEMU's `hostfwd_add`")]
    Forward {
        /// The guest address and port.
        guest: SocketAddrV4,
        /// The port of 127.0.0.1.
        host_port: u16,
        /// HMP's answer.
        reply: String,
    },
    /// Every port tried was taken before slirp could bind it.
    #[error("slirp could bind none of the {FORWARD_TRIES} free ports tried to forward to {guest} (last: 127.0.0.1:{host_port}, {reply:?}); is something grabbing ports on 127.0.0.1?")]
    PortsTaken {
        /// The guest address and port.
        guest: SocketAddrV4,
        /// The last port tried.
        host_port: u16,
        /// HMP's last answer.
        reply: String,
    },
    /// slirp did not remove a forward.
    #[error("slirp did not remove the forward of 127.0.0.1:{host_port}: {reply:?}")]
    Remove {
        /// The port of 127.0.0.1.
        host_port: u16,
        /// HMP's answer.
        reply: String,
    },
}

/// The running DHCP server. Dropping it stops it.
#[derive(Debug)]
pub struct Lan {
    child: Child,
    log: PathBuf,
    qmp_socket: PathBuf,
    /// The QMP connection, made on first use.
    qmp: Option<Qmp>,
    /// The ports of 127.0.0.1 forwarded, by guest address and port.
    forwards: HashMap<SocketAddrV4, u16>,
    _qmp_dir: tempfile::TempDir,
}

/// What HMP's answer to `hostfwd_add` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostfwdReply {
    /// The forward is set up (HMP printed nothing).
    Added,
    /// The host port could not be bound: another process has it.
    PortTaken(String),
    /// Any other error, as HMP printed it.
    Refused(String),
}

impl HostfwdReply {
    /// Reads HMP's answer to `hostfwd_add`.
    pub fn parse(reply: &str) -> HostfwdReply {
        let reply = reply.trim();
        if reply.is_empty() {
            HostfwdReply::Added
        } else if reply.starts_with(PORT_TAKEN) {
            HostfwdReply::PortTaken(reply.to_string())
        } else {
            HostfwdReply::Refused(reply.to_string())
        }
    }
}

/// Whether HMP's answer to `hostfwd_remove` says the rule was removed.
pub fn hostfwd_removed(reply: &str) -> bool {
    let reply = reply.trim();
    reply.starts_with("host forwarding rule for ") && reply.ends_with(" removed")
}

/// The HMP command forwarding TCP port `host_port` of 127.0.0.1 to `guest`.
pub fn hostfwd_add_command(host_port: u16, guest: SocketAddrV4) -> String {
    format!(
        "hostfwd_add {SLIRP_NETDEV} tcp:127.0.0.1:{host_port}-{}:{}",
        guest.ip(),
        guest.port()
    )
}

/// The HMP command removing the forward of TCP port `host_port` of 127.0.0.1.
pub fn hostfwd_remove_command(host_port: u16) -> String {
    format!("hostfwd_remove {SLIRP_NETDEV} tcp:127.0.0.1:{host_port}")
}

/// QEMU's arguments for a slirp DHCP server on the switch port `port`.
pub fn qemu_args(port: &PortPaths) -> Vec<String> {
    let user = format!(
        "user,id={SLIRP_NETDEV},net={NETWORK}/{PREFIX_LEN},host={GATEWAY},dns={DNS},dhcpstart={DHCP_START}"
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
        // Unix socket paths are short (107 bytes): a short private directory, as a
        // machine's.
        let qmp_dir = tempfile::Builder::new()
            .prefix("pxen-lan-qmp-")
            .tempdir()
            .map_err(|source| LanError::QmpDir { source })?;
        let qmp_socket = qmp_dir.path().join("qmp.sock");
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
            .args(qmp_args(&qmp_socket))
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
            qmp_socket,
            qmp: None,
            forwards: HashMap::new(),
            _qmp_dir: qmp_dir,
        })
    }

    /// QEMU's messages.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Forwards a free TCP port of 127.0.0.1 to port `guest_port` of `guest` on the LAN, and
    /// returns it; a forward already set up to the same place is reused. slirp connects to
    /// the guest only when a client connects to the port, so the guest need not be up yet.
    pub fn forward_tcp(&mut self, guest: Ipv4Addr, guest_port: u16) -> Result<u16, LanError> {
        let guest = SocketAddrV4::new(guest, guest_port);
        if let Some(&host_port) = self.forwards.get(&guest) {
            return Ok(host_port);
        }
        let mut last = (0, String::new());
        for _ in 0..FORWARD_TRIES {
            let host_port = free_port(guest)?;
            match HostfwdReply::parse(&self.hmp(&hostfwd_add_command(host_port, guest))?) {
                HostfwdReply::Added => {
                    log::info!("LAN: 127.0.0.1:{host_port} is forwarded to {guest}");
                    self.forwards.insert(guest, host_port);
                    return Ok(host_port);
                }
                HostfwdReply::PortTaken(reply) => last = (host_port, reply),
                HostfwdReply::Refused(reply) => {
                    return Err(LanError::Forward {
                        guest,
                        host_port,
                        reply,
                    })
                }
            }
        }
        let (host_port, reply) = last;
        Err(LanError::PortsTaken {
            guest,
            host_port,
            reply,
        })
    }

    /// Removes the forward to port `guest_port` of `guest`, if there is one (as when a host
    /// came back with another address).
    pub fn remove_forward(&mut self, guest: Ipv4Addr, guest_port: u16) -> Result<(), LanError> {
        let Some(host_port) = self.forwards.remove(&SocketAddrV4::new(guest, guest_port)) else {
            return Ok(());
        };
        let reply = self.hmp(&hostfwd_remove_command(host_port))?;
        if !hostfwd_removed(&reply) {
            return Err(LanError::Remove { host_port, reply });
        }
        log::info!("LAN: 127.0.0.1:{host_port} is no longer forwarded");
        Ok(())
    }

    /// Runs the HMP command `command_line` and returns what it printed.
    fn hmp(&mut self, command_line: &str) -> Result<String, LanError> {
        let qmp = match self.qmp.take() {
            Some(qmp) => qmp,
            None => Qmp::connect("lan", &self.qmp_socket, QMP_CONNECT_TIMEOUT)?,
        };
        let reply = self.qmp.insert(qmp).execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        Ok(reply
            .as_str()
            .map_or_else(|| reply.to_string(), str::to_string))
    }
}

/// A port of 127.0.0.1 that is free now (the kernel picks it); another process may take it
/// before it is used, which [`Lan::forward_tcp`] handles by trying again.
fn free_port(guest: SocketAddrV4) -> Result<u16, LanError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| LanError::NoFreePort { guest, source })
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
    fn hostfwd_commands_name_slirp_and_loopback() {
        let guest = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 50), 22);
        assert_eq!(
            hostfwd_add_command(40022, guest),
            "hostfwd_add slirp tcp:127.0.0.1:40022-10.77.0.50:22"
        );
        assert_eq!(
            hostfwd_remove_command(40022),
            "hostfwd_remove slirp tcp:127.0.0.1:40022"
        );
    }

    #[test]
    fn hostfwd_replies_as_qemu_7_2_prints_them() {
        assert_eq!(HostfwdReply::parse(""), HostfwdReply::Added);
        let taken = "Could not set up host forwarding rule 'tcp:127.0.0.1:40022-10.77.0.51:22'\r\n";
        assert_eq!(
            HostfwdReply::parse(taken),
            HostfwdReply::PortTaken(
                "Could not set up host forwarding rule 'tcp:127.0.0.1:40022-10.77.0.51:22'".into()
            )
        );
        for refused in [
            "unrecognized netdev id 'nosuch'\r\n",
            "Invalid host forwarding rule 'bogus' (No : separators)\r\n",
        ] {
            assert_eq!(
                HostfwdReply::parse(refused),
                HostfwdReply::Refused(refused.trim().into())
            );
        }
        assert!(hostfwd_removed(
            "host forwarding rule for tcp:127.0.0.1:40022 removed\r\n"
        ));
        assert!(!hostfwd_removed(
            "host forwarding rule for tcp:127.0.0.1:40022 not found\r\n"
        ));
        assert!(!hostfwd_removed("invalid format\r\n"));
    }

    #[test]
    fn the_server_mac_embeds_the_gateway_address() {
        assert_eq!(SERVER_MAC.octets()[2..], GATEWAY.octets());
    }
}
