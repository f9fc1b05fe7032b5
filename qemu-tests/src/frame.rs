//! What an Ethernet frame on the virtual LAN is, in one line: the switch's log and the
//! observations tests assert on.
//!
//! Only what the cluster's boot traffic needs is recognised: ARP, IPv6, IPv4 with its UDP
//! ports, DHCP messages (type, and whether the client or server speaks PXE), proxyDHCP on
//! port 4011, TFTP, HTTP, and Wake-on-LAN magic packets (raw EtherType 0x0842 or in UDP).
//! Anything shorter or stranger is summarised as far as it goes, never rejected: the switch
//! forwards every frame, however malformed.

use std::fmt;
use std::net::Ipv4Addr;

use pxen::net::mac::MacAddr;

const ETHERNET_HEADER_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IP_PROTOCOL_TCP: u8 = 6;
const IP_PROTOCOL_UDP: u8 = 17;
/// BOOTP's fixed header, before the magic cookie and the options.
const BOOTP_FIXED_LEN: usize = 236;
const DHCP_MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const DHCP_OPTION_PAD: u8 = 0;
const DHCP_OPTION_END: u8 = 255;
const DHCP_OPTION_MESSAGE_TYPE: u8 = 53;
const DHCP_OPTION_VENDOR_CLASS: u8 = 60;

/// A DHCP message's type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpType {
    /// DHCPDISCOVER (1).
    Discover,
    /// DHCPOFFER (2).
    Offer,
    /// DHCPREQUEST (3).
    Request,
    /// DHCPDECLINE (4).
    Decline,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
    /// DHCPRELEASE (7).
    Release,
    /// DHCPINFORM (8).
    Inform,
    /// Any other value, or no option 53 (plain BOOTP).
    Other(u8),
}

impl DhcpType {
    fn from_code(code: u8) -> DhcpType {
        match code {
            1 => DhcpType::Discover,
            2 => DhcpType::Offer,
            3 => DhcpType::Request,
            4 => DhcpType::Decline,
            5 => DhcpType::Ack,
            6 => DhcpType::Nak,
            7 => DhcpType::Release,
            8 => DhcpType::Inform,
            other => DhcpType::Other(other),
        }
    }
}

/// The fields of a DHCP message the harness looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dhcp {
    /// Option 53.
    pub message_type: DhcpType,
    /// Whether option 60 (vendor class) starts with `PXEClient`: sent by PXE clients, and
    /// echoed by the servers that serve them (proxyDHCP); a plain DHCP server never sends it.
    pub pxe: bool,
    /// `yiaddr`: the address a server gives (0.0.0.0 from a proxyDHCP server).
    pub your_address: Ipv4Addr,
}

/// The application protocol of a UDP or TCP datagram, from its ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// DHCP on ports 67/68, with its message when it parses.
    Dhcp(Option<Dhcp>),
    /// proxyDHCP on port 4011, with its message when it parses.
    ProxyDhcp(Option<Dhcp>),
    /// A TFTP request to port 69 (read or write request; the transfer itself runs between
    /// ephemeral ports and shows as [`App::Other`]).
    TftpRequest,
    /// HTTP on port 80 or 8080.
    Http,
    /// None of the above.
    Other,
}

/// The transport of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// Another protocol number.
    Other(u8),
}

/// An IPv4 packet's addresses, ports and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Summary {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// UDP, TCP or other.
    pub transport: Transport,
    /// Source and destination ports (UDP and TCP only, when present).
    pub ports: Option<(u16, u16)>,
    /// What the ports say it is.
    pub app: App,
}

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// An ARP packet.
    Arp,
    /// An IPv6 packet (not looked into).
    Ipv6,
    /// An IPv4 packet, as far as it parses (`None`: a header too short or not version 4).
    Ipv4(Option<Ipv4Summary>),
    /// Any other EtherType.
    Other,
}

/// One frame, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSummary {
    /// The sender's MAC.
    pub src: MacAddr,
    /// The destination MAC.
    pub dst: MacAddr,
    /// The EtherType (after one 802.1Q tag, if any).
    pub ethertype: u16,
    /// The frame's length in bytes.
    pub len: usize,
    /// What it carries.
    pub payload: Payload,
    /// The target of the Wake-on-LAN magic packet it carries, if it carries one (raw
    /// EtherType 0x0842 or inside a UDP datagram).
    pub wake: Option<MacAddr>,
}

