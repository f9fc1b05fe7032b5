//! The Wake-on-LAN magic packet, and finding one inside an Ethernet frame.
//!
//! A magic packet is a synchronisation stream of six `0xff` bytes followed by the target's
//! MAC address sixteen times (102 bytes), optionally followed by a 4- or 6-byte SecureOn
//! password. Network cards look for this pattern anywhere in a frame, whatever carries it;
//! senders put it in a UDP datagram (port 9 or 7) or directly after the Ethernet header with
//! EtherType 0x0842. [`find_in_frame`] does what the card does, for the virtual switch of the
//! tests.
//!
//! Layout follows smoltcp's `wire` modules: [`Packet`] is a checked view over the bytes of
//! one exact magic packet, [`MagicPacket`] its parsed representation.

use crate::net::mac::MacAddr;

/// The length of the synchronisation stream of `0xff` bytes.
pub const SYNC_LEN: usize = 6;
/// How many times the target MAC address is repeated.
pub const MAC_REPEATS: usize = 16;
/// The length of a magic packet without password: 6 + 16 × 6.
pub const BASE_LEN: usize = SYNC_LEN + MAC_REPEATS * 6;
/// The EtherType of a raw Wake-on-LAN frame.
pub const ETHERTYPE_WOL: u16 = 0x0842;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERNET_HEADER_LEN: usize = 14;
const IP_PROTOCOL_UDP: u8 = 17;
const UDP_HEADER_LEN: usize = 8;

/// Why bytes are not a magic packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An exact magic packet is 102 bytes, or 106/108 with a SecureOn password.
    #[error("magic packet of {len} bytes: must be 102, or 106 or 108 with a SecureOn password")]
    WrongLength {
        /// The length found.
        len: usize,
    },
    /// The first six bytes are not all `0xff`.
    #[error("magic packet: byte {offset} of the synchronisation stream is {value:#04x}, not 0xff")]
    BadSync {
        /// The offset of the first wrong byte.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// One of the sixteen copies of the MAC differs from the first.
    #[error("magic packet: copy {copy} of the target MAC differs from the first copy")]
    MacMismatch {
        /// The 0-based index of the first differing copy.
        copy: usize,
    },
    /// The target is a group (multicast or broadcast) address, which no card has.
    #[error("magic packet: target {mac} is a multicast or broadcast address, which no network card answers to")]
    GroupTarget {
        /// The target found.
        mac: MacAddr,
    },
    /// The payload searched holds no magic packet anywhere.
    #[error("no magic packet (6 × 0xff then 16 copies of one MAC) in a payload of {len} bytes")]
    NotFound {
        /// The length of the payload searched.
        len: usize,
    },
    /// A buffer given to `emit` is too small.
    #[error("magic packet needs {needed} bytes, the buffer has {len}")]
    BufferTooSmall {
        /// The bytes needed.
        needed: usize,
        /// The bytes available.
        len: usize,
    },
}

/// A SecureOn password, appended after the sixteen MAC copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    /// A 4-byte password (often written as an IPv4 address).
    Four([u8; 4]),
    /// A 6-byte password (often written as a MAC address).
    Six([u8; 6]),
}

impl Password {
    /// The password bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Password::Four(bytes) => bytes,
            Password::Six(bytes) => bytes,
        }
    }

    /// The password held in `bytes` when it has a valid password length (4 or 6).
    fn from_bytes(bytes: &[u8]) -> Option<Password> {
        if let Ok(four) = <[u8; 4]>::try_from(bytes) {
            Some(Password::Four(four))
        } else {
            <[u8; 6]>::try_from(bytes).ok().map(Password::Six)
        }
    }
}

