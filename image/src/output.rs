//! Where the finished image goes: a regular file (written beside it, then renamed, so a
//! half-written image never has the final name) or a whole block device (a flash drive),
//! which is only overwritten when nothing on it is in use and the user said `--yes`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What can go wrong with the output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory for the image file could not be used.
    #[error("cannot create a temporary file in {dir} for the image: {source}; check that the directory of --out exists and is writable")]
    Staging {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The finished image could not be renamed to its final name.
    #[error("cannot rename the finished image to {path}: {source}")]
    Rename {
        /// The final path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The device's state could not be read from /sys or /proc.
    #[error("cannot inspect the block device {device}: {source}")]
    Inspect {
        /// The device.
        device: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The device or one of its partitions is mounted.
    #[error(
        "{device} is in use: {what} is mounted; unmount it (umount /dev/{what}) and run again"
    )]
    Mounted {
        /// The device.
        device: PathBuf,
        /// The mounted device or partition name.
        what: String,
    },
    /// The device or one of its partitions is held by RAID, LVM or device-mapper.
    #[error("{device} is in use: {what} is held by {holders}; stop that RAID array or volume group first")]
    Held {
        /// The device.
        device: PathBuf,
        /// The held device or partition name.
        what: String,
        /// Who holds it.
        holders: String,
    },
    /// The device is smaller than the image.
    #[error("{device} holds {device_bytes} bytes, less than the image's {image_bytes}; use a larger drive or a smaller --size")]
    TooSmall {
        /// The device.
        device: PathBuf,
        /// Its size.
        device_bytes: u64,
        /// The image size.
        image_bytes: u64,
    },
    /// Overwriting a device needs `--yes`.
    #[error("{device} is a block device ({device_bytes} bytes): everything on it will be erased; run again with --yes to confirm")]
    NotConfirmed {
        /// The device.
        device: PathBuf,
        /// Its size.
        device_bytes: u64,
    },
    /// Copying the image to the device failed.
    #[error("cannot write the image to {device}: {source}; the drive now holds a partial image: write it again before booting from it")]
    WriteDevice {
        /// The device.
        device: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A place the image is being written to before it reaches `--out`.
pub struct Staging {
    /// The temporary image file.
    file: tempfile::TempPath,
    /// The final destination.
    out: PathBuf,
    /// Whether `out` is a block device.
    device: bool,
}

impl Staging {
    /// The file the image is built in.
    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// Whether `out` is a block device (a whole flash drive) rather than an image file.
pub fn is_block_device(out: &Path) -> bool {
    std::fs::metadata(out).is_ok_and(|m| m.file_type().is_block_device())
}

/// Refuses a block device `out` that is in use or not confirmed with `--yes`; called before
/// building, so that a wrong device is refused before minutes of work. Files pass.
pub fn preflight(out: &Path, yes: bool) -> Result<(), Error> {
    if is_block_device(out) {
        // Size 0: the image size is known only after the initramfs is built; `stage` checks it.
        check_device(out, 0, yes)?;
    }
    Ok(())
}

/// Prepares the temporary image: beside `out` for a file (so the rename is atomic), in
/// `scratch` for a device, after checking the device again, now with the image's size.
pub fn stage(out: &Path, scratch: &Path, image_bytes: u64, yes: bool) -> Result<Staging, Error> {
    let device = is_block_device(out);
    let dir = if device {
        check_device(out, image_bytes, yes)?;
        scratch.to_owned()
    } else {
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    };
    let file = tempfile::Builder::new()
        .prefix(".pxen-image-")
        .tempfile_in(&dir)
        .map_err(|source| Error::Staging {
            dir: dir.clone(),
            source,
        })?
        .into_temp_path();
    Ok(Staging {
        file,
        out: out.to_owned(),
        device,
    })
}

/// Moves the finished image to `--out`: a rename for a file, a copy and fsync for a device.
pub fn finish(staging: Staging) -> Result<(), Error> {
    if staging.device {
        return copy_to_device(&staging.file, &staging.out);
    }
    // Temporary files are created private (0600); an image is no secret, make it 0644 as
    // a file written with the usual umask would be.
    let mode = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(&staging.file, mode).map_err(|source| Error::Rename {
        path: staging.out.clone(),
        source,
    })?;
    staging
        .file
        .persist(&staging.out)
        .map_err(|e| Error::Rename {
            path: staging.out.clone(),
            source: e.error,
        })
}

/// Copies the image onto the device and waits until it is on the drive.
fn copy_to_device(image: &Path, device: &Path) -> Result<(), Error> {
    let write_err = |source| Error::WriteDevice {
        device: device.to_owned(),
        source,
    };
    log::info!("writing the image to {}", device.display());
    let mut source = File::open(image).map_err(write_err)?;
    let mut target = OpenOptions::new()
        .write(true)
        .open(device)
        .map_err(write_err)?;
    io::copy(&mut source, &mut target).map_err(write_err)?;
    target.flush().map_err(write_err)?;
    // The drive may be pulled as soon as we return: the data must be on it, not in a cache.
    target.sync_all().map_err(write_err)
}

/// Refuses a device that is in use, too small, or not confirmed with `--yes`.
fn check_device(device: &Path, image_bytes: u64, yes: bool) -> Result<(), Error> {
    let name = check_not_in_use(device)?;
    let sys = Path::new("/sys/class/block").join(&name);
    let sectors = std::fs::read_to_string(sys.join("size")).map_err(|source| Error::Inspect {
        device: device.to_owned(),
        source,
    })?;
    // /sys/class/block/*/size counts 512-byte sectors whatever the device's sector size.
    let device_bytes = sectors.trim().parse::<u64>().unwrap_or(0) * 512;
    if device_bytes < image_bytes {
        return Err(Error::TooSmall {
            device: device.to_owned(),
            device_bytes,
            image_bytes,
        });
    }
    if !yes {
        return Err(Error::NotConfirmed {
            device: device.to_owned(),
            device_bytes,
        });
    }
    Ok(())
}

/// Refuses a block device that is mounted or held by RAID, LVM or device-mapper, or one of
/// whose partitions is; returns its kernel name (`sdb`).
pub fn check_not_in_use(device: &Path) -> Result<String, Error> {
    let inspect = |source| Error::Inspect {
        device: device.to_owned(),
        source,
    };
    let real = std::fs::canonicalize(device).map_err(inspect)?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = Path::new("/sys/class/block").join(&name);
    let mut names = vec![name.clone()];
    names.extend(partitions(&sys, &name).map_err(inspect)?);
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(inspect)?;
    if let Some(what) = mounted(&mounts, &names).into_iter().next() {
        return Err(Error::Mounted {
            device: device.to_owned(),
            what,
        });
    }
    for what in &names {
        let dir = if *what == name {
            sys.clone()
        } else {
            sys.join(what)
        };
        let holders = list_dir(&dir.join("holders")).map_err(inspect)?;
        if !holders.is_empty() {
            return Err(Error::Held {
                device: device.to_owned(),
                what: what.clone(),
                holders: holders.join(", "),
            });
        }
    }
    Ok(name)
}

/// Names in a directory, sorted; a missing directory is empty.
fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names = entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<io::Result<Vec<_>>>()?;
            names.sort();
            Ok(names)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The partitions of a disk: subdirectories of its /sys entry named after it (sdb1, nvme0n1p1).
fn partitions(sys: &Path, name: &str) -> io::Result<Vec<String>> {
    Ok(list_dir(sys)?
        .into_iter()
        .filter(|entry| entry.starts_with(name) && entry != name)
        .collect())
}

/// Which of `names` (sdb, sdb1...) appear as a mounted source in /proc/mounts.
pub fn mounted(proc_mounts: &str, names: &[String]) -> Vec<String> {
    proc_mounts
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|source| source.strip_prefix("/dev/"))
        .filter(|dev| names.iter().any(|n| n == dev))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounted_partitions_are_found() {
        let mounts =
            "sysfs /sys sysfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n/dev/sdb2 /media/x vfat rw 0 0\n";
        let names = vec!["sdb".to_owned(), "sdb1".to_owned(), "sdb2".to_owned()];
        assert_eq!(mounted(mounts, &names), vec!["sdb2".to_owned()]);
        assert!(mounted(mounts, &["sdc".to_owned()]).is_empty());
        // sda10 is not sda1.
        assert!(mounted("/dev/sda10 / ext4 rw 0 0\n", &["sda1".to_owned()]).is_empty());
    }

    #[test]
    fn file_output_is_renamed_into_place_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pxen.img");
        let staging = stage(&out, dir.path(), 1, false).unwrap();
        assert_eq!(staging.path().parent(), Some(dir.path()));
        std::fs::write(staging.path(), b"image").unwrap();
        assert!(!out.exists());
        finish(staging).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"image");
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn abandoned_staging_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pxen.img");
        let staging = stage(&out, dir.path(), 1, false).unwrap();
        std::fs::write(staging.path(), b"half").unwrap();
        drop(staging);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
