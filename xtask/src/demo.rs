//! `cargo xtask demo`: installs, builds, and boots a cluster in QEMU: host0 from the image as
//! a USB stick, and `hosts - 1` hostUs that are powered off until host0's Wake-on-LAN
//! reaches them, then boot from host0 over the network. host0's serial console is live on the
//! terminal; when every host has reported online, the demo prints host0's status page and the
//! cluster's timeline (also on Ctrl-C). The demo image logs root in on the console, so it
//! goes to a directory of its own, never to be written to a real drive.

use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pxen::net::mac::MacAddr;
use pxen_qemu_tests::cluster::{Cluster, ClusterBuilder, HostSpec, Stick};
use pxen_qemu_tests::image::{self, ConfiguredHost};
use pxen_qemu_tests::{ConsoleInput, HarnessError};

use crate::{build, deps};

/// Xen needs memory beside dom0's under QEMU.
const XEN_HEADROOM_MIB: u64 = 512;

/// From power-on until every host has reported online, under TCG, generously.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How long one command on host0's console may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How long `--keep-running` keeps the cluster at most.
const KEEP_RUNNING_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most hosts the demo boots: each needs dom0's memory, and TCG shares the machine's cores.
pub const MAX_HOSTS: usize = 8;

/// host i's serial, hostname and MAC (host0 is i = 0).
fn host(i: usize) -> (String, String, MacAddr) {
    let last = u8::try_from(0x10 + i).unwrap_or(u8::MAX);
    (
        format!("PXEN-DEMO-{i:04}"),
        format!("demo-host{i}"),
        MacAddr::new([0x52, 0x54, 0x00, 0x50, 0x00, last]),
    )
}

/// Runs the demo with `hosts` hosts (host0 included).
pub fn run(out_dir: &Path, hosts: usize, keep_running: bool) -> anyhow::Result<()> {
    if !(1..=MAX_HOSTS).contains(&hosts) {
        bail!("--hosts takes 1 to {MAX_HOSTS} (host0 and the hosts it wakes), not {hosts}");
    }
    deps::ensure()?;
    let overlay = out_dir.join("overlay");
    // The demo's image logs root in on the console, so the user can look around in dom0.
    // That is why it has its own output directory: it must never go on a real drive.
    pxen_qemu_tests::overlay::write_test_overlay(&overlay)
        .context("cannot write the demo overlay")?;
    let built = build::build(out_dir, Some(overlay))?;
    let stick = configured_stick(&built.image, out_dir, hosts)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    // Ctrl-C reaches QEMU too (same process group), which exits; this process survives it
    // to print the timeline.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot handle Ctrl-C")?;

    let memory_mib = built.dom0_mem_mib + XEN_HEADROOM_MIB;
    let spec = |i: usize| {
        let (serial, _, mac) = host(i);
        HostSpec {
            name: format!("host{i}"),
            mac,
            serial,
            memory_mib,
        }
    };
    let mut builder = ClusterBuilder::new(&out_dir.join("logs"))
        .echo_console(true)
        .host0(spec(0), stick);
    for i in 1..hosts {
        builder = builder.hostu(spec(i));
    }
    println!(
        "[xtask] host0 boots from the stick and wakes the other {}; host0's console follows (every console is logged in {})",
        hosts - 1,
        out_dir.join("logs").display()
    );
    let mut cluster = builder.start()?;
    let watched = watch(&mut cluster, hosts, keep_running, &interrupted);
    println!("\n{}", cluster.timeline());
    match watched {
        Err(e) if interrupted.load(Ordering::SeqCst) => {
            log::info!("interrupted: {e:#}");
            Ok(())
        }
        other => other,
    }
}

/// A copy of the built image whose configuration names the demo's hosts (keeping the
/// image's cluster secret), written the way an administrator edits a drive.
fn configured_stick(image: &Path, out_dir: &Path, hosts: usize) -> anyhow::Result<Stick> {
    let work = out_dir.join("demo-config");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let secret = image::config_secret(image, &work)?;
    let configured: Vec<ConfiguredHost> = (0..hosts)
        .map(|i| {
            let (serial, hostname, mac) = host(i);
            ConfiguredHost {
                serial,
                hostname,
                // host0 boots from the stick; the others are woken.
                mac: (i > 0).then_some(mac),
                static_address: None,
            }
        })
        .collect();
    let stick = out_dir.join("demo-cluster.img");
    image::with_config(
        image,
        &stick,
        &image::cluster_config("demo", &secret, &configured),
        &work,
    )?;
    Ok(Stick {
        image: stick,
        usb_serial: "PXEN-DEMO-STICK".into(),
        persistent: false,
    })
}

/// Waits until host0 has accepted the report of every host, prints its status page, then
/// (with `keep_running`) hands host0's console to the keyboard until it ends.
fn watch(
    cluster: &mut Cluster,
    hosts: usize,
    keep_running: bool,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let serials: Vec<String> = (0..hosts).map(|i| host(i).0).collect();
    let serials: Vec<&str> = serials.iter().map(String::as_str).collect();
    cluster
        .await_online(&serials, BOOT_TIMEOUT)
        .context("every host reports to host0 once its dom0 is up")?;
    let host0 = cluster.host0().context("host0 is powered on")?;
    host0
        .wait_for_shell(BOOT_TIMEOUT)
        .context("host0's dom0 reaches its shell")?;
    let status = host0.run_ok("pxen status", COMMAND_TIMEOUT)?;
    println!("\n[xtask] every host is online; host0's status page:\n{status}");
    if !keep_running {
        return Ok(());
    }
    println!(
        "[xtask] root is logged in on host0's console: type commands, `poweroff` or Ctrl-C to end"
    );
    forward_keyboard(host0.console_input());
    match host0.wait_exit(KEEP_RUNNING_LIMIT) {
        Err(HarnessError::ConsoleClosed { .. }) if interrupted.load(Ordering::SeqCst) => Ok(()),
        other => other.map(drop).context("host0 ended"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_host_has_its_own_serial_name_and_mac() {
        let hosts: Vec<_> = (0..MAX_HOSTS).map(host).collect();
        for (i, a) in hosts.iter().enumerate() {
            for b in &hosts[i + 1..] {
                assert!(a.0 != b.0 && a.1 != b.1 && a.2 != b.2, "{a:?} {b:?}");
            }
        }
        assert_eq!(host(0).1, "demo-host0");
        assert!(!host(0).2.is_multicast());
    }
}
