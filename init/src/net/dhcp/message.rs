//! The pure part of the DHCP client: the messages it sends, which replies it accepts, and
//! the lease read from an ACK.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};

use crate::net::mac::MacAddr;

/// What the client tells servers about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The MAC of the interface: chaddr, and the client identifier (option 61).
    pub mac: MacAddr,
    /// The host name offered to the server (option 12), which home routers show and may
    /// register in their DNS.
    pub hostname: Option<String>,
}

/// An address offered by a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The address offered (yiaddr).
    pub address: Ipv4Addr,
    /// The server that offered it (option 54), to which the REQUEST is addressed.
    pub server: Ipv4Addr,
}

/// The network configuration granted by a DHCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address granted (yiaddr).
    pub address: Ipv4Addr,
    /// The length of the subnet's prefix, from the subnet mask (option 1).
    pub prefix_len: u8,
    /// The default gateway: the first router of option 3, if any.
    pub router: Option<Ipv4Addr>,
    /// The DNS servers (option 6), in the server's order.
    pub dns: Vec<Ipv4Addr>,
    /// The server that granted the lease (option 54).
    pub server: Ipv4Addr,
    /// How long the lease lasts (option 51); `None` when infinite or not said.
    pub lease_time: Option<Duration>,
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} from {}",
            self.address, self.prefix_len, self.server
        )?;
        if let Some(router) = self.router {
            write!(f, ", router {router}")?;
        }
        if !self.dns.is_empty() {
            let dns: Vec<String> = self.dns.iter().map(ToString::to_string).collect();
            write!(f, ", dns {}", dns.join(" "))?;
        }
        match self.lease_time {
            Some(time) => write!(f, ", for {} s", time.as_secs()),
            None => write!(f, ", forever"),
        }
    }
}

/// A reply the client can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A DHCPOFFER of an address.
    Offer(Offer),
    /// A DHCPACK granting a lease.
    Ack(Lease),
    /// A DHCPNAK: the server refuses the REQUEST; start over with a DISCOVER.
    Nak {
        /// The server that refused.
        server: Ipv4Addr,
    },
}

/// Why a received message is not for this client, or not usable. None of these is an error:
/// other clients and PXE proxies share the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// A request (another client's broadcast), not a reply.
    #[error("a BOOTREQUEST, not a reply")]
    NotAReply,
    /// A reply to another transaction.
    #[error("a reply to transaction {xid:#010x}, not ours")]
    OtherTransaction {
        /// Its transaction ID.
        xid: u32,
    },
    /// A reply for another hardware address.
    #[error("a reply for {chaddr:02x?}, not our MAC")]
    OtherClient {
        /// Its chaddr.
        chaddr: Vec<u8>,
    },
    /// A DHCP message of a type a client does not expect.
    #[error("a DHCP message of type {kind}, not OFFER, ACK or NAK")]
    UnexpectedType {
        /// Its type, or "none".
        kind: String,
    },
    /// An OFFER or ACK without an address: what a PXE proxyDHCP server sends.
    #[error("a {kind} without an address (a PXE proxyDHCP reply)")]
    NoAddress {
        /// OFFER or ACK.
        kind: &'static str,
    },
    /// A reply without the server identifier (option 54) that the REQUEST must name.
    #[error("a {kind} without a server identifier (option 54)")]
    NoServerIdentifier {
        /// OFFER, ACK or NAK.
        kind: &'static str,
    },
    /// An ACK without a subnet mask (option 1): the address cannot be configured.
    #[error("an ACK of {address} without a subnet mask (option 1)")]
    NoSubnetMask {
        /// The address granted.
        address: Ipv4Addr,
    },
    /// An ACK whose subnet mask is not a prefix.
    #[error("an ACK of {address} with the non-contiguous subnet mask {mask}")]
    BadSubnetMask {
        /// The address granted.
        address: Ipv4Addr,
        /// The mask.
        mask: Ipv4Addr,
    },
}

/// The options the client asks servers for (option 55).
const REQUESTED_OPTIONS: [OptionCode; 5] = [
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::AddressLeaseTime,
    OptionCode::ServerIdentifier,
];

/// The DHCPDISCOVER of transaction `xid`, `secs` seconds after the client started.
pub fn discover(identity: &Identity, xid: u32, secs: u16) -> Message {
    let mut message = request_base(identity, xid, secs);
    message
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    message
}

