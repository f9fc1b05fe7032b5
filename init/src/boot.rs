//! The PID 1 sequence: from the kernel starting `/init` to the real init of the dom0 root
//! filesystem, and the fatal-error path.
//!
//! PID 1 never exits (the kernel would panic). On a fatal error it says what failed and how to
//! fix it, offers an emergency shell on the console when the root filesystem has one, and
//! otherwise reboots after `pxen.reboot_delay`, so an unattended host retries by itself.

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::cmdline::{self, BootParams, BootSource};
use crate::config::last_good::{self, LAST_GOOD_DIR};
use crate::config::{self, Chosen, Cluster, ConfigError, ConfigErrors};
use crate::drive::classify::{self, Classification};
use crate::drive::source;
use crate::handoff::apply::{self, Uplink};
use crate::handoff::{dom0, plan};
use crate::identity::{self, Naming};
use crate::logger::{self, phase};
use crate::net::dhcp::{self, ClientConfig, Lease};
use crate::net::link;
use crate::serve::announce::watch::WatchConfig;
use crate::serve::announce::ServerIdentity;
use crate::serve::service::ServiceConfig;
use crate::serve::supervise::{self, Supervisor};
use crate::{drive, handoff, modules, mounts, rootfs};

/// Where the initramfs keeps the root filesystem layers.
pub const LAYERS_DIR: &str = "/rootfs";
/// Where the new root is assembled.
pub const NEW_ROOT: &str = "/newroot";
/// Where a configuration delivered inside the initramfs is (network boots).
pub const INITRAMFS_CONFIG: &str = "/pxen/config";
/// Where host0's last-known-good copy of the configuration is in the initramfs (network
/// boots), beside the current one.
pub const INITRAMFS_LAST_GOOD: &str = "/pxen/last-good";
/// Where the flash drive is mounted while `/init` reads it.
pub const DRIVE_MOUNT: &str = "/run/pxen/drive";
/// host0's RAM copy of the drive, which it serves; `/run` is moved into the new root at the
/// handoff, so the copy stays where the boot service finds it.
pub const DRIVE_COPY: &str = "/run/pxen/boot";
/// How long host0 waits for a network cable and for a DHCP lease before it boots on without
/// serving (a single host with no network is a valid cluster).
const NETWORK_WAIT: Duration = Duration::from_secs(60);

