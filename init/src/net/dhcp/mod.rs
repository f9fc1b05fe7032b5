//! host0's DHCP client: it gets host0 an address from the LAN's own DHCP server (a home
//! router, or whatever knows nothing of PXE) before the boot service starts.
//!
//! One exchange, RFC 2131 §3.1: DISCOVER, the first usable OFFER, REQUEST, ACK (a NAK starts
//! over), each message retransmitted with [`backoff`] until a total deadline. Replies of other
//! transactions and PXE proxyDHCP offers (no address) are ignored. The client uses an
//! ordinary UDP socket on port 68 pinned to the interface (`SO_BINDTODEVICE`) and allowed to
//! broadcast: the kernel sends from 0.0.0.0 on an up interface without an address, and
//! because the client sets the BROADCAST flag the server's replies arrive as broadcasts,
//! which that socket receives (a unicast to the not-yet-configured address would be dropped).
//!
//! Received messages go through the same guarded parser as the proxyDHCP server's
//! ([`crate::serve::proxydhcp::wire::parse_keeping`]), since `dhcproto` can panic on hostile
//! bytes and this runs in PID 1.
//!
//! The lease is not renewed here: `/init` hands over to the real init within seconds, and
//! the dom0's own DHCP client takes over the interface (and the lease) from there.

pub mod backoff;
pub mod message;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::Message;
use socket2::{Domain, Protocol, Socket, Type};

use self::backoff::Backoff;
pub use self::message::{Identity, Lease, Offer, Reply};
use crate::net::link::{self, LinkError};
use crate::net::mac::MacAddr;
use crate::rand::{random_seed, XorShift};
use crate::serve::proxydhcp::wire;

/// The DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// The DHCP server port.
pub const SERVER_PORT: u16 = 67;

/// How the client runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The interface to configure; it must be up.
    pub interface: String,
    /// Who the client says it is.
    pub identity: Identity,
    /// When to give up, counted from the start.
    pub deadline: Duration,
    /// The first retransmission delay (RFC 2131: 4 s).
    pub first_retry: Duration,
    /// The longest retransmission delay (RFC 2131: 64 s).
    pub max_retry: Duration,
    /// The server port sent to ([`SERVER_PORT`]; another one only for tests).
    pub server_port: u16,
}

impl ClientConfig {
    /// RFC 2131's schedule on `interface` for the card `mac`, giving up after 60 s.
    pub fn new(interface: &str, mac: MacAddr, hostname: Option<String>) -> ClientConfig {
        ClientConfig {
            interface: interface.to_owned(),
            identity: Identity { mac, hostname },
            deadline: Duration::from_secs(60),
            first_retry: Duration::from_secs(4),
            max_retry: Duration::from_secs(64),
            server_port: SERVER_PORT,
        }
    }
}

