//! Finding the PXEN flash drive: the FAT file system labelled `PXEN` that the host booted from.
//!
//! Block devices appear asynchronously once the USB drivers are loaded, so the search waits for
//! the drive with a deadline, looking again each time the set of block devices has had a
//! moment to change. It is mounted read-only, except for host0's two writes (its binding at the
//! first boot and its stamp at every boot, see [`source`]).
//!
//! Whether the drive is the cluster's genuine source drive is decided from what mkimage
//! wrote on it and what the device it is on says of itself:
//!
//! | module | concern |
//! | --- | --- |
//! | [`identity`] | `pxen/identity.ron`: the cluster, the drive's ID, the boot files' hashes, the binding to a device |
//! | [`manifest`] | hashing the boot files and checking them against the identity's manifest |
//! | [`device`] | the device facts a binding records: the disk of a partition, its hardware serial, the partition UUID |
//! | [`classify`] | genuine, unbound, clone, corrupted, foreign, absent: the pure decision, its console banner, and binding |
//! | [`source`] | at boot: which drive this host booted from, its classification, host0's binding and stamp |
//! | [`replace`] | replacing a file on the drive crash-safely, the previous version kept as a backup |
//! | [`stamp`] | `pxen/stamp.ron`: the chained stamp host0 writes at every boot, crash-safe with a backup |

pub mod classify;
pub mod device;
pub mod identity;
pub mod manifest;
pub mod replace;
pub mod source;
pub mod stamp;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The volume label mkimage gives the drive's FAT partition.
pub const LABEL: &str = "PXEN";