/// The DHCPREQUEST accepting `offer`, in the same transaction as the DISCOVER.
pub fn request(identity: &Identity, xid: u32, secs: u16, offer: &Offer) -> Message {
    let mut message = request_base(identity, xid, secs);
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Request));
    opts.insert(DhcpOption::RequestedIpAddress(offer.address));
    opts.insert(DhcpOption::ServerIdentifier(offer.server));
    message
}

/// What DISCOVER and REQUEST share.
fn request_base(identity: &Identity, xid: u32, secs: u16) -> Message {
    let mac = identity.mac.octets();
    let mut message = Message::default();
    message
        .set_opcode(Opcode::BootRequest)
        .set_xid(xid)
        .set_secs(secs)
        // Until the address is configured the kernel drops unicast replies to it: ask the
        // server to broadcast (RFC 2131 §4.1), so a plain UDP socket receives them.
        .set_flags(Flags::default().set_broadcast())
        .set_chaddr(&mac);
    let opts = message.opts_mut();
    // Hardware type 1 (Ethernet) and the MAC, as RFC 2132 §9.14 suggests.
    let mut client_id = vec![1];
    client_id.extend_from_slice(&mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    if let Some(hostname) = identity.hostname.as_ref().filter(|name| !name.is_empty()) {
        opts.insert(DhcpOption::Hostname(hostname.clone()));
    }
    opts.insert(DhcpOption::ParameterRequestList(REQUESTED_OPTIONS.to_vec()));
    message
}

/// What `message` means to the client of transaction `xid` on the card `mac`.
pub fn classify(message: &Message, xid: u32, mac: MacAddr) -> Result<Reply, Ignored> {
    if message.opcode() != Opcode::BootReply {
        return Err(Ignored::NotAReply);
    }
    if message.xid() != xid {
        return Err(Ignored::OtherTransaction { xid: message.xid() });
    }
    if MacAddr::from_slice(message.chaddr()) != Some(mac) {
        return Err(Ignored::OtherClient {
            chaddr: message.chaddr().to_vec(),
        });
    }
    let server = |kind| server_identifier(message).ok_or(Ignored::NoServerIdentifier { kind });
    match message.opts().msg_type() {
        Some(MessageType::Offer) => {
            let address = assigned_address(message, "OFFER")?;
            Ok(Reply::Offer(Offer {
                address,
                server: server("OFFER")?,
            }))
        }
        Some(MessageType::Ack) => {
            let address = assigned_address(message, "ACK")?;
            let server = server("ACK")?;
            lease_from_ack(message, address, server).map(Reply::Ack)
        }
        Some(MessageType::Nak) => Ok(Reply::Nak {
            server: server("NAK")?,
        }),
        other => Err(Ignored::UnexpectedType {
            kind: other.map_or_else(|| "none".to_owned(), |kind| format!("{kind:?}")),
        }),
    }
}

fn assigned_address(message: &Message, kind: &'static str) -> Result<Ipv4Addr, Ignored> {
    match message.yiaddr() {
        Ipv4Addr::UNSPECIFIED => Err(Ignored::NoAddress { kind }),
        address => Ok(address),
    }
}

fn server_identifier(message: &Message) -> Option<Ipv4Addr> {
    match message.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(server)) => Some(*server),
        _ => None,
    }
}

/// The lease of an ACK granting `address`, from `server`.
fn lease_from_ack(
    message: &Message,
    address: Ipv4Addr,
    server: Ipv4Addr,
) -> Result<Lease, Ignored> {
    let opts = message.opts();
    let mask = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => *mask,
        _ => return Err(Ignored::NoSubnetMask { address }),
    };
    let prefix_len = prefix_len(mask).ok_or(Ignored::BadSubnetMask { address, mask })?;
    let router = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(routers)) => routers.first().copied(),
        _ => None,
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(servers)) => servers.clone(),
        _ => Vec::new(),
    };
    let lease_time = match opts.get(OptionCode::AddressLeaseTime) {
        // 0xffffffff means infinity (RFC 2132 §9.2).
        Some(DhcpOption::AddressLeaseTime(u32::MAX)) | None => None,
        Some(DhcpOption::AddressLeaseTime(seconds)) => Some(Duration::from_secs((*seconds).into())),
        Some(_) => None,
    };
    Ok(Lease {
        address,
        prefix_len,
        router,
        dns,
        server,
        lease_time,
    })
}

