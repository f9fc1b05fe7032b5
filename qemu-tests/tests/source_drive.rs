//! The genuine source drive, and never two boot servers: what `/init` decides from the drive a
//! machine booted from, and what boot servers decide when they hear each other.
//!
//! Each machine only has to reach `/init`'s banner (or its boot service's verdict), so these
//! machines are powered off long before their dom0 is up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use pxen::drive::identity::IDENTITY_FILE;
use pxen::drive::manifest;
use pxen::net::mac::MacAddr;
use pxen_qemu_tests::cluster::{Cluster, ClusterBuilder, HostSpec, Stick};
use pxen_qemu_tests::frame::{build, DhcpType};
use pxen_qemu_tests::image;
use pxen_qemu_tests::switch::Observed;
use pxen_qemu_tests::{Boot, Machine, MachineConfig};

/// Xen needs memory beside dom0's under QEMU.
const XEN_HEADROOM_MIB: u64 = 512;
/// From power-on to `/init`'s banner: SYSLINUX, Xen, the kernel, the drive found and copied
/// into RAM, its files hashed (minutes when several TCG machines share two cores).
const BANNER_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the LAN is watched for proxyDHCP offers after a PXE request: absence can only be
/// observed over a window; every boot server answers within milliseconds.
const OFFER_WINDOW: Duration = Duration::from_secs(5);

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the scenarios with `cargo xtask test`"))
}

fn memory_mib() -> u64 {
    env("PXEN_TEST_DOM0_MEM_MIB")
        .parse::<u64>()
        .expect("PXEN_TEST_DOM0_MEM_MIB is a number of MiB")
        + XEN_HEADROOM_MIB
}

fn log_dir() -> PathBuf {
    std::env::var_os("PXEN_TEST_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pxen-qemu-logs"))
}

/// A copy of the test image in `work`, named `name`.
fn copy_of_image(work: &Path, name: &str) -> PathBuf {
    let copy = work.join(name);
    std::fs::copy(env("PXEN_TEST_IMAGE"), &copy).expect("the test image can be copied");
    copy
}

/// A file of the image's FAT partition, as text.
fn read_from_image(image: &Path, name: &str, work: &Path) -> String {
    let to = work.join(name.replace('/', "_"));
    let _ = std::fs::remove_file(&to);
    image::copy_out(image, name, &to).expect("the file is on the drive");
    std::fs::read_to_string(&to).expect("the file is text")
}

/// Powers on a machine without network booting `image` from a USB stick with `usb_serial`.
fn stick_machine(name: &str, image: &Path, usb_serial: &str, persistent: bool) -> Machine {
    let machine = Machine::start(&MachineConfig {
        name: name.to_string(),
        memory_mib: memory_mib(),
        smbios_serial: format!("PXT-{name}"),
        boot: Boot::UsbStick {
            image: image.to_path_buf(),
            usb_serial: usb_serial.to_string(),
            persistent,
        },
        log_dir: log_dir(),
        echo_console: false,
        nics: Vec::new(),
    })
    .expect("QEMU starts");
    println!("{name}: console log at {}", machine.console_log().display());
    machine
}

/// Waits for `/init`'s banner line (`PXEN: host0 — …` or `PXEN: hostU — …`) and returns it.
fn banner(machine: &mut Machine) -> String {
    machine
        .expect_line(
            "/init's banner line (PXEN: host0 or hostU)",
            false,
            BANNER_TIMEOUT,
            &|text| text.contains("PXEN: host"),
        )
        .expect("/init prints its banner: the role and the reason")
        .text
}