/// A step of the boot that failed; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Mounting `/proc`, `/sys`, `/dev` or `/run` failed.
    #[error(transparent)]
    Mounts(#[from] mounts::MountError),
    /// Copying the root filesystem into RAM failed.
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// The handoff to the real init failed.
    #[error(transparent)]
    Handoff(#[from] handoff::HandoffError),
}

/// Runs the boot as PID 1. Never returns.
pub fn run_pid1() -> ! {
    let params = match mounts::mount_basics(Path::new("/")) {
        Ok(()) => start_logging(),
        Err(e) => {
            // No /dev/kmsg without /dev: the kernel's console (our stderr) is all there is.
            eprintln!("pxen: FATAL: {e}");
            BootParams::default()
        }
    };
    let outcome = std::panic::catch_unwind(|| boot(&params));
    let reason = match outcome {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => e.to_string(),
        Err(panic) => format!(
            "/init panicked: {}; please report this as a bug",
            panic_text(&panic)
        ),
    };
    fatal(&reason, &params)
}

/// Reads the command line and installs the logger at the level it asks for.
fn start_logging() -> BootParams {
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let (params, bad) = cmdline::parse(&text);
    logger::init_boot(if params.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
    phase(
        "init",
        &format!("PXEN {} is PID 1", env!("CARGO_PKG_VERSION")),
    );
    for problem in bad {
        log::warn!("{problem}");
    }
    params
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// The boot itself; returns only on failure.
fn boot(params: &BootParams) -> Result<Infallible, BootError> {
    phase("modules", "loading the early kernel modules");
    match modules::load_early(Path::new("/lib/modules")) {
        Ok(s) => log::info!(
            "modules: {} loaded, {} already present, {} without hardware, {} failed",
            s.loaded,
            s.already,
            s.no_device,
            s.failed.len()
        ),
        Err(e) => log::warn!("{e}"),
    }

    phase(
        "config",
        &format!(
            "reading the cluster configuration ({:?} boot)",
            params.boot_source
        ),
    );
    let BootConfig { chosen, dir, drive } = load_config(params);
    let cluster = chosen.cluster();

    phase("identity", "naming this host");
    let machine_ids = identity::read_machine_ids(Path::new("/sys"));
    let naming = name_host(cluster, &machine_ids);
    log::info!("hostname {}: {}", naming.hostname, naming.reason);

    phase("drive", "is this the cluster's genuine source drive?");
    let server_identity = decide_role(drive.as_ref(), cluster, &machine_ids);
    if let Err(e) = dom0::write_role(Path::new(dom0::ROLE_FILE), server_identity.is_some()) {
        log::warn!("{e}; `pxen report` will assume this host is host0");
    }
    if let (Some(_), Some(drive), true) = (&server_identity, &drive, chosen.is_current()) {
        keep_last_good(drive);
    }
    let supervisor = server_identity.map(|server| {
        phase("serve", "this host is host0 and serves the others");
        start_boot_service(cluster, chosen.notice(), &naming.hostname, server)
    });

    phase("rootfs", "copying the root filesystem into RAM");
    let new_root = Path::new(NEW_ROOT);
    copy_rootfs_to_ram(new_root)?;
    handoff::write_identity(new_root, &naming.hostname)?;
    restore_host_state(new_root, &machine_ids, params.boot_source);
    prepare_dom0(new_root, cluster, &naming.hostname, dir.as_deref());
    if let Some(Some(supervisor)) = supervisor {
        // The supervisor reads /sys while it brings up the network; the handoff moves it.
        if !supervisor.wait_ready(NETWORK_WAIT) {
            log::warn!("boot service: still preparing after {NETWORK_WAIT:?}; handing off anyway");
        }
    }

    phase(
        "handoff",
        &format!("starting {} as {}", params.init.display(), naming.hostname),
    );
    if let Err(e) = dom0::write_timeline(Path::new(dom0::TIMELINE_FILE), &logger::phases()) {
        log::warn!("{e}; the report to host0 will carry no boot timeline");
    }
    Ok(handoff::switch_root(
        new_root,
        &params.init,
        &handoff::passthrough_args(),
    )?)
}

/// Gives this host its saved state back (see [`crate::state::at_boot`]): from the RAM copy of
/// the drive on a USB boot, from the initramfs (host0 appends every host's) on a network boot.
fn restore_host_state(new_root: &Path, ids: &identity::MachineIds, boot_source: BootSource) {
    let source = match boot_source {
        BootSource::Usb => Path::new(DRIVE_COPY),
        BootSource::Net => Path::new("/"),
    };
    crate::state::at_boot::restore_host_state(new_root, ids, source);
}

/// Applies the configuration to dom0 (users, keys, `/etc/hosts`, the bridge and its
/// addressing, DNS, NTP: see [`apply`]) and adds PXEN's report service. A failure is loud but
/// not fatal: the host boots without them, and can be reached on its console.
fn prepare_dom0(new_root: &Path, cluster: &Cluster, hostname: &str, config_dir: Option<&Path>) {
    let plan = plan::for_host(cluster, hostname, boot_uplink());
    match apply::apply(new_root, &plan) {
        Ok(applied) => {
            log::info!(
                "dom0: configuration applied: {} user(s), {} file(s)",
                applied.accounts.len(),
                applied.files.len()
            );
            if let Some(uplink) = &plan.uplink {
                log::info!(
                    "network: dom0 bridges {} ({}) as {}",
                    uplink.name,
                    uplink.mac,
                    plan.network.bridge
                );
            }
        }
        Err(e) => log::error!("{e}; dom0 boots without (part of) the cluster configuration"),
    }
    if config_dir.is_none() {
        log::warn!(
            "report: booted without a valid configuration; this host cannot report to host0"
        );
    }
    let installed = std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|binary| {
            dom0::install_report(new_root, &binary, config_dir).map_err(|e| e.to_string())
        });
    if let Err(e) = installed {
        log::error!("{e}; this host will not report to host0");
    }
}

/// The network card dom0's bridge enslaves: the first physical one. `None`, loudly, when there
/// is none (dom0 then gets no bridge).
fn boot_uplink() -> Option<Uplink> {
    match link::physical_nics(Path::new("/sys/class/net")) {
        Ok(nics) => match nics.into_iter().next() {
            Some(nic) => Some(Uplink {
                mac: nic.mac,
                name: nic.name,
            }),
            None => {
                log::warn!("network: no network card found; dom0 gets no bridge");
                None
            }
        },
        Err(e) => {
            log::error!("{e}; dom0 gets no network configuration from PXEN");
            None
        }
    }
}

/// Decides whether this host is host0, from the drive it booted from (`None` on a network
/// boot), and prints the one banner line that says so and why. For host0, writes the
/// drive's binding (at its first boot) and its stamp, and returns what its boot service
/// announces. Any failure makes this host an ordinary host, loudly: there is never a host0
/// without proof.
fn decide_role(
    drive: Option<&source::Candidate>,
    cluster: &Cluster,
    machine_ids: &identity::MachineIds,
) -> Option<ServerIdentity> {
    let Some(drive) = drive else {
        log::info!("{}", classify::banner(&Classification::Absent));
        return None;
    };
    let classification = source::verify(drive, Path::new(DRIVE_COPY), &cluster.secret);
    let banner = classify::banner(&classification);
    let (true, Ok(drive_identity)) = (classify::is_host0(&classification), &drive.identity) else {
        log::warn!("{banner}");
        return None;
    };
    let serial =
        identity::choose_id(machine_ids).map_or_else(|| "unknown".to_string(), |id| id.value);
    let by = format!("first boot as host0, on the machine {serial}");
    match source::commit_host0(drive, drive_identity, Path::new(DRIVE_MOUNT), &serial, &by) {
        Ok(committed) => {
            log::info!("{banner}, stamp #{}", committed.stamp.counter);
            Some(ServerIdentity {
                drive_id: committed.identity.drive_id,
                stamp_counter: committed.stamp.counter,
                stamp_time: committed.stamp.time,
            })
        }
        Err(e) => {
            log::error!("{banner}, but: {e}");
            log::error!("PXEN: hostU — the drive could not record this boot as host0's; check that it is not write-protected or failing");
            None
        }
    }
}

/// The configuration a host boots with.
struct BootConfig {
    /// The configuration, and whether it is the current one.
    chosen: Chosen,
    /// The directory of the chosen files (the current ones or the last-known-good copy), which
    /// dom0 gets for `pxen report`; `None` with the built-in default.
    dir: Option<PathBuf>,
    /// On a USB boot, the drive.
    drive: Option<source::Candidate>,
}

/// The configuration for this boot: the current files when they validate, else the
/// last-known-good copy, else the built-in default (see [`last_good::choose`]). A broken
/// configuration is never fatal: the host boots and says so loudly, because a host that is up
/// can be fixed over the network and one that is down cannot.
fn load_config(params: &BootParams) -> BootConfig {
    let (current_dir, last_good_dir) = match params.boot_source {
        // The RAM copy, which outlives the drive's mount.
        BootSource::Usb => (
            Path::new(DRIVE_COPY).join("config"),
            Path::new(DRIVE_COPY).join(LAST_GOOD_DIR),
        ),
        BootSource::Net => (
            PathBuf::from(INITRAMFS_CONFIG),
            PathBuf::from(INITRAMFS_LAST_GOOD),
        ),
    };
    let (current, last_good, drive) = match params.boot_source {
        BootSource::Usb => match config_from_drive(params) {
            Ok((current, last_good, drive)) => (current, last_good, Some(drive)),
            Err(why) => (Err(unreadable(Path::new(DRIVE_MOUNT), why)), None, None),
        },
        BootSource::Net if current_dir.exists() => (
            config::load_dir(&current_dir),
            last_good::read(&last_good_dir),
            None,
        ),
        BootSource::Net => (
            Err(unreadable(
                &current_dir,
                "no configuration was delivered with the network boot".to_string(),
            )),
            None,
            None,
        ),
    };
    let chosen = last_good::choose(current, last_good, Cluster::builtin_default);
    let dir = match &chosen {
        Chosen::Current(_) => Some(current_dir),
        Chosen::LastGood { .. } => Some(last_good_dir),
        Chosen::BuiltinDefault { .. } => None,
    };
    let cluster = chosen.cluster();
    log::info!(
        "configuration: cluster {:?}, {} named host(s)",
        cluster.name,
        cluster.hosts.len()
    );
    if let Some(lines) = chosen.notice() {
        shout(&lines);
    }
    BootConfig {
        chosen,
        dir: dir.filter(|d| d.is_dir()),
        drive,
    }
}

/// Prints `lines` on the console in a frame of stars, the first one (the headline) alone in
/// it, so that it stands out among the boot messages.
fn shout(lines: &[String]) {
    let Some((headline, details)) = lines.split_first() else {
        return;
    };
    let stars = "*".repeat(headline.len() + 8);
    log::warn!("{stars}");
    log::warn!("*** {headline} ***");
    log::warn!("{stars}");
    for line in details {
        log::warn!("{line}");
    }
}

/// A configuration that could not be read at all, as the one problem with it.
fn unreadable(dir: &Path, why: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: dir.to_path_buf(),
        position: None,
        message: why,
        fix: "check that the PXEN drive is plugged in and readable, or that host0 served this \
              boot"
            .to_string(),
    }])
}

