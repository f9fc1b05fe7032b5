//! The harness itself, on real Xen: boots Xen and the dom0 kernel with QEMU's multiboot
//! loader and a tiny busybox initramfs whose `/init` starts a shell on the Xen console, then
//! drives that shell. It needs no PXEN crate but this one, so a harness bug shows here and
//! not as a mysterious scenario failure.
//!
//! Xen and the kernel come from `PXEN_HARNESS_XEN` (the uncompressed Xen ELF) and
//! `PXEN_HARNESS_KERNEL`, or else are copied out of the image `PXEN_TEST_IMAGE` (with
//! mtools). Needs `qemu-system-x86_64`, `cpio`, `gzip`, mtools and `/bin/busybox`
//! (`cargo xtask deps`).
//!
//! The QMP control of a machine needs no guest at all: a USB stick of zeros, which the BIOS
//! fails to boot, is pulled out of the idling machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pxen_qemu_tests::machine::USB_STICK_ID;
use pxen_qemu_tests::{image, Boot, HarnessError, Machine, MachineConfig, Timeline};

/// The initramfs's `/init`: a console shell, plus lines shaped like PXEN's phase lines so the
/// timeline has something to find.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "pxen: phase busybox: test init"
exec setsid cttyhack sh
"#;

fn run_tool(program: &str, args: &[&str], stdout: Option<&Path>) {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(path) = stdout {
        command.stdout(fs::File::create(path).expect("the output file can be created"));
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed: {status}");
}

/// Xen (uncompressed) and the kernel, from the environment or the test image.
fn xen_and_kernel(work: &Path) -> (PathBuf, PathBuf) {
    if let (Ok(xen), Ok(kernel)) = (
        std::env::var("PXEN_HARNESS_XEN"),
        std::env::var("PXEN_HARNESS_KERNEL"),
    ) {
        return (xen.into(), kernel.into());
    }
    let image = std::env::var("PXEN_TEST_IMAGE")
        .expect("set PXEN_TEST_IMAGE (or PXEN_HARNESS_XEN and PXEN_HARNESS_KERNEL); `cargo xtask test` does");
    let xen_gz = work.join("xen.gz");
    let kernel = work.join("vmlinuz");
    for (name, to) in [("xen.gz", &xen_gz), ("vmlinuz", &kernel)] {
        image::copy_out(Path::new(&image), name, to).expect("the image holds Xen and the kernel");
    }
    let xen = work.join("xen.elf");
    run_tool(
        "gzip",
        &["-dc", xen_gz.to_str().expect("UTF-8")],
        Some(&xen),
    );
    (xen, kernel)
}

/// A gzipped newc initramfs holding busybox and [`INIT`].
fn busybox_initramfs(work: &Path) -> PathBuf {
    let root = work.join("root");
    for dir in ["bin", "proc", "sys", "dev"] {
        fs::create_dir_all(root.join(dir)).expect("the initramfs tree can be created");
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (busybox-static) exists");
    fs::write(root.join("init"), INIT).expect("/init can be written");
    run_tool(
        "chmod",
        &["755", root.join("init").to_str().expect("UTF-8")],
        None,
    );
    let archive = work.join("initrd.cpio.gz");
    let script = format!(
        "cd '{}' && find . | cpio --quiet -o -H newc | gzip -1",
        root.display()
    );
    run_tool("sh", &["-c", &script], Some(&archive));
    archive
}

#[test]
#[ignore = "boots Xen in QEMU (about 20 s); run by `cargo xtask test`"]
fn the_harness_drives_a_shell_on_a_real_xen_dom0_console() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let (xen, kernel) = xen_and_kernel(work.path());
    let config = MachineConfig {
        name: "harness".into(),
        memory_mib: 256 + 512,
        smbios_serial: "HARNESS-SERIAL-1".into(),
        boot: Boot::Multiboot {
            xen,
            xen_cmdline: "console=com1 com1=115200,8n1 dom0_mem=256M,max:256M".into(),
            kernel,
            kernel_cmdline: "console=hvc0".into(),
            initrd: busybox_initramfs(work.path()),
        },
        log_dir: work.path().join("logs"),
        echo_console: false,
        nics: Vec::new(),
    };
    let mut machine = Machine::start(&config).expect("QEMU starts");

    machine
        .expect("Xen version", Duration::from_secs(60))
        .expect("Xen boots");
    machine
        .wait_for_shell(Duration::from_secs(120))
        .expect("the busybox shell answers");

    let hypervisor = machine
        .run("cat /sys/hypervisor/type", Duration::from_secs(30))
        .expect("cat runs");
    assert_eq!(hypervisor.stdout, "xen");
    assert_eq!(hypervisor.status, 0);

    let serial = machine
        .run_ok(
            "cat /sys/class/dmi/id/product_serial",
            Duration::from_secs(30),
        )
        .expect("the serial is readable");
    assert_eq!(serial, "HARNESS-SERIAL-1");

    let several = machine.run(
        "echo one; echo two >&2; exit_code() { return 3; }; exit_code",
        Duration::from_secs(30),
    );
    let several = several.expect("the command runs");
    assert_eq!((several.stdout.as_str(), several.status), ("one\ntwo", 3));

    let failed = machine
        .run_ok("false", Duration::from_secs(30))
        .expect_err("false fails");
    assert!(
        failed.to_string().contains("exited with status 1"),
        "{failed}"
    );

    let timeout = machine
        .expect("never printed", Duration::from_millis(200))
        .expect_err("times out");
    let message = timeout.to_string();
    assert!(
        message.contains("\"never printed\"") && message.contains("PXEN-END-"),
        "{message}"
    );

    let timeline = Timeline::from_console("harness", &machine.lines());
    println!("{timeline}");
    let seen: Vec<&str> = timeline
        .milestones
        .iter()
        .filter(|m| m.at.is_some())
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        seen.contains(&"Xen starts") && seen.contains(&"/init: busybox: test init"),
        "{timeline}"
    );

    machine.send("poweroff -f\n").expect("typing works");
    let status = machine
        .wait_exit(Duration::from_secs(60))
        .expect("the machine powers off");
    assert!(
        status.success(),
        "QEMU exit status after poweroff: {status}"
    );
    let log = fs::read_to_string(machine.console_log()).expect("the console log is readable");
    assert!(
        log.contains("(XEN) Xen version") && log.starts_with("[    0."),
        "timestamped lines:\n{log}"
    );
}

