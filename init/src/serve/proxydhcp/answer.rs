//! What the proxyDHCP server answers to one message: a pure function of the message, where
//! it arrived and the server's context.
//!
//! The model is dnsmasq's proxy mode (`--dhcp-range=…,proxy`) and the PXE 2.1 specification:
//! the LAN's own DHCP server gives the address; we answer the same DHCPDISCOVER with a
//! *proxy* offer that holds no address (yiaddr 0.0.0.0) but says "PXEClient" (option 60),
//! names the boot server (siaddr, options 54 and 66) and the boot file (file field, option
//! 67), echoes the client's machine UUID (option 97), and sets PXE_DISCOVERY_CONTROL = 8 in
//! option 43 so the ROM downloads that file at once instead of running PXE boot-server
//! discovery or a menu. A client that asks again on port 4011 (a "PXE boot server request",
//! as iPXE does after a proxy offer) gets the same answer as a unicast DHCPACK.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};

use crate::net::mac::MacAddr;

/// The port relay agents listen on, where replies to relayed requests go.
const DHCP_SERVER_PORT: u16 = 67;
/// Option 43 for PXE clients: sub-option 6 (PXE_DISCOVERY_CONTROL), length 1, value 8 (bit
/// 3: boot the file of this offer without discovery or menu), then END. dnsmasq sends this
/// when no `pxe-service` menu is configured.
const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];
/// The size of the BOOTP file field.
const MAX_FILE_FIELD: usize = 128;
/// The iPXE encapsulated options (option 175): iPXE sends it, PXE ROMs do not.
const IPXE_ENCAPSULATED_OPTION: u8 = 175;

/// What the server knows to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyContext {
    /// The address clients fetch boot files from (this host).
    pub server_ip: Ipv4Addr,
    /// The port of our HTTP server, for the URL given to iPXE clients.
    pub http_port: u16,
    /// The file BIOS PXE ROMs fetch by TFTP (port 69, as PXE ROMs know no other).
    pub bios_boot_file: String,
    /// The path of the iPXE script on the HTTP server, without leading '/'.
    pub ipxe_script: String,
    /// When set, only these MACs are answered (two clusters sharing one LAN).
    pub mac_filter: Option<HashSet<MacAddr>>,
}

impl ProxyContext {
    /// Answers for `server_ip` with the usual names: `lpxelinux.0` for BIOS PXE ROMs,
    /// `http://<server_ip>:<http_port>/boot.ipxe` for iPXE, and no MAC filter.
    pub fn new(server_ip: Ipv4Addr, http_port: u16) -> ProxyContext {
        ProxyContext {
            server_ip,
            http_port,
            bios_boot_file: "lpxelinux.0".to_owned(),
            ipxe_script: "boot.ipxe".to_owned(),
            mac_filter: None,
        }
    }

    /// The URL of the iPXE script.
    pub fn ipxe_url(&self) -> String {
        format!(
            "http://{}:{}/{}",
            self.server_ip, self.http_port, self.ipxe_script
        )
    }
}

/// Where a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// On the DHCP server port (67), usually broadcast by a client without an address.
    DhcpPort,
    /// On the PXE boot server port (4011), from this sender.
    PxePort {
        /// The sender's address and port.
        from: SocketAddrV4,
    },
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Broadcast to the client port (68), for clients that have no address yet.
    Broadcast,
    /// To this address: the client itself, or the relay agent that forwarded the request.
    Unicast(SocketAddrV4),
}

/// What kind of boot program asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A BIOS PXE ROM: gets the PXELINUX stage by TFTP.
    BiosPxe,
    /// iPXE (BIOS): gets the URL of the iPXE script, to fetch large files by HTTP.
    Ipxe,
}

/// The server's decision about one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Send this reply there.
    Reply {
        /// The reply (a proxy DHCPOFFER or DHCPACK).
        message: Box<Message>,
        /// Where to send it.
        to: Destination,
        /// The client's MAC, for the log.
        mac: MacAddr,
        /// Who asked, for the log.
        kind: ClientKind,
    },
    /// Stay silent, for this reason.
    Ignore(IgnoreReason),
}

