//! DHCP/BOOTP messages on the wire, checked before `dhcproto` sees them.
//!
//! `dhcproto` is not hardened against hostile input, and PID 1 must not panic on a packet
//! from the LAN. Found by the randomized tests below: a message whose hardware address length
//! (`hlen`) is above 16 decodes fine and then `Message::chaddr` panics; options of unexpected
//! lengths trip `debug_assert!`s in its option decoder (Rapid Commit, Client Network
//! Interface, …), and a classless static route with a prefix above 32 an `unwrap()`. So
//! [`Packet`] checks the fixed header first (smoltcp-style checked view), and [`parse`] walks
//! the options itself and hands `dhcproto` only the few the proxy reads ([`KEPT_OPTIONS`]),
//! each with a length checked here. [`emit`] pads replies to the 300-byte BOOTP minimum that some PXE ROMs and
//! relay agents insist on (RFC 1542 §2.1; dnsmasq does the same).

use dhcproto::v4::Message;
use dhcproto::{Decodable, Encodable};

/// The length of the fixed BOOTP header, up to the options.
pub const HEADER_LEN: usize = 236;
/// The DHCP magic cookie that starts the options (RFC 2131 §3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The shortest DHCP message: the header and the magic cookie.
pub const MIN_LEN: usize = HEADER_LEN + MAGIC_COOKIE.len();
/// Replies are padded to at least this length.
pub const MIN_REPLY_LEN: usize = 300;
/// The options [`parse`] keeps: requested IP address (50, which tells the status board the
/// address a PXE client takes from the LAN's DHCP server), message type (53), server
/// identifier (54), vendor class (60), user class (77), client architecture (93), client
/// machine UUID (97) and iPXE's encapsulated options (175).
pub const KEPT_OPTIONS: [u8; 8] = [50, 53, 54, 60, 77, 93, 97, 175];
/// The options a DHCP client reads in an OFFER or ACK ([`parse_keeping`]): subnet mask (1),
/// router (3), DNS servers (6), lease time (51), message type (53) and server identifier (54).
pub const CLIENT_OPTIONS: [u8; 6] = [1, 3, 6, 51, 53, 54];
const OPTION_PAD: u8 = 0;
const OPTION_END: u8 = 255;

mod field {
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const XID: usize = 4;
    pub const CHADDR: usize = 28;
    pub const MAGIC: usize = 236;
}

/// Why bytes are not a DHCP message we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than the fixed header and magic cookie.
    #[error(
        "DHCP message of {len} bytes: shorter than the {MIN_LEN}-byte header and magic cookie"
    )]
    Truncated {
        /// The length received.
        len: usize,
    },
    /// The op field is neither BOOTREQUEST (1) nor BOOTREPLY (2).
    #[error("DHCP message with op {op}: neither BOOTREQUEST (1) nor BOOTREPLY (2)")]
    BadOpcode {
        /// The op field.
        op: u8,
    },
    /// The hardware address length does not fit the 16-byte chaddr field.
    #[error("DHCP message with hardware address length {hlen}: more than the 16 bytes of chaddr")]
    BadHardwareLength {
        /// The hlen field.
        hlen: u8,
    },
    /// No DHCP magic cookie: a plain BOOTP message, or not DHCP at all.
    #[error("DHCP message without the magic cookie 99.130.83.99 (found {found:?}): plain BOOTP or not DHCP")]
    BadMagic {
        /// The four bytes found instead.
        found: [u8; 4],
    },
    /// `dhcproto` refused the checked bytes.
    #[error("DHCP message (xid {xid:#010x}) does not decode: {reason}")]
    Decode {
        /// The transaction ID, to find the exchange in a capture.
        xid: u32,
        /// `dhcproto`'s explanation.
        reason: String,
    },
    /// `dhcproto` could not encode a message.
    #[error("DHCP reply (xid {xid:#010x}) does not encode: {reason}")]
    Encode {
        /// The transaction ID.
        xid: u32,
        /// `dhcproto`'s explanation.
        reason: String,
    },
}

