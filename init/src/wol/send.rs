//! Putting magic packets on the network, and the thread that wakes the cluster.
//!
//! Each packet goes out three ways, because cards and switches differ in what they let
//! through: UDP broadcast to port 9 (discard) and port 7 (echo), and a raw Ethernet frame of
//! EtherType 0x0842 to ff:ff:ff:ff:ff:ff, which needs no IP configuration at all.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use super::schedule::{Action, Backoff, WakePlan};
use super::wire::{MagicPacket, ETHERTYPE_WOL};
use crate::net::mac::MacAddr;

/// Where magic packets are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderConfig {
    /// The IPv4 broadcast address of the UDP packets: 255.255.255.255, or the subnet's.
    pub broadcast: Ipv4Addr,
    /// The UDP ports sent to (9 and 7 by convention).
    pub udp_ports: Vec<u16>,
    /// The interface to send on (also pins the UDP broadcasts to it); without one, only UDP
    /// is sent, through the routing table.
    pub interface: Option<String>,
}

impl Default for SenderConfig {
    fn default() -> SenderConfig {
        SenderConfig {
            broadcast: Ipv4Addr::BROADCAST,
            udp_ports: vec![9, 7],
            interface: None,
        }
    }
}

/// A step of sending a magic packet that failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The UDP socket could not be made.
    #[error("wake-on-lan: cannot open a UDP broadcast socket{on}: {source}")]
    UdpSocket {
        /// " on IFACE" when bound to an interface.
        on: String,
        /// The system's error.
        source: io::Error,
    },
    /// The interface's index could not be found (it does not exist?).
    #[error("wake-on-lan: cannot find the index of interface `{interface}`: {source}; check the interface name (`ip link`)")]
    InterfaceIndex {
        /// The interface.
        interface: String,
        /// The system's error.
        source: nix::Error,
    },
    /// The raw packet socket could not be made (it needs CAP_NET_RAW).
    #[error("wake-on-lan: cannot open a raw EtherType 0x0842 socket on `{interface}`: {source} (this needs root or CAP_NET_RAW)")]
    RawSocket {
        /// The interface.
        interface: String,
        /// The system's error.
        source: io::Error,
    },
    /// A UDP datagram could not be sent.
    #[error("wake-on-lan: sending to {mac} by UDP to {to} failed: {source}")]
    UdpSend {
        /// The host being woken.
        mac: MacAddr,
        /// The destination.
        to: SocketAddrV4,
        /// The system's error.
        source: io::Error,
    },
    /// A raw frame could not be sent.
    #[error(
        "wake-on-lan: sending to {mac} as a raw 0x0842 frame on `{interface}` failed: {source}"
    )]
    RawSend {
        /// The host being woken.
        mac: MacAddr,
        /// The interface.
        interface: String,
        /// The system's error.
        source: io::Error,
    },
}

/// An open raw socket and the link-layer destination of its frames.
struct RawLink {
    socket: Socket,
    destination: SockAddr,
    interface: String,
}

/// Sends magic packets the ways its configuration says.
pub struct Sender {
    udp: UdpSocket,
    raw: Option<RawLink>,
    config: SenderConfig,
}

impl Sender {
    /// Opens the sockets: UDP always, the raw socket when an interface is configured.
    pub fn open(config: SenderConfig) -> Result<Sender, SendError> {
        let udp = open_udp(config.interface.as_deref()).map_err(|source| SendError::UdpSocket {
            on: config
                .interface
                .as_ref()
                .map(|i| format!(" on `{i}`"))
                .unwrap_or_default(),
            source,
        })?;
        let raw = match &config.interface {
            Some(interface) => Some(open_raw(interface)?),
            None => None,
        };
        Ok(Sender { udp, raw, config })
    }