/// The current configuration read from the drive and its last-known-good copy.
type DriveConfig = (
    Result<Cluster, ConfigErrors>,
    Option<Result<Cluster, ConfigErrors>>,
    source::Candidate,
);

/// Finds the flash drive this host booted from, copies it into RAM and reads its `config/`
/// and its last-known-good copy.
fn config_from_drive(params: &BootParams) -> Result<DriveConfig, String> {
    let (sys, dev) = (Path::new("/sys"), Path::new("/dev"));
    let mount_point = Path::new(DRIVE_MOUNT);
    let partitions = drive::find_all(sys, dev, params.drive_wait).map_err(|e| e.to_string())?;
    let candidates = source::survey(&partitions, sys, dev, mount_point);
    let chosen =
        source::choose(candidates, params.drive.as_deref()).ok_or("no PXEN drive could be read")?;
    let device = chosen.partition.clone();
    log::info!("flash drive: {}", device.display());
    drive::mount_readonly(&device, mount_point).map_err(|e| e.to_string())?;
    match drive::copy_to_ram(mount_point, Path::new(DRIVE_COPY)) {
        Ok(bytes) => log::info!(
            "flash drive: {} MiB copied into RAM for serving",
            bytes >> 20
        ),
        Err(e) => log::error!("{e}"),
    }
    let current = config::load_dir(&mount_point.join("config"));
    let last_good = last_good::read(&mount_point.join(LAST_GOOD_DIR));
    drive::unmount(mount_point);
    Ok((current, last_good, chosen))
}