/// A checked view over the fixed header of a DHCP message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it. The accessors then panic on short buffers; use
    /// [`Packet::new_checked`] on anything received.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// Checks the length, op, hardware address length and magic cookie.
    pub fn check(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < MIN_LEN {
            return Err(Error::Truncated { len });
        }
        if !matches!(self.op(), 1 | 2) {
            return Err(Error::BadOpcode { op: self.op() });
        }
        if usize::from(self.hlen()) > 16 {
            return Err(Error::BadHardwareLength { hlen: self.hlen() });
        }
        if self.magic() != MAGIC_COOKIE {
            return Err(Error::BadMagic {
                found: self.magic(),
            });
        }
        Ok(())
    }

    /// The op field: 1 BOOTREQUEST, 2 BOOTREPLY.
    pub fn op(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    /// The hardware type (1 for Ethernet).
    pub fn htype(&self) -> u8 {
        self.buffer.as_ref()[field::HTYPE]
    }

    /// The hardware address length (6 for Ethernet).
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The transaction ID chosen by the client.
    pub fn xid(&self) -> u32 {
        let bytes = &self.buffer.as_ref()[field::XID..field::XID + 4];
        u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    /// The client hardware address, `hlen` bytes of the chaddr field.
    pub fn chaddr(&self) -> &[u8] {
        let hlen = usize::from(self.hlen()).min(16);
        &self.buffer.as_ref()[field::CHADDR..field::CHADDR + hlen]
    }

    /// The four bytes where the magic cookie belongs.
    pub fn magic(&self) -> [u8; 4] {
        let bytes = &self.buffer.as_ref()[field::MAGIC..field::MAGIC + 4];
        [bytes[0], bytes[1], bytes[2], bytes[3]]
    }
}

/// Decodes a received datagram, checking first what `dhcproto` would trust.
///
/// The message returned holds only the [`KEPT_OPTIONS`] (the first occurrence of each, when
/// its length is right); other options, malformed ones and anything after a truncated
/// option are dropped, as a DHCP server ignores what it does not understand.
pub fn parse(bytes: &[u8]) -> Result<Message, Error> {
    parse_keeping(bytes, &KEPT_OPTIONS)
}

/// Like [`parse`], keeping the options of `kept` instead of [`KEPT_OPTIONS`]. Codes whose
/// length this module does not know how to check (see [`KEPT_OPTIONS`] and
/// [`CLIENT_OPTIONS`]) are always dropped.
pub fn parse_keeping(bytes: &[u8], kept: &[u8]) -> Result<Message, Error> {
    let packet = Packet::new_checked(bytes)?;
    let sanitized = keep_known_options(bytes, kept);
    Message::from_bytes(&sanitized).map_err(|e| Error::Decode {
        xid: packet.xid(),
        reason: e.to_string(),
    })
}

/// The header of a checked message followed by its kept options and END.
fn keep_known_options(bytes: &[u8], kept: &[u8]) -> Vec<u8> {
    let mut out = bytes[..MIN_LEN].to_vec();
    let mut seen = Vec::new();
    let mut rest = &bytes[MIN_LEN..];
    while let Some((&code, after_code)) = rest.split_first() {
        if code == OPTION_PAD {
            rest = after_code;
            continue;
        }
        let Some((&len, after_len)) = after_code.split_first() else {
            break;
        };
        let Some(value) = after_len.get(..usize::from(len)) else {
            break;
        };
        if code == OPTION_END {
            break;
        }
        if kept.contains(&code) && has_valid_length(code, value.len()) && !seen.contains(&code) {
            seen.push(code);
            out.extend_from_slice(&[code, len]);
            out.extend_from_slice(value);
        }
        rest = &after_len[usize::from(len)..];
    }
    out.push(OPTION_END);
    out
}

/// Whether option `code` is kept, with a value of `len` bytes.
fn has_valid_length(code: u8, len: usize) -> bool {
    match code {
        // One IPv4 address, or a 32-bit number (dhcproto reads 51 as 4 bytes whatever the length).
        1 | 50 | 51 | 54 => len == 4,
        // A list of IPv4 addresses.
        3 | 6 => len >= 4 && len % 4 == 0,
        53 => len == 1,
        // A list of 16-bit architecture types (RFC 4578 §2.1).
        93 => len >= 2 && len % 2 == 0,
        // dhcproto writes nothing for an empty value; keeping one would not round-trip.
        60 | 77 | 97 | 175 => len > 0,
        _ => false,
    }
}

/// Encodes a reply, padded with zero (PAD) bytes to [`MIN_REPLY_LEN`].
pub fn emit(message: &Message) -> Result<Vec<u8>, Error> {
    let mut bytes = message.to_vec().map_err(|e| Error::Encode {
        xid: message.xid(),
        reason: e.to_string(),
    })?;
    if bytes.len() < MIN_REPLY_LEN {
        bytes.resize(MIN_REPLY_LEN, 0);
    }
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rand::XorShift;
    use dhcproto::v4::{DhcpOption, MessageType, Opcode};

    fn discover_bytes() -> Vec<u8> {
        let mut message = Message::default();
        message
            .set_xid(0x1234_5678)
            .set_chaddr(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        message
            .opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Discover));
        message.opts_mut().insert(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ));
        message.to_vec().unwrap()
    }

    #[test]
    fn parses_a_valid_discover() {
        let message = parse(&discover_bytes()).unwrap();
        assert_eq!(message.opcode(), Opcode::BootRequest);
        assert_eq!(message.xid(), 0x1234_5678);
        assert_eq!(message.chaddr(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(message.opts().msg_type(), Some(MessageType::Discover));
    }

    #[test]
    fn malformed_headers_get_the_exact_error() {
        let good = discover_bytes();
        let with = |at: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[at] = value;
            bytes
        };
        let cases: Vec<(&str, Vec<u8>, Error)> = vec![
            ("empty", vec![], Error::Truncated { len: 0 }),
            (
                "header only",
                good[..239].to_vec(),
                Error::Truncated { len: 239 },
            ),
            ("op 0", with(0, 0), Error::BadOpcode { op: 0 }),
            ("op 3", with(0, 3), Error::BadOpcode { op: 3 }),
            // This one would make dhcproto's Message::chaddr panic.
            (
                "hlen 17",
                with(2, 17),
                Error::BadHardwareLength { hlen: 17 },
            ),
            (
                "hlen 255",
                with(2, 255),
                Error::BadHardwareLength { hlen: 255 },
            ),
            (
                "plain BOOTP",
                with(236, 0),
                Error::BadMagic {
                    found: [0, 130, 83, 99],
                },
            ),
        ];
        for (name, bytes, expected) in cases {
            assert_eq!(parse(&bytes).unwrap_err(), expected, "{name}");
        }
    }

    /// The header of `discover_bytes` followed by these raw option bytes.
    fn with_options(options: &[u8]) -> Vec<u8> {
        let mut bytes = discover_bytes()[..MIN_LEN].to_vec();
        bytes.extend_from_slice(options);
        bytes
    }

    #[test]
    fn options_that_would_panic_dhcproto_are_dropped() {
        let cases: [(&str, &[u8]); 4] = [
            // Rapid Commit must be empty: a debug_assert in dhcproto.
            ("rapid commit with a value", &[80, 1, 0, 255]),
            // Client Network Interface must be 3 bytes: another debug_assert.
            ("client network interface of 1 byte", &[94, 1, 1, 255]),
            // Classless static route with prefix 33: an unwrap in dhcproto.
            ("static route /33", &[121, 5, 33, 10, 0, 0, 1, 255]),
            ("truncated option", &[60, 200, b'P', b'X']),
        ];
        for (name, options) in cases {
            let message = parse(&with_options(options)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(message.opts().is_empty(), "{name}: {:?}", message.opts());
        }
    }

    #[test]
    fn kept_options_need_their_length_and_the_first_one_wins() {
        let message = parse(&with_options(&[
            0, 0, 53, 2, 1, 1, 53, 1, 3, 54, 3, 1, 2, 3, 93, 3, 0, 0, 0, 93, 2, 0, 7, 53, 1, 1, 255,
        ]))
        .unwrap();
        assert_eq!(message.opts().msg_type(), Some(MessageType::Request));
        assert!(!message
            .opts()
            .contains(dhcproto::v4::OptionCode::ServerIdentifier));
        assert_eq!(
            message
                .opts()
                .get(dhcproto::v4::OptionCode::ClientSystemArchitecture),
            Some(&DhcpOption::ClientSystemArchitecture(
                dhcproto::v4::Architecture(7)
            ))
        );
    }

    #[test]
    fn the_requested_address_is_kept_for_the_status_board() {
        let message = parse(&with_options(&[
            53, 1, 3, 50, 4, 10, 77, 0, 51, 50, 3, 1, 2, 3, 255,
        ]))
        .unwrap();
        assert_eq!(
            message
                .opts()
                .get(dhcproto::v4::OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(std::net::Ipv4Addr::new(
                10, 77, 0, 51
            )))
        );
        let short = parse(&with_options(&[53, 1, 3, 50, 3, 10, 77, 0, 255])).unwrap();
        assert!(!short
            .opts()
            .contains(dhcproto::v4::OptionCode::RequestedIpAddress));
    }

    #[test]
    fn client_options_are_kept_only_when_asked_for_and_well_formed() {
        let options: &[u8] = &[
            1, 4, 255, 255, 255, 0, // subnet mask
            3, 6, 10, 0, 0, 1, 10, 0, // router: not a multiple of 4, dropped
            6, 8, 10, 0, 0, 2, 10, 0, 0, 3, // two DNS servers
            51, 2, 0, 60, // lease time of 2 bytes, dropped
            53, 1, 2, 255,
        ];
        let bytes = with_options(options);
        let proxy_view = parse(&bytes).unwrap();
        assert!(!proxy_view
            .opts()
            .contains(dhcproto::v4::OptionCode::SubnetMask));
        let client_view = parse_keeping(&bytes, &CLIENT_OPTIONS).unwrap();
        let opts = client_view.opts();
        assert_eq!(
            opts.get(dhcproto::v4::OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask([255, 255, 255, 0].into()))
        );
        assert_eq!(
            opts.get(dhcproto::v4::OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![
                [10, 0, 0, 2].into(),
                [10, 0, 0, 3].into()
            ]))
        );
        assert!(!opts.contains(dhcproto::v4::OptionCode::Router));
        assert!(!opts.contains(dhcproto::v4::OptionCode::AddressLeaseTime));
        assert_eq!(opts.msg_type(), Some(MessageType::Offer));
    }

    #[test]
    fn random_messages_with_client_options_never_panic_and_round_trip() {
        let mut rng = XorShift::new(0x5eed_c11e_0000_0001);
        let mut valid = with_options(&[
            1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 1, 6, 4, 10, 0, 0, 1, 51, 4, 0, 0, 14, 16, 53,
            1, 5, 54, 4, 10, 0, 0, 1, 255,
        ]);
        valid[0] = 2;
        for round in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + rng.below(8) {
                let at = MIN_LEN + rng.below(bytes.len() - MIN_LEN);
                bytes[at] = if round % 2 == 0 {
                    rng.next_u64() as u8
                } else {
                    // Small values hit option codes and lengths more often.
                    rng.below(64) as u8
                };
            }
            if let Ok(message) = parse_keeping(&bytes, &CLIENT_OPTIONS) {
                let _ = message.to_string();
                let emitted = emit(&message).expect("a decoded message encodes");
                assert_eq!(
                    parse_keeping(&emitted, &CLIENT_OPTIONS),
                    Ok(message),
                    "round trip of {bytes:02x?}"
                );
            }
        }
    }

    #[test]
    fn replies_are_padded_to_300_bytes() {
        let message = parse(&discover_bytes()).unwrap();
        let bytes = emit(&message).unwrap();
        assert_eq!(bytes.len(), MIN_REPLY_LEN);
        assert_eq!(parse(&bytes).unwrap(), message);
    }

    #[test]
    fn random_and_mutated_messages_never_panic_and_valid_ones_round_trip() {
        let mut rng = XorShift::new(0x0dd_b1a5_e5ba_d5e1);
        let valid = discover_bytes();
        for round in 0..20_000 {
            let mut bytes = if round % 4 == 0 {
                let len = rng.below(600);
                (0..len).map(|_| rng.next_u64() as u8).collect()
            } else {
                let mut bytes = valid.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next_u64() as u8;
                }
                let extra = rng.below(40);
                bytes.extend((0..extra).map(|_| rng.next_u64() as u8));
                bytes
            };
            if round % 7 == 0 {
                bytes.truncate(rng.below(bytes.len() + 1));
            }
            if let Ok(message) = parse(&bytes) {
                // Reading every field must not panic either (chaddr did, before the check).
                let _ = (message.chaddr(), message.to_string());
                let emitted = emit(&message).expect("a decoded message encodes");
                assert_eq!(parse(&emitted), Ok(message), "round trip of {bytes:02x?}");
            }
        }
    }
}
