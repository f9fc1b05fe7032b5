//! The drive's identity: `pxen/identity.ron` on the FAT partition, written by mkimage and
//! rewritten only when the drive is bound to a device.
//!
//! It names the cluster the drive belongs to (by [`cluster_id`], never by its secret), the
//! drive itself (a random ID made by mkimage for each image), the SHA-256 of every boot file
//! (the manifest, see [`MANIFEST_FILES`]) and the [`Binding`] to the physical device the drive
//! is genuine on. The file is RON, like the configuration, so an administrator can read it;
//! [`render`] writes it in one stable form (fields in a fixed order, the manifest sorted by
//! path), so the same identity always gives the same bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the identity is, relative to the root of the drive's FAT partition.
pub const IDENTITY_FILE: &str = "pxen/identity.ron";

/// The format of the identity file this code reads and writes.
pub const FORMAT: u32 = 1;

/// The boot files whose SHA-256 the manifest holds, by path on the FAT partition: everything
/// the BIOS, SYSLINUX and a PXE client load to reach `/init`.
///
/// `ldlinux.sys` is left out: the SYSLINUX installer patches it in place with its own sector
/// addresses, and a damaged one does not boot at all. The `config/` directory is left out too:
/// the administrator edits it, and its schema validates it.
pub const MANIFEST_FILES: &[&str] = &[
    "initrd.img",
    "ldlinux.c32",
    "libcom32.c32",
    "lpxelinux.0",
    "mboot.c32",
    "syslinux.cfg",
    "vmlinuz",
    "xen.gz",
];

/// Hex digits in a cluster ID and in a drive ID (16 bytes).
pub const ID_HEX_DIGITS: usize = 32;

/// Hex digits in a SHA-256 digest.
pub const SHA256_HEX_DIGITS: usize = 64;

/// The identity of a PXEN drive, as `pxen/identity.ron` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveIdentity {
    /// The file's format, [`FORMAT`].
    pub format: u32,
    /// The cluster the drive belongs to: [`cluster_id`] of its configuration's secret.
    pub cluster_id: String,
    /// The cluster's name, for people.
    pub cluster_name: String,
    /// This drive's ID: 32 random hex digits made by mkimage ([`new_drive_id`]).
    pub drive_id: String,
    /// When mkimage made the image, in Unix seconds.
    pub created: u64,
    /// SHA-256 (64 lowercase hex digits) of every boot file, by path on the FAT partition;
    /// it holds at least every file of [`MANIFEST_FILES`].
    pub manifest: BTreeMap<String, String>,
    /// The device the drive is genuine on, if it has been bound.
    pub binding: Binding,
}

/// Whether, and to which device, a drive is bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Binding {
    /// Never bound: an image file just written by mkimage. It binds to the device it first
    /// boots from as host0.
    Unbound,
    /// Bound: the same bytes on any other device are a clone.
    Bound {
        /// The device's hardware identity.
        device: DeviceId,
        /// The partition's UUID as blkid shows `PARTUUID` (for MBR: the disk signature as 8
        /// lowercase hex digits, `-`, the partition number as 2 hex digits).
        partition_uuid: String,
        /// When it was bound, in Unix seconds.
        at: u64,
        /// Who bound it: `mkimage --out /dev/sdb`, the first boot of a host, `pxen drive adopt`.
        by: String,
    },
}

/// The hardware identity of a block device, the best the device offers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum DeviceId {
    /// A USB device's serial number (its iSerialNumber string descriptor).
    Usb {
        /// The serial.
        serial: String,
    },
    /// The World Wide Name of a SATA, SAS or NVMe disk.
    Wwn {
        /// The WWN as the kernel shows it.
        wwn: String,
    },
    /// A disk's own serial number (NVMe `serial`, SCSI VPD page 0x80).
    DiskSerial {
        /// The serial.
        serial: String,
    },
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceId::Usb { serial } => write!(f, "USB serial {serial}"),
            DeviceId::Wwn { wwn } => write!(f, "WWN {wwn}"),
            DeviceId::DiskSerial { serial } => write!(f, "disk serial {serial}"),
        }
    }
}