/// Why a message gets no answer. Most are normal traffic of a LAN and are logged at debug
/// level only; [`IgnoreReason::Uefi`] deserves a warning (once per client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreReason {
    /// A BOOTREPLY (another server's answer), not a request.
    #[error("a BOOTREPLY from another server, not a request")]
    NotARequest,
    /// Not an Ethernet client (htype 1, hlen 6).
    #[error("hardware type {htype} with address length {hlen}: not an Ethernet client")]
    NotEthernet {
        /// The htype field.
        htype: u8,
        /// The hlen field.
        hlen: u8,
    },
    /// No DHCP message type (option 53): plain BOOTP.
    #[error("{mac}: no DHCP message type (option 53)")]
    NoMessageType {
        /// The client.
        mac: MacAddr,
    },
    /// A message type this port does not answer (e.g. a DHCPREQUEST on port 67, which is
    /// for the LAN's DHCP server).
    #[error("{mac}: {kind:?} on {port}; only a DISCOVER on 67 or a REQUEST on 4011 is answered")]
    WrongMessageType {
        /// The client.
        mac: MacAddr,
        /// The message type.
        kind: MessageType,
        /// Which port it came to.
        port: &'static str,
    },
    /// Not a PXE client: option 60 is missing or does not start with `PXEClient`.
    #[error("{mac}: not a PXE client (vendor class {vendor_class:?})")]
    NotPxe {
        /// The client.
        mac: MacAddr,
        /// Option 60, lossily decoded, if present.
        vendor_class: Option<String>,
    },
    /// A MAC filter is set and this MAC is not in it.
    #[error("{mac}: not in this cluster's MAC list")]
    MacNotAllowed {
        /// The client.
        mac: MacAddr,
    },
    /// A UEFI PXE client: we have no UEFI boot chain yet.
    #[error("UEFI PXE client {mac} (arch {arch}): UEFI boot is not supported yet")]
    Uefi {
        /// The client.
        mac: MacAddr,
        /// Option 93.
        arch: u16,
    },
    /// Another architecture (neither x86 BIOS nor UEFI).
    #[error("PXE client {mac} of architecture {arch}: only x86 BIOS clients (arch 0) can boot")]
    OtherArch {
        /// The client.
        mac: MacAddr,
        /// Option 93.
        arch: u16,
    },
    /// A request to port 4011 addressed to another boot server (option 54).
    #[error("{mac}: request for boot server {server}, not us")]
    NotForUs {
        /// The client.
        mac: MacAddr,
        /// Option 54 of the request.
        server: Ipv4Addr,
    },
}

/// Decides the answer to `request`, which arrived as `arrival`.
pub fn answer(request: &Message, arrival: Arrival, ctx: &ProxyContext) -> Decision {
    match classify(request, arrival, ctx) {
        Ok((mac, kind)) => {
            let message = reply(request, arrival, ctx, kind);
            Decision::Reply {
                message: Box::new(message),
                to: destination(request, arrival),
                mac,
                kind,
            }
        }
        Err(reason) => Decision::Ignore(reason),
    }
}

/// A PXE client seen in a message, whether answered or not: what the status board learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PxeSighting {
    /// The client's MAC.
    pub mac: MacAddr,
    /// Its address, when the message shows it: the one it asks the LAN's DHCP server for
    /// (option 50 of its DHCPREQUEST), else its `ciaddr`, else the sender of a request to
    /// port 4011.
    pub address: Option<Ipv4Addr>,
}

/// The PXE client behind `request`, if it is one (option 60 `PXEClient`, an Ethernet
/// BOOTREQUEST). Every message of a PXE client is looked at, including the DHCPREQUEST it
/// sends to the LAN's DHCP server: that is where host0 learns which address the client will
/// fetch its files from.
pub fn pxe_sighting(request: &Message, arrival: Arrival) -> Option<PxeSighting> {
    if request.opcode() != Opcode::BootRequest || !is_pxe_client(request) {
        return None;
    }
    let mac = ethernet_mac(request).ok()?;
    let requested = match request.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(address)) => Some(*address),
        _ => None,
    };
    let client = Some(request.ciaddr()).filter(|a| !a.is_unspecified());
    let sender = match arrival {
        Arrival::PxePort { from } => Some(*from.ip()).filter(|a| !a.is_unspecified()),
        Arrival::DhcpPort => None,
    };
    Some(PxeSighting {
        mac,
        address: requested.or(client).or(sender),
    })
}