/// A step of getting a lease that failed.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// The client socket could not be set up.
    #[error("dhcp on `{interface}`: cannot {step}: {source} (this needs root, and the interface must exist; is another DHCP client running?)")]
    Socket {
        /// The interface.
        interface: String,
        /// What was being done, like "bind to 0.0.0.0:68".
        step: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// A message could not be encoded.
    #[error("dhcp on `{interface}`: {source}")]
    Encode {
        /// The interface.
        interface: String,
        /// The encoder's error.
        source: wire::Error,
    },
    /// A message could not be sent.
    #[error("dhcp on `{interface}`: sending the {kind} failed: {source}; is the interface up?")]
    Send {
        /// The interface.
        interface: String,
        /// DISCOVER or REQUEST.
        kind: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// Receiving failed for another reason than the wait ending.
    #[error("dhcp on `{interface}`: receiving failed: {source}")]
    Receive {
        /// The interface.
        interface: String,
        /// The system's error.
        source: io::Error,
    },
    /// No usable answer before the deadline.
    #[error("dhcp on `{interface}`: no {awaited} within {deadline:?} ({attempts} {kind}s sent); is a DHCP server on this network, and the cable in?")]
    Timeout {
        /// The interface.
        interface: String,
        /// What was awaited, like "DHCPOFFER".
        awaited: String,
        /// The message that went unanswered.
        kind: &'static str,
        /// How many times it was sent.
        attempts: u32,
        /// The client's deadline.
        deadline: Duration,
    },
}

/// Gets a lease on `config.interface`, which must be up (see [`link::set_up`]).
pub fn obtain_lease(config: &ClientConfig) -> Result<Lease, DhcpError> {
    let socket = client_socket(&config.interface)?;
    let mut rng = XorShift::new(random_seed());
    let mut client = Client {
        config,
        socket,
        started: Instant::now(),
        rng_seed: rng.next_u64(),
    };
    loop {
        // Truncation is intended: any 32 bits make a transaction ID.
        let xid = rng.next_u64() as u32;
        let secs = client.secs();
        let offer = client.exchange(
            &message::discover(&config.identity, xid, secs),
            "DISCOVER",
            xid,
            "DHCPOFFER".into(),
            |reply| match reply {
                Reply::Offer(offer) => Some(offer),
                _ => None,
            },
        )?;
        log::info!(
            "dhcp on {}: {} offered by {}",
            config.interface,
            offer.address,
            offer.server
        );
        let awaited = format!("DHCPACK or DHCPNAK from {}", offer.server);
        let request = message::request(&config.identity, xid, client.secs(), &offer);
        let answer = client.exchange(&request, "REQUEST", xid, awaited, |reply| match reply {
            Reply::Ack(lease) if lease.server == offer.server => Some(Ok(lease)),
            Reply::Nak { server } if server == offer.server => Some(Err(server)),
            _ => None,
        })?;
        match answer {
            Ok(lease) => {
                log::info!("dhcp on {}: lease {lease}", config.interface);
                return Ok(lease);
            }
            // The offer was taken meanwhile, or the server changed its mind: start over.
            Err(server) => log::warn!(
                "dhcp on {}: {server} refused {} (DHCPNAK); starting over",
                config.interface,
                offer.address
            ),
        }
    }
}

/// Configures `interface` with `lease`: its address and prefix, and the default route when
/// the lease names a router.
pub fn apply(interface: &str, lease: &Lease) -> Result<(), LinkError> {
    link::add_address(interface, lease.address, lease.prefix_len)?;
    if let Some(router) = lease.router {
        link::add_default_route(interface, router)?;
    }
    Ok(())
}

/// Removes what [`apply`] configured.
pub fn remove(interface: &str, lease: &Lease) -> Result<(), LinkError> {
    if let Some(router) = lease.router {
        link::remove_default_route(interface, router)?;
    }
    link::remove_address(interface, lease.address, lease.prefix_len)
}

/// The UDP socket of the client: 0.0.0.0:68 on `interface`, allowed to broadcast.
fn client_socket(interface: &str) -> Result<UdpSocket, DhcpError> {
    let error = |step| {
        move |source| DhcpError::Socket {
            interface: interface.to_owned(),
            step,
            source,
        }
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(error("open a UDP socket"))?;
    // The boot service's proxyDHCP socket or a previous client may hold port 68 too.
    socket
        .set_reuse_address(true)
        .map_err(error("set SO_REUSEADDR"))?;
    socket
        .set_broadcast(true)
        .map_err(error("set SO_BROADCAST"))?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .map_err(error("bind to the interface (SO_BINDTODEVICE)"))?;
    let address = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT);
    socket
        .bind(&address.into())
        .map_err(error("bind to 0.0.0.0:68"))?;
    Ok(socket.into())
}

/// One run of the client.
struct Client<'a> {
    config: &'a ClientConfig,
    socket: UdpSocket,
    started: Instant,
    rng_seed: u64,
}