/// The identity file could not be read or is not a valid identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read (missing: the drive was made before drive identities, or
    /// is not a PXEN drive).
    #[error("cannot read {path}: {source}; a drive made by an older mkimage has no identity: rewrite it with ./mkimage")]
    Read {
        /// The identity file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not RON of the identity's shape.
    #[error("{path}:{line}:{col}: {message}; the identity is written by mkimage and is not edited by hand: rewrite the drive with ./mkimage, or rebind it with ./mkimage --rebind")]
    Syntax {
        /// The identity file.
        path: PathBuf,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        col: usize,
        /// What the RON parser said.
        message: String,
    },
    /// The file has another format than this code reads.
    #[error("{path}: identity format {found}, but this PXEN reads format {supported}; write the drive with the ./mkimage of the same PXEN version as the hosts")]
    Format {
        /// The identity file.
        path: PathBuf,
        /// The format in the file.
        found: u32,
        /// The format this code reads.
        supported: u32,
    },
    /// A field parsed but its value is not valid.
    #[error("{path}:{line}:{col}: {field} {why}; the identity is written by mkimage and is not edited by hand: rewrite the drive with ./mkimage")]
    Invalid {
        /// The identity file.
        path: PathBuf,
        /// Line of the field, from 1.
        line: usize,
        /// Column of the field, from 1.
        col: usize,
        /// The field (for the manifest, the file's entry).
        field: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Just the format field, to tell "a newer format" apart from "broken" (RON checks struct
/// names, hence the rename).
#[derive(Deserialize)]
#[serde(rename = "DriveIdentity")]
struct FormatOnly {
    format: u32,
}

/// Reads and checks `IDENTITY_FILE` under `root`, the root of the drive's FAT partition.
pub fn read(root: &Path) -> Result<DriveIdentity, IdentityError> {
    let path = root.join(IDENTITY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| IdentityError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&path, &text)
}

/// Parses and checks the text of an identity file; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<DriveIdentity, IdentityError> {
    let identity: DriveIdentity = match ron::from_str(text) {
        Ok(identity) => identity,
        Err(error) => {
            // A newer format may have fields this code does not know: say "newer format",
            // which tells what to do, rather than "unknown field".
            if let Ok(FormatOnly { format }) = ron::from_str::<FormatOnly>(text) {
                if format != FORMAT {
                    return Err(format_error(path, format));
                }
            }
            return Err(IdentityError::Syntax {
                path: path.to_owned(),
                line: error.span.start.line,
                col: error.span.start.col,
                message: error.code.to_string(),
            });
        }
    };
    if identity.format != FORMAT {
        return Err(format_error(path, identity.format));
    }
    check(&identity).map_err(|(field, why)| {
        let (line, col) = position_of(text, &field);
        IdentityError::Invalid {
            path: path.to_owned(),
            line,
            col,
            field,
            why,
        }
    })?;
    Ok(identity)
}

fn format_error(path: &Path, found: u32) -> IdentityError {
    IdentityError::Format {
        path: path.to_owned(),
        found,
        supported: FORMAT,
    }
}

/// The checks serde's types cannot express: `Err((field, why))` for the first bad field.
fn check(identity: &DriveIdentity) -> Result<(), (String, String)> {
    let bad = |field: &str, why: String| Err((field.to_owned(), why));
    if !is_lower_hex(&identity.cluster_id, ID_HEX_DIGITS) {
        return bad(
            "cluster_id",
            format!("is not {ID_HEX_DIGITS} lowercase hex digits"),
        );
    }
    if !is_lower_hex(&identity.drive_id, ID_HEX_DIGITS) {
        return bad(
            "drive_id",
            format!("is not {ID_HEX_DIGITS} lowercase hex digits"),
        );
    }
    for file in MANIFEST_FILES {
        if !identity.manifest.contains_key(*file) {
            return bad("manifest", format!("has no entry for the boot file {file}"));
        }
    }
    for (file, hash) in &identity.manifest {
        if !is_safe_relative_path(file) {
            return bad(
                &format!("\"{file}\""),
                "is not a path inside the drive (empty, absolute, or with . or ..)".to_owned(),
            );
        }
        if !is_lower_hex(hash, SHA256_HEX_DIGITS) {
            return bad(
                &format!("\"{file}\""),
                format!("has a hash that is not {SHA256_HEX_DIGITS} lowercase hex digits"),
            );
        }
    }
    if let Binding::Bound { partition_uuid, .. } = &identity.binding {
        if partition_uuid.is_empty() {
            return bad("partition_uuid", "is empty".to_owned());
        }
    }
    Ok(())
}

/// Whether `text` is exactly `digits` lowercase hex digits.
fn is_lower_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A manifest path is joined to the drive's root: it must stay under it.
fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Line and column (from 1) of the first `needle` in `text`, or of the start when absent.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let Some(at) = text.find(needle) else {
        return (1, 1);
    };
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The identity as the text of `pxen/identity.ron`: the same identity always gives the same
/// text (fields in declaration order, the manifest sorted by path, four-space indents).
pub fn render(identity: &DriveIdentity) -> String {
    let config = ron::ser::PrettyConfig::new()
        .struct_names(true)
        .indentor("    ");
    // Serializing these types cannot fail: they hold only strings, integers, a string map
    // and enums, all of which RON represents.
    let text = ron::ser::to_string_pretty(identity, config)
        .expect("an identity of strings and integers always serializes to RON");
    format!("{text}\n")
}

/// A new random drive ID: 16 bytes from the kernel's random source as 32 hex digits (the
/// first half of [`crate::config::generate_secret`]'s 32 random bytes).
pub fn new_drive_id() -> String {
    let mut random = crate::config::generate_secret();
    random.truncate(ID_HEX_DIGITS);
    random
}

/// Bytes as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> BTreeMap<String, String> {
        MANIFEST_FILES
            .iter()
            .enumerate()
            .map(|(i, f)| (f.to_string(), format!("{:064x}", i + 1)))
            .collect()
    }

    fn identity(binding: Binding) -> DriveIdentity {
        DriveIdentity {
            format: FORMAT,
            cluster_id: "0f3a".repeat(8),
            cluster_name: "lab".into(),
            drive_id: "9c1e".repeat(8),
            created: 1_795_000_000,
            manifest: manifest(),
            binding,
        }
    }

    fn bound() -> Binding {
        Binding::Bound {
            device: DeviceId::Usb {
                serial: "USB-HOST0".into(),
            },
            partition_uuid: "1a2b3c4d-01".into(),
            at: 1_795_000_100,
            by: "mkimage --out /dev/sdb".into(),
        }
    }

    #[test]
    fn renders_and_parses_back_both_bindings() {
        for binding in [Binding::Unbound, bound()] {
            let original = identity(binding);
            let text = render(&original);
            let back = parse(Path::new(IDENTITY_FILE), &text).unwrap();
            assert_eq!(back, original, "{text}");
            assert_eq!(render(&back), text, "rendering is stable");
        }
    }

    #[test]
    fn rendering_has_the_documented_shape() {
        let text = render(&identity(bound()));
        assert!(
            text.starts_with("DriveIdentity(\n    format: 1,\n"),
            "{text}"
        );
        // Fields in declaration order, the manifest sorted by path.
        let order = [
            "cluster_id",
            "cluster_name",
            "drive_id",
            "created",
            "manifest",
            "binding",
        ];
        let positions: Vec<usize> = order.iter().map(|f| text.find(f).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.find("\"initrd.img\"").unwrap() < text.find("\"xen.gz\"").unwrap());
        assert!(text.contains("binding: Bound(\n"), "{text}");
        assert!(text.contains("device: Usb(\n"), "{text}");
        assert!(text.contains("serial: \"USB-HOST0\""), "{text}");
        assert!(render(&identity(Binding::Unbound)).contains("binding: Unbound,"));
    }

    #[test]
    fn syntax_errors_name_the_place_and_the_fix() {
        let text = render(&identity(Binding::Unbound)).replace("created:", "creatd:");
        let error = parse(Path::new("pxen/identity.ron"), &text).unwrap_err();
        assert!(
            matches!(error, IdentityError::Syntax { line: 6, .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.starts_with("pxen/identity.ron:6:"), "{message}");
        assert!(message.contains("./mkimage"), "{message}");
    }

    #[test]
    fn another_format_is_named_as_such() {
        let newer = render(&identity(Binding::Unbound))
            .replace("format: 1,", "format: 2,\n    new_field: true,");
        let error = parse(Path::new("x"), &newer).unwrap_err();
        assert!(
            matches!(
                error,
                IdentityError::Format {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{error:?}"
        );
        let older = render(&identity(Binding::Unbound)).replace("format: 1,", "format: 0,");
        assert!(matches!(
            parse(Path::new("x"), &older),
            Err(IdentityError::Format { found: 0, .. })
        ));
    }

    #[test]
    fn invalid_values_are_refused_with_their_position() {
        type Spoil = Box<dyn Fn(&mut DriveIdentity)>;
        let cases: [(&str, Spoil); 6] = [
            ("drive_id", Box::new(|i| i.drive_id = "9C1E".repeat(8))),
            ("cluster_id", Box::new(|i| i.cluster_id = "abc".into())),
            (
                "manifest",
                Box::new(|i| {
                    i.manifest.remove("vmlinuz");
                }),
            ),
            (
                "\"../etc/shadow\"",
                Box::new(|i| {
                    i.manifest.insert("../etc/shadow".into(), "0".repeat(64));
                }),
            ),
            (
                "\"xen.gz\"",
                Box::new(|i| {
                    i.manifest.insert("xen.gz".into(), "zz".into());
                }),
            ),
            (
                "partition_uuid",
                Box::new(|i| {
                    if let Binding::Bound { partition_uuid, .. } = &mut i.binding {
                        partition_uuid.clear();
                    }
                }),
            ),
        ];
        for (field, spoil) in cases {
            let mut spoilt = identity(bound());
            spoil(&mut spoilt);
            let text = render(&spoilt);
            let error = parse(Path::new("id.ron"), &text).unwrap_err();
            let IdentityError::Invalid {
                field: named, line, ..
            } = &error
            else {
                panic!("{field}: {error:?}");
            };
            assert_eq!(named, field);
            assert_eq!(*line, position_of(&text, field).0);
            assert!(*line > 1 || field == "manifest", "{field}: {error}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = render(&identity(bound())).replace("at: ", "typo: 1,\n        at: ");
        assert!(matches!(
            parse(Path::new("x"), &text),
            Err(IdentityError::Syntax { .. })
        ));
    }

    #[test]
    fn drive_ids_are_random_hex() {
        let (a, b) = (new_drive_id(), new_drive_id());
        assert!(is_lower_hex(&a, ID_HEX_DIGITS), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn device_ids_read_well() {
        let usb = DeviceId::Usb {
            serial: "USB-HOST0".into(),
        };
        assert_eq!(usb.to_string(), "USB serial USB-HOST0");
        let wwn = DeviceId::Wwn {
            wwn: "0x5000c500a1b2c3d4".into(),
        };
        assert_eq!(wwn.to_string(), "WWN 0x5000c500a1b2c3d4");
        let disk = DeviceId::DiskSerial {
            serial: "S3Z".into(),
        };
        assert_eq!(disk.to_string(), "disk serial S3Z");
    }

    #[test]
    fn positions_count_lines_and_columns_from_one() {
        assert_eq!(position_of("a\n  bc", "bc"), (2, 3));
        assert_eq!(position_of("abc", "zz"), (1, 1));
    }
}