/// The drive could not be found or mounted.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// No FAT file system labelled PXEN appeared before the deadline.
    #[error("no FAT partition labelled {LABEL} appeared within {waited:?} (block devices seen: {seen}); check that the flash drive is plugged in, or boot over the network, or raise pxen.drive_wait=SECONDS")]
    NotFound {
        /// How long the search waited.
        waited: Duration,
        /// The block devices that were present, for the console.
        seen: String,
    },
    /// The mount point could not be created.
    #[error("cannot create the drive's mount point {path}: {source}")]
    MountPoint {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the drive could not be copied into RAM.
    #[error("cannot copy {path} from the flash drive into RAM: {source}; the drive may be failing (check it with fsck.vfat), or dom0 has too little memory")]
    Copy {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The FAT file system could not be mounted.
    #[error("cannot mount {device} (vfat) on {path}: {source}; the vfat and nls_cp437 kernel modules must be in the initramfs, or the file system is damaged (check it with fsck.vfat on another machine)")]
    Mount {
        /// The partition.
        device: PathBuf,
        /// The mount point.
        path: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
}

/// The FAT volume label in a boot sector, if the sector is a FAT boot sector.
///
/// FAT32 keeps the extended BPB at 0x40 (signature 0x29 at 0x42, label at 0x47); FAT12/16
/// keep it at 0x24 (signature at 0x26, label at 0x2B). The label is space-padded.
pub fn fat_label(sector: &[u8]) -> Option<String> {
    if sector.len() < 512 || sector[510..512] != [0x55, 0xAA] {
        return None;
    }
    let (signature_at, label_at, fs_type_at) = if &sector[0x52..0x5A] == b"FAT32   " {
        (0x42, 0x47, 0x52)
    } else {
        (0x26, 0x2B, 0x36)
    };
    if sector[signature_at] != 0x29 || !sector[fs_type_at..fs_type_at + 3].starts_with(b"FAT") {
        return None;
    }
    let label = String::from_utf8_lossy(&sector[label_at..label_at + 11]);
    Some(label.trim_end().to_string())
}

/// Block devices (whole disks and partitions) by name, as the kernel lists them.
fn block_devices(sys: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys.join("class/block"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The devices among `names` whose FAT label is [`LABEL`].
fn labelled_devices(dev: &Path, names: &[String]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|name| dev.join(name))
        .filter(|path| {
            read_first_sector(path)
                .as_deref()
                .and_then(fat_label)
                .as_deref()
                == Some(LABEL)
        })
        .collect()
}

fn read_first_sector(path: &Path) -> Option<Vec<u8>> {
    let mut sector = vec![0; 512];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut sector))
        .ok()?;
    Some(sector)
}

/// Waits up to `wait` for partitions labelled PXEN and returns every one, by device name
/// (several sticks may be plugged in: [`source::choose`] picks the one the host booted from).
pub fn find_all(sys: &Path, dev: &Path, wait: Duration) -> Result<Vec<PathBuf>, DriveError> {
    let start = Instant::now();
    loop {
        let names = block_devices(sys);
        let found = labelled_devices(dev, &names);
        if !found.is_empty() {
            return Ok(found);
        }
        if start.elapsed() >= wait {
            return Err(DriveError::NotFound {
                waited: wait,
                seen: names.join(" "),
            });
        }
        // USB enumeration takes hundreds of milliseconds; look again shortly.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mounts the drive's FAT partition read-only at `target`.
pub fn mount_readonly(device: &Path, target: &Path) -> Result<(), DriveError> {
    mount_vfat(device, target, MsFlags::MS_RDONLY)
}

/// Mounts the drive's FAT partition read-write at `target`, with every write synchronous:
/// host0 writes only its stamp and binding, and a drive pulled right after must hold them.
pub fn mount_readwrite(device: &Path, target: &Path) -> Result<(), DriveError> {
    mount_vfat(device, target, MsFlags::MS_SYNCHRONOUS)
}

fn mount_vfat(device: &Path, target: &Path, mode: MsFlags) -> Result<(), DriveError> {
    std::fs::create_dir_all(target).map_err(|source| DriveError::MountPoint {
        path: target.to_path_buf(),
        source,
    })?;
    let flags = mode | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some(device),
        target,
        Some("vfat"),
        flags,
        Some("shortname=mixed"),
    )
    .map_err(|source| DriveError::Mount {
        device: device.to_path_buf(),
        path: target.to_path_buf(),
        source,
    })
}

/// Copies every file and directory of the mounted drive into `dest` (a tmpfs), so host0 keeps
/// serving them after the drive is pulled. Returns the bytes copied.
pub fn copy_to_ram(mount_point: &Path, dest: &Path) -> Result<u64, DriveError> {
    let copy_error = |path: &Path, source| DriveError::Copy {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(|e| copy_error(dest, e))?;
    let mut copied = 0;
    let entries = std::fs::read_dir(mount_point).map_err(|e| copy_error(mount_point, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| copy_error(mount_point, e))?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| copy_error(&from, e))?;
        if kind.is_dir() {
            copied += copy_to_ram(&from, &to)?;
        } else if kind.is_file() {
            copied += std::fs::copy(&from, &to).map_err(|e| copy_error(&from, e))?;
        }
    }
    Ok(copied)
}

/// Unmounts the drive; a failure is logged, because a busy mount is no reason to stop a boot.
pub fn unmount(target: &Path) {
    if let Err(e) = umount2(target, MntFlags::MNT_DETACH) {
        log::warn!("cannot unmount the drive at {}: {e}", target.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fat32_sector(label: &[u8; 11]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[0x42] = 0x29;
        s[0x47..0x52].copy_from_slice(label);
        s[0x52..0x5A].copy_from_slice(b"FAT32   ");
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn reads_fat32_and_fat16_labels() {
        assert_eq!(
            fat_label(&fat32_sector(b"PXEN       ")).as_deref(),
            Some("PXEN")
        );
        let mut fat16 = vec![0u8; 512];
        fat16[0x26] = 0x29;
        fat16[0x2B..0x36].copy_from_slice(b"OTHER      ");
        fat16[0x36..0x3E].copy_from_slice(b"FAT16   ");
        fat16[510] = 0x55;
        fat16[511] = 0xAA;
        assert_eq!(fat_label(&fat16).as_deref(), Some("OTHER"));
    }

    #[test]
    fn rejects_what_is_not_a_fat_boot_sector() {
        let mut no_signature = fat32_sector(b"PXEN       ");
        no_signature[511] = 0;
        assert_eq!(fat_label(&no_signature), None);
        let mut no_ebpb = fat32_sector(b"PXEN       ");
        no_ebpb[0x42] = 0;
        assert_eq!(fat_label(&no_ebpb), None);
        assert_eq!(fat_label(&[0u8; 100]), None);
    }

    #[test]
    fn the_whole_drive_is_copied_to_ram() {
        let drive = tempfile::tempdir().unwrap();
        let ram = tempfile::tempdir().unwrap();
        std::fs::create_dir(drive.path().join("config")).unwrap();
        std::fs::write(drive.path().join("config/cluster.ron"), "abc").unwrap();
        std::fs::write(drive.path().join("xen.gz"), "12345").unwrap();
        assert_eq!(
            copy_to_ram(drive.path(), &ram.path().join("boot")).unwrap(),
            8
        );
        assert_eq!(
            std::fs::read(ram.path().join("boot/config/cluster.ron")).unwrap(),
            b"abc"
        );
        assert_eq!(
            std::fs::read(ram.path().join("boot/xen.gz")).unwrap(),
            b"12345"
        );
    }

    #[test]
    fn finds_every_labelled_device_among_others() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("sys");
        let dev = root.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for (name, sector) in [
            ("sda", vec![0u8; 512]),
            ("sdb1", fat32_sector(b"PXEN       ")),
            ("sdc1", fat32_sector(b"DATA       ")),
            ("sdd1", fat32_sector(b"PXEN       ")),
        ] {
            std::fs::create_dir_all(sys.join("class/block").join(name)).unwrap();
            std::fs::write(dev.join(name), sector).unwrap();
        }
        assert_eq!(
            find_all(&sys, &dev, Duration::ZERO).unwrap(),
            [dev.join("sdb1"), dev.join("sdd1")]
        );
        std::fs::remove_file(dev.join("sdb1")).unwrap();
        std::fs::remove_file(dev.join("sdd1")).unwrap();
        let error = find_all(&sys, &dev, Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("block devices seen: sda sdb1 sdc1 sdd1"),
            "{error}"
        );
    }
}
