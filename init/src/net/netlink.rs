//! A minimal rtnetlink client: the four requests host0 needs to configure its own interface.
//!
//! Why netlink and not the old ioctls (`SIOCSIFFLAGS`, `SIOCSIFADDR`, `SIOCSIFNETMASK`,
//! `SIOCADDRT`): the ioctls set an address and its netmask in two separate calls (between
//! them the kernel installs a prefix route for the obsolete classful mask), cannot remove an
//! address except by bringing the whole interface down, and bringing a link up is a
//! read-modify-write of all its flags. Netlink does each job in one message, the kernel
//! answers every request with an acknowledgement carrying an errno, and no `unsafe` is
//! needed: the messages are plain bytes sent on a socket. It is what `ip` uses.
//!
//! A request is a netlink header (`struct nlmsghdr`), a fixed family header (`ifinfomsg`,
//! `ifaddrmsg` or `rtmsg`) and attributes (`struct rtattr`: length, type, value, padded to
//! four bytes). All integers are in host byte order except addresses, which are in network
//! order. The constants below are those of the kernel's uapi headers `linux/netlink.h`,
//! `linux/rtnetlink.h`, `linux/if_addr.h` and `linux/if.h`.

use std::io::{self, Read};
use std::net::Ipv4Addr;

use socket2::{Domain, Protocol, Socket, Type};

const NETLINK_ROUTE: i32 = 0;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const AF_INET: u8 = 2;
const AF_UNSPEC: u8 = 0;
const IFF_UP: u32 = 0x1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
/// `sizeof(struct nlmsghdr)`.
const HEADER_LEN: usize = 16;

/// One rtnetlink request, built in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    bytes: Vec<u8>,
}

impl Request {
    /// A request of `kind` (an `RTM_*` type) with extra `flags`, whose length is patched in
    /// [`Request::finish`].
    fn new(kind: u16, flags: u16) -> Request {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
        bytes.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq: one request per socket
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills it in
        Request { bytes }
    }