    /// Sends `packet` every configured way. Every way is tried even when one fails;
    /// returns the failures, empty when everything was sent.
    pub fn send(&self, packet: &MagicPacket) -> Vec<SendError> {
        let bytes = packet.to_bytes();
        let mac = packet.target;
        let mut failures = Vec::new();
        for &port in &self.config.udp_ports {
            let to = SocketAddrV4::new(self.config.broadcast, port);
            if let Err(source) = self.udp.send_to(&bytes, to) {
                failures.push(SendError::UdpSend { mac, to, source });
            }
        }
        if let Some(raw) = &self.raw {
            if let Err(source) = raw.socket.send_to(&bytes, &raw.destination) {
                failures.push(SendError::RawSend {
                    mac,
                    interface: raw.interface.clone(),
                    source,
                });
            }
        }
        failures
    }

    /// How the packets go out, for log lines.
    pub fn describe(&self) -> String {
        let ports: Vec<String> = self.config.udp_ports.iter().map(u16::to_string).collect();
        let mut ways = format!("UDP {}:{{{}}}", self.config.broadcast, ports.join(","));
        if let Some(raw) = &self.raw {
            ways.push_str(&format!(" and raw 0x0842 on {}", raw.interface));
        }
        ways
    }
}

fn open_udp(interface: Option<&str>) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_broadcast(true)?;
    if let Some(interface) = interface {
        // Without this, a broadcast to 255.255.255.255 leaves by the default route's interface.
        socket.bind_device(Some(interface.as_bytes()))?;
    }
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
    Ok(socket.into())
}

fn open_raw(interface: &str) -> Result<RawLink, SendError> {
    let index = interface_index(interface)?;
    let protocol = i32::from(ETHERTYPE_WOL.to_be());
    // SOCK_DGRAM packet sockets let the kernel write the Ethernet header (with the card's own
    // source address) from the destination below.
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(Protocol::from(protocol))).map_err(
        |source| SendError::RawSocket {
            interface: interface.to_owned(),
            source,
        },
    )?;
    Ok(RawLink {
        socket,
        destination: broadcast_link_address(index),
        interface: interface.to_owned(),
    })
}

/// The interface's index, asked of the kernel by name: the boot service runs chrooted in the
/// RAM copy of the drive, where there is no sysfs.
fn interface_index(interface: &str) -> Result<i32, SendError> {
    let error = |source| SendError::InterfaceIndex {
        interface: interface.to_owned(),
        source,
    };
    let index = nix::net::if_::if_nametoindex(interface).map_err(error)?;
    i32::try_from(index).map_err(|_| error(nix::Error::ERANGE))
}

/// The `sockaddr_ll` of the Ethernet broadcast address on interface `index`.
fn broadcast_link_address(index: i32) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of the sockaddr types of this platform, as view_as requires,
    // and it is smaller than sockaddr_storage.
    let link = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    link.sll_family = libc::AF_PACKET as u16;
    link.sll_protocol = ETHERTYPE_WOL.to_be();
    link.sll_ifindex = index;
    link.sll_halen = 6;
    link.sll_addr[..6].copy_from_slice(&MacAddr::BROADCAST.octets());
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the first `len` bytes of storage are the sockaddr_ll initialised just above
    // (zeroed, then its fields set).
    unsafe { SockAddr::new(storage, len) }
}

/// The thread waking the cluster; dropping the handle leaves it running.
pub struct WakerHandle {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl WakerHandle {
    /// Stops the waker (before its plan is finished) and waits for its thread.
    pub fn stop(self) {
        // The thread may have finished already and dropped its receiver: nothing to stop then.
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }

