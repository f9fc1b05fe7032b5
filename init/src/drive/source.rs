//! The source drive at boot: which of the plugged-in PXEN drives this host booted from, what
//! it is ([`super::classify`]), and, when it makes this host host0, the writes that follow:
//! the binding at the first boot and the stamp at every boot.
//!
//! The steps, in the order `/init` runs them on a USB boot:
//! 1. [`choose`]: every FAT partition labelled PXEN is looked at; the one whose identity has
//!    the drive ID of `pxen.drive=` (written into `syslinux.cfg` by mkimage) is the one the
//!    firmware booted. A clone plugged in beside the original has the same ID: the one bound
//!    to its device wins.
//! 2. The caller copies the drive into RAM and loads the configuration from the copy.
//! 3. [`verify`]: the RAM copy's boot files are hashed against the identity's manifest (so
//!    what is checked is exactly what host0 serves), the device's facts are read, and the
//!    drive is classified.
//! 4. [`commit_host0`]: only for a drive that makes this host host0, the drive is mounted
//!    read-write: an unbound drive is bound to this device (`pxen/identity.ron` rewritten
//!    atomically) and the next stamp is written (crash-safe, [`super::stamp`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::classify::{self, Classification, DriveState};
use super::device::{self, DeviceFacts};
use super::identity::{self, Binding, DriveIdentity, IdentityError};
use super::manifest;
use super::stamp::{self, Stamp, StampError, StdFileOps};
use super::DriveError;

/// The directory of the drive's own files (identity, stamps).
const PXEN_DIR: &str = "pxen";

/// A PXEN drive found at boot, with its identity if it has one.
#[derive(Debug)]
pub struct Candidate {
    /// The partition, e.g. `/dev/sdb1`.
    pub partition: PathBuf,
    /// Its identity, or why it could not be read.
    pub identity: Result<DriveIdentity, IdentityError>,
    /// The facts of the device it is on.
    pub facts: DeviceFacts,
}

impl Candidate {
    /// The partition's name (`sdb1`), as sysfs knows it.
    pub fn name(&self) -> String {
        self.partition
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn drive_id(&self) -> Option<&str> {
        self.identity.as_ref().ok().map(|i| i.drive_id.as_str())
    }

    /// Whether its identity is bound to the device it is on.
    fn bound_here(&self) -> bool {
        let Ok(identity) = &self.identity else {
            return false;
        };
        match &identity.binding {
            Binding::Bound {
                device,
                partition_uuid,
                ..
            } => {
                self.facts.device.as_ref() == Some(device)
                    && self.facts.partition_uuid.as_deref() == Some(partition_uuid.as_str())
            }
            Binding::Unbound => false,
        }
    }
}

/// Reads the identity and device facts of every PXEN partition in `partitions`, mounting
/// each read-only at `mount_point` in turn.
pub fn survey(
    partitions: &[PathBuf],
    sys: &Path,
    dev: &Path,
    mount_point: &Path,
) -> Vec<Candidate> {
    partitions
        .iter()
        .map(|partition| {
            let identity = match super::mount_readonly(partition, mount_point) {
                Ok(()) => {
                    let identity = identity::read(mount_point);
                    super::unmount(mount_point);
                    identity
                }
                Err(e) => Err(IdentityError::Read {
                    path: partition.clone(),
                    source: std::io::Error::other(e.to_string()),
                }),
            };
            let name = partition
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Candidate {
                partition: partition.clone(),
                identity,
                facts: device::device_facts(sys, dev, &name),
            }
        })
        .collect()
}

/// The drive this host booted from: the one with the drive ID `wanted` (from `pxen.drive=`),
/// preferring one bound to its device; without a match (an image from before drive IDs, or a
/// drive ID typed wrong), the only drive, else the first one by name. Logs the choice when
/// there was one to make.
pub fn choose(candidates: Vec<Candidate>, wanted: Option<&str>) -> Option<Candidate> {
    let count = candidates.len();
    let mut matching: Vec<Candidate> = Vec::new();
    let mut others: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        if wanted.is_some() && candidate.drive_id() == wanted {
            matching.push(candidate);
        } else {
            others.push(candidate);
        }
    }
    // A bound one first, then by name (the list came sorted by name).
    matching.sort_by_key(|c| !c.bound_here());
    let chosen = matching.into_iter().next().or_else(|| {
        if let Some(wanted) = wanted {
            log::warn!(
                "no PXEN drive has the drive ID {wanted} of pxen.drive=; taking the first one"
            );
        }
        others.into_iter().next()
    })?;
    if count > 1 {
        log::warn!(
            "{count} PXEN drives are plugged in; this host booted from {}",
            chosen.partition.display()
        );
    }
    Some(chosen)
}