    /// Appends an attribute (`struct rtattr`) holding `value`, padded to four bytes.
    fn attribute(mut self, kind: u16, value: &[u8]) -> Request {
        // Attribute values here are at most 4 bytes: the length always fits in a u16.
        let len = (4 + value.len()) as u16;
        self.bytes.extend_from_slice(&len.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.pad();
        self
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    /// Writes the total length into the header.
    fn finish(mut self) -> Request {
        // Requests are well below 4 GiB: the length fits in a u32.
        let len = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `RTM_NEWLINK` setting only the `IFF_UP` flag of interface `index` (the change mask
    /// leaves every other flag as it is).
    pub fn link_up(index: u32) -> Request {
        let mut request = Request::new(RTM_NEWLINK, 0);
        // struct ifinfomsg: family, pad, type, index, flags, change.
        request.bytes.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
        request.bytes.extend_from_slice(&index.to_ne_bytes());
        request.bytes.extend_from_slice(&IFF_UP.to_ne_bytes());
        request.bytes.extend_from_slice(&IFF_UP.to_ne_bytes());
        request.finish()
    }

    /// `RTM_NEWADDR`: `address/prefix_len` on interface `index`, with the subnet's broadcast
    /// address (as `ip addr add ... brd +`). The kernel adds the prefix route itself. Fails
    /// with `EEXIST` if the address is already there.
    pub fn add_address(index: u32, address: Ipv4Addr, prefix_len: u8) -> Request {
        let request = Request::address(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            index,
            address,
            prefix_len,
        );
        request
            .attribute(IFA_BROADCAST, &broadcast(address, prefix_len).octets())
            .finish()
    }

    /// `RTM_DELADDR`: removes `address/prefix_len` from interface `index`, and with it the
    /// prefix route and any route through a gateway in that prefix.
    pub fn delete_address(index: u32, address: Ipv4Addr, prefix_len: u8) -> Request {
        Request::address(RTM_DELADDR, 0, index, address, prefix_len).finish()
    }

    fn address(kind: u16, flags: u16, index: u32, address: Ipv4Addr, prefix_len: u8) -> Request {
        let mut request = Request::new(kind, flags);
        // struct ifaddrmsg: family, prefixlen, flags, scope, index.
        request
            .bytes
            .extend_from_slice(&[AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE]);
        request.bytes.extend_from_slice(&index.to_ne_bytes());
        // On a non-point-to-point link IFA_LOCAL and IFA_ADDRESS are the same address.
        request
            .attribute(IFA_LOCAL, &address.octets())
            .attribute(IFA_ADDRESS, &address.octets())
    }

    /// `RTM_NEWROUTE`: the default route (0.0.0.0/0) through `gateway` on interface `index`,
    /// in the main table. Fails with `EEXIST` if a default route exists already.
    pub fn add_default_route(index: u32, gateway: Ipv4Addr) -> Request {
        Request::default_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, index, gateway)
    }

    /// `RTM_DELROUTE`: removes that default route.
    pub fn delete_default_route(index: u32, gateway: Ipv4Addr) -> Request {
        Request::default_route(RTM_DELROUTE, 0, index, gateway)
    }

    fn default_route(kind: u16, flags: u16, index: u32, gateway: Ipv4Addr) -> Request {
        let mut request = Request::new(kind, flags);
        // struct rtmsg: family, dst_len (0: the default route), src_len, tos, table,
        // protocol, scope, type, flags.
        request.bytes.extend_from_slice(&[
            AF_INET,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        request.bytes.extend_from_slice(&0u32.to_ne_bytes());
        request
            .attribute(RTA_GATEWAY, &gateway.octets())
            .attribute(RTA_OIF, &index.to_ne_bytes())
            .finish()
    }
}

/// The broadcast address of `address/prefix_len`.
pub fn broadcast(address: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Ipv4Addr::from(u32::from(address) | host_bits)
}

/// What the kernel answered to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The request was carried out.
    Done,
    /// The request failed with this errno.
    Failed(i32),
}

/// Why an acknowledgement could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The answer is shorter than a netlink header and an error code.
    #[error("netlink answer of {len} bytes is too short for an acknowledgement")]
    Truncated {
        /// The length received.
        len: usize,
    },
    /// The answer is a message of another type.
    #[error(
        "netlink answer of type {kind} where an acknowledgement (NLMSG_ERROR, 2) was expected"
    )]
    NotAnAck {
        /// The nlmsg_type received.
        kind: u16,
    },
}

/// Reads the acknowledgement (`NLMSG_ERROR` with errno 0 for success) that answers a request.
pub fn parse_ack(bytes: &[u8]) -> Result<Ack, AckError> {
    let truncated = AckError::Truncated { len: bytes.len() };
    let (Some(kind), Some(error)) = (bytes.get(4..6), bytes.get(HEADER_LEN..HEADER_LEN + 4)) else {
        return Err(truncated);
    };
    let kind = u16::from_ne_bytes([kind[0], kind[1]]);
    if kind != NLMSG_ERROR {
        return Err(AckError::NotAnAck { kind });
    }
    // struct nlmsgerr holds the negated errno.
    match i32::from_ne_bytes([error[0], error[1], error[2], error[3]]) {
        0 => Ok(Ack::Done),
        negated => Ok(Ack::Failed(negated.saturating_neg())),
    }
}

/// Sends `request` to the kernel on a fresh rtnetlink socket and waits for its
/// acknowledgement. An errno from the kernel comes back as an `io::Error` of that errno.
pub fn execute(request: &Request) -> io::Result<()> {
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_ROUTE)),
    )?;
    // An unconnected netlink socket sends to the kernel (port 0) and is bound automatically.
    socket.send(request.as_bytes())?;
    // The acknowledgement of an error echoes the request: twice its size is enough.
    let mut buffer = [0u8; 1024];
    let len = (&socket).read(&mut buffer)?;
    match parse_ack(&buffer[..len]) {
        Ok(Ack::Done) => Ok(()),
        Ok(Ack::Failed(errno)) => Err(io::Error::from_raw_os_error(errno)),
        Err(error) => Err(io::Error::new(io::ErrorKind::InvalidData, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn link_up_sets_only_the_up_flag() {
        let request = Request::link_up(7);
        let bytes = request.as_bytes();
        assert_eq!(bytes.len(), 32);
        assert_eq!(u32_at(bytes, 0), 32, "nlmsg_len");
        assert_eq!(u16_at(bytes, 4), RTM_NEWLINK);
        assert_eq!(u16_at(bytes, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(bytes, 20), 7, "ifi_index");
        assert_eq!(u32_at(bytes, 24), IFF_UP, "ifi_flags");
        assert_eq!(u32_at(bytes, 28), IFF_UP, "ifi_change");
    }

    #[test]
    fn add_address_carries_local_address_and_broadcast() {
        let request = Request::add_address(3, Ipv4Addr::new(10, 0, 2, 15), 24);
        let bytes = request.as_bytes();
        assert_eq!(u32_at(bytes, 0) as usize, bytes.len());
        assert_eq!(bytes.len(), HEADER_LEN + 8 + 3 * 8);
        assert_eq!(u16_at(bytes, 4), RTM_NEWADDR);
        assert_eq!(
            u16_at(bytes, 6),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        );
        assert_eq!(&bytes[16..20], &[AF_INET, 24, 0, RT_SCOPE_UNIVERSE]);
        assert_eq!(u32_at(bytes, 20), 3, "ifa_index");
        let attributes: Vec<(u16, u16, &[u8])> = bytes[24..]
            .chunks(8)
            .map(|a| (u16_at(a, 0), u16_at(a, 2), &a[4..8]))
            .collect();
        assert_eq!(
            attributes,
            vec![
                (8, IFA_LOCAL, &[10, 0, 2, 15][..]),
                (8, IFA_ADDRESS, &[10, 0, 2, 15][..]),
                (8, IFA_BROADCAST, &[10, 0, 2, 255][..]),
            ]
        );
    }

    #[test]
    fn delete_address_has_no_create_flags() {
        let request = Request::delete_address(3, Ipv4Addr::new(10, 0, 2, 15), 24);
        let bytes = request.as_bytes();
        assert_eq!(u16_at(bytes, 4), RTM_DELADDR);
        assert_eq!(u16_at(bytes, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(bytes.len(), HEADER_LEN + 8 + 2 * 8);
    }

    #[test]
    fn default_route_names_gateway_and_interface() {
        let request = Request::add_default_route(5, Ipv4Addr::new(192, 168, 1, 1));
        let bytes = request.as_bytes();
        assert_eq!(u32_at(bytes, 0) as usize, bytes.len());
        assert_eq!(bytes.len(), HEADER_LEN + 12 + 2 * 8);
        assert_eq!(u16_at(bytes, 4), RTM_NEWROUTE);
        assert_eq!(
            &bytes[16..24],
            &[
                AF_INET,
                0,
                0,
                0,
                RT_TABLE_MAIN,
                RTPROT_BOOT,
                RT_SCOPE_UNIVERSE,
                RTN_UNICAST
            ]
        );
        assert_eq!((u16_at(bytes, 28), u16_at(bytes, 30)), (8, RTA_GATEWAY));
        assert_eq!(&bytes[32..36], &[192, 168, 1, 1]);
        assert_eq!((u16_at(bytes, 36), u16_at(bytes, 38)), (8, RTA_OIF));
        assert_eq!(u32_at(bytes, 40), 5);
        let delete = Request::delete_default_route(5, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(u16_at(delete.as_bytes(), 4), RTM_DELROUTE);
        assert_eq!(u16_at(delete.as_bytes(), 6), NLM_F_REQUEST | NLM_F_ACK);
    }

    #[test]
    fn broadcast_fills_the_host_bits() {
        let address = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(broadcast(address, 0), Ipv4Addr::BROADCAST);
        assert_eq!(broadcast(address, 8), Ipv4Addr::new(10, 255, 255, 255));
        assert_eq!(broadcast(address, 30), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(broadcast(address, 32), address);
    }

    fn ack(kind: u16, error: i32) -> Vec<u8> {
        let mut bytes = vec![0; HEADER_LEN];
        bytes[4..6].copy_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&error.to_ne_bytes());
        bytes
    }

    #[test]
    fn acknowledgements_are_read_and_malformed_ones_refused() {
        assert_eq!(parse_ack(&ack(NLMSG_ERROR, 0)), Ok(Ack::Done));
        assert_eq!(parse_ack(&ack(NLMSG_ERROR, -17)), Ok(Ack::Failed(17)));
        assert_eq!(
            parse_ack(&ack(NLMSG_ERROR, i32::MIN)),
            Ok(Ack::Failed(i32::MAX))
        );
        assert_eq!(
            parse_ack(&ack(RTM_NEWADDR, 0)),
            Err(AckError::NotAnAck { kind: RTM_NEWADDR })
        );
        assert_eq!(parse_ack(&[0; 19]), Err(AckError::Truncated { len: 19 }));
        assert_eq!(parse_ack(&[]), Err(AckError::Truncated { len: 0 }));
    }
}
