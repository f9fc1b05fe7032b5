//! What the drive a host booted from is, and so whether the host is host0: a pure function of
//! the drive's identity, the manifest check of its files, the facts of the device it is on,
//! and the cluster ID of the configuration the host runs with.
//!
//! The checks run in this order, and the first that fails decides:
//! 1. no drive: [`Classification::Absent`];
//! 2. no readable identity: [`Classification::NoIdentity`];
//! 3. another cluster's identity: [`Classification::Foreign`], before the files are looked
//!    at, because a drive of another cluster is not this cluster's source whatever the state
//!    of its files, and "wrong cluster" is what the administrator must fix first;
//! 4. a boot file that differs from the manifest, is missing or cannot be read:
//!    [`Classification::Corrupted`] or [`Classification::Unreadable`], before the binding,
//!    because adopting a damaged copy would not make it bootable, and rewriting the drive
//!    fixes both;
//! 5. the binding: never bound ([`Classification::Unbound`], or
//!    [`Classification::Unbindable`] when the device has no identity to bind to), bound to
//!    another device ([`Classification::Clone`]), or bound to this one
//!    ([`Classification::Genuine`]).
//!
//! Only a genuine drive, or an unbound one that this boot binds, makes host0.

use super::device::DeviceFacts;
use super::identity::{Binding, DeviceId, DriveIdentity};
use super::manifest::{ManifestCheck, ManifestProblem};

/// Hex digits of IDs and hashes shown on the console: enough to tell drives apart.
const SHORT_HEX: usize = 8;

/// What is known about the drive before it is classified.
#[derive(Debug, Clone, Copy)]
pub enum DriveState<'a> {
    /// No PXEN drive: a network boot, or no drive was found.
    Absent,
    /// A PXEN drive whose identity could not be read.
    NoIdentity {
        /// Why, with the file, position and fix.
        why: &'a str,
    },
    /// A PXEN drive with its identity and the check of its files against the manifest.
    Identified {
        /// The identity read from the drive.
        identity: &'a DriveIdentity,
        /// Its files checked against the identity's manifest.
        manifest: &'a ManifestCheck,
    },
}

/// What the drive is; see the module's documentation for the order of the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// No PXEN drive.
    Absent,
    /// A PXEN drive with no valid identity file.
    NoIdentity {
        /// Why, as the identity's error says it.
        why: String,
    },
    /// The drive's identity names another cluster than this host's configuration.
    Foreign {
        /// The drive.
        drive_id: String,
        /// The cluster the drive's identity names.
        drive_cluster: String,
        /// The cluster of the configuration this host runs with.
        our_cluster: String,
    },
    /// A boot file differs from the manifest, or is missing.
    Corrupted {
        /// The drive.
        drive_id: String,
        /// The first such file, by path.
        file: String,
        /// Its hash in the manifest.
        expected: String,
        /// Its hash as it is; `None` when the file is missing.
        actual: Option<String>,
        /// How many more files have a problem (all are in the manifest check).
        more: usize,
    },
    /// A boot file could not be read (a failing drive).
    Unreadable {
        /// The drive.
        drive_id: String,
        /// The first such file, by path.
        file: String,
        /// The I/O error.
        error: String,
        /// How many more files have a problem.
        more: usize,
    },
    /// Never bound, and the device it is on offers nothing to bind to.
    Unbindable {
        /// The drive.
        drive_id: String,
        /// What the device lacks.
        why: String,
    },
    /// Never bound (an image just written by mkimage): this boot binds it to this device
    /// with [`bind`] and the host is host0.
    Unbound {
        /// The drive.
        drive_id: String,
        /// The device it will be bound to.
        device: DeviceId,
        /// The partition UUID it will be bound to.
        partition_uuid: String,
    },
    /// Bound to another device: the same bytes copied elsewhere.
    Clone {
        /// The drive.
        drive_id: String,
        /// The device the drive is bound to.
        bound_to: DeviceId,
        /// The partition UUID the drive is bound to.
        bound_partition: String,
        /// The device it is on (`None`: one without a readable identity).
        this_device: Option<DeviceId>,
        /// The partition UUID it is on, if it has one.
        this_partition: Option<String>,
    },
    /// Bound to this device, every file as the manifest says, this cluster's.
    Genuine {
        /// The drive.
        drive_id: String,
        /// The device it is bound to and on.
        device: DeviceId,
    },
}

