//! What PXEN adds to the dom0 root filesystem before the handoff, beside the host's name: its
//! network (the Xen bridge) and the report that tells host0 this host is up.
//!
//! - **The Xen bridge.** systemd-networkd files: a bridge `xenbr0` with the boot network
//!   card enslaved and the card's MAC address (so the LAN's DHCP server, which knows the card,
//!   gives the bridge the same address), DHCP on the bridge with the MAC as client identifier
//!   (as `/init`'s own DHCP client sends), or the static address the configuration gives
//!   (see [`super::apply`], which also names the bridge and the DNS servers). The card is matched by its permanent MAC, and a
//!   `.link` file keeps the kernel's name for it (`eth0`): on host0 the card is already up
//!   when dom0's udev starts, udev cannot rename an interface that is up, and systemd-networkd
//!   leaves a card whose rename failed "pending" forever, unconfigured.
//!   On host0 the boot service's sockets listen on every address, so it keeps serving while
//!   the address moves from the card to the bridge.
//! - **The report.** `/usr/sbin/pxen` (a copy of this binary), the configuration it was
//!   booted with in `/etc/pxen/config` (readable by root only: it holds the cluster secret),
//!   the boot timeline in `/run/pxen/timeline`, and `pxen-report.service`, which runs
//!   `pxen report` once the network is online: it tells host0 that this host is up and is
//!   retried until host0 accepts it.
//!
//! Every file is a pure function of its inputs (see the `render_` functions), so the same
//! machine and configuration give the same bytes.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::apply::{AddressingSpec, NetworkSpec};
use crate::net::mac::MacAddr;

/// The name of the Xen bridge, as Debian's Xen documentation names it.
pub const BRIDGE: &str = "xenbr0";
/// Where the `pxen` command is installed in dom0.
pub const PXEN_BINARY: &str = "usr/sbin/pxen";
/// Where the configuration the host booted with is kept in dom0.
pub const CONFIG_DIR: &str = "etc/pxen/config";
/// Where `/init` leaves its boot timeline (`/run` is moved into dom0 at the handoff).
pub const TIMELINE_FILE: &str = "/run/pxen/timeline";
/// Where `/init` leaves the role it gave this host: [`ROLE_HOST0`] or [`ROLE_HOSTU`].
pub const ROLE_FILE: &str = "/run/pxen/role";
/// The role of the host that booted from the genuine source drive and serves.
pub const ROLE_HOST0: &str = "host0";
/// The role of every other host.
pub const ROLE_HOSTU: &str = "hostU";
/// The report's systemd unit.
pub const REPORT_UNIT: &str = "pxen-report.service";
/// The unit that saves this host's state to host0 ([`crate::state`]), and its timer.
pub const STATE_UNIT: &str = "pxen-state.service";
/// The timer that saves the state again every 5 minutes (libvirt definitions change).
pub const STATE_TIMER: &str = "pxen-state.timer";
/// host0 only: the unit that writes the hosts' states through to the drive, its path unit
/// (started when the boot service stores a state) and its timer (retries while the drive is
/// out).
pub const SYNC_UNITS: [&str; 3] = [
    "pxen-state-sync.service",
    "pxen-state-sync.path",
    "pxen-state-sync.timer",
];
/// The drop-in that makes dom0's SSH server create the host keys it lacks before it starts.
pub const SSH_KEYS_DROP_IN: &str = "etc/systemd/system/ssh.service.d/pxen-host-keys.conf";

const SYSTEMD_SYSTEM: &str = "etc/systemd/system";
const NETWORKD_DIR: &str = "etc/systemd/network";
const SYSTEMD_UNITS: &str = "/usr/lib/systemd/system";

