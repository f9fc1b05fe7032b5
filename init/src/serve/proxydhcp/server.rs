//! The proxyDHCP sockets: one thread on the DHCP port (67), one on the PXE port (4011).
//!
//! Every received datagram is checked and decoded ([`super::wire`]), decided on
//! ([`super::answer`]) and maybe answered. Nothing a datagram holds stops the server: bad
//! packets are logged at debug level and dropped, socket errors are logged and the loop goes
//! on. Replies to clients without an address are broadcast (to 255.255.255.255:68 by
//! default), so the sockets have SO_BROADCAST; SO_REUSEADDR lets another DHCP server on the
//! same host bind port 67 too; SO_BINDTODEVICE, when an interface is named, keeps the
//! server to the cluster's LAN.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::answer::{
    answer, pxe_sighting, Arrival, ClientKind, Decision, Destination, IgnoreReason, ProxyContext,
    PxeSighting,
};
use super::wire;
use crate::net::mac::MacAddr;

/// How long a receive waits before the thread checks whether it should stop.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// A pause after a failed receive, so a persistent error does not spin the CPU and the log.
const ERROR_PAUSE: Duration = Duration::from_millis(100);
/// The UEFI warning is logged once per client; past this many clients the memory of who was
/// warned is reset rather than grown without bound by spoofed MACs.
const MAX_WARNED_CLIENTS: usize = 4096;
/// A DHCP message fits an Ethernet frame; anything longer is truncated and fails to decode.
const RECEIVE_BUFFER: usize = 1500;

/// Called with every PXE client seen (for the status board).
pub type SightingCallback = Arc<dyn Fn(&PxeSighting) + Send + Sync>;

/// Where the server listens and where its broadcasts go.
#[derive(Clone)]
pub struct ProxyDhcpConfig {
    /// The address to bind (0.0.0.0 to receive broadcasts).
    pub bind: Ipv4Addr,
    /// The DHCP server port (67).
    pub dhcp_port: u16,
    /// The PXE boot server port (4011).
    pub pxe_port: u16,
    /// The DHCP client port broadcasts go to (68).
    pub client_port: u16,
    /// The broadcast address (255.255.255.255).
    pub broadcast: Ipv4Addr,
    /// The interface to serve on, or every interface.
    pub interface: Option<String>,
    /// Receives every PXE client seen, answered or not.
    pub on_sighting: Option<SightingCallback>,
}

impl std::fmt::Debug for ProxyDhcpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyDhcpConfig")
            .field("bind", &self.bind)
            .field("dhcp_port", &self.dhcp_port)
            .field("pxe_port", &self.pxe_port)
            .field("client_port", &self.client_port)
            .field("broadcast", &self.broadcast)
            .field("interface", &self.interface)
            .field("on_sighting", &self.on_sighting.is_some())
            .finish()
    }
}

impl Default for ProxyDhcpConfig {
    fn default() -> ProxyDhcpConfig {
        ProxyDhcpConfig {
            bind: Ipv4Addr::UNSPECIFIED,
            dhcp_port: 67,
            pxe_port: 4011,
            client_port: 68,
            broadcast: Ipv4Addr::BROADCAST,
            interface: None,
            on_sighting: None,
        }
    }
}

/// A step of starting the server that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be made or bound.
    #[error("proxyDHCP: cannot listen on UDP {addr}{on}: {source} (ports below 1024 need root or CAP_NET_BIND_SERVICE; SO_BINDTODEVICE needs CAP_NET_RAW)")]
    Bind {
        /// The address.
        addr: SocketAddrV4,
        /// " on IFACE" when bound to an interface.
        on: String,
        /// The system's error.
        source: io::Error,
    },
    /// A serving thread could not be started.
    #[error("proxyDHCP: cannot start the thread for UDP port {port}: {source}")]
    Thread {
        /// The port it would have served.
        port: u16,
        /// The system's error.
        source: io::Error,
    },
}

/// The running server.
pub struct ProxyDhcpHandle {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    context: Arc<RwLock<ProxyContext>>,
    dhcp_addr: SocketAddr,
    pxe_addr: SocketAddr,
}

impl ProxyDhcpHandle {
    /// Replaces what the server answers with (for example when this host's address changes).
    pub fn set_context(&self, context: ProxyContext) {
        *self.context.write().unwrap_or_else(PoisonError::into_inner) = context;
    }

    /// The bound address of the DHCP socket (useful when port 0 was asked for).
    pub fn dhcp_addr(&self) -> SocketAddr {
        self.dhcp_addr
    }

    /// The bound address of the PXE socket.
    pub fn pxe_addr(&self) -> SocketAddr {
        self.pxe_addr
    }

    /// Stops serving and waits for the threads (at most about 200 ms).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            // A thread that panicked has nothing more to clean up.
            let _ = thread.join();
        }
    }
}

/// What the two serving threads share.
struct Shared {
    config: ProxyDhcpConfig,
    context: Arc<RwLock<ProxyContext>>,
    stop: Arc<AtomicBool>,
    /// UEFI clients already warned about.
    warned: Mutex<HashSet<MacAddr>>,
}

