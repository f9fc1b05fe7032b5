//! The virtual LAN itself, with no PXEN on it: our switch, the LAN's DHCP server (slirp) and
//! machines booting from the network. Needs `qemu-system-x86_64` and `ipxe-qemu`
//! (`cargo xtask deps`); no image.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;
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