/// A file that could not be put into the new root.
#[derive(Debug, thiserror::Error)]
pub enum Dom0Error {
    /// A file or directory could not be written.
    #[error("cannot write {path} in the new root: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `pxen` binary could not be copied.
    #[error("cannot copy the pxen binary {from} to {to}: {source}")]
    CopyBinary {
        /// This binary.
        from: PathBuf,
        /// Its place in the new root.
        to: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration directory could not be copied.
    #[error("cannot copy the configuration {from} to {to}: {source}")]
    CopyConfig {
        /// The configuration directory.
        from: PathBuf,
        /// Its place in the new root.
        to: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// `10-pxen-xenbr0.netdev`: the bridge `bridge`, with the card's MAC.
pub fn render_bridge_netdev(nic: MacAddr, bridge: &str) -> String {
    format!(
        "# Written by PXEN at every boot: the Xen bridge, with the boot card's MAC address.\n\
         [NetDev]\nName={bridge}\nKind=bridge\nMACAddress={nic}\n"
    )
}

/// `10-pxen-uplink.link`: the boot card keeps the name `name` the kernel gave it.
pub fn render_uplink_link(nic: MacAddr, name: &str) -> String {
    format!(
        "# Written by PXEN at every boot: the boot card keeps its name (it may already be up).\n\
         [Match]\nPermanentMACAddress={nic}\n\n[Link]\nName={name}\n"
    )
}

/// `10-pxen-uplink.network`: the boot card, enslaved to the bridge `bridge`.
pub fn render_uplink_network(nic: MacAddr, bridge: &str) -> String {
    format!(
        "# Written by PXEN at every boot: the boot card carries the Xen bridge.\n\
         [Match]\nPermanentMACAddress={nic}\n\n[Network]\nBridge={bridge}\n"
    )
}

/// `20-pxen-xenbr0.network`: the bridge's address (by DHCP, with the MAC address as client
/// identifier, or static), its DNS servers and search domains. Configured DNS servers replace
/// those the DHCP server offers.
pub fn render_bridge_network(network: &NetworkSpec) -> String {
    let how = match network.addressing {
        AddressingSpec::Dhcp => "by DHCP",
        AddressingSpec::Static { .. } => "static",
    };
    let mut text = format!(
        "# Written by PXEN at every boot: dom0's address, on the Xen bridge, {how}.\n\
         [Match]\nName={}\n\n[Network]\n",
        network.bridge
    );
    match network.addressing {
        AddressingSpec::Dhcp => text += "DHCP=ipv4\n",
        AddressingSpec::Static {
            address,
            prefix,
            gateway,
        } => {
            text += &format!("Address={address}/{prefix}\n");
            if let Some(gateway) = gateway {
                text += &format!("Gateway={gateway}\n");
            }
        }
    }
    for server in &network.dns {
        text += &format!("DNS={server}\n");
    }
    if !network.search.is_empty() {
        text += &format!("Domains={}\n", network.search.join(" "));
    }
    if network.addressing == AddressingSpec::Dhcp {
        text += "\n[DHCPv4]\nClientIdentifier=mac\n";
        if !network.dns.is_empty() {
            text += "UseDNS=no\n";
        }
    }
    text + "\n[Link]\nRequiredForOnline=routable\n"
}

/// `pxen-report.service`.
pub fn render_report_unit() -> String {
    format!(
        "# Written by PXEN at every boot: tell host0 this host is up.\n\
         [Unit]\nDescription=PXEN: report this host online to host0\n\
         Wants=network-online.target\nAfter=network-online.target\n\n\
         [Service]\nType=simple\nExecStart=/{PXEN_BINARY} report\n\
         Restart=on-failure\nRestartSec=10\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// `pxen-state.service` and `pxen-state.timer`: save the state once the network is online
/// and the SSH host keys exist, then every 5 minutes. The service is `simple`, like the
/// report, because `pxen state save` retries until host0 acknowledges: a `oneshot` would hold
/// `multi-user.target` back meanwhile. A timer firing while a save still retries does nothing.
pub fn render_state_units() -> [(&'static str, String); 2] {
    [
        (
            STATE_UNIT,
            format!(
                "# Written by PXEN at every boot: save this host's state to host0.\n\
                 [Unit]\nDescription=PXEN: save this host's state (SSH host keys, machine ID, toolstack) to host0\n\
                 Wants=network-online.target\nAfter=network-online.target ssh.service\n\n\
                 [Service]\nType=simple\nExecStart=/{PXEN_BINARY} state save\n\n\
                 [Install]\nWantedBy=multi-user.target\n"
            ),
        ),
        (
            STATE_TIMER,
            format!(
                "# Written by PXEN at every boot: save this host's state again every 5 minutes.\n\
                 [Unit]\nDescription=PXEN: save this host's state to host0 every 5 minutes\n\n\
                 [Timer]\nOnBootSec=5min\nOnUnitActiveSec=5min\nUnit={STATE_UNIT}\n\n\
                 [Install]\nWantedBy=timers.target\n"
            ),
        ),
    ]
}

/// host0's units that write the hosts' states from the RAM copy of the drive to the drive:
/// when the boot service marks a change (`marker`, as dom0 sees it), and every 2 minutes.
pub fn render_sync_units(marker: &str) -> [(&'static str, String); 3] {
    let [service, path, timer] = SYNC_UNITS;
    [
        (
            service,
            format!(
                "# Written by PXEN at every boot (host0 only).\n\
                 [Unit]\nDescription=PXEN: write the hosts' saved states to the drive\n\n\
                 [Service]\nType=oneshot\nExecStart=/{PXEN_BINARY} state sync\n"
            ),
        ),
        (
            path,
            format!(
                "# Written by PXEN at every boot (host0 only).\n\
                 [Unit]\nDescription=PXEN: write a host's state to the drive when host0 stores one\n\n\
                 [Path]\nPathChanged={marker}\nUnit={service}\n\n\
                 [Install]\nWantedBy=paths.target\n"
            ),
        ),
        (
            timer,
            format!(
                "# Written by PXEN at every boot (host0 only): retry while the drive is out.\n\
                 [Unit]\nDescription=PXEN: write the hosts' saved states to the drive every 2 minutes\n\n\
                 [Timer]\nOnBootSec=2min\nOnUnitActiveSec=2min\nUnit={service}\n\n\
                 [Install]\nWantedBy=timers.target\n"
            ),
        ),
    ]
}

/// The SSH drop-in: `ssh-keygen -A` creates the host keys of every type that is missing (a
/// host with no saved state, whose image keys `/init` removed), before Debian's own
/// `sshd -t` check, which fails without keys; so the list is reset and given in that order.
pub fn render_ssh_keys_drop_in() -> String {
    "# Written by PXEN at every boot: create the SSH host keys this host lacks.\n\
     [Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
        .to_string()
}

/// Installs the state units, the SSH drop-in, and on host0 the units that write the states
/// through to the drive (`marker` is the file the boot service touches, as dom0 sees it).
pub fn install_state(new_root: &Path, host0: bool, marker: &str) -> Result<(), Dom0Error> {
    write_file(
        &new_root.join(SSH_KEYS_DROP_IN),
        render_ssh_keys_drop_in(),
        0o644,
    )?;
    let mut units = Vec::from(render_state_units());
    if host0 {
        units.extend(render_sync_units(marker));
    }
    for (unit, text) in units {
        write_file(&new_root.join(SYSTEMD_SYSTEM).join(unit), text, 0o644)?;
    }
    for (wants, unit) in state_wants(host0) {
        enable(new_root, wants, unit, &format!("/{SYSTEMD_SYSTEM}/{unit}"))?;
    }
    Ok(())
}

/// Where each installed state unit is enabled.
fn state_wants(host0: bool) -> Vec<(&'static str, &'static str)> {
    let mut wants = vec![
        ("multi-user.target.wants", STATE_UNIT),
        ("timers.target.wants", STATE_TIMER),
    ];
    if host0 {
        wants.push(("paths.target.wants", SYNC_UNITS[1]));
        wants.push(("timers.target.wants", SYNC_UNITS[2]));
    }
    wants
}

/// The timeline file: one `phase seconds` line per boot phase.
pub fn render_timeline(phases: &[(String, f64)]) -> String {
    phases
        .iter()
        .map(|(phase, seconds)| format!("{phase} {seconds:.3}\n"))
        .collect()
}

/// Reads a timeline file written by [`render_timeline`]; lines that do not parse are skipped
/// (the file is ours, but a report must not fail over it).
pub fn parse_timeline(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let (phase, seconds) = line.split_once(' ')?;
            let seconds: f64 = seconds.trim().parse().ok()?;
            (!phase.is_empty() && seconds.is_finite()).then(|| (phase.to_string(), seconds))
        })
        .collect()
}

/// Writes the network configuration `network` for the boot card `nic` (named `name` by the
/// kernel) and enables systemd-networkd. The file names are fixed whatever the bridge's name,
/// so every boot replaces the same files.
pub fn install_bridge(
    new_root: &Path,
    nic: MacAddr,
    name: &str,
    network: &NetworkSpec,
) -> Result<(), Dom0Error> {
    let dir = new_root.join(NETWORKD_DIR);
    write_file(
        &dir.join("10-pxen-uplink.link"),
        render_uplink_link(nic, name),
        0o644,
    )?;
    write_file(
        &dir.join("10-pxen-xenbr0.netdev"),
        render_bridge_netdev(nic, &network.bridge),
        0o644,
    )?;
    write_file(
        &dir.join("10-pxen-uplink.network"),
        render_uplink_network(nic, &network.bridge),
        0o644,
    )?;
    write_file(
        &dir.join("20-pxen-xenbr0.network"),
        render_bridge_network(network),
        0o644,
    )?;
    // What `systemctl enable systemd-networkd` links, done without running systemctl.
    for (wants, unit) in [
        ("multi-user.target.wants", "systemd-networkd.service"),
        ("sockets.target.wants", "systemd-networkd.socket"),
        (
            "network-online.target.wants",
            "systemd-networkd-wait-online.service",
        ),
    ] {
        enable(new_root, wants, unit, unit)?;
    }
    enable(
        new_root,
        "",
        "dbus-org.freedesktop.network1.service",
        "systemd-networkd.service",
    )
}

/// Writes this host's role to `path` (normally [`ROLE_FILE`]).
pub fn write_role(path: &Path, host0: bool) -> Result<(), Dom0Error> {
    let role = if host0 { ROLE_HOST0 } else { ROLE_HOSTU };
    write_file(path, format!("{role}\n"), 0o644)
}

/// Writes the boot timeline to `path` (normally [`TIMELINE_FILE`]).
pub fn write_timeline(path: &Path, phases: &[(String, f64)]) -> Result<(), Dom0Error> {
    write_file(path, render_timeline(phases), 0o644)
}

/// Installs the `pxen` binary, the configuration (when the host booted with one) and the
/// report unit.
pub fn install_report(
    new_root: &Path,
    binary: &Path,
    config: Option<&Path>,
) -> Result<(), Dom0Error> {
    let to = new_root.join(PXEN_BINARY);
    create_dir(to.parent().unwrap_or(new_root), 0o755)?;
    std::fs::copy(binary, &to)
        .and_then(|_| std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)))
        .map_err(|source| Dom0Error::CopyBinary {
            from: binary.to_path_buf(),
            to: to.clone(),
            source,
        })?;
    if let Some(config) = config {
        copy_config(config, &new_root.join(CONFIG_DIR))?;
    }
    write_file(
        &new_root.join(SYSTEMD_SYSTEM).join(REPORT_UNIT),
        render_report_unit(),
        0o644,
    )?;
    enable(
        new_root,
        "multi-user.target.wants",
        REPORT_UNIT,
        &format!("/{SYSTEMD_SYSTEM}/{REPORT_UNIT}"),
    )
}

/// Links `unit` into `/etc/systemd/system/<wants>/` (or `/etc/systemd/system/` itself when
/// `wants` is empty), pointing at `target` (a unit name of the system's units directory, or an
/// absolute path). A link already there is replaced.
fn enable(new_root: &Path, wants: &str, unit: &str, target: &str) -> Result<(), Dom0Error> {
    let dir = new_root.join(SYSTEMD_SYSTEM).join(wants);
    create_dir(&dir, 0o755)?;
    let link = dir.join(unit);
    let target = if target.starts_with('/') {
        PathBuf::from(target)
    } else {
        Path::new(SYSTEMD_UNITS).join(target)
    };
    let result = match std::fs::remove_file(&link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => std::os::unix::fs::symlink(&target, &link),
    };
    result.map_err(|source| Dom0Error::Write { path: link, source })
}

/// Copies the regular files of `from` into `to` (created 0700, files 0600: the configuration
/// holds the cluster secret).
fn copy_config(from: &Path, to: &Path) -> Result<(), Dom0Error> {
    let error = |source| Dom0Error::CopyConfig {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    };
    create_dir(to, 0o700)?;
    for entry in std::fs::read_dir(from).map_err(error)? {
        let entry = entry.map_err(error)?;
        if entry.file_type().map_err(error)?.is_file() {
            let text = std::fs::read(entry.path()).map_err(error)?;
            write_file(&to.join(entry.file_name()), &text, 0o600)?;
        }
    }
    Ok(())
}

fn create_dir(dir: &Path, mode: u32) -> Result<(), Dom0Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| Dom0Error::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `content` to `path` with `mode`, creating its directory; the mode is set before any
/// byte is written, so a secret is never readable by others even for a moment.
fn write_file(path: &Path, content: impl AsRef<[u8]>, mode: u32) -> Result<(), Dom0Error> {
    if let Some(dir) = path.parent() {
        create_dir(dir, 0o755)?;
    }
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(content.as_ref())
    };
    write().map_err(|source| Dom0Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::MetadataExt;

    const NIC: MacAddr = MacAddr::new([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    #[test]
    fn network_files_name_the_card_by_its_permanent_mac() {
        assert_eq!(
            render_uplink_network(NIC, BRIDGE),
            "# Written by PXEN at every boot: the boot card carries the Xen bridge.\n\
             [Match]\nPermanentMACAddress=52:54:00:12:34:56\n\n[Network]\nBridge=xenbr0\n"
        );
        assert_eq!(
            render_uplink_link(NIC, "eth0"),
            "# Written by PXEN at every boot: the boot card keeps its name (it may already be up).\n\
             [Match]\nPermanentMACAddress=52:54:00:12:34:56\n\n[Link]\nName=eth0\n"
        );
        assert!(render_bridge_netdev(NIC, BRIDGE)
            .contains("Name=xenbr0\nKind=bridge\nMACAddress=52:54:00:12:34:56\n"));
    }

    #[test]
    fn the_bridge_network_without_configuration_is_dhcp() {
        assert_eq!(
            render_bridge_network(&NetworkSpec::default()),
            "# Written by PXEN at every boot: dom0's address, on the Xen bridge, by DHCP.\n\
             [Match]\nName=xenbr0\n\n[Network]\nDHCP=ipv4\n\n\
             [DHCPv4]\nClientIdentifier=mac\n\n[Link]\nRequiredForOnline=routable\n"
        );
    }

    #[test]
    fn configured_dns_replaces_what_dhcp_offers() {
        let network = NetworkSpec {
            dns: vec!["192.168.1.1".to_string(), "192.168.1.2".to_string()],
            search: vec!["lab.example".to_string(), "example".to_string()],
            ..NetworkSpec::default()
        };
        assert_eq!(
            render_bridge_network(&network),
            "# Written by PXEN at every boot: dom0's address, on the Xen bridge, by DHCP.\n\
             [Match]\nName=xenbr0\n\n[Network]\nDHCP=ipv4\n\
             DNS=192.168.1.1\nDNS=192.168.1.2\nDomains=lab.example example\n\n\
             [DHCPv4]\nClientIdentifier=mac\nUseDNS=no\n\n[Link]\nRequiredForOnline=routable\n"
        );
    }

    #[test]
    fn a_static_bridge_has_its_address_and_gateway() {
        let network = NetworkSpec {
            bridge: "br0".to_string(),
            addressing: AddressingSpec::Static {
                address: Ipv4Addr::new(192, 168, 1, 11),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
            },
            dns: vec!["192.168.1.1".to_string()],
            search: vec![],
            ntp: vec!["pool.ntp.org".to_string()],
        };
        assert_eq!(
            render_bridge_network(&network),
            "# Written by PXEN at every boot: dom0's address, on the Xen bridge, static.\n\
             [Match]\nName=br0\n\n[Network]\nAddress=192.168.1.11/24\nGateway=192.168.1.1\n\
             DNS=192.168.1.1\n\n[Link]\nRequiredForOnline=routable\n"
        );
        let without_gateway = NetworkSpec {
            addressing: AddressingSpec::Static {
                address: Ipv4Addr::new(10, 0, 0, 5),
                prefix: 8,
                gateway: None,
            },
            ..network
        };
        let text = render_bridge_network(&without_gateway);
        assert!(text.contains("[Network]\nAddress=10.0.0.5/8\nDNS=192.168.1.1\n"));
        assert!(!text.contains("Gateway") && !text.contains("DHCP"));
    }

    #[test]
    fn the_timeline_round_trips_and_bad_lines_are_skipped() {
        let phases = vec![("init".to_string(), 21.8), ("handoff".to_string(), 69.25)];
        let text = render_timeline(&phases);
        assert_eq!(text, "init 21.800\nhandoff 69.250\n");
        assert_eq!(parse_timeline(&text), phases);
        assert_eq!(
            parse_timeline("init 1\nbroken\n x\nnan NaN\nok 2.5"),
            [("init".to_string(), 1.0), ("ok".to_string(), 2.5)]
        );
    }

    #[test]
    fn installs_the_network_with_networkd_enabled() {
        let root = tempfile::tempdir().unwrap();
        let network = NetworkSpec::default();
        install_bridge(root.path(), NIC, "eth0", &network).unwrap();
        // Twice: every boot writes them again over the same files.
        install_bridge(root.path(), NIC, "eth0", &network).unwrap();
        let etc = root.path().join("etc/systemd");
        assert_eq!(
            std::fs::read_to_string(etc.join("network/10-pxen-xenbr0.netdev")).unwrap(),
            render_bridge_netdev(NIC, BRIDGE)
        );
        assert_eq!(
            std::fs::read_link(etc.join("system/multi-user.target.wants/systemd-networkd.service"))
                .unwrap(),
            Path::new("/usr/lib/systemd/system/systemd-networkd.service")
        );
        assert_eq!(
            std::fs::read_link(etc.join("system/dbus-org.freedesktop.network1.service")).unwrap(),
            Path::new("/usr/lib/systemd/system/systemd-networkd.service")
        );
    }

    #[test]
    fn installs_the_report_service() {
        let root = tempfile::tempdir().unwrap();
        let binary = std::env::current_exe().unwrap();
        install_report(root.path(), &binary, None).unwrap();
        let installed = std::fs::metadata(root.path().join(PXEN_BINARY)).unwrap();
        assert_eq!(installed.len(), std::fs::metadata(&binary).unwrap().len());
        assert_eq!(installed.mode() & 0o777, 0o755);
        let unit = root.path().join("etc/systemd/system").join(REPORT_UNIT);
        assert_eq!(
            std::fs::read_to_string(&unit).unwrap(),
            render_report_unit()
        );
        assert!(render_report_unit().contains("ExecStart=/usr/sbin/pxen report\n"));
        assert_eq!(
            std::fs::read_link(
                root.path()
                    .join("etc/systemd/system/multi-user.target.wants")
                    .join(REPORT_UNIT)
            )
            .unwrap(),
            Path::new("/etc/systemd/system/pxen-report.service")
        );
        assert!(!root.path().join(CONFIG_DIR).exists());
    }

    #[test]
    fn installs_the_state_units_and_on_host0_the_sync_units() {
        let marker = "/run/pxen/boot/pxen/hosts/.changed";
        for host0 in [false, true] {
            let root = tempfile::tempdir().unwrap();
            install_state(root.path(), host0, marker).unwrap();
            let system = root.path().join("etc/systemd/system");
            let drop_in = std::fs::read_to_string(root.path().join(SSH_KEYS_DROP_IN)).unwrap();
            assert!(drop_in.contains("ExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"));
            assert_eq!(
                std::fs::read_link(system.join("multi-user.target.wants").join(STATE_UNIT))
                    .unwrap(),
                Path::new("/etc/systemd/system/pxen-state.service")
            );
            let linked = |link: &str| system.join(link).symlink_metadata().is_ok();
            assert!(linked("timers.target.wants/pxen-state.timer"));
            assert_eq!(linked("paths.target.wants/pxen-state-sync.path"), host0);
            assert_eq!(system.join("pxen-state-sync.service").exists(), host0);
        }
        let [(_, service), (_, timer)] = render_state_units();
        assert!(service.contains("ExecStart=/usr/sbin/pxen state save\n"));
        assert!(timer.contains("OnUnitActiveSec=5min\n"));
        let [_, (_, path), _] = render_sync_units(marker);
        assert!(path.contains("PathChanged=/run/pxen/boot/pxen/hosts/.changed\n"));
    }

    #[test]
    fn the_configuration_copy_is_private() {
        let root = tempfile::tempdir().unwrap();
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("cluster.ron"), "Cluster()").unwrap();
        std::fs::create_dir(config.path().join("skipped")).unwrap();
        let to = root.path().join(CONFIG_DIR);
        copy_config(config.path(), &to).unwrap();
        let file = std::fs::metadata(to.join("cluster.ron")).unwrap();
        assert_eq!(file.mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&to).unwrap().mode() & 0o777, 0o700);
        assert!(!to.join("skipped").exists());
    }
}