/// Classifies the drive; `device` is `None` when the device's facts could not be gathered,
/// `our_cluster_id` is [`super::identity::cluster_id`] of the configuration's secret.
pub fn classify(
    drive: DriveState<'_>,
    device: Option<&DeviceFacts>,
    our_cluster_id: &str,
) -> Classification {
    let (identity, manifest) = match drive {
        DriveState::Absent => return Classification::Absent,
        DriveState::NoIdentity { why } => {
            return Classification::NoIdentity {
                why: why.to_owned(),
            }
        }
        DriveState::Identified { identity, manifest } => (identity, manifest),
    };
    let drive_id = identity.drive_id.clone();
    if identity.cluster_id != our_cluster_id {
        return Classification::Foreign {
            drive_id,
            drive_cluster: identity.cluster_id.clone(),
            our_cluster: our_cluster_id.to_owned(),
        };
    }
    if let Some(first) = manifest.problems.first() {
        return damaged(drive_id, first, manifest.problems.len() - 1);
    }
    match &identity.binding {
        Binding::Unbound => match device
            .map(BindTarget::of)
            .unwrap_or(Err(BindError::NoFacts))
        {
            Ok(target) => Classification::Unbound {
                drive_id,
                device: target.device,
                partition_uuid: target.partition_uuid,
            },
            Err(error) => Classification::Unbindable {
                drive_id,
                why: error.to_string(),
            },
        },
        Binding::Bound {
            device: bound_to,
            partition_uuid,
            ..
        } => {
            let this_device = device.and_then(|d| d.device.clone());
            let this_partition = device.and_then(|d| d.partition_uuid.clone());
            if this_device.as_ref() == Some(bound_to)
                && this_partition.as_ref() == Some(partition_uuid)
            {
                Classification::Genuine {
                    drive_id,
                    device: bound_to.clone(),
                }
            } else {
                Classification::Clone {
                    drive_id,
                    bound_to: bound_to.clone(),
                    bound_partition: partition_uuid.clone(),
                    this_device,
                    this_partition,
                }
            }
        }
    }
}

/// The classification of a drive whose first problem file is `first`.
fn damaged(drive_id: String, first: &ManifestProblem, more: usize) -> Classification {
    match first {
        ManifestProblem::Mismatch {
            file,
            expected,
            actual,
            ..
        } => Classification::Corrupted {
            drive_id,
            file: file.clone(),
            expected: expected.clone(),
            actual: Some(actual.clone()),
            more,
        },
        ManifestProblem::Missing { file, expected, .. } => Classification::Corrupted {
            drive_id,
            file: file.clone(),
            expected: expected.clone(),
            actual: None,
            more,
        },
        ManifestProblem::Unreadable { file, error, .. } => Classification::Unreadable {
            drive_id,
            file: file.clone(),
            error: error.clone(),
            more,
        },
    }
}

/// Whether a host that booted from a drive classified so is host0: a genuine drive, or an
/// unbound one (which the boot binds to this device before serving).
pub fn is_host0(classification: &Classification) -> bool {
    matches!(
        classification,
        Classification::Genuine { .. } | Classification::Unbound { .. }
    )
}

/// The console's one line about the drive: the role, the reason, and for a drive that is not
/// genuine what to do about it. host0's boot may add its stamp (`, stamp #7`).
pub fn banner(classification: &Classification) -> String {
    let role = if is_host0(classification) {
        "host0"
    } else {
        "hostU"
    };
    let reason = reason(classification);
    // One line, whatever the messages it quotes hold.
    format!("PXEN: {role} — {reason}").replace('\n', " ")
}

