//! The whole cluster: host0 boots the test image from a USB stick, gets an address from the
//! LAN's DHCP server (which knows nothing of PXE), serves the drive, and wakes the two hostUs
//! named in the drive's configuration with Wake-on-LAN; they are powered on by nothing else
//! (the switch's power button), boot over the network from host0 only, and come up with the
//! hostnames the configuration gives their serials (so the configuration reached them inside
//! the initramfs host0 served).

use std::path::PathBuf;
use std::time::Duration;

use pxen::net::mac::MacAddr;
use pxen_qemu_tests::cluster::{ClusterBuilder, HostSpec, Stick};
use pxen_qemu_tests::image::{self, ConfiguredHost};

/// Xen needs memory beside dom0's under QEMU.
const XEN_HEADROOM_MIB: u64 = 512;
/// From power-on until host0 serves: its /init brings the network up before copying the root
/// filesystem.
const SERVING_TIMEOUT: Duration = Duration::from_secs(300);
/// From host0 serving until Wake-on-LAN has powered on a hostU.
const WAKE_TIMEOUT: Duration = Duration::from_secs(120);
/// From a hostU's power-on to its shell: PXE, the boot files over HTTP, then the same boot as
/// host0's, all under TCG with three machines on two cores.
const HOSTU_BOOT_TIMEOUT: Duration = Duration::from_secs(1200);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// From a host's shell until host0 has accepted its report: its network comes up on the Xen
/// bridge (DHCP), then `pxen-report.service` posts.
const REPORT_TIMEOUT: Duration = Duration::from_secs(300);
/// host0's DMI serial, and the hostname the configuration gives it.
const HOST0_SERIAL: &str = "PXT-H0-0001";
const HOST0_HOSTNAME: &str = "host-zero";

const HOST0_MAC: MacAddr = MacAddr::new([0x52, 0x54, 0x00, 0x50, 0x00, 0x10]);
const HOSTU: [(&str, [u8; 6], &str, &str); 2] = [
    (
        "hostu1",
        [0x52, 0x54, 0x00, 0x50, 0x00, 0x11],
        "PXT-U1-0001",
        "hostu-one",
    ),
    (
        "hostu2",
        [0x52, 0x54, 0x00, 0x50, 0x00, 0x12],
        "PXT-U2-0002",
        "hostu-two",
    ),
];

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the scenarios with `cargo xtask test`"))
}

/// The configuration an administrator writes for this cluster: host0 by its serial (no MAC:
/// it is not woken), the hostUs with the MACs host0 wakes; the image's own secret is kept.
fn cluster_config(secret: &str) -> String {
    let mut hosts = vec![ConfiguredHost {
        serial: HOST0_SERIAL.into(),
        hostname: HOST0_HOSTNAME.into(),
        mac: None,
    }];
    hosts.extend(
        HOSTU
            .iter()
            .map(|(_, mac, serial, hostname)| ConfiguredHost {
                serial: serial.to_string(),
                hostname: hostname.to_string(),
                mac: Some(MacAddr::new(*mac)),
            }),
    );
    image::cluster_config("qemu-cluster", secret, &hosts)
}