/// Checks every condition for answering, in the order that gives the most useful reason.
fn classify(
    request: &Message,
    arrival: Arrival,
    ctx: &ProxyContext,
) -> Result<(MacAddr, ClientKind), IgnoreReason> {
    if request.opcode() != Opcode::BootRequest {
        return Err(IgnoreReason::NotARequest);
    }
    let mac = ethernet_mac(request)?;
    let kind = request
        .opts()
        .msg_type()
        .ok_or(IgnoreReason::NoMessageType { mac })?;
    let expected = match arrival {
        Arrival::DhcpPort => (MessageType::Discover, "port 67"),
        Arrival::PxePort { .. } => (MessageType::Request, "port 4011"),
    };
    if kind != expected.0 {
        return Err(IgnoreReason::WrongMessageType {
            mac,
            kind,
            port: expected.1,
        });
    }
    if !is_pxe_client(request) {
        let vendor_class = bytes_option(request, OptionCode::ClassIdentifier)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        return Err(IgnoreReason::NotPxe { mac, vendor_class });
    }
    if ctx
        .mac_filter
        .as_ref()
        .is_some_and(|allowed| !allowed.contains(&mac))
    {
        return Err(IgnoreReason::MacNotAllowed { mac });
    }
    if let Some(DhcpOption::ServerIdentifier(server)) =
        request.opts().get(OptionCode::ServerIdentifier)
    {
        if *server != ctx.server_ip {
            return Err(IgnoreReason::NotForUs {
                mac,
                server: *server,
            });
        }
    }
    match architecture(request) {
        0 => Ok((
            mac,
            if is_ipxe(request) {
                ClientKind::Ipxe
            } else {
                ClientKind::BiosPxe
            },
        )),
        arch if is_uefi(arch) => Err(IgnoreReason::Uefi { mac, arch }),
        arch => Err(IgnoreReason::OtherArch { mac, arch }),
    }
}

fn ethernet_mac(request: &Message) -> Result<MacAddr, IgnoreReason> {
    let not_ethernet = || IgnoreReason::NotEthernet {
        htype: u8::from(request.htype()),
        hlen: request.hlen(),
    };
    if request.htype() != HType::Eth || request.hlen() != 6 {
        return Err(not_ethernet());
    }
    MacAddr::from_slice(request.chaddr()).ok_or_else(not_ethernet)
}

fn bytes_option(message: &Message, code: OptionCode) -> Option<&[u8]> {
    match message.opts().get(code)? {
        DhcpOption::ClassIdentifier(bytes)
        | DhcpOption::UserClass(bytes)
        | DhcpOption::ClientMachineIdentifier(bytes) => Some(bytes),
        DhcpOption::Unknown(unknown) => Some(unknown.data()),
        _ => None,
    }
}

fn is_pxe_client(request: &Message) -> bool {
    bytes_option(request, OptionCode::ClassIdentifier)
        .is_some_and(|class| class.starts_with(b"PXEClient"))
}

/// iPXE sends user class "iPXE" (raw, not in RFC 3004's length-prefixed form, though both
/// are accepted here) and its own encapsulated options in option 175.
fn is_ipxe(request: &Message) -> bool {
    let user_class = bytes_option(request, OptionCode::UserClass).unwrap_or_default();
    user_class == b"iPXE"
        || user_class.windows(5).any(|w| w == b"\x04iPXE")
        || request
            .opts()
            .contains(OptionCode::Unknown(IPXE_ENCAPSULATED_OPTION))
}

/// Option 93. PXE 2.1 requires it; a client without one is taken as x86 BIOS, as the
/// oldest ROMs are.
fn architecture(request: &Message) -> u16 {
    match request.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(arch)) => arch.0,
        _ => 0,
    }
}

