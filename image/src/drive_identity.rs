//! The drive's identity on the image (`pxen/identity.ron`, see `pxen::drive::identity`):
//! written after the image, from the boot files as they are on its FAT partition, and bound to
//! the flash drive when mkimage writes one; and `--rebind`, which binds an existing PXEN drive
//! (a copy replacing a dead one) to the device it is on, changing nothing else on it.
//!
//! Both work on the FAT partition with `fatfs`, without root and without mounting.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use pxen::drive::classify::{bind, BindError};
use pxen::drive::device::{self, DeviceFacts};
use pxen::drive::identity::{
    self, Binding, DeviceId, DriveIdentity, IDENTITY_FILE, MANIFEST_FILES,
};
use pxen::drive::manifest::hash_reader;

use crate::layout::Partition;
use crate::output;

/// Where the kernel describes block devices.
const SYS: &str = "/sys";

/// What can go wrong while writing or rebinding the identity.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The FAT partition of the image or drive could not be opened.
    #[error("cannot open the FAT partition of {path}: {source}; is it a PXEN drive written by ./mkimage?")]
    Open {
        /// The image or device.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A boot file could not be read back from the partition to hash it.
    #[error("cannot read {file} from the FAT partition of {path} to hash it: {source}")]
    Hash {
        /// The image or device.
        path: PathBuf,
        /// The boot file.
        file: String,
        /// Why.
        source: io::Error,
    },
    /// `pxen/identity.ron` could not be written.
    #[error("cannot write {IDENTITY_FILE} on the FAT partition of {path}: {source}; check the free space on the drive")]
    Write {
        /// The image or device.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `pxen/identity.ron` could not be read (for `--rebind`).
    #[error("cannot read {IDENTITY_FILE} on {path}: {source}; only a drive written by ./mkimage of this version can be rebound: write it with ./mkimage instead")]
    ReadIdentity {
        /// The device.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `pxen/identity.ron` is not a valid identity (for `--rebind`).
    #[error("{path}: {source}")]
    BadIdentity {
        /// The device.
        path: PathBuf,
        /// What is wrong with it.
        source: identity::IdentityError,
    },
    /// Boot files differ from the manifest: a damaged copy is not worth binding.
    #[error("{path} is not a sound copy: {files} differ from its manifest; rewrite it with ./mkimage --out {path} --yes instead of rebinding it")]
    Corrupted {
        /// The device.
        path: PathBuf,
        /// The files that differ.
        files: String,
    },
    /// `--rebind` was given something that is not a block device.
    #[error("{path} is not a block device: --rebind binds a flash drive (e.g. /dev/sdb) to the device it is on; an image file has no device")]
    NotADevice {
        /// What was given.
        path: PathBuf,
    },
    /// The device offers nothing to bind the drive to.
    #[error("cannot bind the drive on {path}: {source}; a PXEN source drive must be told apart from its copies: use a flash drive with a USB serial number")]
    Unbindable {
        /// The device.
        path: PathBuf,
        /// What it lacks.
        source: BindError,
    },
    /// The device is in use, or its state could not be read.
    #[error(transparent)]
    Output(#[from] output::Error),
    /// The device could not be flushed after the rewrite.
    #[error("cannot flush {path} after writing {IDENTITY_FILE}: {source}; the drive may not hold the new binding: run --rebind again")]
    Sync {
        /// The device.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The device `out` is, when it is a block device: its hardware identity, read now, so that a
/// device without one is refused before minutes of building. `None` for an image file.
pub fn device_of_out(out: &Path) -> Result<Option<DeviceId>, Error> {
    if !output::is_block_device(out) {
        return Ok(None);
    }
    let disk = disk_name(out)?;
    match device::device_id(Path::new(SYS), &disk) {
        Some(id) => Ok(Some(id)),
        None => Err(Error::Unbindable {
            path: out.to_owned(),
            source: BindError::NoDeviceId { disk },
        }),
    }
}

/// The kernel's name of a block device given by path (`/dev/sdb` → `sdb`).
fn disk_name(device: &Path) -> Result<String, Error> {
    let real = std::fs::canonicalize(device).map_err(|source| output::Error::Inspect {
        device: device.to_owned(),
        source,
    })?;
    Ok(real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// What the identity of a new image says besides its hashes.
#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// The cluster's secret, from which its ID is derived.
    pub secret: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// The drive's ID, also written into `syslinux.cfg` as `pxen.drive=`.
    pub drive_id: String,
    /// Now, in Unix seconds.
    pub created: u64,
    /// The device the image goes to and who writes it (`mkimage --out /dev/sdb`), or `None`
    /// for an image file, which stays unbound until its first boot as host0.
    pub bind_to: Option<(DeviceId, String)>,
}

/// Hashes the boot files on the FAT partition of `image` (as written, including SYSLINUX's
/// `ldlinux.c32`), and writes `pxen/identity.ron` there; bound to `new.bind_to` if given, with
/// the partition UUID the image's MBR gives. Returns the identity written.
pub fn write_new(image: &Path, new: &NewIdentity) -> Result<DriveIdentity, Error> {
    let fs = open_fat(image)?;
    let manifest = manifest_of(&fs, image)?;
    let unbound = DriveIdentity {
        format: identity::FORMAT,
        cluster_id: pxen::config::cluster_id(&new.secret),
        cluster_name: new.cluster_name.clone(),
        drive_id: new.drive_id.clone(),
        created: new.created,
        manifest,
        binding: Binding::Unbound,
    };
    let written = match &new.bind_to {
        None => unbound,
        Some((device, by)) => {
            let facts = DeviceFacts {
                disk: image.display().to_string(),
                device: Some(device.clone()),
                partition_uuid: first_partition_uuid(image),
            };
            bind(&unbound, &facts, by, new.created).map_err(|source| Error::Unbindable {
                path: image.to_owned(),
                source,
            })?
        }
    };
    write_identity(&fs, image, &written)?;
    fs.unmount().map_err(|source| Error::Write {
        path: image.to_owned(),
        source,
    })?;
    Ok(written)
}

/// `./mkimage --rebind DEVICE`: binds the PXEN drive on `device` to that device, after
/// checking that it is not in use and that its boot files match its manifest. Only
/// `pxen/identity.ron` is rewritten. Returns the new identity.
pub fn rebind(device: &Path, now: u64) -> Result<DriveIdentity, Error> {
    if !output::is_block_device(device) {
        return Err(Error::NotADevice {
            path: device.to_owned(),
        });
    }
    let disk = output::check_not_in_use(device)?;
    let facts = DeviceFacts {
        device: device::device_id(Path::new(SYS), &disk),
        partition_uuid: first_partition_uuid(device),
        disk,
    };
    let by = format!("mkimage --rebind {}", device.display());
    let identity = rebind_on(device, &facts, &by, now)?;
    // The drive may be pulled as soon as we return: the new identity must be on it.
    OpenOptions::new()
        .write(true)
        .open(device)
        .and_then(|f| f.sync_all())
        .map_err(|source| Error::Sync {
            path: device.to_owned(),
            source,
        })?;
    Ok(identity)
}

/// The part of [`rebind`] that works on any image or device, given its facts.
fn rebind_on(path: &Path, facts: &DeviceFacts, by: &str, now: u64) -> Result<DriveIdentity, Error> {
    let fs = open_fat(path)?;
    let current = read_identity(&fs, path)?;
    let actual = manifest_of_files(&fs, path, current.manifest.keys().map(String::as_str))?;
    let differ: Vec<&str> = current
        .manifest
        .iter()
        .filter(|(file, hash)| actual.get(*file) != Some(*hash))
        .map(|(file, _)| file.as_str())
        .collect();
    if !differ.is_empty() {
        return Err(Error::Corrupted {
            path: path.to_owned(),
            files: differ.join(", "),
        });
    }
    let bound = bind(&current, facts, by, now).map_err(|source| Error::Unbindable {
        path: path.to_owned(),
        source,
    })?;
    write_identity(&fs, path, &bound)?;
    fs.unmount().map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })?;
    log::info!(
        "{}: drive {} is now bound to {}",
        path.display(),
        bound.drive_id,
        binding_text(&bound.binding)
    );
    Ok(bound)
}

/// How a binding reads in the log.
fn binding_text(binding: &Binding) -> String {
    match binding {
        Binding::Unbound => "nothing (unbound)".to_owned(),
        Binding::Bound {
            device,
            partition_uuid,
            ..
        } => format!("{device}, partition {partition_uuid}"),
    }
}

/// The FAT file system of the first partition of an image or drive.
fn open_fat(path: &Path) -> Result<fatfs::FileSystem<Partition>, Error> {
    let open_err = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(open_err)?;
    let partition = Partition::first(file).map_err(open_err)?;
    fatfs::FileSystem::new(partition, fatfs::FsOptions::new()).map_err(open_err)
}

/// The partition UUID of the first partition, from the MBR at the start of `path`.
fn first_partition_uuid(path: &Path) -> Option<String> {
    device::partition_uuid(&device::read_first_sector(path)?, 1)
}

/// The manifest of the boot files ([`MANIFEST_FILES`]) as they are on the partition.
fn manifest_of(
    fs: &fatfs::FileSystem<Partition>,
    path: &Path,
) -> Result<BTreeMap<String, String>, Error> {
    manifest_of_files(fs, path, MANIFEST_FILES.iter().copied())
}

/// The SHA-256 of each of `files` on the partition.
fn manifest_of_files<'a>(
    fs: &fatfs::FileSystem<Partition>,
    path: &Path,
    files: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, Error> {
    files
        .map(|file| {
            let hash = fs
                .root_dir()
                .open_file(file)
                .and_then(hash_reader)
                .map_err(|source| Error::Hash {
                    path: path.to_owned(),
                    file: file.to_owned(),
                    source,
                })?;
            Ok((file.to_owned(), hash))
        })
        .collect()
}

/// Reads and parses `pxen/identity.ron` from the partition.
fn read_identity(fs: &fatfs::FileSystem<Partition>, path: &Path) -> Result<DriveIdentity, Error> {
    let mut text = String::new();
    fs.root_dir()
        .open_file(IDENTITY_FILE)
        .and_then(|mut file| file.read_to_string(&mut text))
        .map_err(|source| Error::ReadIdentity {
            path: path.to_owned(),
            source,
        })?;
    identity::parse(Path::new(IDENTITY_FILE), &text).map_err(|source| Error::BadIdentity {
        path: path.to_owned(),
        source,
    })
}

/// Writes `identity` as `pxen/identity.ron` on the partition, replacing any older one.
///
/// The file is rewritten in place: this runs on an image being built or on a drive that is
/// not mounted, where nothing else reads it meanwhile.
fn write_identity(
    fs: &fatfs::FileSystem<Partition>,
    path: &Path,
    identity: &DriveIdentity,
) -> Result<(), Error> {
    let text = identity::render(identity);
    let (dir, name) = IDENTITY_FILE
        .rsplit_once('/')
        .unwrap_or(("", IDENTITY_FILE));
    let write = || -> io::Result<()> {
        let root = fs.root_dir();
        let dir = match root.open_dir(dir) {
            Ok(dir) => dir,
            Err(_) => root.create_dir(dir)?,
        };
        let mut file = dir.create_file(name)?;
        file.truncate()?;
        file.write_all(text.as_bytes())?;
        file.flush()
    };
    write().map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{self, Content, Entry};
    use pxen::drive::manifest::hash_reader;

    const SECRET: &str = "a cluster secret that is long enough";
    const DRIVE: &str = "9c1e9c1e9c1e9c1e9c1e9c1e9c1e9c1e";

    /// A real image (needs `syslinux`, as the image builder does) holding every boot file of
    /// the manifest, small stand-ins for the big ones.
    fn image(dir: &Path) -> PathBuf {
        let cfg = layout::syslinux_cfg(768, &[format!("pxen.drive={DRIVE}")]);
        let mut entries = vec![Entry {
            name: "syslinux.cfg".into(),
            content: Content::Bytes(cfg.into_bytes()),
        }];
        for (i, name) in [
            "mboot.c32",
            "libcom32.c32",
            "lpxelinux.0",
            "xen.gz",
            "vmlinuz",
            "initrd.img",
        ]
        .iter()
        .enumerate()
        {
            entries.push(Entry {
                name: (*name).into(),
                content: Content::Bytes(vec![i as u8; 10_000 * (i + 1)]),
            });
        }
        entries.push(Entry {
            name: "config/cluster.ron".into(),
            content: Content::Bytes(b"Cluster()".to_vec()),
        });
        let path = dir.join("pxen.img");
        layout::write_image(&path, layout::MIN_IMAGE_BYTES, &entries, 0xCAFE_F00D).unwrap();
        path
    }

    fn new_identity(bind_to: Option<(DeviceId, String)>) -> NewIdentity {
        NewIdentity {
            secret: SECRET.into(),
            cluster_name: "lab".into(),
            drive_id: DRIVE.into(),
            created: 1_795_000_000,
            bind_to,
        }
    }

    /// Every file on the image's FAT, read back with fatfs: (path, contents).
    fn files_of(image: &Path) -> BTreeMap<String, Vec<u8>> {
        let fs = open_fat(image).unwrap();
        let mut files = BTreeMap::new();
        let mut dirs = vec![(String::new(), fs.root_dir())];
        while let Some((prefix, dir)) = dirs.pop() {
            for entry in dir.iter() {
                let entry = entry.unwrap();
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                let path = format!("{prefix}{name}");
                if entry.is_dir() {
                    dirs.push((format!("{path}/"), entry.to_dir()));
                } else {
                    let mut bytes = Vec::new();
                    entry.to_file().read_to_end(&mut bytes).unwrap();
                    files.insert(path, bytes);
                }
            }
        }
        files
    }

    fn identity_of(image: &Path) -> DriveIdentity {
        let files = files_of(image);
        let text = String::from_utf8(files[IDENTITY_FILE].clone()).unwrap();
        identity::parse(Path::new(IDENTITY_FILE), &text).unwrap()
    }

    #[test]
    fn a_new_image_carries_an_identity_whose_manifest_matches_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(dir.path());
        let written = write_new(&image, &new_identity(None)).unwrap();
        let read_back = identity_of(&image);
        assert_eq!(read_back, written);
        assert_eq!(read_back.binding, Binding::Unbound);
        assert_eq!(read_back.cluster_id, pxen::config::cluster_id(SECRET));
        assert_eq!(read_back.drive_id, DRIVE);
        let files = files_of(&image);
        let names: Vec<&String> = read_back.manifest.keys().collect();
        assert_eq!(names, MANIFEST_FILES, "exactly the boot files");
        for (file, hash) in &read_back.manifest {
            assert_eq!(&hash_reader(&files[file][..]).unwrap(), hash, "{file}");
        }
        // ldlinux.c32 is SYSLINUX's, installed after the files: it is hashed as installed.
        assert!(files["ldlinux.c32"].len() > 1000);
        let cfg = String::from_utf8(files["syslinux.cfg"].clone()).unwrap();
        assert!(cfg.contains(&format!(" pxen.drive={DRIVE} ")), "{cfg}");
    }

    #[test]
    fn an_image_written_to_a_device_is_bound_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(dir.path());
        let device = DeviceId::Usb {
            serial: "USB-HOST0".into(),
        };
        let by = "mkimage --out /dev/sdb".to_owned();
        write_new(&image, &new_identity(Some((device.clone(), by.clone())))).unwrap();
        assert_eq!(
            identity_of(&image).binding,
            Binding::Bound {
                device,
                // The signature write_image was given, as blkid shows it.
                partition_uuid: "cafef00d-01".into(),
                at: 1_795_000_000,
                by,
            }
        );
    }

    fn facts(serial: Option<&str>) -> DeviceFacts {
        DeviceFacts {
            disk: "sdc".into(),
            device: serial.map(|s| DeviceId::Usb { serial: s.into() }),
            partition_uuid: Some("cafef00d-01".into()),
        }
    }

    #[test]
    fn rebinding_rewrites_only_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(dir.path());
        let device = DeviceId::Usb {
            serial: "USB-DEAD".into(),
        };
        write_new(&image, &new_identity(Some((device, "mkimage".into())))).unwrap();
        let before = files_of(&image);
        let by = "mkimage --rebind /dev/sdc";
        let bound = rebind_on(&image, &facts(Some("USB-SPARE")), by, 1_795_100_000).unwrap();
        let after = files_of(&image);
        assert_eq!(identity_of(&image), bound);
        assert_eq!(
            bound.binding,
            Binding::Bound {
                device: DeviceId::Usb {
                    serial: "USB-SPARE".into()
                },
                partition_uuid: "cafef00d-01".into(),
                at: 1_795_100_000,
                by: by.into(),
            }
        );
        let unchanged = |files: &BTreeMap<String, Vec<u8>>| {
            let mut files = files.clone();
            files.remove(IDENTITY_FILE);
            files
        };
        assert_eq!(unchanged(&before), unchanged(&after));
        assert_ne!(before[IDENTITY_FILE], after[IDENTITY_FILE]);
    }

    #[test]
    fn rebinding_refuses_a_damaged_copy_and_a_device_without_serial() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(dir.path());
        write_new(&image, &new_identity(None)).unwrap();
        let error = rebind_on(&image, &facts(None), "by", 1).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Unbindable {
                    source: BindError::NoDeviceId { .. },
                    ..
                }
            ),
            "{error:?}"
        );
        {
            let fs = open_fat(&image).unwrap();
            let mut file = fs.root_dir().open_file("vmlinuz").unwrap();
            file.write_all(b"tampered").unwrap();
            file.flush().unwrap();
        }
        let error = rebind_on(&image, &facts(Some("USB-SPARE")), "by", 1).unwrap_err();
        let Error::Corrupted { files, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(files, "vmlinuz");
        assert_eq!(
            identity_of(&image).binding,
            Binding::Unbound,
            "left as it was"
        );
    }

    #[test]
    fn rebinding_needs_a_block_device() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(dir.path());
        assert!(matches!(rebind(&image, 1), Err(Error::NotADevice { .. })));
        assert!(matches!(device_of_out(&image), Ok(None)));
    }
}
