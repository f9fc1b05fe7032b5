//! PID 1's fatal-error path on a real boot: a dom0 too small for its root filesystem.
//!
//! Xen, the kernel and the initramfs of the test image are booted directly (QEMU's multiboot
//! loader) with a `dom0_mem` below what the image needs and a network boot without any
//! configuration. `/init` must say loudly that it uses the built-in configuration, stop before
//! copying the root filesystem with the memory needed, the memory available and the
//! `dom0_mem=` that would fit, offer no shell (the root filesystem was not unpacked), and
//! reboot by itself after `pxen.reboot_delay`: QEMU runs with `-no-reboot`, so it exits.

use std::path::Path;
use std::time::Duration;

use pxen_qemu_tests::{image, Boot, Machine, MachineConfig};

/// Enough for the kernel to unpack the initramfs, not enough to copy the root filesystem.
const DOM0_MEM_MIB: u64 = 800;
/// From power-on to `/init`'s verdict under TCG (the initramfs is unpacked first).
const VERDICT_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
#[ignore = "boots the PXEN test image's parts in QEMU (a minute); run by `cargo xtask test`"]
fn a_dom0_too_small_for_the_root_filesystem_is_told_why_and_reboots() {
    let image_path =
        std::env::var("PXEN_TEST_IMAGE").expect("PXEN_TEST_IMAGE is set by `cargo xtask test`");
    let work = tempfile::tempdir().expect("a temporary directory");
    let part = |name: &str| {
        let to = work.path().join(name);
        image::copy_out(Path::new(&image_path), name, &to).expect("the image holds the boot files");
        to
    };
    let xen = work.path().join("xen.elf");
    let xen_gz = std::fs::read(part("xen.gz")).expect("xen.gz was copied");
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&xen_gz[..]),
        &mut unpacked,
    )
    .expect("xen.gz is gzip");
    std::fs::write(&xen, unpacked).expect("xen.elf can be written");

    let log_dir =
        std::env::var_os("PXEN_TEST_LOG_DIR").map_or_else(|| work.path().join("logs"), Into::into);
    let config = MachineConfig {
        name: "fatal-small-dom0".into(),
        memory_mib: DOM0_MEM_MIB + 512,
        smbios_serial: "PXT-FATAL-0001".into(),
        boot: Boot::Multiboot {
            xen,
            xen_cmdline: format!(
                "console=com1 com1=115200,8n1 dom0_mem={DOM0_MEM_MIB}M,max:{DOM0_MEM_MIB}M"
            ),
            kernel: part("vmlinuz"),
            kernel_cmdline: "console=hvc0 printk.devkmsg=on pxen.boot=net pxen.reboot_delay=2"
                .into(),
            initrd: part("initrd.img"),
        },
        log_dir,
        echo_console: false,
        nics: Vec::new(),
    };
    let mut machine = Machine::start(&config).expect("QEMU starts");

    machine
        .expect(
            "NO VALID CONFIGURATION: THIS HOST RUNS THE BUILT-IN DEFAULT",
            VERDICT_TIMEOUT,
        )
        .expect("the configuration fallback is announced");
    machine
        .expect("PXEN CANNOT BOOT THIS HOST", VERDICT_TIMEOUT)
        .expect("the fatal banner appears");
    // The whole line, not the part that has arrived so far.
    let why = machine
        .expect_line(
            "the complete line `the root filesystem needs ...`",
            false,
            Duration::from_secs(30),
            &|text| text.contains("the root filesystem needs"),
        )
        .expect("the reason follows the banner");
    assert!(
        why.text.contains("MiB is available")
            && why.text.contains("give dom0 more memory: dom0_mem="),
        "the reason names the memory needed, available, and the fix: {}",
        why.text
    );
    machine
        .expect(
            "no emergency shell here; rebooting in 2s",
            Duration::from_secs(30),
        )
        .expect("no shell is offered without a root filesystem");
    let status = machine
        .wait_exit(Duration::from_secs(60))
        .expect("the host reboots (QEMU exits on reboot)");
    println!("{}", machine.timeline());
    println!("QEMU exited with {status} after the reboot");
}