/// The UEFI values of option 93 (RFC 4578 and the IANA registry): IA32, x64, EBC, ARM 32
/// and 64, their HTTP-boot variants, RISC-V and LoongArch.
fn is_uefi(arch: u16) -> bool {
    matches!(
        arch,
        6 | 7 | 9 | 10 | 11 | 15 | 16 | 17 | 18 | 19 | 0x19..=0x1e | 0x27 | 0x28
    )
}

/// The proxy reply to an accepted request.
fn reply(request: &Message, arrival: Arrival, ctx: &ProxyContext, kind: ClientKind) -> Message {
    let boot_file = match kind {
        ClientKind::BiosPxe => ctx.bios_boot_file.clone(),
        ClientKind::Ipxe => ctx.ipxe_url(),
    };
    let (reply_type, ciaddr, flags) = match arrival {
        // The client has no address yet: no ciaddr, and the broadcast flag as dnsmasq sets it.
        Arrival::DhcpPort => (
            MessageType::Offer,
            Ipv4Addr::UNSPECIFIED,
            request.flags().set_broadcast(),
        ),
        Arrival::PxePort { .. } => (MessageType::Ack, request.ciaddr(), request.flags()),
    };
    let mut message = Message::default();
    message
        .set_opcode(Opcode::BootReply)
        .set_htype(request.htype())
        .set_chaddr(request.chaddr())
        .set_xid(request.xid())
        .set_flags(flags)
        .set_ciaddr(ciaddr)
        .set_yiaddr(Ipv4Addr::UNSPECIFIED)
        .set_siaddr(ctx.server_ip)
        .set_giaddr(request.giaddr());
    // The file field holds 128 bytes (dhcproto asserts it); a longer name (a long URL)
    // travels in option 67 only, which every client reads first anyway.
    if boot_file.len() <= MAX_FILE_FIELD {
        message.set_fname_str(&boot_file);
    }
    let options = message.opts_mut();
    options.insert(DhcpOption::MessageType(reply_type));
    options.insert(DhcpOption::ServerIdentifier(ctx.server_ip));
    options.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    options.insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
    options.insert(DhcpOption::TFTPServerName(
        ctx.server_ip.to_string().into_bytes(),
    ));
    options.insert(DhcpOption::BootfileName(boot_file.into_bytes()));
    if let Some(uuid) = bytes_option(request, OptionCode::ClientMachineIdentifier) {
        options.insert(DhcpOption::ClientMachineIdentifier(uuid.to_vec()));
    }
    message
}