impl FrameSummary {
    /// Summarises `frame`; `None` when it is shorter than an Ethernet header.
    pub fn parse(frame: &[u8]) -> Option<FrameSummary> {
        let dst = MacAddr::from_slice(frame.get(0..6)?)?;
        let src = MacAddr::from_slice(frame.get(6..12)?)?;
        let (ethertype, body) = ethernet_payload(frame)?;
        let payload = match ethertype {
            ETHERTYPE_ARP => Payload::Arp,
            ETHERTYPE_IPV6 => Payload::Ipv6,
            ETHERTYPE_IPV4 => Payload::Ipv4(parse_ipv4(body)),
            _ => Payload::Other,
        };
        Some(FrameSummary {
            src,
            dst,
            ethertype,
            len: frame.len(),
            payload,
            wake: pxen::wol::wire::find_in_frame(frame),
        })
    }

    /// The DHCP message, on port 67/68 or 4011, if the frame carries one that parses.
    pub fn dhcp(&self) -> Option<Dhcp> {
        match self.ipv4()?.app {
            App::Dhcp(dhcp) | App::ProxyDhcp(dhcp) => dhcp,
            _ => None,
        }
    }

    /// The IPv4 summary, for IPv4 frames that parse.
    pub fn ipv4(&self) -> Option<&Ipv4Summary> {
        match &self.payload {
            Payload::Ipv4(Some(ip)) => Some(ip),
            _ => None,
        }
    }

    /// True for a boot file request: a TFTP request, or a TCP segment to an HTTP port.
    pub fn is_file_request(&self) -> bool {
        self.ipv4().is_some_and(|ip| match ip.app {
            App::TftpRequest => true,
            App::Http => ip.ports.is_some_and(|(_, dst)| is_http_port(dst)),
            _ => false,
        })
    }
}

/// The EtherType and payload of an Ethernet II frame, skipping one 802.1Q tag.
fn ethernet_payload(frame: &[u8]) -> Option<(u16, &[u8])> {
    let ethertype = read_u16(frame, 12)?;
    let rest = frame.get(ETHERNET_HEADER_LEN..)?;
    if ethertype == 0x8100 {
        Some((read_u16(rest, 2)?, rest.get(4..)?))
    } else {
        Some((ethertype, rest))
    }
}