#[test]
#[ignore = "boots a three-host cluster in QEMU (many minutes); run by `cargo xtask test`"]
fn host0_wakes_and_network_boots_the_cluster() {
    let dom0_mem_mib: u64 = env("PXEN_TEST_DOM0_MEM_MIB")
        .parse()
        .expect("a number of MiB");
    let memory_mib = dom0_mem_mib + XEN_HEADROOM_MIB;
    let work = tempfile::tempdir().expect("a temporary directory");
    let original = PathBuf::from(env("PXEN_TEST_IMAGE"));
    let secret = image::config_secret(&original, work.path()).expect("the image's secret");
    let image = work.path().join("cluster.img");
    image::with_config(&original, &image, &cluster_config(&secret), work.path())
        .expect("the configuration is written onto a copy of the image");
    let log_dir =
        std::env::var_os("PXEN_TEST_LOG_DIR").map_or_else(|| work.path().join("logs"), Into::into);

    let mut builder = ClusterBuilder::new(&log_dir).host0(
        HostSpec {
            name: "host0".into(),
            mac: HOST0_MAC,
            serial: HOST0_SERIAL.into(),
            memory_mib,
        },
        Stick {
            image,
            usb_serial: "USB-HOST0".into(),
        },
    );
    for (name, mac, serial, _) in HOSTU {
        builder = builder.hostu(HostSpec {
            name: name.into(),
            mac: MacAddr::new(mac),
            serial: serial.into(),
            memory_mib,
        });
    }
    let mut cluster = builder.start().expect("the cluster starts");

    let host0 = cluster.host0().expect("host0 is powered on");
    host0
        .expect("boot service: TFTP on", SERVING_TIMEOUT)
        .expect("host0 starts its boot service");
    // Everything host0 serves from here on comes from its RAM copy of the drive.
    host0
        .unplug_usb_stick(COMMAND_TIMEOUT)
        .expect("the administrator pulls host0's USB stick");

    for (name, _, _, hostname) in HOSTU {
        let powered = cluster
            .wait_powered_on(name, WAKE_TIMEOUT)
            .expect("Wake-on-LAN from host0 powers the hostU on");
        println!("{name}: powered on by Wake-on-LAN at {powered:?}");
        let checked = cluster
            .with_hostu(name, |machine| {
                machine
                    .wait_for_shell(HOSTU_BOOT_TIMEOUT)
                    .expect("the hostU boots over the network to its shell");
                machine
                    .run_ok("dmesg -n 1", COMMAND_TIMEOUT)
                    .expect("console log level can be lowered");
                let seen = machine
                    .run_ok(
                        "hostname; cat /sys/hypervisor/type; findmnt -n -o FSTYPE /",
                        COMMAND_TIMEOUT,
                    )
                    .expect("commands run");
                assert_eq!(
                    seen.lines().collect::<Vec<_>>(),
                    [hostname, "xen", "tmpfs"],
                    "{name}: hostname from the served configuration, Xen, / in RAM"
                );
                let cmdline = machine
                    .run_ok("cat /proc/cmdline", COMMAND_TIMEOUT)
                    .expect("cat runs");
                assert!(
                    cmdline.contains("pxen.boot=net"),
                    "{name} booted over the network: {cmdline}"
                );
                assert_bridged(machine, name);
            })
            .expect("the hostU is known");
        assert!(checked.is_some(), "{name} is powered on");
        assert_eq!(
            cluster.power_ons(name).expect("known"),
            1,
            "{name} was powered on once"
        );
    }
    let serials: Vec<&str> = std::iter::once(HOST0_SERIAL)
        .chain(HOSTU.iter().map(|h| h.2))
        .collect();
    let reported = cluster
        .await_online(&serials, REPORT_TIMEOUT)
        .expect("every host reports to host0 once its dom0 is up");
    println!("host0 accepted:\n{}", reported.join("\n"));
    let host0 = cluster.host0().expect("host0 is on");
    // host0's own report may come after the hostUs' and so after this line.
    let stopped = "wake-on-lan: every host is online";
    if !host0.lines().iter().any(|line| line.text.contains(stopped)) {
        host0
            .expect(stopped, COMMAND_TIMEOUT)
            .expect("host0 stops waking hosts once they are online");
    }
    host0
        .wait_for_shell(HOSTU_BOOT_TIMEOUT)
        .expect("host0 reaches its shell");
    host0
        .run_ok("dmesg -n 1", COMMAND_TIMEOUT)
        .expect("console log level can be lowered");
    assert_bridged(host0, "host0");
    let table = host0
        .run_ok("pxen status", COMMAND_TIMEOUT)
        .expect("pxen status on host0 reads its own status page");
    println!("host0's status page:\n{table}");
    // From a hostU, over the LAN, after host0's address moved to its Xen bridge: the boot
    // service survived the real init's network setup.
    let status = cluster
        .with_hostu(HOSTU[0].0, |machine| {
            // pxen status asks pxen.server= of the kernel command line: host0.
            machine.run_ok("pxen status --json", COMMAND_TIMEOUT)
        })
        .expect("the hostU is known")
        .expect("the hostU is on")
        .expect("pxen status on a hostU reads host0's status page over the LAN");
    assert_all_online(&status);
    println!("{}", cluster.timeline());
}

/// dom0's address is on the Xen bridge, with the network card enslaved to it.
fn assert_bridged(machine: &mut pxen_qemu_tests::machine::Machine, name: &str) {
    let bridge = machine
        .run_ok(
            "ip -4 -o addr show dev xenbr0; ip -o link show master xenbr0",
            COMMAND_TIMEOUT,
        )
        .expect("ip runs");
    assert!(
        bridge.contains("inet 10.77.0."),
        "{name}: dom0's address from the LAN's DHCP server is on xenbr0: {bridge}"
    );
    assert!(
        bridge.contains("master xenbr0"),
        "{name}: the network card is a port of xenbr0: {bridge}"
    );
}

/// host0's status page lists the three hosts, each online and known to the configuration.
fn assert_all_online(json: &str) {
    let status: serde_json::Value = serde_json::from_str(json.trim())
        .unwrap_or_else(|e| panic!("the status page is JSON ({e}): {json}"));
    let hosts = status["hosts"].as_array().expect("a list of hosts");
    let mut hostnames: Vec<&str> = hosts
        .iter()
        .map(|host| {
            assert_eq!(host["state"], "online", "{host}");
            assert_eq!(host["in_config"], true, "{host}");
            host["hostname"].as_str().expect("a hostname")
        })
        .collect();
    hostnames.sort_unstable();
    let mut expected: Vec<&str> = HOSTU.iter().map(|h| h.3).collect();
    expected.push(HOST0_HOSTNAME);
    expected.sort_unstable();
    assert_eq!(hostnames, expected, "{json}");
}
