//! One host boots the PXEN image from a USB stick: everything is checked from inside the
//! booted dom0, through the root shell the test overlay gives on the Xen console.
//!
//! Run by `cargo xtask test`, which builds the test image and sets:
//! - `PXEN_TEST_IMAGE`: the image file (never modified: QEMU boots a snapshot of it);
//! - `PXEN_TEST_DOM0_MEM_MIB`: dom0's memory in the image, in MiB;
//! - `PXEN_TEST_LOG_DIR` (optional): where console logs go.

use std::path::PathBuf;
use std::time::Duration;

use pxen_qemu_tests::{Boot, Machine, MachineConfig};

/// The test image uses the default configuration, whose `hostname_prefix` is "pxen"
/// (`init/config-default/cluster.ron`) and which lists no host by serial.
const HOSTNAME_PREFIX: &str = "pxen";

/// Two DMI serials as real machines have them (neither is a known bogus value).
const SERIAL_A: &str = "PXT-A-4711-0001";
const SERIAL_B: &str = "PXT-B-0815-0002";

/// Xen needs memory beside dom0's under QEMU.
const XEN_HEADROOM_MIB: u64 = 512;

/// From power-on to a shell under TCG emulation, the root filesystem copy included.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// Until systemd has started everything it starts at boot.
const SYSTEMD_TIMEOUT: Duration = Duration::from_secs(300);
/// For a quick command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the scenarios with `cargo xtask test`"))
}

/// Powers on a machine booting the test image with DMI serial `serial`, and waits for its
/// root shell.
fn boot(name: &str, serial: &str) -> Machine {
    let dom0_mem_mib: u64 = env("PXEN_TEST_DOM0_MEM_MIB")
        .parse()
        .expect("PXEN_TEST_DOM0_MEM_MIB is a number of MiB");
    let log_dir = std::env::var_os("PXEN_TEST_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("pxen-qemu-logs"));
    let config = MachineConfig {
        name: name.to_string(),
        memory_mib: dom0_mem_mib + XEN_HEADROOM_MIB,
        smbios_serial: serial.to_string(),
        boot: Boot::UsbStick {
            image: env("PXEN_TEST_IMAGE").into(),
            usb_serial: format!("USB-{name}"),
            persistent: false,
        },
        log_dir,
        echo_console: false,
        nics: Vec::new(),
    };
    let mut machine = Machine::start(&config).expect("QEMU starts");
    println!("{name}: console log at {}", machine.console_log().display());
    machine
        .wait_for_shell(BOOT_TIMEOUT)
        .expect("dom0 boots to the autologin root shell");
    // Kernel messages on the console would mix with the output of the commands we run.
    machine
        .run_ok("dmesg -n 1", COMMAND_TIMEOUT)
        .expect("console log level can be lowered");
    machine
}

/// Waits until systemd has finished booting; a "degraded" system is reported with its
/// failed units but is not a failure of PXEN's boot.
fn wait_for_systemd(machine: &mut Machine) {
    let state = machine
        .run("systemctl is-system-running --wait", SYSTEMD_TIMEOUT)
        .expect("systemctl answers");
    let last_line = state.stdout.lines().last().unwrap_or("").trim().to_string();
    println!("{}: systemd is {last_line}", machine.name());
    if last_line != "running" {
        let failed = machine
            .run("systemctl --failed --no-legend --plain", COMMAND_TIMEOUT)
            .expect("systemctl lists failed units");
        println!("{}: failed units:\n{}", machine.name(), failed.stdout);
    }
}

fn hostname(machine: &mut Machine) -> String {
    machine
        .run_ok("hostname", COMMAND_TIMEOUT)
        .expect("hostname runs")
        .trim()
        .to_string()
}

/// Powers the machine off and prints its boot timeline.
fn finish(mut machine: Machine) {
    println!("{}", machine.timeline());
    machine.power_off().expect("QEMU can be stopped");
}

#[test]
#[ignore = "boots the PXEN test image in QEMU (minutes); run by `cargo xtask test`"]
fn a_usb_booted_host_runs_xen_with_dom0_in_ram_and_its_derived_hostname() {
    let mut machine = boot("single-a", SERIAL_A);
    wait_for_systemd(&mut machine);

    let hypervisor = machine
        .run_ok("cat /sys/hypervisor/type", COMMAND_TIMEOUT)
        .expect("sysfs readable");
    assert_eq!(hypervisor.trim(), "xen");

    let info = machine
        .run_ok("xl info", COMMAND_TIMEOUT)
        .expect("`xl info` succeeds in dom0");
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("xen_version"))
        .map(|rest| rest.trim_start_matches([' ', ':']).trim().to_string());
    assert!(
        version.as_deref().is_some_and(|v| v.starts_with("4.17")),
        "xl info names Xen 4.17, got {version:?} in:\n{info}"
    );

    let root_fs = machine
        .run_ok("findmnt -n -o FSTYPE /", COMMAND_TIMEOUT)
        .expect("findmnt runs");
    assert_eq!(root_fs.trim(), "tmpfs", "/ must be in RAM");

    assert_eq!(
        hostname(&mut machine),
        pxen::identity::hostname_for_serial(HOSTNAME_PREFIX, SERIAL_A)
    );

    let target = machine
        .run("systemctl is-active multi-user.target", COMMAND_TIMEOUT)
        .expect("systemctl answers");
    assert_eq!(target.stdout.trim(), "active");
    finish(machine);
}

#[test]
#[ignore = "boots the PXEN test image in QEMU twice (minutes); run by `cargo xtask test`"]
fn the_hostname_is_the_same_at_every_boot_of_a_machine_and_differs_between_machines() {
    let expected_a = pxen::identity::hostname_for_serial(HOSTNAME_PREFIX, SERIAL_A);
    let expected_b = pxen::identity::hostname_for_serial(HOSTNAME_PREFIX, SERIAL_B);
    assert_ne!(
        expected_a, expected_b,
        "two serials must give two hostnames"
    );

    let mut again = boot("single-a-again", SERIAL_A);
    assert_eq!(hostname(&mut again), expected_a, "serial A, second boot");
    finish(again);

    let mut other = boot("single-b", SERIAL_B);
    assert_eq!(hostname(&mut other), expected_b, "serial B");
    finish(other);
}