/// Binds both ports and starts serving `context`.
pub fn spawn(
    config: ProxyDhcpConfig,
    context: ProxyContext,
) -> Result<ProxyDhcpHandle, ServerError> {
    let dhcp = bind(&config, config.dhcp_port)?;
    let pxe = bind(&config, config.pxe_port)?;
    let local = |socket: &UdpSocket, port| {
        socket.local_addr().map_err(|source| ServerError::Bind {
            addr: SocketAddrV4::new(config.bind, port),
            on: on_interface(&config),
            source,
        })
    };
    let (dhcp_addr, pxe_addr) = (
        local(&dhcp, config.dhcp_port)?,
        local(&pxe, config.pxe_port)?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let context = Arc::new(RwLock::new(context));
    let shared = Arc::new(Shared {
        config,
        context: context.clone(),
        stop: stop.clone(),
        warned: Mutex::default(),
    });
    let mut threads = Vec::new();
    for (socket, port, pxe_port) in [
        (dhcp, dhcp_addr.port(), false),
        (pxe, pxe_addr.port(), true),
    ] {
        let shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("pxen-dhcp-{port}"))
            .spawn(move || serve(&socket, pxe_port, &shared))
            .map_err(|source| ServerError::Thread { port, source });
        match thread {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                // Do not leave the first thread serving alone.
                stop.store(true, Ordering::SeqCst);
                return Err(error);
            }
        }
    }
    log::info!(
        "proxyDHCP: serving on UDP {dhcp_addr} and {pxe_addr}{}",
        on_interface(&shared.config)
    );
    Ok(ProxyDhcpHandle {
        stop,
        threads,
        context,
        dhcp_addr,
        pxe_addr,
    })
}

fn on_interface(config: &ProxyDhcpConfig) -> String {
    config
        .interface
        .as_ref()
        .map(|i| format!(" on `{i}`"))
        .unwrap_or_default()
}

fn bind(config: &ProxyDhcpConfig, port: u16) -> Result<UdpSocket, ServerError> {
    let addr = SocketAddrV4::new(config.bind, port);
    let error = |source| ServerError::Bind {
        addr,
        on: on_interface(config),
        source,
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(error)?;
    socket.set_reuse_address(true).map_err(error)?;
    socket.set_broadcast(true).map_err(error)?;
    if let Some(interface) = &config.interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(error)?;
    }
    socket.bind(&addr.into()).map_err(error)?;
    socket
        .set_read_timeout(Some(STOP_CHECK_INTERVAL))
        .map_err(error)?;
    Ok(socket.into())
}

/// The receive loop of one socket, until told to stop.
fn serve(socket: &UdpSocket, pxe_port: bool, shared: &Shared) {
    let mut buffer = [0u8; RECEIVE_BUFFER];
    while !shared.stop.load(Ordering::SeqCst) {
        match socket.recv_from(&mut buffer) {
            Ok((len, SocketAddr::V4(from))) => {
                handle(socket, &buffer[..len], from, pxe_port, shared)
            }
            // Bound to an IPv4 address, the socket cannot receive from IPv6.
            Ok((_, SocketAddr::V6(_))) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                log::warn!(
                    "proxyDHCP: receiving on {:?} failed: {e}; still serving",
                    socket.local_addr()
                );
                std::thread::sleep(ERROR_PAUSE);
            }
        }
    }
}