#[test]
#[ignore = "boots the PXEN test image three times to /init's banner (minutes); run by `cargo xtask test`"]
fn a_drive_binds_at_its_first_boot_and_its_copy_on_another_stick_is_a_clone() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let stick = copy_of_image(work.path(), "stick.img");
    assert!(
        read_from_image(&stick, IDENTITY_FILE, work.path()).contains("binding: Unbound"),
        "mkimage writes an image file unbound"
    );

    // The first boot binds the drive to the stick it is on, and makes the host host0.
    let mut first = stick_machine("original-1", &stick, "USB-ORIGINAL", true);
    let line = banner(&mut first);
    assert!(
        line.contains("PXEN: host0 — unbound source drive")
            && line.contains("bound at this first boot to USB serial USB-ORIGINAL")
            && line.contains("stamp #1"),
        "{line}"
    );
    first.power_off().expect("the machine powers off");
    let identity = read_from_image(&stick, IDENTITY_FILE, work.path());
    assert!(
        identity.contains("USB-ORIGINAL") && !identity.contains("Unbound"),
        "the binding is on the stick: {identity}"
    );
    let stamp = read_from_image(&stick, "pxen/stamp.ron", work.path());
    assert!(stamp.contains("counter: 1,"), "{stamp}");

    // The same bytes on another stick: a clone, an ordinary host.
    let mut copy = stick_machine("copy", &stick, "USB-COPY", false);
    let line = banner(&mut copy);
    assert!(
        line.contains("PXEN: hostU — CLONE: this drive is bound to USB serial USB-ORIGINAL")
            && line.contains("but is on USB serial USB-COPY")
            && line.contains("./mkimage --rebind DEVICE"),
        "{line}"
    );
    copy.expect("phase rootfs:", BANNER_TIMEOUT)
        .expect("the clone's host boots on");
    assert!(
        !copy.lines().iter().any(|l| l.text.contains("phase serve:")),
        "a clone never starts the boot service"
    );
    copy.power_off().expect("the machine powers off");

    // The original again: genuine, and its stamp counts on.
    let mut again = stick_machine("original-2", &stick, "USB-ORIGINAL", true);
    let line = banner(&mut again);
    assert!(
        line.contains("PXEN: host0 — genuine source drive")
            && line.contains("(USB serial USB-ORIGINAL)")
            && line.contains("stamp #2"),
        "{line}"
    );
    again.power_off().expect("the machine powers off");
    let stamp = read_from_image(&stick, "pxen/stamp.ron", work.path());
    assert!(stamp.contains("counter: 2,"), "{stamp}");
}

#[test]
#[ignore = "boots the PXEN test image to /init's banner (a minute); run by `cargo xtask test`"]
fn a_corrupted_boot_file_is_named_and_its_host_is_not_host0() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let stick = copy_of_image(work.path(), "corrupted.img");
    // lpxelinux.0 is only served to other hosts, so the corrupted drive still boots.
    let file = work.path().join("lpxelinux.0");
    image::copy_out(&stick, "lpxelinux.0", &file).expect("the drive has lpxelinux.0");
    let mut bytes = std::fs::read(&file).expect("readable");
    bytes[100] ^= 0xff;
    std::fs::write(&file, &bytes).expect("writable");
    image::copy_in(&stick, &file, "lpxelinux.0").expect("the drive can be edited");

    let mut machine = stick_machine("corrupted", &stick, "USB-CORRUPTED", false);
    let line = banner(&mut machine);
    assert!(
        line.contains("PXEN: hostU — CORRUPTED: lpxelinux.0 does not match the drive's manifest")
            && line.contains("rewrite the drive with ./mkimage"),
        "{line}"
    );
    assert!(
        !machine
            .lines()
            .iter()
            .any(|l| l.text.contains("phase serve:")),
        "a corrupted drive never makes host0"
    );
}

/// A copy of the test image whose drive ID is `drive_id`: what a second `./mkimage` with the
/// same configuration makes (another genuine drive of the same cluster). The identity, the
/// boot menu's `pxen.drive=` and the menu's hash in the manifest change together.
fn image_with_drive_id(work: &Path, name: &str, drive_id: &str) -> PathBuf {
    let copy = copy_of_image(work, name);
    let identity = read_from_image(&copy, IDENTITY_FILE, work);
    let old_id = identity
        .split("drive_id: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the identity has a drive_id")
        .to_string();
    let menu = read_from_image(&copy, "syslinux.cfg", work).replace(&old_id, drive_id);
    let menu_path = work.join(format!("{name}.syslinux.cfg"));
    std::fs::write(&menu_path, &menu).expect("writable");
    let old_hash = manifest::hash_file(&work.join("syslinux.cfg")).expect("hashable");
    let new_hash = manifest::hash_file(&menu_path).expect("hashable");
    let identity = identity
        .replace(&old_id, drive_id)
        .replace(&old_hash, &new_hash);
    let identity_path = work.join(format!("{name}.identity.ron"));
    std::fs::write(&identity_path, identity).expect("writable");
    image::copy_in(&copy, &menu_path, "syslinux.cfg").expect("the menu is written");
    image::copy_in(&copy, &identity_path, IDENTITY_FILE).expect("the identity is written");
    copy
}

/// The MAC of the test's PXE client.
const PROBE_MAC: MacAddr = MacAddr::new([0x52, 0x54, 0x00, 0x60, 0x00, 0x99]);