/// A checked view over the bytes of one exact magic packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may then return wrong values (never
    /// panic: they read within [`BASE_LEN`] only after [`Packet::check`]).
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it is a whole, valid magic packet.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// Checks the length, the synchronisation stream, the sixteen equal copies of a unicast MAC.
    pub fn check(&self) -> Result<(), Error> {
        let bytes = self.buffer.as_ref();
        if !matches!(bytes.len(), BASE_LEN | 106 | 108) {
            return Err(Error::WrongLength { len: bytes.len() });
        }
        if let Some((offset, &value)) = bytes[..SYNC_LEN]
            .iter()
            .enumerate()
            .find(|(_, &b)| b != 0xff)
        {
            return Err(Error::BadSync { offset, value });
        }
        let first = &bytes[SYNC_LEN..SYNC_LEN + 6];
        let copies = bytes[SYNC_LEN..BASE_LEN].chunks_exact(6);
        if let Some(copy) = copies.enumerate().position(|(_, copy)| copy != first) {
            return Err(Error::MacMismatch { copy });
        }
        let mac = self.target();
        if mac.is_multicast() {
            return Err(Error::GroupTarget { mac });
        }
        Ok(())
    }

    /// The MAC address of the machine to wake (the first copy).
    pub fn target(&self) -> MacAddr {
        let bytes = self.buffer.as_ref();
        bytes
            .get(SYNC_LEN..)
            .and_then(MacAddr::from_slice)
            .unwrap_or(MacAddr::BROADCAST)
    }

    /// The SecureOn password, when the packet carries one.
    pub fn password(&self) -> Option<Password> {
        self.buffer
            .as_ref()
            .get(BASE_LEN..)
            .and_then(Password::from_bytes)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A magic packet: which machine to wake, and the SecureOn password if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MagicPacket {
    /// The MAC address of the machine to wake.
    pub target: MacAddr,
    /// The SecureOn password, for cards configured to require one.
    pub password: Option<Password>,
}

impl MagicPacket {
    /// A magic packet waking `target`, without password.
    pub fn new(target: MacAddr) -> MagicPacket {
        MagicPacket {
            target,
            password: None,
        }
    }

    /// The representation of a checked exact packet.
    pub fn from_packet<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<MagicPacket, Error> {
        packet.check()?;
        Ok(MagicPacket {
            target: packet.target(),
            password: packet.password(),
        })
    }

    /// Finds a magic packet anywhere in `payload`, as a network card does.
    ///
    /// A password is recognised only when exactly 4 or 6 bytes follow the sixteenth copy at
    /// the end of the payload; anything else after it is ignored, as cards ignore it.
    pub fn parse(payload: &[u8]) -> Result<MagicPacket, Error> {
        if payload.len() < BASE_LEN {
            return Err(Error::NotFound { len: payload.len() });
        }
        (0..=payload.len() - BASE_LEN)
            .find_map(|start| {
                let candidate = Packet::new_unchecked(&payload[start..start + BASE_LEN]);
                candidate.check().ok()?;
                let password = Password::from_bytes(&payload[start + BASE_LEN..]);
                Some(MagicPacket {
                    target: candidate.target(),
                    password,
                })
            })
            .ok_or(Error::NotFound { len: payload.len() })
    }

    /// The length of this packet on the wire.
    pub fn buffer_len(&self) -> usize {
        BASE_LEN + self.password.map_or(0, |p| p.as_bytes().len())
    }

    /// Writes the packet at the start of `buffer`, returning the length written.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        let needed = self.buffer_len();
        let Some(out) = buffer.get_mut(..needed) else {
            return Err(Error::BufferTooSmall {
                needed,
                len: buffer.len(),
            });
        };
        out[..SYNC_LEN].fill(0xff);
        for copy in out[SYNC_LEN..BASE_LEN].chunks_exact_mut(6) {
            copy.copy_from_slice(&self.target.octets());
        }
        if let Some(password) = self.password {
            out[BASE_LEN..].copy_from_slice(password.as_bytes());
        }
        Ok(needed)
    }

    /// The packet's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.buffer_len()];
        // The buffer was sized by buffer_len just above, so emit cannot run out of room.
        let _ = self.emit(&mut bytes);
        bytes
    }
}

/// The target of a magic packet carried by this Ethernet frame, if any: directly after the
/// Ethernet header with EtherType 0x0842, or as the payload of an IPv4/UDP datagram (any
/// port, as cards do not look at ports). One 802.1Q VLAN tag is skipped.
pub fn find_in_frame(ethernet_frame: &[u8]) -> Option<MacAddr> {
    let (ethertype, payload) = ethernet_payload(ethernet_frame)?;
    let carried = match ethertype {
        ETHERTYPE_WOL => payload,
        ETHERTYPE_IPV4 => udp_payload(payload)?,
        _ => return None,
    };
    MagicPacket::parse(carried).ok().map(|packet| packet.target)
}

