//! What this host says about itself: the report `pxen report` sends from dom0.
//!
//! Everything comes from the running system and what `/init` left for it (see
//! [`crate::handoff::dom0`]): the DMI serial and the network cards from `/sys`, the hostname,
//! the boot ID, the boot source and host0's address from `/proc`, the boot timeline `/init`
//! wrote to `/run/pxen/timeline`, and the cluster secret from the configuration the host
//! booted with.

use std::path::{Path, PathBuf};

use super::wire::{HostReport, TimelineEntry, MAX_MACS, MAX_TIMELINE};
use crate::cmdline::{self, BootSource};
use crate::config::{self, ConfigErrors};
use crate::handoff::dom0;
use crate::identity;
use crate::logger::uptime_seconds;
use crate::net::link::{self, LinkError};

/// Where host0 reports its own dom0 up: its own boot service.
pub const HOST0_SELF: &str = "http://127.0.0.1:80";
/// The phase a report adds to `/init`'s timeline: when the report was made.
pub const DOM0_UP: &str = "dom0-up";

/// Where the facts are read from (the real system's paths in [`Sources::system`]; a test
/// points them into a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// `/sys`.
    pub sys: PathBuf,
    /// `/proc`.
    pub proc: PathBuf,
    /// The timeline `/init` wrote.
    pub timeline: PathBuf,
    /// The configuration the host booted with.
    pub config: PathBuf,
    /// The role `/init` gave this host (`host0` or `hostU`).
    pub role: PathBuf,
}

/// Where host0's HTTP server is, as this host knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host0 {
    /// At this address (`http://ADDRESS:PORT`).
    At(String),
    /// To be learnt from its announcements ([`crate::serve::announce::find`]): this host
    /// booted from a drive that did not make it host0, so nothing names host0 yet.
    Announced,
}

impl Sources {
    /// The paths of the running system.
    pub fn system() -> Sources {
        Sources {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
            timeline: PathBuf::from(dom0::TIMELINE_FILE),
            config: Path::new("/").join(dom0::CONFIG_DIR),
            role: PathBuf::from(dom0::ROLE_FILE),
        }
    }
}

/// A fact the report needs that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file of `/proc` could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The network cards could not be listed.
    #[error(transparent)]
    Nics(#[from] LinkError),
    /// A network boot without `pxen.server=`: host0's menus always add it.
    #[error("the kernel command line has no pxen.server=: this host was not booted by a PXEN host0's boot menu; pass --server http://HOST0:80")]
    NoServer,
    /// The configuration (and so the cluster secret) could not be loaded.
    #[error("{0}without the cluster secret this host cannot sign its report; `/init` copies the configuration there at every boot, so reboot the host, or pass --config DIR")]
    Config(ConfigErrors),
}

/// A report ready to send: to whom, signed with what.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The report.
    pub report: HostReport,
    /// host0's HTTP server.
    pub server: Host0,
    /// The cluster secret.
    pub secret: String,
}

/// Gathers this host's report, addressed to `pxen.server=` of the kernel command line (host0
/// itself when booted from the drive).
pub fn gather(sources: &Sources) -> Result<Outgoing, LocalError> {
    let cmdline = read(&sources.proc.join("cmdline"))?;
    let (params, _) = cmdline::parse(&cmdline);
    let cluster = config::load_dir(&sources.config).map_err(LocalError::Config)?;
    let report = HostReport {
        hostname: read(&sources.proc.join("sys/kernel/hostname"))?
            .trim()
            .to_string(),
        serial: usable_serial(&sources.sys),
        macs: link::physical_nics(&sources.sys.join("class/net"))?
            .into_iter()
            .map(|nic| nic.mac)
            .take(MAX_MACS)
            .collect(),
        boot_id: read(&sources.proc.join("sys/kernel/random/boot_id"))?
            .trim()
            .to_string(),
        boot_source: match params.boot_source {
            BootSource::Usb => "usb",
            BootSource::Net => "net",
        }
        .to_string(),
        timeline: timeline(&sources.timeline, uptime_seconds()),
    };
    Ok(Outgoing {
        report,
        server: host0_server(sources)?,
        secret: cluster.secret,
    })
}

/// host0's HTTP server as this host knows it: `pxen.server=` of the kernel command line (a
/// network boot); this host itself when it booted from a drive and is host0 (or runs
/// `pxen serve`); its announcements when it booted from a drive that did not make it host0.
pub fn host0_server(sources: &Sources) -> Result<Host0, LocalError> {
    let (params, _) = cmdline::parse(&read(&sources.proc.join("cmdline"))?);
    match (params.server, params.boot_source) {
        (Some(server), _) => Ok(Host0::At(server)),
        (None, BootSource::Net) => Err(LocalError::NoServer),
        (None, BootSource::Usb) => {
            let role = std::fs::read_to_string(&sources.role).unwrap_or_default();
            Ok(if role.trim() == dom0::ROLE_HOSTU {
                Host0::Announced
            } else {
                Host0::At(HOST0_SELF.to_string())
            })
        }
    }
}

/// The DMI system serial, unless it is one of the placeholders firmware ships.
fn usable_serial(sys: &Path) -> Option<String> {
    identity::read_machine_ids(sys)
        .product_serial
        .filter(|serial| identity::bogus_reason(serial).is_none())
}