/// The prefix length of a subnet mask, or `None` if its one bits are not contiguous.
pub fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    // leading_ones is at most 32: it fits in a u8.
    (ones + bits.trailing_zeros() >= 32).then_some(ones as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::proxydhcp::wire;

    const MAC: MacAddr = MacAddr::new([0x52, 0x54, 0, 0, 0, 1]);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
    const XID: u32 = 0xdead_beef;

    fn identity() -> Identity {
        Identity {
            mac: MAC,
            hostname: Some("pxen-host0".into()),
        }
    }

    /// A server's reply to our transaction, as it arrives on the wire.
    fn reply(kind: MessageType, yiaddr: Ipv4Addr, options: Vec<DhcpOption>) -> Message {
        let mut message = Message::default();
        message
            .set_opcode(Opcode::BootReply)
            .set_xid(XID)
            .set_yiaddr(yiaddr)
            .set_chaddr(&MAC.octets());
        message.opts_mut().insert(DhcpOption::MessageType(kind));
        for option in options {
            message.opts_mut().insert(option);
        }
        // Through the bytes and the guarded parser, as the client does.
        wire::parse_keeping(&wire::emit(&message).unwrap(), &wire::CLIENT_OPTIONS).unwrap()
    }

    fn ack_options() -> Vec<DhcpOption> {
        vec![
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![SERVER, Ipv4Addr::new(10, 0, 0, 2)]),
            DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 0, 3)]),
            DhcpOption::AddressLeaseTime(3600),
        ]
    }

    #[test]
    fn discover_asks_for_broadcast_and_identifies_the_client() {
        let message = discover(&identity(), XID, 3);
        let bytes = wire::emit(&message).unwrap();
        let parsed = <Message as dhcproto::Decodable>::from_bytes(&bytes).unwrap();
        assert_eq!(parsed.opcode(), Opcode::BootRequest);
        assert_eq!((parsed.xid(), parsed.secs()), (XID, 3));
        assert!(parsed.flags().broadcast());
        assert_eq!(parsed.chaddr(), MAC.octets());
        assert_eq!(parsed.ciaddr(), Ipv4Addr::UNSPECIFIED);
        let opts = parsed.opts();
        assert_eq!(opts.msg_type(), Some(MessageType::Discover));
        assert_eq!(
            opts.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![
                1, 0x52, 0x54, 0, 0, 0, 1
            ]))
        );
        assert_eq!(
            opts.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("pxen-host0".into()))
        );
        assert_eq!(
            opts.get(OptionCode::ParameterRequestList),
            Some(&DhcpOption::ParameterRequestList(
                REQUESTED_OPTIONS.to_vec()
            ))
        );
        assert!(!opts.contains(OptionCode::RequestedIpAddress));
    }

    #[test]
    fn request_names_the_offer_and_an_empty_hostname_is_left_out() {
        let offer = Offer {
            address: ADDRESS,
            server: SERVER,
        };
        let nameless = Identity {
            mac: MAC,
            hostname: Some(String::new()),
        };
        let message = request(&nameless, XID, 0, &offer);
        let opts = message.opts();
        assert_eq!(opts.msg_type(), Some(MessageType::Request));
        assert_eq!(
            opts.get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(ADDRESS))
        );
        assert_eq!(
            opts.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert!(!opts.contains(OptionCode::Hostname));
        assert_eq!(message.xid(), XID);
        assert!(message.flags().broadcast());
    }

    #[test]
    fn an_offer_from_our_transaction_is_accepted() {
        let message = reply(
            MessageType::Offer,
            ADDRESS,
            vec![DhcpOption::ServerIdentifier(SERVER)],
        );
        assert_eq!(
            classify(&message, XID, MAC),
            Ok(Reply::Offer(Offer {
                address: ADDRESS,
                server: SERVER
            }))
        );
    }

    #[test]
    fn foreign_proxy_and_incomplete_replies_are_ignored_with_the_reason() {
        let offer = |yiaddr, options| reply(MessageType::Offer, yiaddr, options);
        let with_server = || vec![DhcpOption::ServerIdentifier(SERVER)];
        let mut other_xid = offer(ADDRESS, with_server());
        other_xid.set_xid(1);
        let mut other_mac = offer(ADDRESS, with_server());
        other_mac.set_chaddr(&[0x52, 0x54, 0, 0, 0, 2]);
        let mut not_a_reply = offer(ADDRESS, with_server());
        not_a_reply.set_opcode(Opcode::BootRequest);
        let cases = [
            (
                "another transaction",
                other_xid,
                Ignored::OtherTransaction { xid: 1 },
            ),
            (
                "another client",
                other_mac,
                Ignored::OtherClient {
                    chaddr: vec![0x52, 0x54, 0, 0, 0, 2],
                },
            ),
            ("a request", not_a_reply, Ignored::NotAReply),
            (
                "a PXE proxy offer",
                offer(Ipv4Addr::UNSPECIFIED, with_server()),
                Ignored::NoAddress { kind: "OFFER" },
            ),
            (
                "no server identifier",
                offer(ADDRESS, vec![]),
                Ignored::NoServerIdentifier { kind: "OFFER" },
            ),
            (
                "an ACK without mask",
                reply(MessageType::Ack, ADDRESS, with_server()),
                Ignored::NoSubnetMask { address: ADDRESS },
            ),
            (
                "an ACK with a holey mask",
                reply(
                    MessageType::Ack,
                    ADDRESS,
                    vec![
                        DhcpOption::ServerIdentifier(SERVER),
                        DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)),
                    ],
                ),
                Ignored::BadSubnetMask {
                    address: ADDRESS,
                    mask: Ipv4Addr::new(255, 0, 255, 0),
                },
            ),
            (
                "a DHCPINFORM",
                reply(MessageType::Inform, ADDRESS, with_server()),
                Ignored::UnexpectedType {
                    kind: "Inform".into(),
                },
            ),
        ];
        for (name, message, expected) in cases {
            assert_eq!(classify(&message, XID, MAC), Err(expected), "{name}");
        }
    }

    #[test]
    fn an_ack_gives_the_whole_lease() {
        let message = reply(MessageType::Ack, ADDRESS, ack_options());
        let Ok(Reply::Ack(lease)) = classify(&message, XID, MAC) else {
            panic!("not an ACK: {:?}", classify(&message, XID, MAC));
        };
        assert_eq!(
            lease,
            Lease {
                address: ADDRESS,
                prefix_len: 24,
                router: Some(SERVER),
                dns: vec![Ipv4Addr::new(10, 0, 0, 3)],
                server: SERVER,
                lease_time: Some(Duration::from_secs(3600)),
            }
        );
        assert_eq!(
            lease.to_string(),
            "10.0.0.50/24 from 10.0.0.1, router 10.0.0.1, dns 10.0.0.3, for 3600 s"
        );
    }

    #[test]
    fn an_ack_without_router_and_with_infinite_time_is_a_lease_too() {
        let options = vec![
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 0, 0)),
            DhcpOption::AddressLeaseTime(u32::MAX),
        ];
        let message = reply(MessageType::Ack, ADDRESS, options);
        let Ok(Reply::Ack(lease)) = classify(&message, XID, MAC) else {
            panic!("not an ACK");
        };
        assert_eq!(
            (lease.prefix_len, lease.router, lease.lease_time),
            (16, None, None)
        );
        assert!(lease.dns.is_empty());
        assert_eq!(lease.to_string(), "10.0.0.50/16 from 10.0.0.1, forever");
    }

    #[test]
    fn a_nak_names_its_server() {
        let message = reply(
            MessageType::Nak,
            Ipv4Addr::UNSPECIFIED,
            vec![DhcpOption::ServerIdentifier(SERVER)],
        );
        assert_eq!(
            classify(&message, XID, MAC),
            Ok(Reply::Nak { server: SERVER })
        );
    }

    #[test]
    fn prefix_lengths_of_masks() {
        let cases = [
            ([0, 0, 0, 0], Some(0)),
            ([255, 0, 0, 0], Some(8)),
            ([255, 255, 255, 128], Some(25)),
            ([255, 255, 255, 255], Some(32)),
            ([255, 255, 0, 255], None),
            ([0, 0, 0, 255], None),
        ];
        for (mask, expected) in cases {
            assert_eq!(prefix_len(Ipv4Addr::from(mask)), expected, "{mask:?}");
        }
    }
}
