//! `cargo xtask demo`: installs, builds, and boots the image in QEMU as a USB stick, with the
//! serial console live on the terminal; prints the boot timeline when dom0's login prompt
//! appears (or on Ctrl-C). The demo image has the test overlay (root logged in on the
//! console), so it goes to a directory of its own, never to be written to a real drive.

use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pxen_qemu_tests::{Boot, ConsoleInput, HarnessError, Machine, MachineConfig};

use crate::{build, deps};

/// The demo machine's DMI serial number, from which its hostname is derived.
const DEMO_SERIAL: &str = "PXEN-DEMO-0001";

/// Xen needs memory beside dom0's under QEMU.
const XEN_HEADROOM_MIB: u64 = 512;

/// From power-on to the login prompt under TCG emulation, generously.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long `--keep-running` keeps the machine at most.
const KEEP_RUNNING_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Runs the demo.
pub fn run(out_dir: &Path, keep_running: bool) -> anyhow::Result<()> {
    deps::ensure()?;
    let overlay = out_dir.join("overlay");
    // The demo's image logs root in on the console, so the user can look around in dom0.
    // That is why it has its own output directory: it must never go on a real drive.
    pxen_qemu_tests::overlay::write_test_overlay(&overlay)
        .context("cannot write the demo overlay")?;
    let built = build::build(out_dir, Some(overlay))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    // Ctrl-C reaches QEMU too (same process group), which exits; this process survives it
    // to print the timeline.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot handle Ctrl-C")?;

    let config = MachineConfig {
        name: "demo".into(),
        memory_mib: built.dom0_mem_mib + XEN_HEADROOM_MIB,
        smbios_serial: DEMO_SERIAL.into(),
        boot: Boot::UsbStick {
            image: built.image,
            usb_serial: "PXEN-DEMO-STICK".into(),
            // As a real stick: the first boot binds the drive to it, every boot stamps it.
            persistent: true,
        },
        log_dir: out_dir.join("logs"),
        echo_console: true,
        nics: Vec::new(),
    };
    let mut machine = Machine::start(&config)?;
    let watched = watch(&mut machine, keep_running, &interrupted);
    println!("\nconsole log: {}", machine.console_log().display());
    let status = machine.power_off()?;
    log::info!("QEMU ended: {status}");
    watched
}

/// Waits for the login prompt and prints the boot timeline, then (with `keep_running`) waits
/// for the machine to end. The end of QEMU after Ctrl-C is a normal end.
fn watch(
    machine: &mut Machine,
    keep_running: bool,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let booted = machine.expect("login:", BOOT_TIMEOUT);
    println!("\n{}", machine.timeline());
    let result = booted.map(drop).and_then(|()| {
        if !keep_running {
            return Ok(());
        }
        println!("[xtask] dom0 is up, root is logged in on its console: type commands, `poweroff` or Ctrl-C to end");
        forward_keyboard(machine.console_input());
        machine.wait_exit(KEEP_RUNNING_LIMIT).map(drop)
    });
    match result {
        Err(HarnessError::ConsoleClosed { .. }) if interrupted.load(Ordering::SeqCst) => Ok(()),
        other => other.context("the demo machine did not boot to its login prompt"),
    }
}

/// Sends every line typed on this terminal to the console, from a thread of its own that ends
/// with the input or the machine (it is blocked reading the terminal when the process exits,
/// which ends it).
fn forward_keyboard(input: ConsoleInput) {
    let spawned = std::thread::Builder::new()
        .name("keyboard".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if input.send(&format!("{line}\n")).is_err() {
                    break;
                }
            }
        });
    if let Err(error) = spawned {
        log::warn!("cannot forward the keyboard to the console: {error}");
    }
}
