//! The whole cluster, in three acts.
//!
//! 1. host0 boots the test image from a USB stick, gets an address from the LAN's DHCP server
//!    (which knows nothing of PXE), serves the drive, and wakes the two hostUs named in the
//!    drive's configuration with Wake-on-LAN; they are powered on by nothing else (the
//!    switch's power button), boot over the network from host0 only, and come up with the
//!    hostnames the configuration gives their serials (so the configuration reached them
//!    inside the initramfs host0 served). The configuration names users and SSH keys: the
//!    real OpenSSH client logs in to every host through a port the LAN forwards, as root and
//!    as the configured user, and finds its hostname, the cluster's `/etc/hosts` and the
//!    Xen bridge.
//! 2. A hostU reboots: it comes back with the same SSH host key (its state was saved to
//!    host0 and served back) and the same hostname.
//! 3. The administrator breaks the configuration on the drive: host0 and a hostU boot with
//!    the last-known-good copy host0 kept on the drive in act 1, and say so on the console.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;
use pxen_qemu_tests::cluster::{Cluster, ClusterBuilder, HostSpec, Stick};
use pxen_qemu_tests::image::{self, ConfiguredHost};
use pxen_qemu_tests::machine::Machine;
use pxen_qemu_tests::ssh::{self, Ssh, SshKey};

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
/// From a host's shell until its sshd answers through the LAN's forward.
const SSH_TIMEOUT: Duration = Duration::from_secs(180);
/// From a hostU's report until host0 has its state (`pxen-state.service` runs once the
/// network is online, like the report).
const STATE_TIMEOUT: Duration = Duration::from_secs(300);
/// host0's DMI serial, and the hostname the configuration gives it.
const HOST0_SERIAL: &str = "PXT-H0-0001";
const HOST0_HOSTNAME: &str = "host-zero";
/// The cluster's DNS domain: `/etc/hosts` names hosts by their FQDN.
const DOMAIN: &str = "cluster.test";
/// The account the configuration adds on every host.
const USER: &str = "ops";
/// The fixed address the configuration gives hostu2's dom0 (the others use DHCP).
const HOSTU2_ADDRESS: &str = "10.77.0.40";

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
/// it is not woken), the hostUs with the MACs host0 wakes, hostu2 with a fixed address; the
/// domain, root's key and a user with the same key and `sudo`; the image's own secret is
/// kept.
fn cluster_config(secret: &str, key: &SshKey) -> String {
    let mut hosts = vec![ConfiguredHost {
        serial: HOST0_SERIAL.into(),
        hostname: HOST0_HOSTNAME.into(),
        mac: None,
        static_address: None,
    }];
    hosts.extend(
        HOSTU
            .iter()
            .map(|(name, mac, serial, hostname)| ConfiguredHost {
                serial: serial.to_string(),
                hostname: hostname.to_string(),
                mac: Some(MacAddr::new(*mac)),
                static_address: (*name == "hostu2").then(|| format!("{HOSTU2_ADDRESS}/24")),
            }),
    );
    let fields = [
        format!("domain: Some({DOMAIN:?})"),
        format!("root: Root(ssh_keys: [{:?}])", key.public),
        format!(
            "users: [User(name: {USER:?}, groups: [\"sudo\"], ssh_keys: [{:?}])]",
            key.public
        ),
    ];
    image::cluster_config_with("qemu-cluster", secret, &hosts, &fields)
}

/// Where a test run keeps its files.
struct Run {
    work: tempfile::TempDir,
    log_dir: PathBuf,
    memory_mib: u64,
    /// host0's stick: writes reach the file, as on a real stick.
    stick: Stick,
    key: SshKey,
}

impl Run {
    fn new() -> Run {
        let dom0_mem_mib: u64 = env("PXEN_TEST_DOM0_MEM_MIB")
            .parse()
            .expect("a number of MiB");
        let work = tempfile::tempdir().expect("a temporary directory");
        let key = SshKey::generate(work.path()).expect("ssh-keygen makes the administrator's key");
        let original = PathBuf::from(env("PXEN_TEST_IMAGE"));
        let secret = image::config_secret(&original, work.path()).expect("the image's secret");
        let image = work.path().join("cluster.img");
        image::with_config(
            &original,
            &image,
            &cluster_config(&secret, &key),
            work.path(),
        )
        .expect("the configuration is written onto a copy of the image");
        let log_dir = std::env::var_os("PXEN_TEST_LOG_DIR")
            .map_or_else(|| work.path().join("logs"), Into::into);
        Run {
            log_dir,
            memory_mib: dom0_mem_mib + XEN_HEADROOM_MIB,
            stick: Stick {
                image,
                usb_serial: "USB-HOST0".into(),
                persistent: true,
            },
            key,
            work,
        }
    }

    fn spec(&self, name: &str, mac: MacAddr, serial: &str) -> HostSpec {
        HostSpec {
            name: name.into(),
            mac,
            serial: serial.into(),
            memory_mib: self.memory_mib,
        }
    }