/// Sends a PXE client's DHCPDISCOVER from the test port and returns the MACs of every boot
/// server that made a proxyDHCP offer to it within [`OFFER_WINDOW`].
fn proxydhcp_offerers(
    cluster: &Cluster,
    observer: &Receiver<Observed>,
    xid: u32,
) -> BTreeSet<MacAddr> {
    // Frames from before this probe are not its answers.
    while observer.try_recv().is_ok() {}
    let port = cluster.test_port("probe").expect("the test port binds");
    port.send(&build::pxe_discover(PROBE_MAC, xid))
        .expect("the PXE request is sent");
    let deadline = Instant::now() + OFFER_WINDOW;
    let mut offerers = BTreeSet::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(observed) = observer.recv_timeout(left) else {
            break;
        };
        let offer = observed
            .summary
            .dhcp()
            .is_some_and(|d| d.message_type == DhcpType::Offer && d.pxe);
        if offer {
            offerers.insert(observed.summary.src);
        }
    }
    offerers
}

fn usb_host(name: &str, last: u8) -> HostSpec {
    HostSpec {
        name: name.into(),
        mac: MacAddr::new([0x52, 0x54, 0x00, 0x60, 0x00, last]),
        serial: format!("PXT-{name}"),
        memory_mib: memory_mib(),
    }
}

fn stick(image: &Path, serial: &str) -> Stick {
    Stick {
        image: image.to_path_buf(),
        usb_serial: serial.into(),
        persistent: false,
    }
}

#[test]
#[ignore = "boots three would-be host0s on one LAN (minutes); run by `cargo xtask test`"]
fn exactly_one_boot_server_serves_the_lan() {
    let work = tempfile::tempdir().expect("a temporary directory");
    // Three genuine drives of one cluster; the lowest drive ID wins the tie-break.
    let (a_id, b_id, c_id) = (
        "fffffffffffffffffffffffffffffffa",
        "00000000000000000000000000000002",
        "00000000000000000000000000000001",
    );
    let a_img = image_with_drive_id(work.path(), "a.img", a_id);
    let b_img = image_with_drive_id(work.path(), "b.img", b_id);
    let c_img = image_with_drive_id(work.path(), "c.img", c_id);
    let (a, b, c) = (
        usb_host("a", 0x0a),
        usb_host("b", 0x0b),
        usb_host("c", 0x0c),
    );
    let mut cluster = ClusterBuilder::new(&log_dir().join("one-server"))
        .usb_host(a.clone())
        .usb_host(b.clone())
        .usb_host(c.clone())
        .test_port("probe")
        .start()
        .expect("the cluster starts");
    let observer = cluster.switch().observe();

    // Two host0s booted at the same moment: they hear each other while they probe.
    cluster
        .power_on_usb("a", &stick(&a_img, "USB-A"))
        .expect("a powers on");
    cluster
        .power_on_usb("b", &stick(&b_img, "USB-B"))
        .expect("b powers on");
    // Whichever finished its probe first may have served for a moment; b, whose drive wins,
    // serves in the end, and a either never serves or stands down.
    let machine = cluster.usb_host("b").expect("powered on");
    assert!(
        banner(machine).contains("PXEN: host0 —"),
        "b has a genuine drive"
    );
    machine
        .expect("boot service: TFTP on", BANNER_TIMEOUT)
        .expect("b serves");
    let machine = cluster.usb_host("a").expect("powered on");
    assert!(
        banner(machine).contains("PXEN: host0 —"),
        "a has a genuine drive"
    );
    let verdict = machine
        .expect_line(
            "a's boot service not serving, or standing down",
            false,
            BANNER_TIMEOUT,
            &|text| {
                text.contains("boot service: NOT SERVING")
                    || text.contains("boot service: STOOD DOWN")
            },
        )
        .expect("a gives way to b")
        .text;
    println!("a: {verdict}");
    assert_eq!(
        proxydhcp_offerers(&cluster, &observer, 1),
        BTreeSet::from([b.mac]),
        "after the settle time, only b answers PXE clients"
    );

    // A third appears while b serves, with a drive that wins: b stands down.
    cluster
        .power_on_usb("c", &stick(&c_img, "USB-C"))
        .expect("c powers on");
    let machine = cluster.usb_host("c").expect("powered on");
    machine
        .expect("boot service: TFTP on", BANNER_TIMEOUT)
        .expect("c serves");
    let machine = cluster.usb_host("b").expect("powered on");
    let stood_down = machine
        .expect("boot service: STOOD DOWN", BANNER_TIMEOUT)
        .expect("b stands down when a better server appears")
        .text;
    println!("b: {stood_down}");
    assert_eq!(
        proxydhcp_offerers(&cluster, &observer, 2),
        BTreeSet::from([c.mac]),
        "only c answers PXE clients now"
    );
}
