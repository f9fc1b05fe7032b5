//! The virtual LAN itself, with no PXEN on it: our switch, the LAN's DHCP server (slirp) and
//! its port forwards (which the cluster scenario logs in to hosts through with SSH), and
//! machines booting from the network. Needs `qemu-system-x86_64` and `ipxe-qemu`
//! (`cargo xtask deps`); no image.

use std::net::{Ipv4Addr, TcpStream};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;
use pxen::wol::wire::{MagicPacket, ETHERTYPE_WOL};
use pxen_qemu_tests::cluster::{ClusterBuilder, HostSpec};
use pxen_qemu_tests::frame::{DhcpType, FrameSummary};
use pxen_qemu_tests::lan::{self, Lan};
use pxen_qemu_tests::switch::{Fate, Observed, SwitchBuilder};
use pxen_qemu_tests::{Boot, Machine, MachineConfig, Nic};

const CLIENT: MacAddr = MacAddr::new([0x52, 0x54, 0x00, 0x77, 0x00, 0x01]);

/// The first frame observed before `deadline` for which `matches` holds; panics naming
/// `awaited` when none comes.
fn await_frame(
    observer: &Receiver<Observed>,
    awaited: &str,
    timeout: Duration,
    matches: impl Fn(&Observed) -> bool,
) -> Observed {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match observer.recv_timeout(left) {
            Ok(observed) if matches(&observed) => return observed,
            Ok(_) => {}
            Err(_) => panic!("waited {timeout:?} for {awaited} on the switch; it did not come"),
        }
    }
}

fn is_dhcp(summary: &FrameSummary, message_type: DhcpType) -> bool {
    summary
        .dhcp()
        .is_some_and(|dhcp| dhcp.message_type == message_type)
}

#[test]
#[ignore = "boots QEMU (about 10 s); run by `cargo xtask test`"]
fn a_network_booted_machine_gets_an_address_from_the_lan_and_nothing_to_boot() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut builder = SwitchBuilder::new(dir.path(), &dir.path().join("switch.log"));
    let lan_port = builder.add_port("lan");
    let machine_port = builder.add_port("pc");
    let switch = builder.start().expect("the switch starts");
    let observer = switch.observe();
    let _lan = Lan::start(switch.port(lan_port), &dir.path().join("lan.log"))
        .expect("the LAN's DHCP server starts");
    let mut machine = Machine::start(&MachineConfig {
        name: "pc".into(),
        memory_mib: 128,
        smbios_serial: "NET-1".into(),
        boot: Boot::Network,
        log_dir: dir.path().into(),
        echo_console: false,
        nics: vec![Nic {
            mac: CLIENT,
            port: switch.port(machine_port).clone(),
        }],
    })
    .expect("the machine starts");

    let discover = await_frame(
        &observer,
        "the PXE client's DHCPDISCOVER",
        Duration::from_secs(30),
        |o| o.summary.src == CLIENT && is_dhcp(&o.summary, DhcpType::Discover),
    );
    assert!(
        discover.summary.dhcp().is_some_and(|d| d.pxe),
        "iPXE sends option 60 PXEClient"
    );
    assert_eq!(
        discover.fate,
        Fate::Forwarded(vec![lan_port]),
        "flooded to the LAN port"
    );
    let offer = await_frame(
        &observer,
        "slirp's DHCPOFFER",
        Duration::from_secs(10),
        |o| is_dhcp(&o.summary, DhcpType::Offer),
    );
    assert_eq!(offer.summary.src, lan::SERVER_MAC);
    assert_eq!(offer.ingress, lan_port);
    let offer_dhcp = offer.summary.dhcp().expect("a DHCP message");
    assert_eq!(offer_dhcp.your_address, lan::DHCP_START);
    assert!(!offer_dhcp.pxe, "slirp knows nothing of PXE");
    let ack = await_frame(&observer, "slirp's DHCPACK", Duration::from_secs(10), |o| {
        is_dhcp(&o.summary, DhcpType::Ack)
    });
    assert_eq!(ack.summary.src, lan::SERVER_MAC);
    assert_eq!(switch.port_of(CLIENT), Some(machine_port));
    assert_eq!(switch.port_of(lan::SERVER_MAC), Some(lan_port));

    machine
        .expect("Nothing to boot", Duration::from_secs(30))
        .expect("iPXE finds no boot file on a LAN without PXE server");
    machine
        .expect("No more network devices", Duration::from_secs(10))
        .expect("iPXE gives up");
    let log = std::fs::read_to_string(switch.log_path()).expect("the frame log");
    assert!(log.contains("DHCP OFFER yiaddr 10.77.0.50"), "{log}");
}