    /// True when the plan is finished (every host online or given up on) or it was stopped.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// How often the waker asks `is_online` between sends.
const ONLINE_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// Starts a thread that wakes every host of `macs` following `backoff`, logging every send,
/// until each is online (by `is_online`) or the deadline passes. `seed` fixes the jitter.
pub fn spawn_waker(
    macs: Vec<MacAddr>,
    backoff: Backoff,
    seed: u64,
    sender: Sender,
    is_online: impl Fn(MacAddr) -> bool + Send + 'static,
) -> io::Result<WakerHandle> {
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("pxen-wol".into())
        .spawn(move || {
            let mut plan = WakePlan::new(macs, backoff, seed);
            let start = Instant::now();
            loop {
                for action in plan.poll(start.elapsed(), &mut |mac| is_online(mac)) {
                    perform(&sender, action);
                }
                let Some(due) = plan.next_due() else {
                    log::info!("wake-on-lan: every host is online or given up on");
                    return;
                };
                let wait = due
                    .saturating_sub(start.elapsed())
                    .min(ONLINE_CHECK_INTERVAL);
                if stopped.recv_timeout(wait) != Err(mpsc::RecvTimeoutError::Timeout) {
                    log::info!("wake-on-lan: stopped");
                    return;
                }
            }
        })?;
    Ok(WakerHandle { stop, thread })
}

fn perform(sender: &Sender, action: Action) {
    match action {
        Action::Send { mac, attempt } => {
            let failures = sender.send(&MagicPacket::new(mac));
            log::info!("wake-on-lan: magic packet to {mac} (attempt {attempt}) by {}", sender.describe());
            for failure in failures {
                log::warn!("{failure}");
            }
        }
        Action::Online { mac, attempts } => {
            log::info!("wake-on-lan: {mac} is online after {attempts} magic packet(s)");
        }
        Action::GaveUp { mac, attempts } => log::warn!(
            "wake-on-lan: {mac} did not report online after {attempts} magic packet(s); giving up. \
             Check that Wake-on-LAN is enabled in its firmware and that its MAC is right in the configuration"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const TARGET: MacAddr = MacAddr::new([0x52, 0x54, 0, 0x12, 0x34, 0x56]);

    fn loopback_receiver() -> (UdpSocket, SenderConfig) {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let port = receiver.local_addr().unwrap().port();
        (
            receiver,
            SenderConfig {
                broadcast: Ipv4Addr::LOCALHOST,
                udp_ports: vec![port],
                interface: None,
            },
        )
    }

    #[test]
    fn sends_the_magic_packet_by_udp() {
        let (receiver, config) = loopback_receiver();
        let sender = Sender::open(config).unwrap();
        let failures = sender.send(&MagicPacket::new(TARGET));
        assert!(failures.is_empty(), "{failures:?}");
        let mut buffer = [0u8; 200];
        let (len, _) = receiver
            .recv_from(&mut buffer)
            .expect("the magic packet within 5 s");
        assert_eq!(
            MagicPacket::parse(&buffer[..len]),
            Ok(MagicPacket::new(TARGET))
        );
    }

    #[test]
    fn an_unknown_interface_is_named_in_the_error() {
        let config = SenderConfig {
            interface: Some("nosuchif0".into()),
            ..SenderConfig::default()
        };
        let error = Sender::open(config).err().expect("no such interface");
        assert!(error.to_string().contains("nosuchif0"), "{error}");
    }

    #[test]
    fn the_waker_sends_until_the_host_is_online_then_finishes() {
        let (receiver, config) = loopback_receiver();
        let sender = Sender::open(config).unwrap();
        let online = Arc::new(AtomicBool::new(false));
        let backoff = Backoff {
            first_interval: Duration::from_millis(20),
            jitter: 0.0,
            ..Backoff::default()
        };
        let flag = online.clone();
        let waker = spawn_waker(vec![TARGET], backoff, 1, sender, move |_| {
            flag.load(Ordering::SeqCst)
        })
        .unwrap();
        let mut buffer = [0u8; 200];
        for attempt in 1..=2 {
            let (len, _) = receiver
                .recv_from(&mut buffer)
                .unwrap_or_else(|e| panic!("magic packet {attempt} within 5 s: {e}"));
            assert_eq!(
                MagicPacket::parse(&buffer[..len]).map(|p| p.target),
                Ok(TARGET)
            );
        }
        online.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !waker.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the waker did not finish within 5 s of the host being online"
            );
            std::thread::yield_now();
        }
        waker.stop();
    }
}