/// The EtherType and payload of an Ethernet II frame, skipping one VLAN tag.
fn ethernet_payload(frame: &[u8]) -> Option<(u16, &[u8])> {
    let ethertype = read_u16(frame, 12)?;
    let rest = frame.get(ETHERNET_HEADER_LEN..)?;
    if ethertype == ETHERTYPE_VLAN {
        Some((read_u16(rest, 2)?, rest.get(4..)?))
    } else {
        Some((ethertype, rest))
    }
}

/// The UDP payload of an unfragmented (or first-fragment) IPv4 datagram.
fn udp_payload(ip: &[u8]) -> Option<&[u8]> {
    let version_ihl = *ip.first()?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 || *ip.get(9)? != IP_PROTOCOL_UDP {
        return None;
    }
    // Later fragments hold no UDP header; a magic packet is small enough never to be split.
    let fragment_offset = read_u16(ip, 6)? & 0x1fff;
    if fragment_offset != 0 {
        return None;
    }
    // Trust the IP total length over the frame length: Ethernet pads short frames.
    let total_len = usize::from(read_u16(ip, 2)?).min(ip.len());
    let datagram = ip.get(header_len..total_len)?;
    datagram.get(UDP_HEADER_LEN..)
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    let pair = bytes.get(offset..offset + 2)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::XorShift;

    const TARGET: MacAddr = MacAddr::new([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    fn magic(target: MacAddr) -> Vec<u8> {
        MagicPacket::new(target).to_bytes()
    }

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x52, 0x54, 0, 0, 0, 0x99]);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn ipv4_udp(payload: &[u8], fragment_offset: u16) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&fragment_offset.to_be_bytes());
        ip.extend_from_slice(&[64, IP_PROTOCOL_UDP, 0, 0, 10, 0, 0, 1, 255, 255, 255, 255]);
        ip.extend_from_slice(&[0xc0, 0x00, 0, 9]);
        ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        ip
    }

    #[test]
    fn emits_the_canonical_102_bytes() {
        let bytes = magic(TARGET);
        assert_eq!(bytes.len(), 102);
        assert_eq!(bytes[..6], [0xff; 6]);
        for copy in bytes[6..].chunks(6) {
            assert_eq!(copy, TARGET.octets());
        }
    }

    #[test]
    fn exact_packets_round_trip_with_and_without_password() {
        let passwords = [
            None,
            Some(Password::Four([1, 2, 3, 4])),
            Some(Password::Six([9; 6])),
        ];
        for password in passwords {
            let packet = MagicPacket {
                target: TARGET,
                password,
            };
            let bytes = packet.to_bytes();
            let view = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(MagicPacket::from_packet(&view), Ok(packet));
            assert_eq!(MagicPacket::parse(&bytes), Ok(packet));
        }
    }

    #[test]
    fn malformed_exact_packets_get_the_precise_error() {
        let good = magic(TARGET);
        let mut bad_sync = good.clone();
        bad_sync[3] = 0xfe;
        let mut bad_copy = good.clone();
        bad_copy[6 + 6 * 7 + 2] ^= 1;
        let cases: Vec<(Vec<u8>, Error)> = vec![
            (vec![], Error::WrongLength { len: 0 }),
            (good[..101].to_vec(), Error::WrongLength { len: 101 }),
            (
                [&good[..], &[0; 5]].concat(),
                Error::WrongLength { len: 107 },
            ),
            (
                bad_sync,
                Error::BadSync {
                    offset: 3,
                    value: 0xfe,
                },
            ),
            (bad_copy, Error::MacMismatch { copy: 7 }),
            (
                vec![0xff; 102],
                Error::GroupTarget {
                    mac: MacAddr::BROADCAST,
                },
            ),
            (
                magic(MacAddr::new([1, 0, 0x5e, 0, 0, 1])),
                Error::GroupTarget {
                    mac: MacAddr::new([1, 0, 0x5e, 0, 0, 1]),
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                Packet::new_checked(&bytes[..]).unwrap_err(),
                expected,
                "{expected}"
            );
        }
    }

    #[test]
    fn finds_a_magic_packet_anywhere_in_a_payload() {
        let mut payload = b"some header \xff\xff\xff".to_vec();
        payload.extend_from_slice(&magic(TARGET));
        payload.extend_from_slice(b"and trailing bytes");
        let found = MagicPacket::parse(&payload).unwrap();
        assert_eq!(found, MagicPacket::new(TARGET));
        assert_eq!(
            MagicPacket::parse(b"short"),
            Err(Error::NotFound { len: 5 })
        );
        assert_eq!(
            MagicPacket::parse(&[0xff; 300]),
            Err(Error::NotFound { len: 300 })
        );
    }

    #[test]
    fn emit_refuses_a_short_buffer() {
        let mut buffer = [0u8; 50];
        let error = MagicPacket::new(TARGET).emit(&mut buffer).unwrap_err();
        assert_eq!(
            error,
            Error::BufferTooSmall {
                needed: 102,
                len: 50
            }
        );
    }

    #[test]
    fn finds_the_target_in_raw_udp_and_vlan_frames() {
        let packet = magic(TARGET);
        assert_eq!(
            find_in_frame(&ethernet(ETHERTYPE_WOL, &packet)),
            Some(TARGET)
        );
        assert_eq!(
            find_in_frame(&ethernet(ETHERTYPE_IPV4, &ipv4_udp(&packet, 0))),
            Some(TARGET)
        );
        let mut tagged = vec![0x00, 0x05];
        tagged.extend_from_slice(&ETHERTYPE_WOL.to_be_bytes());
        tagged.extend_from_slice(&packet);
        assert_eq!(
            find_in_frame(&ethernet(ETHERTYPE_VLAN, &tagged)),
            Some(TARGET)
        );
    }

    #[test]
    fn ignores_frames_that_do_not_carry_a_magic_packet() {
        let packet = magic(TARGET);
        let mut tcp = ipv4_udp(&packet, 0);
        tcp[9] = 6;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("header only", ethernet(ETHERTYPE_WOL, &[])),
            ("ARP", ethernet(0x0806, &packet)),
            ("TCP", ethernet(ETHERTYPE_IPV4, &tcp)),
            (
                "later fragment",
                ethernet(ETHERTYPE_IPV4, &ipv4_udp(&packet, 10)),
            ),
            (
                "truncated IPv4",
                ethernet(ETHERTYPE_IPV4, &ipv4_udp(&packet, 0)[..60]),
            ),
            (
                "IPv6 version",
                ethernet(ETHERTYPE_IPV4, &{
                    let mut ip = ipv4_udp(&packet, 0);
                    ip[0] = 0x65;
                    ip
                }),
            ),
        ];
        for (name, frame) in cases {
            assert_eq!(find_in_frame(&frame), None, "{name}");
        }
    }

    #[test]
    fn random_and_mutated_inputs_never_panic_and_valid_ones_round_trip() {
        let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let len = rng.below(400);
                rng.bytes(len)
            } else {
                let target =
                    MacAddr::new([0x52, 0x54, 0, rng.next_u64() as u8, rng.next_u64() as u8, 1]);
                let prefix_len = rng.below(40);
                let mut bytes = rng.bytes(prefix_len);
                bytes.extend_from_slice(&magic(target));
                for _ in 0..rng.below(3) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next_u64() as u8;
                }
                bytes
            };
            if let Ok(found) = MagicPacket::parse(&bytes) {
                let emitted = found.to_bytes();
                assert_eq!(MagicPacket::parse(&emitted), Ok(found));
                assert_eq!(
                    MagicPacket::from_packet(&Packet::new_unchecked(&emitted[..])),
                    Ok(found)
                );
            }
            let _ = Packet::new_checked(&bytes[..]);
            let _ = find_in_frame(&bytes);
            bytes.truncate(rng.below(bytes.len() + 1));
            let _ = find_in_frame(&ethernet(ETHERTYPE_IPV4, &bytes));
        }
    }
}