/// The names of the drives QEMU has (`query-block`).
fn drives(machine: &mut Machine) -> Vec<String> {
    let blocks = machine
        .qmp()
        .expect("QMP connects")
        .execute("query-block", None)
        .expect("query-block succeeds");
    blocks
        .as_array()
        .expect("query-block returns a list")
        .iter()
        .map(|block| block["device"].as_str().unwrap_or("").to_string())
        .collect()
}

/// What QEMU's `info usb` shows.
fn usb_devices(machine: &mut Machine) -> String {
    let usb = machine
        .qmp()
        .expect("QMP connects")
        .execute("x-query-usb", None)
        .expect("x-query-usb succeeds");
    usb["human-readable-text"]
        .as_str()
        .expect("x-query-usb returns text")
        .to_string()
}

#[test]
#[ignore = "starts QEMU (about a second); run by `cargo xtask test`"]
fn the_usb_stick_is_pulled_out_of_a_running_machine() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let stick = work.path().join("zeros.img");
    fs::File::create(&stick)
        .and_then(|file| file.set_len(4 << 20))
        .expect("the stick image can be created");
    let mut machine = Machine::start(&MachineConfig {
        name: "unplug".into(),
        memory_mib: 128,
        smbios_serial: "UNPLUG-1".into(),
        boot: Boot::UsbStick {
            image: stick,
            usb_serial: "STICK-1".into(),
            persistent: false,
        },
        log_dir: work.path().join("logs"),
        echo_console: false,
        nics: Vec::new(),
    })
    .expect("QEMU starts");

    assert_eq!(drives(&mut machine), [USB_STICK_ID]);
    let usb = usb_devices(&mut machine);
    assert!(
        usb.contains("QEMU USB MSD") && usb.contains(&format!("ID: {USB_STICK_ID}")),
        "info usb before: {usb:?}"
    );

    let pulling = Instant::now();
    machine
        .unplug_usb_stick(Duration::from_secs(10))
        .expect("the stick is pulled out");
    println!("the stick was pulled out in {:?}", pulling.elapsed());

    assert_eq!(drives(&mut machine), Vec::<String>::new());
    let usb = usb_devices(&mut machine);
    assert!(usb.trim().is_empty(), "info usb after: {usb:?}");

    let again = machine
        .unplug_usb_stick(Duration::from_secs(10))
        .expect_err("there is no stick left to pull");
    assert!(
        matches!(again, HarnessError::UsbStickGone { .. }),
        "second pull: {again:?}"
    );
    assert!(again.to_string().contains("already pulled"), "{again}");

    machine.power_off().expect("QEMU is killed");
    let after_exit = machine
        .unplug_usb_stick(Duration::from_secs(10))
        .expect_err("QEMU is gone");
    assert!(
        matches!(after_exit, HarnessError::QemuExited { .. }),
        "pull after power-off: {after_exit:?}"
    );
}