    /// A cluster of host0 and the hostUs named in `hostus`, its logs in `act`'s directory.
    fn cluster(&self, act: &str, hostus: &[&str]) -> Cluster {
        let mut builder = ClusterBuilder::new(&self.log_dir.join(act)).host0(
            self.spec("host0", HOST0_MAC, HOST0_SERIAL),
            self.stick.clone(),
        );
        for (name, mac, serial, _) in HOSTU.iter().filter(|h| hostus.contains(&h.0)) {
            builder = builder.hostu(self.spec(name, MacAddr::new(*mac), serial));
        }
        builder.start().expect("the cluster starts")
    }

    fn ssh(&self) -> Ssh {
        Ssh::new(&self.key, &self.work.path().join("known_hosts"))
    }
}

#[test]
#[ignore = "boots a three-host cluster in QEMU three times (many minutes); run by `cargo xtask test`"]
fn the_cluster_boots_is_configured_and_hosts_stay_themselves() {
    let run = Run::new();
    let mut cluster = run.cluster("1-cluster", &["hostu1", "hostu2"]);
    act_1_boot_the_cluster(&mut cluster, &run);
    act_2_reboot_a_hostu(&mut cluster, &run);
    println!("{}", cluster.timeline());
    drop(cluster);
    act_3_boot_on_the_last_known_good_configuration(&run);
}

/// Act 1: the whole cluster boots, every host reports, and every host is configured.
fn act_1_boot_the_cluster(cluster: &mut Cluster, run: &Run) {
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
                assert_network_booted(machine, name, hostname);
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

    let ssh = run.ssh();
    let hosts = std::iter::once(("host0", HOST0_HOSTNAME)).chain(HOSTU.iter().map(|h| (h.0, h.3)));
    for (name, hostname) in hosts {
        assert_configured_over_ssh(cluster, &ssh, name, hostname);
    }
}

/// Act 2: hostu1 reboots, and is the same host: same SSH host key, same hostname.
fn act_2_reboot_a_hostu(cluster: &mut Cluster, run: &Run) {
    let (name, _, serial, hostname) = HOSTU[0];
    let port = cluster
        .ssh_port(name, SSH_TIMEOUT)
        .expect("hostu1's sshd is forwarded");
    let key_before =
        ssh::host_key(port, Instant::now() + SSH_TIMEOUT).expect("hostu1's SSH host key");
    // The line may have come before act 1 ended: look for it in host0's whole kernel log.
    let stored = format!("state: stored {}", serial.to_lowercase());
    let wait = format!(
        "timeout {} sh -c 'until dmesg | grep -F \"{stored}\"; do sleep 2; done'",
        STATE_TIMEOUT.as_secs()
    );
    let saved = cluster
        .ssh_to(
            &run.ssh(),
            "host0",
            "root",
            &wait,
            Instant::now() + STATE_TIMEOUT + SSH_TIMEOUT,
        )
        .expect("ssh to host0 runs");
    assert_eq!(
        saved.status, 0,
        "hostu1 uploads its state and host0 keeps it (awaited {stored:?} in host0's kernel log)"
    );
    println!("{}", saved.stdout);
    // host0's console log level goes back up (act 1 lowered it so the kernel would not
    // interleave with its shell): the rebooted hostU's report is awaited there.
    cluster
        .host0()
        .expect("host0 is on")
        .run_ok("dmesg -n 7", COMMAND_TIMEOUT)
        .expect("console log level can be raised again");

    cluster
        .with_hostu(name, |machine| {
            machine
                .reboot_in_place()
                .expect("the machine is told to reset on reboot");
            machine
                .send("systemctl reboot\n")
                .expect("the administrator types `systemctl reboot`");
        })
        .expect("the hostU is known")
        .expect("the hostU is on");
    let reported = cluster
        .await_online(&[serial], HOSTU_BOOT_TIMEOUT)
        .expect("hostu1 boots again over the network and reports to host0");
    println!("after the reboot, host0 accepted: {}", reported.join(""));
    cluster
        .with_hostu(name, |machine| {
            machine
                .wait_for_shell(HOSTU_BOOT_TIMEOUT)
                .expect("the rebooted hostU reaches its shell");
            assert_network_booted(machine, name, hostname);
        })
        .expect("the hostU is known")
        .expect("the hostU is on");
    let port = cluster
        .ssh_port(name, SSH_TIMEOUT)
        .expect("hostu1's sshd is forwarded");
    let key_after =
        ssh::host_key(port, Instant::now() + SSH_TIMEOUT).expect("hostu1's SSH host key");
    assert_eq!(
        key_after, key_before,
        "the rebooted hostU presents the SSH host key it had"
    );
    // The known-hosts file holds the key from act 1: ssh itself refuses a changed one.
    assert_configured_over_ssh(cluster, &run.ssh(), name, hostname);
}