/// The part of the banner after the role.
fn reason(classification: &Classification) -> String {
    match classification {
        Classification::Absent => {
            "no PXEN drive (booted over the network, or no drive was found)".to_owned()
        }
        Classification::NoIdentity { why } => format!("NO IDENTITY: {why}"),
        Classification::Foreign {
            drive_id,
            drive_cluster,
            our_cluster,
        } => format!(
            "FOREIGN: drive {} belongs to cluster {} but the secret in its configuration is cluster {}'s; \
             put back the secret the drive was made with, or rewrite the drive with ./mkimage --config DIR",
            short(drive_id),
            short(drive_cluster),
            short(our_cluster)
        ),
        Classification::Corrupted {
            file,
            expected,
            actual,
            more,
            ..
        } => {
            let what = match actual {
                Some(actual) => format!(
                    "{file} does not match the drive's manifest (sha256 {} expected, {} found)",
                    short(expected),
                    short(actual)
                ),
                None => format!("{file} is missing from the drive (its manifest lists it)"),
            };
            format!("CORRUPTED: {what}{}; rewrite the drive with ./mkimage", and_more(*more))
        }
        Classification::Unreadable {
            file, error, more, ..
        } => format!(
            "UNREADABLE: cannot read {file} from the drive ({error}){}; the drive may be failing: write a new one with ./mkimage",
            and_more(*more)
        ),
        Classification::Unbindable { drive_id, why } => format!(
            "CANNOT BIND: drive {} is unbound and {why}; write the image to a flash drive that has a USB serial number",
            short(drive_id)
        ),
        Classification::Unbound {
            drive_id,
            device,
            partition_uuid,
        } => format!(
            "unbound source drive {}, bound at this first boot to {device}, partition {partition_uuid}",
            short(drive_id)
        ),
        Classification::Clone {
            bound_to,
            bound_partition,
            this_device,
            this_partition,
            ..
        } => {
            let on = match (this_device, this_partition) {
                (Some(device), _) if device != bound_to => device.to_string(),
                (None, _) => "a device with no readable serial".to_owned(),
                (Some(_), Some(partition)) => format!("partition {partition}"),
                (Some(_), None) => "a disk with no partition UUID".to_owned(),
            };
            format!(
                "CLONE: this drive is bound to {bound_to}, partition {bound_partition}, but is on {on}; \
                 if it replaces a dead drive, bind it with ./mkimage --rebind DEVICE"
            )
        }
        Classification::Genuine { drive_id, device } => {
            format!("genuine source drive {} ({device})", short(drive_id))
        }
    }
}

/// The start of an ID or hash, for the console.
fn short(hex: &str) -> String {
    match hex.get(..SHORT_HEX) {
        Some(start) if hex.len() > SHORT_HEX => format!("{start}…"),
        _ => hex.to_owned(),
    }
}

/// " (and N more files, see the log)" when there are more problems than the one shown.
fn and_more(more: usize) -> String {
    match more {
        0 => String::new(),
        1 => " (and 1 more file, see the log)".to_owned(),
        n => format!(" (and {n} more files, see the log)"),
    }
}

/// Why a drive cannot be bound to the device it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// Nothing could be learnt about the device.
    #[error("the device it is on could not be identified")]
    NoFacts,
    /// The device has no hardware identity.
    #[error("{disk} has no USB serial, WWN or disk serial to bind to, so a copy of it could not be told apart")]
    NoDeviceId {
        /// The disk.
        disk: String,
    },
    /// The partition has no UUID.
    #[error("{disk} has no MBR disk signature, so its partition has no UUID to bind to")]
    NoPartitionUuid {
        /// The disk.
        disk: String,
    },
}

/// The two facts a binding records, both known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindTarget {
    /// The device's hardware identity.
    pub device: DeviceId,
    /// The partition's UUID.
    pub partition_uuid: String,
}

impl BindTarget {
    /// The binding facts of a device, if it has both.
    pub fn of(facts: &DeviceFacts) -> Result<BindTarget, BindError> {
        let device = facts.device.clone().ok_or_else(|| BindError::NoDeviceId {
            disk: facts.disk.clone(),
        })?;
        let partition_uuid =
            facts
                .partition_uuid
                .clone()
                .ok_or_else(|| BindError::NoPartitionUuid {
                    disk: facts.disk.clone(),
                })?;
        Ok(BindTarget {
            device,
            partition_uuid,
        })
    }
}