/// `/init`'s timeline (empty if it left none) and now, as [`DOM0_UP`]; the most recent
/// phases are kept if there are more than a report may carry.
fn timeline(path: &Path, now: f64) -> Vec<TimelineEntry> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        log::warn!("report: no boot timeline in {}: {e}", path.display());
        String::new()
    });
    let mut phases = dom0::parse_timeline(&text);
    phases.push((DOM0_UP.to_string(), now));
    let skip = phases.len().saturating_sub(MAX_TIMELINE);
    phases
        .into_iter()
        .skip(skip)
        .map(|(phase, seconds)| TimelineEntry { phase, seconds })
        .collect()
}

fn read(path: &Path) -> Result<String, LocalError> {
    std::fs::read_to_string(path).map_err(|source| LocalError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake system: `/sys` with one card and a serial, `/proc`, a timeline, a config.
    fn system(cmdline: &str, serial: &str) -> (tempfile::TempDir, Sources) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let nic = root.join("sys/class/net/eth0");
        std::fs::create_dir_all(&nic).unwrap();
        std::fs::write(nic.join("address"), "52:54:00:00:00:07\n").unwrap();
        std::fs::write(nic.join("carrier"), "1\n").unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:03.0",
            nic.join("device"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("sys/class/dmi/id")).unwrap();
        std::fs::write(
            root.join("sys/class/dmi/id/product_serial"),
            format!("{serial}\n"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("proc/sys/kernel/random")).unwrap();
        std::fs::write(root.join("proc/cmdline"), cmdline).unwrap();
        std::fs::write(root.join("proc/sys/kernel/random/boot_id"), "6f1c-boot\n").unwrap();
        std::fs::write(root.join("proc/sys/kernel/hostname"), "node7\n").unwrap();
        std::fs::write(root.join("timeline"), "init 2.000\nhandoff 9.500\n").unwrap();
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::write(
            root.join("config/cluster.ron"),
            "Cluster(name: \"lab\", secret: \"0123456789abcdef\")",
        )
        .unwrap();
        let sources = Sources {
            sys: root.join("sys"),
            proc: root.join("proc"),
            timeline: root.join("timeline"),
            config: root.join("config"),
            role: root.join("role"),
        };
        (dir, sources)
    }

    #[test]
    fn a_network_booted_host_reports_to_the_server_on_its_command_line() {
        let (_dir, sources) = system(
            "console=hvc0 pxen.boot=net pxen.server=http://10.77.0.50:80\n",
            "PXT-1",
        );
        let outgoing = gather(&sources).unwrap();
        assert_eq!(outgoing.server, Host0::At("http://10.77.0.50:80".into()));
        assert_eq!(outgoing.secret, "0123456789abcdef");
        let report = outgoing.report;
        assert_eq!(report.hostname, "node7");
        assert_eq!(report.serial.as_deref(), Some("PXT-1"));
        assert_eq!(report.macs, ["52:54:00:00:00:07".parse().unwrap()]);
        assert_eq!(report.boot_id, "6f1c-boot");
        assert_eq!(report.boot_source, "net");
        let phases: Vec<&str> = report.timeline.iter().map(|e| e.phase.as_str()).collect();
        assert_eq!(phases, ["init", "handoff", DOM0_UP]);
        assert_eq!(report.timeline[1].seconds, 9.5);
        report.validate().unwrap();
    }

    #[test]
    fn host0_reports_to_itself_and_placeholder_serials_are_left_out() {
        let (_dir, sources) = system("pxen.boot=usb", "To be filled by O.E.M.");
        let outgoing = gather(&sources).unwrap();
        assert_eq!(outgoing.server, Host0::At(HOST0_SELF.into()));
        std::fs::write(&sources.role, "host0\n").unwrap();
        assert_eq!(
            host0_server(&sources).unwrap(),
            Host0::At(HOST0_SELF.into())
        );
        std::fs::write(&sources.role, "hostU\n").unwrap();
        assert_eq!(
            host0_server(&sources).unwrap(),
            Host0::Announced,
            "a drive that did not make this host host0: host0 is found by its announcements"
        );
        assert_eq!(outgoing.report.serial, None);
        assert_eq!(outgoing.report.boot_source, "usb");
    }

    #[test]
    fn without_the_configuration_the_error_says_what_to_do() {
        let (dir, sources) = system("pxen.boot=net", "PXT-1");
        std::fs::remove_file(dir.path().join("config/cluster.ron")).unwrap();
        let error = gather(&sources).unwrap_err().to_string();
        assert!(error.contains("cluster.ron"), "{error}");
        assert!(error.contains("cannot sign its report"), "{error}");
    }

    #[test]
    fn a_long_timeline_keeps_its_latest_phases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline");
        let text: String = (0..MAX_TIMELINE + 5)
            .map(|i| format!("p{i} {i}\n"))
            .collect();
        std::fs::write(&path, text).unwrap();
        let entries = timeline(&path, 1000.0);
        assert_eq!(entries.len(), MAX_TIMELINE);
        assert_eq!(entries.last().unwrap().phase, DOM0_UP);
        assert!(timeline(&dir.path().join("missing"), 1.0).len() == 1);
    }
}