/// host0, whose current configuration validated: keeps it on the drive as the last-known-good
/// copy. A failure only costs the fallback of a later boot, so it is logged and the boot goes
/// on.
fn keep_last_good(drive: &source::Candidate) {
    let mount_point = Path::new(DRIVE_MOUNT);
    if let Err(e) = drive::mount_readwrite(&drive.partition, mount_point) {
        log::error!("{e}; the configuration is not kept as the last-known-good copy");
        return;
    }
    match last_good::keep(
        &mount_point.join("config"),
        &mount_point.join(LAST_GOOD_DIR),
    ) {
        Ok(true) => log::info!("configuration: kept on the drive as the last-known-good copy"),
        Ok(false) => log::info!("configuration: unchanged since the last-known-good copy"),
        Err(e) => log::error!("{e}"),
    }
    drive::unmount(mount_point);
}

/// host0: starts the boot service's supervisor, which brings up the network and serves while
/// this process goes on with the boot. A failure is loud but not fatal: the host boots on as
/// an ordinary host.
fn start_boot_service(
    cluster: &Cluster,
    config_notice: Option<Vec<String>>,
    hostname: &str,
    server: ServerIdentity,
) -> Option<Supervisor> {
    let prepare = || {
        let (nic, lease) = network_up(hostname)
            .map_err(|why| log::error!("host0 cannot serve the cluster: {why}"))
            .ok()?;
        log::info!("boot service: serving the cluster from {}", lease.address);
        Some(ServiceConfig {
            // The supervisor serves from inside the RAM copy of the drive (it chroots there).
            root: PathBuf::from("/"),
            config_dir: PathBuf::from("/config"),
            cluster: cluster.clone(),
            config_notice,
            address: lease.address,
            listen: Ipv4Addr::UNSPECIFIED,
            http_port: 80,
            tftp_port: 69,
            proxydhcp_ports: Some((67, 4011)),
            interface: None,
            wake: cluster.wake_macs(),
            wake_interface: Some(nic),
            identity: Some(server),
            announce: WatchConfig::default(),
        })
    };
    supervise::spawn(Path::new(DRIVE_COPY), prepare)
        .map_err(|e| log::error!("{e}"))
        .ok()
}

/// Brings up the first network card with a link and gets an address from the LAN's DHCP
/// server.
fn network_up(hostname: &str) -> Result<(String, Lease), String> {
    let nics = link::physical_nics(Path::new("/sys/class/net")).map_err(|e| e.to_string())?;
    let nic = nics
        .first()
        .ok_or("this machine has no network card (or its driver is not in the initramfs)")?;
    link::set_up("lo").map_err(|e| e.to_string())?;
    link::set_up(&nic.name).map_err(|e| e.to_string())?;
    link::wait_for_carrier(&nic.name, NETWORK_WAIT).map_err(|e| e.to_string())?;
    let mut client = ClientConfig::new(&nic.name, nic.mac, Some(hostname.to_string()));
    client.deadline = NETWORK_WAIT;
    let lease = dhcp::obtain_lease(&client).map_err(|e| e.to_string())?;
    dhcp::apply(&nic.name, &lease).map_err(|e| e.to_string())?;
    log::info!(
        "network: {} is {}/{} (router {:?})",
        nic.name,
        lease.address,
        lease.prefix_len,
        lease.router
    );
    Ok((nic.name.clone(), lease))
}