fn parse_ipv4(ip: &[u8]) -> Option<Ipv4Summary> {
    let version_ihl = *ip.first()?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 || ip.len() < header_len {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let transport = match ip[9] {
        IP_PROTOCOL_UDP => Transport::Udp,
        IP_PROTOCOL_TCP => Transport::Tcp,
        other => Transport::Other(other),
    };
    // Later fragments carry no transport header. Ethernet pads short frames: trust the IP
    // total length over the frame's.
    let first_fragment = read_u16(ip, 6)? & 0x1fff == 0;
    let total_len = usize::from(read_u16(ip, 2)?).min(ip.len()).max(header_len);
    let datagram = &ip[header_len..total_len];
    let ports = match transport {
        Transport::Udp | Transport::Tcp if first_fragment => {
            Some((read_u16(datagram, 0)?, read_u16(datagram, 2)?))
        }
        _ => None,
    };
    let app = match (transport, ports) {
        (Transport::Udp, Some(ports)) => udp_app(ports, datagram.get(8..).unwrap_or_default()),
        (Transport::Tcp, Some((src, dst))) if is_http_port(src) || is_http_port(dst) => App::Http,
        _ => App::Other,
    };
    Some(Ipv4Summary {
        src,
        dst,
        transport,
        ports,
        app,
    })
}

fn udp_app((src, dst): (u16, u16), payload: &[u8]) -> App {
    let either = |port: u16| src == port || dst == port;
    if either(4011) {
        App::ProxyDhcp(parse_dhcp(payload))
    } else if either(67) || either(68) {
        App::Dhcp(parse_dhcp(payload))
    } else if dst == 69 {
        App::TftpRequest
    } else {
        App::Other
    }
}

fn is_http_port(port: u16) -> bool {
    port == 80 || port == 8080
}

/// The message type, PXE vendor class and `yiaddr` of a DHCP message.
pub fn parse_dhcp(bootp: &[u8]) -> Option<Dhcp> {
    let your = bootp.get(16..20)?;
    let your_address = Ipv4Addr::new(your[0], your[1], your[2], your[3]);
    if bootp.get(BOOTP_FIXED_LEN..BOOTP_FIXED_LEN + 4)? != DHCP_MAGIC_COOKIE {
        return None;
    }
    let mut message_type = DhcpType::Other(0);
    let mut pxe = false;
    let mut options = &bootp[BOOTP_FIXED_LEN + 4..];
    while let Some((&code, rest)) = options.split_first() {
        match code {
            DHCP_OPTION_PAD => {
                options = rest;
                continue;
            }
            DHCP_OPTION_END => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..usize::from(len))?;
        match code {
            DHCP_OPTION_MESSAGE_TYPE => {
                message_type = DhcpType::from_code(*value.first()?);
            }
            DHCP_OPTION_VENDOR_CLASS => pxe = value.starts_with(b"PXEClient"),
            _ => {}
        }
        options = &rest[usize::from(len)..];
    }
    Some(Dhcp {
        message_type,
        pxe,
        your_address,
    })
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let pair = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

impl fmt::Display for FrameSummary {
    /// `src > dst type details len`, e.g.
    /// `52:54:00:00:00:01 > ff:ff:ff:ff:ff:ff IPv4 0.0.0.0:68 > 255.255.255.255:67 DHCP DISCOVER PXE 342B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {} ", self.src, self.dst)?;
        match &self.payload {
            Payload::Arp => write!(f, "ARP")?,
            Payload::Ipv6 => write!(f, "IPv6")?,
            Payload::Ipv4(None) => write!(f, "IPv4 (malformed)")?,
            Payload::Ipv4(Some(ip)) => write_ipv4(f, ip)?,
            Payload::Other => write!(f, "type 0x{:04x}", self.ethertype)?,
        }
        if let Some(target) = self.wake {
            write!(f, " WAKE-ON-LAN for {target}")?;
        }
        write!(f, " {}B", self.len)
    }
}

fn write_ipv4(f: &mut fmt::Formatter<'_>, ip: &Ipv4Summary) -> fmt::Result {
    let protocol = match ip.transport {
        Transport::Udp => "UDP".to_string(),
        Transport::Tcp => "TCP".to_string(),
        Transport::Other(number) => format!("proto {number}"),
    };
    match ip.ports {
        Some((src, dst)) => write!(f, "IPv4 {protocol} {}:{src} > {}:{dst}", ip.src, ip.dst)?,
        None => write!(f, "IPv4 {protocol} {} > {}", ip.src, ip.dst)?,
    }
    match ip.app {
        App::Dhcp(dhcp) => write_dhcp(f, "DHCP", dhcp),
        App::ProxyDhcp(dhcp) => write_dhcp(f, "proxyDHCP", dhcp),
        App::TftpRequest => write!(f, " TFTP request"),
        App::Http => write!(f, " HTTP"),
        App::Other => Ok(()),
    }
}

fn write_dhcp(f: &mut fmt::Formatter<'_>, name: &str, dhcp: Option<Dhcp>) -> fmt::Result {
    let Some(dhcp) = dhcp else {
        return write!(f, " {name} (malformed)");
    };
    let kind = match dhcp.message_type {
        DhcpType::Discover => "DISCOVER".to_string(),
        DhcpType::Offer => "OFFER".to_string(),
        DhcpType::Request => "REQUEST".to_string(),
        DhcpType::Decline => "DECLINE".to_string(),
        DhcpType::Ack => "ACK".to_string(),
        DhcpType::Nak => "NAK".to_string(),
        DhcpType::Release => "RELEASE".to_string(),
        DhcpType::Inform => "INFORM".to_string(),
        DhcpType::Other(code) => format!("type {code}"),
    };
    write!(f, " {name} {kind}")?;
    if dhcp.pxe {
        write!(f, " PXE")?;
    }
    if !dhcp.your_address.is_unspecified() {
        write!(f, " yiaddr {}", dhcp.your_address)?;
    }
    Ok(())
}

/// Frames built by hand, for tests: what a PXE client or another machine would send.
pub mod build {
    use super::*;

    /// An Ethernet frame.
    pub fn ethernet(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&dst.octets());
        frame.extend_from_slice(&src.octets());
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// An IPv4/UDP frame a real stack accepts: the IPv4 header checksum is computed, the UDP
    /// checksum is zero (which IPv4 allows: "none").
    pub fn udp(
        (src_mac, src_ip, src_port): (MacAddr, Ipv4Addr, u16),
        (dst_mac, dst_ip, dst_port): (MacAddr, Ipv4Addr, u16),
        payload: &[u8],
    ) -> Vec<u8> {
        let udp_len = u16::try_from(8 + payload.len()).expect("test payloads are small");
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, IP_PROTOCOL_UDP, 0, 0];
        ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
        ip.extend_from_slice(&src_ip.octets());
        ip.extend_from_slice(&dst_ip.octets());
        let checksum = ipv4_header_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        ip.extend_from_slice(&src_port.to_be_bytes());
        ip.extend_from_slice(&dst_port.to_be_bytes());
        ip.extend_from_slice(&udp_len.to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        ethernet(dst_mac, src_mac, ETHERTYPE_IPV4, &ip)
    }

    /// The RFC 791 header checksum: the one's complement of the one's complement sum of the
    /// header's 16-bit words (its checksum field zero).
    pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
        let sum: u32 = header
            .chunks(2)
            .map(|word| u32::from(u16::from_be_bytes([word[0], *word.get(1).unwrap_or(&0)])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        !u16::try_from((folded & 0xffff) + (folded >> 16)).unwrap_or(u16::MAX)
    }

    /// A DHCP message of `message_type`, with option 60 `PXEClient` when `pxe`.
    pub fn dhcp(message_type: u8, pxe: bool, yiaddr: Ipv4Addr) -> Vec<u8> {
        let mut bootp = vec![0; BOOTP_FIXED_LEN];
        bootp[0] = if message_type == 2 || message_type == 5 {
            2
        } else {
            1
        };
        bootp[16..20].copy_from_slice(&yiaddr.octets());
        bootp.extend_from_slice(&DHCP_MAGIC_COOKIE);
        bootp.extend_from_slice(&[DHCP_OPTION_PAD, DHCP_OPTION_MESSAGE_TYPE, 1, message_type]);
        if pxe {
            let class = b"PXEClient:Arch:00000:UNDI:002001";
            bootp.push(DHCP_OPTION_VENDOR_CLASS);
            bootp.push(u8::try_from(class.len()).expect("short"));
            bootp.extend_from_slice(class);
        }
        bootp.push(DHCP_OPTION_END);
        bootp
    }

    /// A PXE client's whole DHCPDISCOVER frame, as a BIOS PXE ROM broadcasts it: Ethernet
    /// hardware address `client`, transaction `xid`, option 60 `PXEClient` (x86 BIOS).
    pub fn pxe_discover(client: MacAddr, xid: u32) -> Vec<u8> {
        let mut bootp = dhcp(1, true, Ipv4Addr::UNSPECIFIED);
        bootp[1] = 1; // htype: Ethernet
        bootp[2] = 6; // hlen
        bootp[4..8].copy_from_slice(&xid.to_be_bytes());
        bootp[10] = 0x80; // flags: broadcast the answer (the client has no address)
        bootp[28..34].copy_from_slice(&client.octets());
        udp(
            (client, Ipv4Addr::UNSPECIFIED, 68),
            (MacAddr::BROADCAST, Ipv4Addr::BROADCAST, 67),
            &bootp,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use pxen::wol::wire::{MagicPacket, ETHERTYPE_WOL};

    const CLIENT: MacAddr = MacAddr::new([0x52, 0x54, 0, 0, 0, 1]);
    const SERVER: MacAddr = MacAddr::new([0x52, 0x55, 10, 77, 0, 2]);
    const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const ALL: Ipv4Addr = Ipv4Addr::BROADCAST;

    fn summary(frame: &[u8]) -> FrameSummary {
        FrameSummary::parse(frame).expect("an Ethernet header")
    }

    #[test]
    fn ipv4_headers_carry_their_checksum() {
        // A worked example with a known checksum (192.168.0.1 to 192.168.0.199, UDP): 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&header), 0xb861);
        let frame = pxe_discover(CLIENT, 1);
        let ip = &frame[14..34];
        assert_eq!(
            ipv4_header_checksum(ip),
            0,
            "a header with its checksum sums to zero"
        );
    }

    #[test]
    fn a_pxe_discover_is_an_ethernet_pxe_client_broadcast() {
        let frame = pxe_discover(CLIENT, 7);
        let summary = summary(&frame);
        assert_eq!((summary.src, summary.dst), (CLIENT, MacAddr::BROADCAST));
        let dhcp = summary.dhcp().expect("a DHCP message");
        assert_eq!(dhcp.message_type, DhcpType::Discover);
        assert!(dhcp.pxe);
        let bootp = &frame[14 + 20 + 8..];
        assert_eq!((bootp[1], bootp[2]), (1, 6));
        assert_eq!(&bootp[28..34], &CLIENT.octets());
        let parsed = pxen::serve::proxydhcp::wire::parse(bootp).expect("a DHCP message");
        assert_eq!(parsed.xid(), 7);
    }

    #[test]
    fn a_pxe_discover_is_dhcp_with_the_pxe_class() {
        let frame = udp(
            (CLIENT, ANY, 68),
            (MacAddr::BROADCAST, ALL, 67),
            &dhcp(1, true, ANY),
        );
        let s = summary(&frame);
        assert_eq!(
            s.dhcp(),
            Some(Dhcp {
                message_type: DhcpType::Discover,
                pxe: true,
                your_address: ANY
            })
        );
        assert!(matches!(
            s.ipv4().map(|ip| ip.app),
            Some(App::Dhcp(Some(_)))
        ));
        assert_eq!(
            s.to_string(),
            format!(
                "52:54:00:00:00:01 > ff:ff:ff:ff:ff:ff IPv4 UDP 0.0.0.0:68 > 255.255.255.255:67 DHCP DISCOVER PXE {}B",
                frame.len()
            )
        );
    }

    #[test]
    fn an_offer_shows_the_address_given() {
        let given = Ipv4Addr::new(10, 77, 0, 50);
        let frame = udp(
            (SERVER, Ipv4Addr::new(10, 77, 0, 2), 67),
            (MacAddr::BROADCAST, ALL, 68),
            &dhcp(2, false, given),
        );
        let s = summary(&frame);
        let dhcp = s.dhcp().expect("a DHCP message");
        assert_eq!(dhcp.message_type, DhcpType::Offer);
        assert!(!dhcp.pxe);
        assert!(s.to_string().contains("DHCP OFFER yiaddr 10.77.0.50"));
    }

    #[test]
    fn port_4011_is_proxy_dhcp_69_tftp_80_http() {
        let from = (CLIENT, Ipv4Addr::new(10, 77, 0, 50), 1000);
        let to = |port| (SERVER, Ipv4Addr::new(10, 77, 0, 10), port);
        let proxy = summary(&udp(from, to(4011), &dhcp(3, true, ANY)));
        assert!(matches!(
            proxy.ipv4().map(|ip| ip.app),
            Some(App::ProxyDhcp(Some(_)))
        ));
        assert!(proxy.to_string().contains("proxyDHCP REQUEST PXE"));
        let tftp = summary(&udp(from, to(69), b"\0\x01pxelinux.0\0octet\0"));
        assert!(tftp.is_file_request());
        assert!(tftp.to_string().contains("TFTP request"));
        let other = summary(&udp(from, to(5000), b"x"));
        assert_eq!(other.ipv4().map(|ip| ip.app), Some(App::Other));
        assert!(!other.is_file_request());
    }

    #[test]
    fn tcp_to_port_80_is_an_http_file_request_and_the_answer_is_not() {
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, IP_PROTOCOL_TCP, 0, 0];
        ip.extend_from_slice(&[10, 77, 0, 50, 10, 77, 0, 10]);
        ip.extend_from_slice(&[0x04, 0x00, 0, 80]);
        ip.resize(40, 0);
        let request = summary(&ethernet(SERVER, CLIENT, ETHERTYPE_IPV4, &ip));
        assert!(request.is_file_request());
        ip[20..24].copy_from_slice(&[0, 80, 0x04, 0x00]);
        let answer = summary(&ethernet(CLIENT, SERVER, ETHERTYPE_IPV4, &ip));
        assert_eq!(answer.ipv4().map(|ip| ip.app), Some(App::Http));
        assert!(!answer.is_file_request());
    }

    #[test]
    fn magic_packets_are_found_raw_and_in_udp() {
        let target = MacAddr::new([0x52, 0x54, 0, 0xaa, 0, 7]);
        let magic = MagicPacket::new(target).to_bytes();
        let raw = summary(&ethernet(MacAddr::BROADCAST, CLIENT, ETHERTYPE_WOL, &magic));
        assert_eq!(raw.wake, Some(target));
        assert!(raw
            .to_string()
            .contains("WAKE-ON-LAN for 52:54:00:aa:00:07"));
        let in_udp = summary(&udp(
            (CLIENT, ANY, 40000),
            (MacAddr::BROADCAST, ALL, 9),
            &magic,
        ));
        assert_eq!(in_udp.wake, Some(target));
    }

    #[test]
    fn short_and_odd_frames_are_summarised_without_failing() {
        assert_eq!(FrameSummary::parse(&[0; 13]), None);
        let arp = summary(&ethernet(
            MacAddr::BROADCAST,
            CLIENT,
            ETHERTYPE_ARP,
            &[0; 28],
        ));
        assert_eq!(arp.payload, Payload::Arp);
        let v6 = summary(&ethernet(MacAddr::BROADCAST, CLIENT, ETHERTYPE_IPV6, &[]));
        assert_eq!(v6.payload, Payload::Ipv6);
        let bad_ip = summary(&ethernet(SERVER, CLIENT, ETHERTYPE_IPV4, &[0x45, 0, 0]));
        assert_eq!(bad_ip.payload, Payload::Ipv4(None));
        assert!(bad_ip.to_string().contains("IPv4 (malformed)"));
        let odd = summary(&ethernet(SERVER, CLIENT, 0x1234, &[1, 2]));
        assert!(odd.to_string().contains("type 0x1234"));
        // A UDP header cut off: the ports are unknown, nothing panics.
        let mut cut = udp((CLIENT, ANY, 68), (SERVER, ALL, 67), &[]);
        cut.truncate(ETHERNET_HEADER_LEN + 22);
        assert_eq!(summary(&cut).ipv4().and_then(|ip| ip.ports), None);
    }

    #[test]
    fn malformed_dhcp_options_are_not_a_message() {
        let mut truncated = dhcp(1, true, ANY);
        // Option 60 claims more bytes than remain.
        truncated.truncate(BOOTP_FIXED_LEN + 4 + 4 + 5);
        assert_eq!(parse_dhcp(&truncated), None);
        let mut no_cookie = dhcp(1, false, ANY);
        no_cookie[BOOTP_FIXED_LEN] = 0;
        assert_eq!(parse_dhcp(&no_cookie), None);
        let frame = udp((CLIENT, ANY, 68), (SERVER, ALL, 67), &no_cookie);
        assert!(summary(&frame).to_string().contains("DHCP (malformed)"));
    }

    #[test]
    fn random_frames_never_panic() {
        let mut rng = pxen::rand::XorShift::new(0x9e37_79b9_7f4a_7c15);
        let valid = udp((CLIENT, ANY, 68), (SERVER, ALL, 67), &dhcp(1, true, ANY));
        for round in 0..5000 {
            let mut frame = valid.clone();
            for _ in 0..(round % 8) {
                let state = rng.next_u64();
                let index = (state as usize) % frame.len();
                frame[index] = (state >> 32) as u8;
            }
            frame.truncate(rng.below(valid.len() + 1));
            if let Some(s) = FrameSummary::parse(&frame) {
                assert_eq!(s.len, frame.len());
                assert!(!s.to_string().is_empty());
            }
        }
    }
}