/// Decodes, decides and answers one datagram.
fn handle(socket: &UdpSocket, bytes: &[u8], from: SocketAddrV4, pxe_port: bool, shared: &Shared) {
    let request = match wire::parse(bytes) {
        Ok(request) => request,
        Err(e) => {
            log::debug!("proxyDHCP: ignoring {} bytes from {from}: {e}", bytes.len());
            return;
        }
    };
    let arrival = if pxe_port {
        Arrival::PxePort { from }
    } else {
        Arrival::DhcpPort
    };
    if let (Some(observer), Some(sighting)) =
        (&shared.config.on_sighting, pxe_sighting(&request, arrival))
    {
        observer(&sighting);
    }
    let decision = {
        let context = shared
            .context
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        answer(&request, arrival, &context)
    };
    match decision {
        Decision::Reply {
            message,
            to,
            mac,
            kind,
        } => {
            let to = match to {
                Destination::Broadcast => {
                    SocketAddrV4::new(shared.config.broadcast, shared.config.client_port)
                }
                Destination::Unicast(addr) => addr,
            };
            let bytes = match wire::emit(&message) {
                Ok(bytes) => bytes,
                Err(e) => {
                    log::warn!("proxyDHCP: {e}");
                    return;
                }
            };
            let file = message
                .fname_str()
                .and_then(Result::ok)
                .unwrap_or_default()
                .to_owned();
            match socket.send_to(&bytes, to) {
                Ok(_) => log::info!(
                    "proxyDHCP: {} to {mac} ({}) via {to}: boot file {file}",
                    if pxe_port { "ACK" } else { "OFFER" },
                    match kind {
                        ClientKind::BiosPxe => "BIOS PXE",
                        ClientKind::Ipxe => "iPXE",
                    }
                ),
                Err(e) => log::warn!("proxyDHCP: sending the answer for {mac} to {to} failed: {e}"),
            }
        }
        Decision::Ignore(reason @ IgnoreReason::Uefi { mac, .. }) => {
            let mut warned = shared.warned.lock().unwrap_or_else(PoisonError::into_inner);
            if warned.len() >= MAX_WARNED_CLIENTS {
                warned.clear();
            }
            if warned.insert(mac) {
                log::warn!("proxyDHCP: {reason}");
            }
        }
        Decision::Ignore(reason) => {
            log::debug!("proxyDHCP: ignoring a message from {from}: {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::proxydhcp::answer::tests::{context, pxe_message, CLIENT, SERVER};
    use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
    use dhcproto::Decodable;

    /// A client socket on loopback, and a server whose "broadcasts" come to it and whose
    /// sightings of PXE clients are recorded.
    fn client_and_server() -> (UdpSocket, ProxyDhcpHandle, Arc<Mutex<Vec<PxeSighting>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let config = ProxyDhcpConfig {
            bind: Ipv4Addr::LOCALHOST,
            dhcp_port: 0,
            pxe_port: 0,
            client_port: client.local_addr().unwrap().port(),
            broadcast: Ipv4Addr::LOCALHOST,
            interface: None,
            on_sighting: Some(Arc::new(move |sighting: &PxeSighting| {
                record.lock().unwrap().push(*sighting)
            })),
        };
        (client, spawn(config, context()).unwrap(), seen)
    }

    fn receive(client: &UdpSocket, awaited: &str) -> Message {
        let mut buffer = [0u8; 1500];
        let (len, _) = client
            .recv_from(&mut buffer)
            .unwrap_or_else(|e| panic!("{awaited} within 5 s: {e}"));
        assert!(
            len >= wire::MIN_REPLY_LEN,
            "{awaited}: {len} bytes, below the BOOTP minimum"
        );
        Message::from_bytes(&buffer[..len]).unwrap()
    }

    #[test]
    fn answers_a_pxe_discover_and_request_over_loopback_and_ignores_the_rest() {
        let (client, server, seen) = client_and_server();
        let non_pxe = {
            let mut message = pxe_message(MessageType::Discover, 0);
            message
                .opts_mut()
                .insert(DhcpOption::ClassIdentifier(b"MSFT 5.0".to_vec()));
            message.set_xid(1);
            message
        };
        let mut uefi = pxe_message(MessageType::Discover, 7);
        uefi.set_xid(2);
        client
            .send_to(b"not DHCP at all", server.dhcp_addr())
            .unwrap();
        client
            .send_to(&[1, 1, 200, 0].repeat(100), server.dhcp_addr())
            .unwrap();
        for ignored in [&non_pxe, &uefi, &uefi] {
            client
                .send_to(&wire::emit(ignored).unwrap(), server.dhcp_addr())
                .unwrap();
        }
        client
            .send_to(
                &wire::emit(&pxe_message(MessageType::Discover, 0)).unwrap(),
                server.dhcp_addr(),
            )
            .unwrap();
        // One thread serves port 67 in order: the first answer is to the last datagram.
        let offer = receive(&client, "the proxy offer");
        assert_eq!(offer.xid(), 0xdead_beef);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
        // The sightings are made before the answer: two UEFI requests and the discover.
        let sightings = seen.lock().unwrap().clone();
        assert_eq!(sightings.len(), 3, "{sightings:?}");
        assert!(sightings.iter().all(|s| s.mac == CLIENT));
        assert_eq!(offer.siaddr(), SERVER);
        assert_eq!(offer.chaddr(), CLIENT.octets());
        assert_eq!(
            offer.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"lpxelinux.0".to_vec()))
        );

        let mut request = pxe_message(MessageType::Request, 0);
        request.set_ciaddr(Ipv4Addr::LOCALHOST);
        client
            .send_to(&wire::emit(&request).unwrap(), server.pxe_addr())
            .unwrap();
        let ack = receive(&client, "the ACK on the PXE port");
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.ciaddr(), Ipv4Addr::LOCALHOST);

        let mut changed = context();
        changed.bios_boot_file = "pxelinux.0".into();
        server.set_context(changed);
        client
            .send_to(
                &wire::emit(&pxe_message(MessageType::Discover, 0)).unwrap(),
                server.dhcp_addr(),
            )
            .unwrap();
        let offer = receive(&client, "the offer after the context changed");
        assert_eq!(
            offer.opts().get(OptionCode::BootfileName),
            Some(&DhcpOption::BootfileName(b"pxelinux.0".to_vec()))
        );
        server.stop();
    }

    #[test]
    fn a_port_in_use_without_reuse_is_named_in_the_error() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = ProxyDhcpConfig {
            bind: Ipv4Addr::LOCALHOST,
            dhcp_port: taken.local_addr().unwrap().port(),
            pxe_port: 0,
            ..ProxyDhcpConfig::default()
        };
        let error = spawn(config, context())
            .err()
            .expect("the port is taken without SO_REUSEADDR");
        assert!(
            error
                .to_string()
                .contains(&taken.local_addr().unwrap().to_string()),
            "{error}"
        );
    }
}