/// Act 3: the configuration on the drive is broken; host0 and a hostU boot with the
/// last-known-good copy host0 kept in act 1, and say so.
fn act_3_boot_on_the_last_known_good_configuration(run: &Run) {
    let broken = run.work.path().join("broken.ron");
    // The closing parenthesis is missing: RON expects a comma after the last value.
    std::fs::write(
        &broken,
        "Cluster(name: \"qemu-cluster\", secret: \"0123456789abcdef\"\n",
    )
    .expect("the broken file is written");
    image::copy_in(&run.stick.image, &broken, "config/cluster.ron")
        .expect("the administrator's broken configuration is written onto the stick");
    let kept = run.work.path().join("kept.ron");
    image::copy_out(&run.stick.image, "pxen/last-good/cluster.ron", &kept)
        .expect("host0 kept a last-known-good copy on the stick in act 1");

    let mut cluster = run.cluster("3-last-good", &["hostu1"]);
    let notice = "THE CONFIGURATION IS BROKEN: THIS HOST RUNS THE LAST-KNOWN-GOOD COPY";
    let host0 = cluster.host0().expect("host0 is powered on");
    host0
        .expect(notice, SERVING_TIMEOUT)
        .expect("host0 says on its console that it runs the last-known-good copy");
    host0
        .expect("config/cluster.ron:1:57: Expected comma", COMMAND_TIMEOUT)
        .expect("host0 says where the configuration is broken");
    host0
        .expect(&format!("hostname {HOST0_HOSTNAME}"), COMMAND_TIMEOUT)
        .expect("host0 is named by the last-known-good copy");
    host0
        .expect("boot service: TFTP on", SERVING_TIMEOUT)
        .expect("host0 serves with the last-known-good copy");
    let (name, _, _, hostname) = HOSTU[0];
    cluster
        .wait_powered_on(name, WAKE_TIMEOUT)
        .expect("host0 wakes the hostU the last-known-good copy lists");
    cluster
        .with_hostu(name, |machine| {
            machine
                .expect(notice, HOSTU_BOOT_TIMEOUT)
                .expect("the hostU says on its console that it runs the last-known-good copy");
            machine
                .expect(&format!("hostname {hostname}"), COMMAND_TIMEOUT)
                .expect("the hostU is named by the last-known-good copy host0 served");
        })
        .expect("the hostU is known")
        .expect("the hostU is on");
    let written = std::fs::read_to_string(&broken).expect("the broken file");
    let on_stick = run.work.path().join("on-stick.ron");
    image::copy_out(&run.stick.image, "config/cluster.ron", &on_stick)
        .expect("the configuration is read back from the stick");
    assert_eq!(
        std::fs::read_to_string(&on_stick).expect("read back"),
        written,
        "nothing the administrator wrote was overwritten"
    );
}

/// The machine booted over the network from host0, with the hostname the served
/// configuration gives it, on Xen, with its root filesystem in RAM.
fn assert_network_booted(machine: &mut Machine, name: &str, hostname: &str) {
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
}

/// Logs in to `name` over SSH as root and as the configured user with the configured key,
/// and finds what the configuration says: its hostname, `/etc/hosts` naming the host with a
/// fixed address by its FQDN, the Xen bridge with the network card in it, the user in `sudo`.
fn assert_configured_over_ssh(cluster: &mut Cluster, ssh: &Ssh, name: &str, hostname: &str) {
    let deadline = Instant::now() + SSH_TIMEOUT;
    let root = cluster
        .ssh_to(
            ssh,
            name,
            "root",
            "hostname; cat /etc/hosts; ip -o link show master xenbr0",
            deadline,
        )
        .expect("root logs in over SSH with the configured key");
    assert_eq!(root.status, 0, "{name}: {root:?}");
    assert_eq!(
        root.stdout.lines().next(),
        Some(hostname),
        "{name}: {root:?}"
    );
    let fqdn_line = format!("{HOSTU2_ADDRESS}\thostu-two.{DOMAIN}\thostu-two");
    assert!(
        root.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(fqdn_line.split('\t'))),
        "{name}: /etc/hosts names the host with a fixed address by its FQDN: {root:?}"
    );
    assert!(
        root.stdout.contains("master xenbr0"),
        "{name}: the network card is a port of xenbr0: {root:?}"
    );
    let user = cluster
        .ssh_to(ssh, name, USER, "id -un; id -Gn", deadline)
        .expect("the configured user logs in over SSH with the configured key");
    assert_eq!(user.status, 0, "{name}: {user:?}");
    let mut lines = user.stdout.lines();
    assert_eq!(lines.next(), Some(USER), "{name}: {user:?}");
    assert!(
        lines
            .next()
            .is_some_and(|groups| groups.split(' ').any(|g| g == "sudo")),
        "{name}: {USER} is in the group sudo: {user:?}"
    );
}

/// dom0's address is on the Xen bridge, with the network card enslaved to it.
fn assert_bridged(machine: &mut Machine, name: &str) {
    let bridge = machine
        .run_ok(
            "ip -4 -o addr show dev xenbr0; ip -o link show master xenbr0",
            COMMAND_TIMEOUT,
        )
        .expect("ip runs");
    assert!(
        bridge.contains("inet 10.77.0."),
        "{name}: dom0's address on the LAN is on xenbr0: {bridge}"
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