impl Client<'_> {
    /// Seconds since the client started, for the secs field.
    fn secs(&self) -> u16 {
        u16::try_from(self.started.elapsed().as_secs()).unwrap_or(u16::MAX)
    }

    fn give_up_at(&self) -> Instant {
        self.started + self.config.deadline
    }

    /// Broadcasts `message` and retransmits it on the backoff schedule until `accept` takes
    /// a reply of transaction `xid`, or the deadline passes.
    fn exchange<T>(
        &mut self,
        message: &Message,
        kind: &'static str,
        xid: u32,
        awaited: String,
        mut accept: impl FnMut(Reply) -> Option<T>,
    ) -> Result<T, DhcpError> {
        let interface = &self.config.interface;
        let bytes = wire::emit(message).map_err(|source| DhcpError::Encode {
            interface: interface.clone(),
            source,
        })?;
        self.rng_seed = self.rng_seed.wrapping_add(1);
        let mut backoff = Backoff::new(
            self.config.first_retry,
            self.config.max_retry,
            self.rng_seed,
        );
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, self.config.server_port);
        let mut attempts = 0;
        while Instant::now() < self.give_up_at() {
            self.socket
                .send_to(&bytes, broadcast)
                .map_err(|source| DhcpError::Send {
                    interface: interface.clone(),
                    kind,
                    source,
                })?;
            attempts += 1;
            log::debug!("dhcp on {interface}: {kind} sent (xid {xid:#010x}, attempt {attempts})");
            let retry_at = (Instant::now() + backoff.next_delay()).min(self.give_up_at());
            if let Some(reply) = self.receive_until(retry_at, xid, &mut accept)? {
                return Ok(reply);
            }
        }
        Err(DhcpError::Timeout {
            interface: interface.clone(),
            awaited,
            kind,
            attempts,
            deadline: self.config.deadline,
        })
    }

    /// Reads replies until `accept` takes one or `until` comes.
    fn receive_until<T>(
        &self,
        until: Instant,
        xid: u32,
        accept: &mut impl FnMut(Reply) -> Option<T>,
    ) -> Result<Option<T>, DhcpError> {
        let interface = &self.config.interface;
        let mut buffer = [0u8; 1500];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let error = |source| DhcpError::Receive {
                interface: interface.clone(),
                source,
            };
            self.socket.set_read_timeout(Some(left)).map_err(error)?;
            let (len, from) = match self.socket.recv_from(&mut buffer) {
                Ok(received) => received,
                // The read timeout: time to retransmit.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(error(e)),
            };
            if let Some(taken) = self
                .consider(&buffer[..len], from, xid)
                .and_then(&mut *accept)
            {
                return Ok(Some(taken));
            }
        }
    }

    /// The reply in a received datagram, if it is one for us; why not is logged.
    fn consider(&self, bytes: &[u8], from: SocketAddr, xid: u32) -> Option<Reply> {
        let interface = &self.config.interface;
        let message = wire::parse_keeping(bytes, &wire::CLIENT_OPTIONS)
            .map_err(|e| log::debug!("dhcp on {interface}: ignoring a datagram from {from}: {e}"))
            .ok()?;
        message::classify(&message, xid, self.config.identity.mac)
            .map_err(|ignored| log::debug!("dhcp on {interface}: ignoring {ignored} from {from}"))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_follows_rfc_2131() {
        let config = ClientConfig::new("eth0", MacAddr::new([2, 0, 0, 0, 0, 1]), None);
        assert_eq!(config.first_retry, Duration::from_secs(4));
        assert_eq!(config.max_retry, Duration::from_secs(64));
        assert_eq!(config.server_port, 67);
    }

    #[test]
    fn a_missing_interface_fails_naming_it() {
        let config = ClientConfig::new("pxen-no-such0", MacAddr::new([2, 0, 0, 0, 0, 1]), None);
        let error = obtain_lease(&config).unwrap_err();
        assert!(error.to_string().contains("`pxen-no-such0`"), "{error}");
        assert!(matches!(error, DhcpError::Socket { .. }), "{error:?}");
    }
}