/// Classifies `candidate`, whose files were copied to `copy` (the RAM copy), for a host whose
/// configuration has the secret `secret`.
pub fn verify(candidate: &Candidate, copy: &Path, secret: &str) -> Classification {
    let our_cluster = crate::config::cluster_id(secret);
    match &candidate.identity {
        Ok(identity) => {
            let check = manifest::check(copy, &identity.manifest);
            for problem in &check.problems {
                log::warn!("drive: {problem}");
            }
            classify::classify(
                DriveState::Identified {
                    identity,
                    manifest: &check,
                },
                Some(&candidate.facts),
                &our_cluster,
            )
        }
        Err(e) => {
            let why = e.to_string();
            classify::classify(
                DriveState::NoIdentity { why: &why },
                Some(&candidate.facts),
                &our_cluster,
            )
        }
    }
}

/// A write to the source drive that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The drive could not be mounted read-write.
    #[error(transparent)]
    Mount(#[from] DriveError),
    /// The drive could not be bound to its device.
    #[error("cannot bind drive {drive_id} to this device: {source}")]
    Bind {
        /// The drive.
        drive_id: String,
        /// Why.
        source: classify::BindError,
    },
    /// The new identity could not be written.
    #[error("cannot write {path}: {source}; the drive stays unbound (is it write-protected?)")]
    WriteIdentity {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The stamp could not be written.
    #[error(transparent)]
    Stamp(#[from] StampError),
}

/// What host0 wrote to its source drive at this boot.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The identity as it is now (bound).
    pub identity: DriveIdentity,
    /// The stamp written at this boot.
    pub stamp: Stamp,
}

/// For a drive that makes this host host0: mounts it read-write at `mount_point`, binds it
/// if it is unbound (`by` says who bound it), writes the next stamp for the machine
/// `machine_serial`, and unmounts it.
pub fn commit_host0(
    candidate: &Candidate,
    identity: &DriveIdentity,
    mount_point: &Path,
    machine_serial: &str,
    by: &str,
) -> Result<Committed, CommitError> {
    super::mount_readwrite(&candidate.partition, mount_point)?;
    let result = commit_mounted(candidate, identity, mount_point, machine_serial, by);
    // Unmounting writes everything back; a failure here leaves the drive mounted until the
    // handoff moves it away, and the written files are already synced.
    super::unmount(mount_point);
    result
}

fn commit_mounted(
    candidate: &Candidate,
    identity: &DriveIdentity,
    root: &Path,
    machine_serial: &str,
    by: &str,
) -> Result<Committed, CommitError> {
    let now = now();
    let identity = match identity.binding {
        Binding::Unbound => {
            let bound = classify::bind(identity, &candidate.facts, by, now).map_err(|source| {
                CommitError::Bind {
                    drive_id: identity.drive_id.clone(),
                    source,
                }
            })?;
            write_identity(root, &bound)?;
            log::info!("drive: {} bound to this device ({by})", bound.drive_id);
            bound
        }
        Binding::Bound { .. } => identity.clone(),
    };
    let dir = root.join(PXEN_DIR);
    let mut fs = StdFileOps;
    let previous = match stamp::read_current(&fs, &dir) {
        Ok(current) => Some(current),
        Err(StampError::NoStamp { .. }) => None,
        Err(e) => {
            // A damaged stamp set must not keep host0 down: the chain starts again, and
            // says so.
            log::warn!("drive: {e}; starting a new stamp chain");
            None
        }
    };
    let next = stamp::next(
        previous.as_ref().map(|c| (&c.stamp, c.bytes.as_slice())),
        &identity.drive_id,
        machine_serial,
        now,
    );
    stamp::write_stamp(&mut fs, &dir, &next)?;
    Ok(Committed {
        identity,
        stamp: next,
    })
}

/// Writes `identity` over `pxen/identity.ron`: the new text to a temporary file, synced,
/// renamed over the old one, and the directory synced, so a pulled drive has the old or the
/// new identity.
fn write_identity(root: &Path, identity: &DriveIdentity) -> Result<(), CommitError> {
    let path = root.join(identity::IDENTITY_FILE);
    let temporary = path.with_extension("ron.new");
    let error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CommitError::WriteIdentity { path, source }
    };
    let mut file = std::fs::File::create(&temporary).map_err(error(&temporary))?;
    file.write_all(identity::render(identity).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(error(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(error(&path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(error(dir))?;
    }
    Ok(())
}

fn now() -> u64 {
    // A clock before 1970 (never set) stamps 0; the counter still orders the stamps.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::identity::DeviceId;
    use std::collections::BTreeMap;

    fn identity(drive_id: &str, binding: Binding) -> DriveIdentity {
        DriveIdentity {
            format: identity::FORMAT,
            cluster_id: "0".repeat(32),
            cluster_name: "lab".into(),
            drive_id: drive_id.into(),
            created: 1,
            manifest: BTreeMap::new(),
            binding,
        }
    }

    fn usb(serial: &str) -> DeviceId {
        DeviceId::Usb {
            serial: serial.into(),
        }
    }

    fn candidate(name: &str, drive_id: &str, bound_to: Option<&str>, on: &str) -> Candidate {
        let binding = match bound_to {
            Some(serial) => Binding::Bound {
                device: usb(serial),
                partition_uuid: "cafef00d-01".into(),
                at: 1,
                by: "test".into(),
            },
            None => Binding::Unbound,
        };
        Candidate {
            partition: PathBuf::from(format!("/dev/{name}")),
            identity: Ok(identity(drive_id, binding)),
            facts: DeviceFacts {
                disk: name.trim_end_matches('1').into(),
                device: Some(usb(on)),
                partition_uuid: Some("cafef00d-01".into()),
            },
        }
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn the_drive_named_on_the_command_line_is_chosen() {
        let chosen = choose(
            vec![
                candidate("sda1", A, Some("S1"), "S1"),
                candidate("sdb1", B, Some("S2"), "S2"),
            ],
            Some(B),
        )
        .unwrap();
        assert_eq!(chosen.name(), "sdb1");
    }

    #[test]
    fn beside_its_clone_the_bound_original_is_chosen() {
        let chosen = choose(
            vec![
                candidate("sda1", A, Some("ORIGINAL"), "COPY"),
                candidate("sdb1", A, Some("ORIGINAL"), "ORIGINAL"),
            ],
            Some(A),
        )
        .unwrap();
        assert_eq!(chosen.name(), "sdb1");
    }

    #[test]
    fn without_a_match_the_first_drive_is_taken() {
        let chosen = choose(
            vec![
                candidate("sda1", A, None, "S1"),
                candidate("sdb1", B, None, "S2"),
            ],
            Some("cccccccccccccccccccccccccccccccc"),
        )
        .unwrap();
        assert_eq!(chosen.name(), "sda1");
        assert!(choose(Vec::new(), Some(A)).is_none());
    }

    #[test]
    fn an_identity_is_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("pxen")).unwrap();
        let before = identity(A, Binding::Unbound);
        std::fs::write(
            root.path().join(identity::IDENTITY_FILE),
            identity::render(&before),
        )
        .unwrap();
        let after = identity(
            A,
            Binding::Bound {
                device: usb("S1"),
                partition_uuid: "cafef00d-01".into(),
                at: 5,
                by: "first boot of host H1".into(),
            },
        );
        write_identity(root.path(), &after).unwrap();
        let text = std::fs::read_to_string(root.path().join(identity::IDENTITY_FILE)).unwrap();
        assert_eq!(text, identity::render(&after));
        assert!(!root.path().join("pxen/identity.ron.new").exists());
    }
}