/// The identity bound to the device of `facts`: `by` says who bound it (`mkimage --out
/// /dev/sdb`, `first boot of host PXT-H0-0001`, `pxen drive adopt`), `now` is Unix seconds.
/// Everything else is kept. Fails when the device offers nothing to bind to.
pub fn bind(
    identity: &DriveIdentity,
    facts: &DeviceFacts,
    by: &str,
    now: u64,
) -> Result<DriveIdentity, BindError> {
    let target = BindTarget::of(facts)?;
    Ok(DriveIdentity {
        binding: Binding::Bound {
            device: target.device,
            partition_uuid: target.partition_uuid,
            at: now,
            by: by.to_owned(),
        },
        ..identity.clone()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::drive::identity::{FORMAT, MANIFEST_FILES};

    const OURS: &str = "0f3a0f3a0f3a0f3a0f3a0f3a0f3a0f3a";
    const THEIRS: &str = "77777777777777777777777777777777";
    const DRIVE: &str = "9c1e9c1e9c1e9c1e9c1e9c1e9c1e9c1e";

    fn usb(serial: &str) -> DeviceId {
        DeviceId::Usb {
            serial: serial.into(),
        }
    }

    fn identity(cluster: &str, binding: Binding) -> DriveIdentity {
        DriveIdentity {
            format: FORMAT,
            cluster_id: cluster.into(),
            cluster_name: "lab".into(),
            drive_id: DRIVE.into(),
            created: 1_795_000_000,
            manifest: MANIFEST_FILES
                .iter()
                .map(|f| (f.to_string(), "a".repeat(64)))
                .collect::<BTreeMap<_, _>>(),
            binding,
        }
    }

    fn bound_to(serial: &str, partition: &str) -> Binding {
        Binding::Bound {
            device: usb(serial),
            partition_uuid: partition.into(),
            at: 1_795_000_100,
            by: "mkimage --out /dev/sdb".into(),
        }
    }

    fn facts(serial: Option<&str>, partition: Option<&str>) -> DeviceFacts {
        DeviceFacts {
            disk: "sdb".into(),
            device: serial.map(usb),
            partition_uuid: partition.map(str::to_owned),
        }
    }

    fn mismatch(file: &str) -> ManifestProblem {
        ManifestProblem::Mismatch {
            file: file.into(),
            path: PathBuf::from("/drive").join(file),
            expected: "ab12".repeat(16),
            actual: "77ff".repeat(16),
        }
    }

    fn missing(file: &str) -> ManifestProblem {
        ManifestProblem::Missing {
            file: file.into(),
            path: PathBuf::from("/drive").join(file),
            expected: "ab12".repeat(16),
        }
    }

    fn unreadable(file: &str) -> ManifestProblem {
        ManifestProblem::Unreadable {
            file: file.into(),
            path: PathBuf::from("/drive").join(file),
            expected: "ab12".repeat(16),
            error: "Input/output error (os error 5)".into(),
        }
    }

    fn check(problems: Vec<ManifestProblem>) -> ManifestCheck {
        ManifestCheck {
            checked: MANIFEST_FILES.len(),
            problems,
        }
    }

    /// Every case, and the order of the checks where several apply: (name, identity's
    /// cluster, binding, problems, device facts, expected classification, host0?, banner
    /// fragments).
    #[test]
    fn every_case_is_classified_and_bannered() {
        let h0 = Some("USB-HOST0");
        let p1 = Some("1a2b3c4d-01");
        type Case = (
            &'static str,
            &'static str,
            Binding,
            Vec<ManifestProblem>,
            Option<DeviceFacts>,
            Classification,
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            (
                "genuine",
                OURS,
                bound_to("USB-HOST0", "1a2b3c4d-01"),
                vec![],
                Some(facts(h0, p1)),
                Classification::Genuine {
                    drive_id: DRIVE.into(),
                    device: usb("USB-HOST0"),
                },
                &["PXEN: host0 — genuine source drive 9c1e9c1e… (USB serial USB-HOST0)"],
            ),
            (
                "unbound binds at this boot",
                OURS,
                Binding::Unbound,
                vec![],
                Some(facts(h0, p1)),
                Classification::Unbound {
                    drive_id: DRIVE.into(),
                    device: usb("USB-HOST0"),
                    partition_uuid: "1a2b3c4d-01".into(),
                },
                &["PXEN: host0 — unbound source drive 9c1e9c1e…", "USB serial USB-HOST0"],
            ),
            (
                "unbound on a stick without a serial",
                OURS,
                Binding::Unbound,
                vec![],
                Some(facts(None, p1)),
                Classification::Unbindable {
                    drive_id: DRIVE.into(),
                    why: BindError::NoDeviceId { disk: "sdb".into() }.to_string(),
                },
                &["PXEN: hostU — CANNOT BIND", "sdb has no USB serial", "flash drive that has a USB serial"],
            ),
            (
                "unbound without a partition table",
                OURS,
                Binding::Unbound,
                vec![],
                Some(facts(h0, None)),
                Classification::Unbindable {
                    drive_id: DRIVE.into(),
                    why: BindError::NoPartitionUuid { disk: "sdb".into() }.to_string(),
                },
                &["PXEN: hostU — CANNOT BIND", "no MBR disk signature"],
            ),
            (
                "unbound with no device facts",
                OURS,
                Binding::Unbound,
                vec![],
                None,
                Classification::Unbindable {
                    drive_id: DRIVE.into(),
                    why: BindError::NoFacts.to_string(),
                },
                &["PXEN: hostU — CANNOT BIND"],
            ),
            (
                "clone on another stick",
                OURS,
                bound_to("USB-HOST0", "1a2b3c4d-01"),
                vec![],
                Some(facts(Some("USB-OTHER"), p1)),
                Classification::Clone {
                    drive_id: DRIVE.into(),
                    bound_to: usb("USB-HOST0"),
                    bound_partition: "1a2b3c4d-01".into(),
                    this_device: Some(usb("USB-OTHER")),
                    this_partition: p1.map(str::to_owned),
                },
                &["PXEN: hostU — CLONE: this drive is bound to USB serial USB-HOST0, partition 1a2b3c4d-01, but is on USB serial USB-OTHER; if it replaces a dead drive, bind it with ./mkimage --rebind DEVICE"],
            ),
            (
                "clone on the same stick rewritten with another partition table",
                OURS,
                bound_to("USB-HOST0", "1a2b3c4d-01"),
                vec![],
                Some(facts(h0, Some("55667788-01"))),
                Classification::Clone {
                    drive_id: DRIVE.into(),
                    bound_to: usb("USB-HOST0"),
                    bound_partition: "1a2b3c4d-01".into(),
                    this_device: Some(usb("USB-HOST0")),
                    this_partition: Some("55667788-01".into()),
                },
                &["CLONE", "but is on partition 55667788-01"],
            ),
            (
                "clone on a device without a serial",
                OURS,
                bound_to("USB-HOST0", "1a2b3c4d-01"),
                vec![],
                Some(facts(None, p1)),
                Classification::Clone {
                    drive_id: DRIVE.into(),
                    bound_to: usb("USB-HOST0"),
                    bound_partition: "1a2b3c4d-01".into(),
                    this_device: None,
                    this_partition: p1.map(str::to_owned),
                },
                &["CLONE", "but is on a device with no readable serial"],
            ),
            (
                "corrupted: first file named, the others counted; before the clone check",
                OURS,
                bound_to("USB-HOST0", "1a2b3c4d-01"),
                vec![mismatch("vmlinuz"), missing("xen.gz")],
                Some(facts(Some("USB-OTHER"), p1)),
                Classification::Corrupted {
                    drive_id: DRIVE.into(),
                    file: "vmlinuz".into(),
                    expected: "ab12".repeat(16),
                    actual: Some("77ff".repeat(16)),
                    more: 1,
                },
                &["PXEN: hostU — CORRUPTED: vmlinuz does not match the drive's manifest (sha256 ab12ab12… expected, 77ff77ff… found) (and 1 more file, see the log); rewrite the drive with ./mkimage"],
            ),
            (
                "a missing boot file is corruption",
                OURS,
                Binding::Unbound,
                vec![missing("initrd.img")],
                Some(facts(h0, p1)),
                Classification::Corrupted {
                    drive_id: DRIVE.into(),
                    file: "initrd.img".into(),
                    expected: "ab12".repeat(16),
                    actual: None,
                    more: 0,
                },
                &["CORRUPTED: initrd.img is missing from the drive (its manifest lists it); rewrite the drive with ./mkimage"],
            ),
            (
                "unreadable",
                OURS,
                bound_to("USB-HOST0", "1a2b3c4d-01"),
                vec![unreadable("xen.gz"), mismatch("vmlinuz"), mismatch("mboot.c32")],
                Some(facts(h0, p1)),
                Classification::Unreadable {
                    drive_id: DRIVE.into(),
                    file: "xen.gz".into(),
                    error: "Input/output error (os error 5)".into(),
                    more: 2,
                },
                &["PXEN: hostU — UNREADABLE: cannot read xen.gz", "(and 2 more files, see the log)", "may be failing"],
            ),
            (
                "foreign, before corruption and binding",
                THEIRS,
                bound_to("USB-HOST0", "1a2b3c4d-01"),
                vec![mismatch("vmlinuz")],
                Some(facts(Some("USB-OTHER"), p1)),
                Classification::Foreign {
                    drive_id: DRIVE.into(),
                    drive_cluster: THEIRS.into(),
                    our_cluster: OURS.into(),
                },
                &["PXEN: hostU — FOREIGN: drive 9c1e9c1e… belongs to cluster 77777777… but the secret in its configuration is cluster 0f3a0f3a…'s", "./mkimage --config"],
            ),
        ];
        for (name, cluster, binding, problems, device, expected, fragments) in cases {
            let identity = identity(cluster, binding);
            let manifest = check(problems);
            let state = DriveState::Identified {
                identity: &identity,
                manifest: &manifest,
            };
            let got = classify(state, device.as_ref(), OURS);
            assert_eq!(got, expected, "{name}");
            let line = banner(&got);
            assert!(!line.contains('\n'), "{name}: {line}");
            for fragment in fragments {
                assert!(
                    line.contains(fragment),
                    "{name}: {line:?} lacks {fragment:?}"
                );
            }
            let host0 = matches!(
                expected,
                Classification::Genuine { .. } | Classification::Unbound { .. }
            );
            assert_eq!(is_host0(&got), host0, "{name}");
            assert_eq!(line.starts_with("PXEN: host0"), host0, "{name}: {line}");
        }
    }

    #[test]
    fn no_drive_and_no_identity_come_first() {
        let device = facts(Some("USB-HOST0"), Some("1a2b3c4d-01"));
        let absent = classify(DriveState::Absent, Some(&device), OURS);
        assert_eq!(absent, Classification::Absent);
        assert!(!is_host0(&absent));
        assert!(banner(&absent).starts_with("PXEN: hostU — no PXEN drive"));
        let why = "pxen/identity.ron:3:5: bad\nthing; rewrite";
        let none = classify(DriveState::NoIdentity { why }, Some(&device), OURS);
        assert_eq!(none, Classification::NoIdentity { why: why.into() });
        assert!(!is_host0(&none));
        assert_eq!(
            banner(&none),
            "PXEN: hostU — NO IDENTITY: pxen/identity.ron:3:5: bad thing; rewrite"
        );
    }

    #[test]
    fn binding_records_the_device_and_keeps_the_rest() {
        let unbound = identity(OURS, Binding::Unbound);
        let device = facts(Some("USB-HOST0"), Some("1a2b3c4d-01"));
        let bound = bind(
            &unbound,
            &device,
            "first boot of host PXT-H0-0001",
            1_795_000_500,
        )
        .unwrap();
        assert_eq!(
            bound.binding,
            Binding::Bound {
                device: usb("USB-HOST0"),
                partition_uuid: "1a2b3c4d-01".into(),
                at: 1_795_000_500,
                by: "first boot of host PXT-H0-0001".into(),
            }
        );
        assert_eq!(
            DriveIdentity {
                binding: Binding::Unbound,
                ..bound.clone()
            },
            unbound
        );
        // Once bound, the same device is genuine.
        let manifest = check(vec![]);
        let state = DriveState::Identified {
            identity: &bound,
            manifest: &manifest,
        };
        assert!(matches!(
            classify(state, Some(&device), OURS),
            Classification::Genuine { .. }
        ));
        assert_eq!(
            bind(&unbound, &facts(None, Some("x")), "by", 1),
            Err(BindError::NoDeviceId { disk: "sdb".into() })
        );
    }

    #[test]
    fn short_ids_keep_short_ones_whole() {
        assert_eq!(short("0123456789"), "01234567…");
        assert_eq!(short("01234567"), "01234567");
        assert_eq!(short("ab"), "ab");
    }
}