fn destination(request: &Message, arrival: Arrival) -> Destination {
    let relay = request.giaddr();
    match arrival {
        Arrival::DhcpPort if !relay.is_unspecified() => {
            Destination::Unicast(SocketAddrV4::new(relay, DHCP_SERVER_PORT))
        }
        Arrival::DhcpPort => Destination::Broadcast,
        Arrival::PxePort { from } if from.ip().is_unspecified() => Destination::Broadcast,
        Arrival::PxePort { from } => Destination::Unicast(from),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rand::XorShift;
    use crate::serve::proxydhcp::wire;
    use dhcproto::v4::{Architecture, Flags, UnknownOption};

    pub(crate) const CLIENT: MacAddr = MacAddr::new([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    pub(crate) const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const UUID: [u8; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

    pub(crate) fn context() -> ProxyContext {
        ProxyContext::new(SERVER, 8080)
    }

    /// A PXE client's message as a BIOS PXE ROM sends it, of type `kind`, arch `arch`.
    pub(crate) fn pxe_message(kind: MessageType, arch: u16) -> Message {
        let mut message = Message::default();
        message
            .set_xid(0xdead_beef)
            .set_chaddr(&CLIENT.octets())
            .set_flags(Flags::default().set_broadcast());
        let options = message.opts_mut();
        options.insert(DhcpOption::MessageType(kind));
        options.insert(DhcpOption::ClassIdentifier(
            format!("PXEClient:Arch:{arch:05}:UNDI:002001").into_bytes(),
        ));
        options.insert(DhcpOption::ClientSystemArchitecture(Architecture(arch)));
        options.insert(DhcpOption::ClientNetworkInterface(1, 2, 1));
        options.insert(DhcpOption::ClientMachineIdentifier(UUID.to_vec()));
        message
    }

    fn from_client() -> Arrival {
        Arrival::PxePort {
            from: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 50), 68),
        }
    }

    fn ipxe(mut message: Message) -> Message {
        message
            .opts_mut()
            .insert(DhcpOption::UserClass(b"iPXE".to_vec()));
        message
    }

    fn expect_reply(decision: Decision) -> (Message, Destination, ClientKind) {
        match decision {
            Decision::Reply {
                message,
                to,
                mac,
                kind,
            } => {
                assert_eq!(mac, CLIENT);
                (*message, to, kind)
            }
            Decision::Ignore(reason) => panic!("expected a reply, got ignore: {reason}"),
        }
    }

    fn bytes_of(message: &Message, code: OptionCode) -> Vec<u8> {
        bytes_option(message, code)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| match message.opts().get(code) {
                Some(
                    DhcpOption::VendorExtensions(v)
                    | DhcpOption::TFTPServerName(v)
                    | DhcpOption::BootfileName(v),
                ) => v.clone(),
                other => panic!("option {code:?}: {other:?}"),
            })
    }

    #[test]
    fn bios_discover_on_67_gets_a_broadcast_offer_without_an_address() {
        let request = pxe_message(MessageType::Discover, 0);
        let (offer, to, kind) = expect_reply(answer(&request, Arrival::DhcpPort, &context()));
        assert_eq!((to, kind), (Destination::Broadcast, ClientKind::BiosPxe));
        assert_eq!(offer.opcode(), Opcode::BootReply);
        assert_eq!(offer.xid(), 0xdead_beef);
        assert_eq!(offer.chaddr(), CLIENT.octets());
        assert_eq!(
            offer.yiaddr(),
            Ipv4Addr::UNSPECIFIED,
            "a proxy never gives an address"
        );
        assert_eq!(offer.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(offer.siaddr(), SERVER);
        assert!(offer.flags().broadcast());
        assert_eq!(offer.fname_str(), Some(Ok("lpxelinux.0")));
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(
            offer.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert_eq!(bytes_of(&offer, OptionCode::ClassIdentifier), b"PXEClient");
        assert_eq!(
            bytes_of(&offer, OptionCode::VendorExtensions),
            [6, 1, 8, 255]
        );
        assert_eq!(bytes_of(&offer, OptionCode::TFTPServerName), b"10.77.0.2");
        assert_eq!(bytes_of(&offer, OptionCode::BootfileName), b"lpxelinux.0");
        assert_eq!(
            bytes_of(&offer, OptionCode::ClientMachineIdentifier),
            UUID,
            "option 97 echoed"
        );
        assert!(
            !offer.opts().contains(OptionCode::AddressLeaseTime),
            "no lease: no address"
        );
    }

    #[test]
    fn request_on_4011_gets_a_unicast_ack() {
        let mut request = pxe_message(MessageType::Request, 0);
        request.set_ciaddr(Ipv4Addr::new(10, 77, 0, 50));
        request
            .opts_mut()
            .insert(DhcpOption::ServerIdentifier(SERVER));
        let (ack, to, _) = expect_reply(answer(&request, from_client(), &context()));
        assert_eq!(
            to,
            Destination::Unicast(SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 50), 68))
        );
        assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(ack.ciaddr(), Ipv4Addr::new(10, 77, 0, 50));
        assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(ack.fname_str(), Some(Ok("lpxelinux.0")));
    }

    #[test]
    fn ipxe_gets_the_http_url_of_its_script() {
        let requests = [ipxe(pxe_message(MessageType::Discover, 0)), {
            let mut message = pxe_message(MessageType::Discover, 0);
            message
                .opts_mut()
                .insert(DhcpOption::Unknown(UnknownOption::new(
                    OptionCode::Unknown(175),
                    vec![0xb1, 1, 1],
                )));
            message
        }];
        for request in requests {
            let (offer, _, kind) = expect_reply(answer(&request, Arrival::DhcpPort, &context()));
            assert_eq!(kind, ClientKind::Ipxe);
            assert_eq!(
                offer.fname_str(),
                Some(Ok("http://10.77.0.2:8080/boot.ipxe"))
            );
            assert_eq!(
                bytes_of(&offer, OptionCode::BootfileName),
                b"http://10.77.0.2:8080/boot.ipxe"
            );
        }
    }

    #[test]
    fn relayed_discover_is_answered_to_the_relay() {
        let mut request = pxe_message(MessageType::Discover, 0);
        request.set_giaddr(Ipv4Addr::new(10, 1, 0, 1));
        let (offer, to, _) = expect_reply(answer(&request, Arrival::DhcpPort, &context()));
        assert_eq!(
            to,
            Destination::Unicast(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 1), 67))
        );
        assert_eq!(offer.giaddr(), Ipv4Addr::new(10, 1, 0, 1));
    }

    #[test]
    fn known_macs_are_answered_when_a_filter_is_set() {
        let mut ctx = context();
        ctx.mac_filter = Some(HashSet::from([CLIENT]));
        let request = pxe_message(MessageType::Discover, 0);
        assert!(matches!(
            answer(&request, Arrival::DhcpPort, &ctx),
            Decision::Reply { .. }
        ));
    }

    #[test]
    fn everything_else_is_ignored_with_its_reason() {
        let mut filtered = context();
        filtered.mac_filter = Some(HashSet::from([MacAddr::new([2, 0, 0, 0, 0, 1])]));
        let with = |edit: &dyn Fn(&mut Message)| {
            let mut message = pxe_message(MessageType::Discover, 0);
            edit(&mut message);
            message
        };
        let cases: Vec<(&str, Message, Arrival, ProxyContext, IgnoreReason)> = vec![
            (
                "non-PXE discover",
                with(&|m| {
                    m.opts_mut()
                        .insert(DhcpOption::ClassIdentifier(b"android-dhcp-14".to_vec()));
                }),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::NotPxe {
                    mac: CLIENT,
                    vendor_class: Some("android-dhcp-14".into()),
                },
            ),
            (
                "no vendor class",
                with(&|m| {
                    m.opts_mut().remove(OptionCode::ClassIdentifier);
                }),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::NotPxe {
                    mac: CLIENT,
                    vendor_class: None,
                },
            ),
            (
                "request on 67 (for the LAN's DHCP server)",
                pxe_message(MessageType::Request, 0),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::WrongMessageType {
                    mac: CLIENT,
                    kind: MessageType::Request,
                    port: "port 67",
                },
            ),
            (
                "discover on 4011",
                pxe_message(MessageType::Discover, 0),
                from_client(),
                context(),
                IgnoreReason::WrongMessageType {
                    mac: CLIENT,
                    kind: MessageType::Discover,
                    port: "port 4011",
                },
            ),
            (
                "request for another boot server",
                {
                    let mut m = pxe_message(MessageType::Request, 0);
                    m.opts_mut()
                        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 77, 0, 9)));
                    m
                },
                from_client(),
                context(),
                IgnoreReason::NotForUs {
                    mac: CLIENT,
                    server: Ipv4Addr::new(10, 77, 0, 9),
                },
            ),
            (
                "a BOOTREPLY (another proxy's offer)",
                with(&|m| {
                    m.set_opcode(Opcode::BootReply);
                }),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::NotARequest,
            ),
            (
                "plain BOOTP",
                with(&|m| {
                    m.opts_mut().remove(OptionCode::MessageType);
                }),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::NoMessageType { mac: CLIENT },
            ),
            (
                "not Ethernet",
                with(&|m| {
                    m.set_htype(HType::from(6u8));
                }),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::NotEthernet { htype: 6, hlen: 6 },
            ),
            (
                "unknown MAC with a filter",
                pxe_message(MessageType::Discover, 0),
                Arrival::DhcpPort,
                filtered,
                IgnoreReason::MacNotAllowed { mac: CLIENT },
            ),
            (
                "UEFI x64",
                pxe_message(MessageType::Discover, 7),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::Uefi {
                    mac: CLIENT,
                    arch: 7,
                },
            ),
            (
                "UEFI iPXE is still UEFI",
                ipxe(pxe_message(MessageType::Discover, 9)),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::Uefi {
                    mac: CLIENT,
                    arch: 9,
                },
            ),
            (
                "PowerPC",
                pxe_message(MessageType::Discover, 0xc),
                Arrival::DhcpPort,
                context(),
                IgnoreReason::OtherArch {
                    mac: CLIENT,
                    arch: 0xc,
                },
            ),
        ];
        for (name, request, arrival, ctx, expected) in cases {
            assert_eq!(
                answer(&request, arrival, &ctx),
                Decision::Ignore(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn the_uefi_reason_reads_as_the_operator_needs() {
        let reason = IgnoreReason::Uefi {
            mac: CLIENT,
            arch: 7,
        };
        assert_eq!(
            reason.to_string(),
            "UEFI PXE client 52:54:00:12:34:56 (arch 7): UEFI boot is not supported yet"
        );
    }

    #[test]
    fn random_mutations_of_pxe_requests_never_panic_and_replies_encode() {
        let mut rng = XorShift::new(0x5eed_0f9e_3737);
        let seeds = [
            wire::emit(&pxe_message(MessageType::Discover, 0)).unwrap(),
            wire::emit(&ipxe(pxe_message(MessageType::Request, 0))).unwrap(),
            wire::emit(&pxe_message(MessageType::Discover, 7)).unwrap(),
        ];
        let mut replies = 0;
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            for _ in 0..rng.below(6) {
                let at = rng.below(bytes.len());
                bytes[at] = rng.next_u64() as u8;
            }
            let Ok(request) = wire::parse(&bytes) else {
                continue;
            };
            let arrival = if rng.below(2) == 0 {
                Arrival::DhcpPort
            } else {
                from_client()
            };
            if let Decision::Reply { message, .. } = answer(&request, arrival, &context()) {
                replies += 1;
                assert_eq!(message.yiaddr(), Ipv4Addr::UNSPECIFIED);
                let encoded = wire::emit(&message).expect("every reply encodes");
                // wire::parse keeps request options only; our own reply is decoded in full.
                let decoded = <Message as dhcproto::Decodable>::from_bytes(&encoded)
                    .expect("every reply decodes");
                assert_eq!(
                    (decoded.xid(), decoded.chaddr(), decoded.opts()),
                    (message.xid(), message.chaddr(), message.opts())
                );
            }
        }
        assert!(
            replies > 1000,
            "the mutations left too few valid requests to test replies ({replies})"
        );
    }

    #[test]
    fn pxe_clients_are_seen_with_the_address_they_will_use() {
        let discover = pxe_message(MessageType::Discover, 0);
        assert_eq!(
            pxe_sighting(&discover, Arrival::DhcpPort),
            Some(PxeSighting {
                mac: CLIENT,
                address: None
            })
        );
        let mut request = pxe_message(MessageType::Request, 0);
        request
            .opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 77, 0, 51)));
        let seen = pxe_sighting(&request, Arrival::DhcpPort).unwrap();
        assert_eq!(seen.address, Some(Ipv4Addr::new(10, 77, 0, 51)));
        let on_4011 = pxe_sighting(&pxe_message(MessageType::Request, 0), from_client()).unwrap();
        assert_eq!(on_4011.address, Some(Ipv4Addr::new(10, 77, 0, 50)));

        let mut not_pxe = pxe_message(MessageType::Discover, 0);
        not_pxe
            .opts_mut()
            .insert(DhcpOption::ClassIdentifier(b"android-dhcp-13".to_vec()));
        assert_eq!(pxe_sighting(&not_pxe, Arrival::DhcpPort), None);
        let mut reply = pxe_message(MessageType::Offer, 0);
        reply.set_opcode(Opcode::BootReply);
        assert_eq!(pxe_sighting(&reply, Arrival::DhcpPort), None);
        assert!(
            pxe_sighting(&pxe_message(MessageType::Discover, 7), Arrival::DhcpPort).is_some(),
            "UEFI clients are seen too, though not answered"
        );
    }
}