/// The hostname, or a fixed fallback when the machine has no usable ID at all.
fn name_host(cluster: &Cluster, ids: &identity::MachineIds) -> Naming {
    identity::name_machine(cluster, ids).unwrap_or_else(|| Naming {
        hostname: format!("{}-unidentified", cluster.hostname_prefix),
        reason: "this machine has no usable serial, UUID or MAC address; list it in the \
                 configuration by another ID, or fix its firmware's DMI data"
            .to_string(),
    })
}

/// Measures the layers, checks they fit in RAM, mounts the tmpfs and unpacks them.
fn copy_rootfs_to_ram(new_root: &Path) -> Result<(), rootfs::RootfsError> {
    let layers = rootfs::scan_layers(Path::new(LAYERS_DIR))?;
    let needed: u64 = layers.iter().map(|l| l.ram_bytes).sum();
    let mem = rootfs::read_meminfo(Path::new("/proc/meminfo"))?;
    let size = rootfs::plan_tmpfs_size(needed, mem)?;
    log::info!(
        "rootfs: {} MiB in {} layer(s), tmpfs of {} MiB, {} MiB available",
        needed >> 20,
        layers.len(),
        size >> 20,
        mem.available >> 20
    );
    rootfs::mount_tmpfs(new_root, size)?;
    rootfs::unpack_layers(&layers, new_root)?;
    phase(
        "rootfs-in-ram",
        &format!("{} MiB of root filesystem in RAM", needed >> 20),
    );
    Ok(())
}

/// The fatal-error path of PID 1: report, offer a shell, reboot. Never returns.
fn fatal(reason: &str, params: &BootParams) -> ! {
    loop {
        log::error!("==================== PXEN CANNOT BOOT THIS HOST ====================");
        for line in reason.lines() {
            log::error!("{line}");
        }
        log::error!("====================================================================");
        match emergency_shell() {
            Some(shell) if offer(&format!("Press Enter within {}s for an emergency shell ({}); otherwise this host reboots.", params.reboot_delay.as_secs(), shell.display()), params.reboot_delay) => {
                run_shell(&shell);
            }
            Some(_) => reboot(),
            None => {
                log::error!("no emergency shell here; rebooting in {}s", params.reboot_delay.as_secs());
                // Nothing to wait for but the delay itself: give the administrator time to read.
                std::thread::sleep(params.reboot_delay);
                reboot();
            }
        }
    }
}

/// A shell to offer: the root filesystem's, if it was unpacked, else the initramfs' own.
fn emergency_shell() -> Option<PathBuf> {
    [Path::new(NEW_ROOT).join("bin/sh"), PathBuf::from("/bin/sh")]
        .into_iter()
        .find(|p| p.exists())
}

/// Prints `prompt` and waits up to `wait` for Enter on the console.
fn offer(prompt: &str, wait: Duration) -> bool {
    log::error!("{prompt}");
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    let ready = matches!(poll(&mut fds, timeout), Ok(n) if n > 0);
    if ready {
        let mut line = String::new();
        // Consume the Enter so the shell does not see it.
        let _ = stdin.read_line(&mut line);
    }
    ready
}

/// Runs the emergency shell in the root filesystem (or the initramfs) and waits for it.
fn run_shell(shell: &Path) {
    let in_new_root = shell.starts_with(NEW_ROOT);
    let mut command = std::process::Command::new(if in_new_root {
        Path::new("/bin/sh")
    } else {
        shell
    });
    if in_new_root {
        // SAFETY: between fork and exec the child calls only chroot and chdir, which are
        // async-signal-safe, and touches no memory shared with the parent's other threads.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::chroot(NEW_ROOT)?;
                nix::unistd::chdir("/")?;
                Ok(())
            });
        }
    }
    match command.status() {
        Ok(status) => log::error!("emergency shell exited ({status})"),
        Err(e) => log::error!("cannot start the emergency shell {}: {e}", shell.display()),
    }
}

fn reboot() {
    log::error!("rebooting");
    nix::unistd::sync();
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    log::error!("reboot failed: {e}; waiting for a power cycle");
    std::thread::sleep(Duration::from_secs(3600));
}