/// A defined, powered-off hostU of the WoL test.
fn hostu(name: &str, last: u8) -> HostSpec {
    HostSpec {
        name: name.into(),
        mac: MacAddr::new([0x52, 0x54, 0x00, 0x77, 0x01, last]),
        serial: format!("WOL-{last}"),
        memory_mib: 128,
    }
}

/// An Ethernet frame from the test port's own MAC.
fn frame_from_test(dst: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The magic packet for `target` in a UDP broadcast to port 9, as `wakeonlan` sends it.
fn udp_magic_frame(target: MacAddr) -> Vec<u8> {
    let magic = MagicPacket::new(target).to_bytes();
    let udp_len = u16::try_from(8 + magic.len()).expect("a magic packet is small");
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 77, 0, 99, 255, 255, 255, 255,
    ];
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip.extend_from_slice(&40000u16.to_be_bytes());
    ip.extend_from_slice(&9u16.to_be_bytes());
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&magic);
    frame_from_test(MacAddr::BROADCAST, 0x0800, &ip)
}

#[test]
#[ignore = "boots QEMU (about 10 s); run by `cargo xtask test`"]
fn a_magic_packet_powers_on_exactly_its_host_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let h1 = hostu("h1", 1);
    let h2 = hostu("h2", 2);
    // A log directory that does not exist yet: the cluster creates it.
    let cluster = ClusterBuilder::new(&dir.path().join("logs"))
        .hostu(h1.clone())
        .hostu(h2.clone())
        .test_port("test")
        .start()
        .expect("the cluster starts");
    let port = cluster.test_port("test").expect("the test port binds");
    assert_eq!(
        cluster.power_ons("h1").expect("h1 is defined"),
        0,
        "hostUs start powered off"
    );

    let magic = MagicPacket::new(h1.mac).to_bytes();
    port.send(&frame_from_test(MacAddr::BROADCAST, ETHERTYPE_WOL, &magic))
        .expect("the magic packet is sent");
    let powered_on = cluster
        .wait_powered_on("h1", Duration::from_secs(10))
        .expect("h1 is powered on by its magic packet");
    // A second packet, the UDP form, is handled by the power button and changes nothing.
    port.send(&udp_magic_frame(h1.mac))
        .expect("the second magic packet is sent");
    cluster
        .wait_wakes("h1", 2, Duration::from_secs(10))
        .expect("the power button saw both packets");
    assert_eq!(cluster.power_ons("h1").expect("h1 is defined"), 1);
    assert_eq!(
        cluster.power_ons("h2").expect("h2 is defined"),
        0,
        "h2 was not woken"
    );
    assert_eq!(cluster.switch().counters().wake_packets, 2);

    // The machine that came up is h1, on the LAN: it gets its address and finds nothing to boot.
    cluster
        .with_hostu("h1", |machine| {
            machine
                .expect("Nothing to boot", Duration::from_secs(40))
                .expect("h1 network-boots on the LAN");
        })
        .expect("h1 is defined")
        .expect("h1 is on");
    let timeline = cluster.timeline();
    println!("{timeline}");
    let row = &timeline.rows[0];
    assert_eq!((row.host.as_str(), row.at[0]), ("h1", Some(powered_on)));
    assert!(
        row.at[1].is_some_and(|pxe| pxe > powered_on),
        "h1's PXE DHCP is timed: {timeline}"
    );
    assert!(
        timeline.rows[1].at.iter().all(Option::is_none),
        "h2 never ran: {timeline}"
    );
}

#[test]
#[ignore = "starts the LAN's QEMU (seconds); run by `cargo xtask test`"]
fn the_lan_forwards_a_loopback_port_until_the_forward_is_removed() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut cluster = ClusterBuilder::new(&work.path().join("logs"))
        .start()
        .expect("the LAN starts");
    let guest = Ipv4Addr::new(10, 77, 0, 60);
    let port = cluster
        .lan()
        .forward_tcp(guest, 22)
        .expect("slirp forwards a port");
    assert_eq!(
        cluster.lan().forward_tcp(guest, 22).expect("known"),
        port,
        "the same forward is reused"
    );
    // slirp itself accepts on the host side, whether or not the guest exists.
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("slirp listens on the port");
    let other = cluster
        .lan()
        .forward_tcp(lan::DHCP_START, 22)
        .expect("a second forward");
    assert_ne!(other, port);

    cluster
        .lan()
        .remove_forward(guest, 22)
        .expect("the forward is removed");
    let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect_err("nobody listens");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    cluster
        .lan()
        .remove_forward(guest, 22)
        .expect("removing an unknown forward does nothing");
}
