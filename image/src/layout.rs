//! The flash drive image itself, written without root and without mounting anything:
//! an MBR with SYSLINUX's boot code, one bootable FAT32 partition labelled `PXEN` from
//! sector 2048 to the end, the boot files on it, then SYSLINUX installed into it.
//!
//! Also the two sizing rules: how much memory dom0 needs, and how big the image must be.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes in a sector, for the MBR and the FAT.
pub const SECTOR_BYTES: u64 = 512;
/// The partition starts at 1 MiB, aligned for every flash drive's erase blocks.
pub const PARTITION_START_SECTOR: u64 = 2048;
/// The partition's byte offset in the image.
pub const PARTITION_OFFSET: u64 = PARTITION_START_SECTOR * SECTOR_BYTES;
/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// Free space kept on the partition for configuration edits and the state host0 writes.
pub const MIN_FREE_BYTES: u64 = 64 * MIB;
/// The smallest image: below about 33 MiB a FAT32 volume has too few clusters to be FAT32.
pub const MIN_IMAGE_BYTES: u64 = 128 * MIB;
/// The FAT volume label; the drive is found by it.
pub const VOLUME_LABEL: &[u8; 11] = b"PXEN       ";
/// SYSLINUX's MBR boot code; its first 440 bytes go before the partition table.
pub const SYSLINUX_MBR: &str = "/usr/lib/syslinux/mbr/mbr.bin";
/// Where Debian's `syslinux-common` keeps the BIOS modules.
pub const SYSLINUX_MODULES: &str = "/usr/lib/syslinux/modules/bios";
/// Where Debian's `pxelinux` keeps the network bootloader host0 serves to PXE clients
/// (`lpxelinux.0` also fetches over HTTP).
pub const PXELINUX: &str = "/usr/lib/PXELINUX/lpxelinux.0";
/// MBR partition type of FAT32 addressed by LBA.
const FAT32_LBA_TYPE: u8 = 0x0c;
/// Bytes of boot code before the disk signature in an MBR.
const MBR_BOOT_CODE_BYTES: usize = 440;
/// Memory dom0 needs besides the boot-time copies: kernel, udev, systemd, the toolstack.
const DOM0_WORKING_MIB: u64 = 512;
/// dom0_mem is rounded to this granularity, to keep the value readable and stable.
const DOM0_ROUND_MIB: u64 = 256;
/// The largest cluster a FAT32 volume uses; the image size estimate assumes it per file.
const MAX_CLUSTER_BYTES: u64 = 32 * 1024;

/// What can go wrong while writing the image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The files do not fit in the size asked for.
    #[error("the image needs at least {needed} bytes ({needed_mib} MiB, with {free_mib} MiB kept free) but --size gives {given} bytes; pass a larger --size or leave it out")]
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// The same in MiB, rounded up.
        needed_mib: u64,
        /// The free space kept, in MiB.
        free_mib: u64,
        /// Bytes given.
        given: u64,
    },
    /// A file that goes into the image could not be read.
    #[error("cannot read {path}, which goes into the image as {name}: {source}")]
    ReadPart {
        /// The source file.
        path: PathBuf,
        /// Its name on the drive.
        name: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The configuration directory could not be listed.
    #[error("cannot list the configuration directory {path}: {source}")]
    ReadConfig {
        /// The directory or entry.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the image file failed (disk full, permissions).
    #[error("cannot write the image {path}: {source}; check the free space and permissions of its directory")]
    WriteImage {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Formatting or filling the FAT32 partition failed.
    #[error("cannot {step} in the FAT32 partition of {path}: {source}")]
    Fat {
        /// What was being done, e.g. "format" or "copy xen.gz".
        step: String,
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Less space is free after copying than the sizing rule promised.
    #[error("only {free} bytes are free on the partition of {path} after copying, less than the {wanted} kept for configuration and state; pass a larger --size")]
    NotEnoughFree {
        /// The image file.
        path: PathBuf,
        /// Bytes free.
        free: u64,
        /// Bytes wanted.
        wanted: u64,
    },
    /// The `syslinux` installer could not be run.
    #[error("cannot run `syslinux` to install the boot loader into {path}: {source}; install it with `apt-get install syslinux mtools`")]
    SyslinuxSpawn {
        /// The image file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The `syslinux` installer failed.
    #[error("`syslinux --offset {offset} --install {path}` failed ({status}): {stderr}")]
    SyslinuxFailed {
        /// The image file.
        path: PathBuf,
        /// The partition offset passed.
        offset: u64,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
    },
}

/// Memory for dom0, in MiB, from the sizes of the initramfs.
///
/// At the peak of the boot dom0 holds at once: the compressed initrd as loaded by the boot
/// loader, the unpacked initramfs (about the size of the root filesystem), the tmpfs copy of
/// the root filesystem that `/init` makes from it, host0's RAM copy of the drive it serves
/// (about the compressed initrd again), and the working memory of a booted dom0.
/// So `round_up_to_256(2 * compressed_initrd + 2 * rootfs_unpacked + 512 MiB)`.
pub fn dom0_mem_mib(compressed_initrd_bytes: u64, rootfs_unpacked_bytes: u64) -> u64 {
    let peak = 2 * compressed_initrd_bytes + 2 * rootfs_unpacked_bytes;
    let mib = peak.div_ceil(MIB) + DOM0_WORKING_MIB;
    mib.div_ceil(DOM0_ROUND_MIB) * DOM0_ROUND_MIB
}

/// The smallest image holding files of these sizes with [`MIN_FREE_BYTES`] to spare.
///
/// Conservative, so that it never promises too little: each file is rounded up to the largest
/// FAT32 cluster, 1 MiB covers the reserved sectors and directories, the two FATs take at most
/// 1/64 of the partition (4 bytes per 512-byte cluster, twice), and the partition starts at
/// 1 MiB. The result is rounded up to a MiB and is at least [`MIN_IMAGE_BYTES`].
pub fn required_image_bytes(file_sizes: &[u64]) -> u64 {
    let content: u64 = file_sizes
        .iter()
        .map(|size| size.div_ceil(MAX_CLUSTER_BYTES) * MAX_CLUSTER_BYTES)
        .sum::<u64>()
        + MIB;
    let before_fats = content + MIN_FREE_BYTES;
    let partition = before_fats + before_fats.div_ceil(64);
    let image = (PARTITION_OFFSET + partition).div_ceil(MIB) * MIB;
    image.max(MIN_IMAGE_BYTES)
}

/// Checks a `--size` against what the files need.
pub fn check_size(given: u64, file_sizes: &[u64]) -> Result<(), Error> {
    let needed = required_image_bytes(file_sizes);
    if given < needed {
        return Err(Error::TooSmall {
            needed,
            needed_mib: needed.div_ceil(MIB),
            free_mib: MIN_FREE_BYTES / MIB,
            given,
        });
    }
    Ok(())
}

/// The SYSLINUX configuration: `mboot.c32` loads Xen, the dom0 kernel and the initrd.
///
/// `SERIAL` comes first, as SYSLINUX requires, so the boot loader talks on COM1 too;
/// `PROMPT 0` and `TIMEOUT 0` boot at once with no menu.
pub fn syslinux_cfg(dom0_mem_mib: u64, extra_cmdline: &[String]) -> String {
    let mut kernel_args = String::from("console=hvc0 printk.devkmsg=on pxen.boot=usb");
    for arg in extra_cmdline {
        kernel_args.push(' ');
        kernel_args.push_str(arg);
    }
    format!(
        "SERIAL 0 115200\n\
         PROMPT 0\n\
         TIMEOUT 0\n\
         DEFAULT pxen\n\
         LABEL pxen\n  \
         KERNEL mboot.c32\n  \
         APPEND xen.gz console=com1 com1=115200,8n1 dom0_mem={dom0_mem_mib}M,max:{dom0_mem_mib}M \
         --- vmlinuz {kernel_args} --- initrd.img\n"
    )
}

/// Cylinder/head/sector address of an LBA for the MBR, with the geometry every BIOS assumes
/// for USB drives (255 heads, 63 sectors a track); past cylinder 1023 it is the "use LBA"
/// marker (1023, 254, 63). Boot code today uses LBA; CHS is filled for old firmware.
pub fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [254, 0xFF, 0xFF];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        (((cylinder >> 2) & 0xC0) as u8) | sector as u8,
        (cylinder & 0xFF) as u8,
    ]
}

/// The 512-byte MBR: boot code, disk signature, one bootable FAT32 partition entry from
/// [`PARTITION_START_SECTOR`] for `partition_sectors`, and the 0x55AA signature.
pub fn mbr(boot_code: &[u8], disk_signature: u32, partition_sectors: u32) -> [u8; 512] {
    let mut sector = [0u8; 512];
    let code = &boot_code[..boot_code.len().min(MBR_BOOT_CODE_BYTES)];
    sector[..code.len()].copy_from_slice(code);
    sector[440..444].copy_from_slice(&disk_signature.to_le_bytes());
    let start = PARTITION_START_SECTOR;
    let last = start + u64::from(partition_sectors) - 1;
    let entry = &mut sector[446..462];
    entry[0] = 0x80; // bootable: SYSLINUX's mbr.bin boots the active partition
    entry[1..4].copy_from_slice(&chs(start));
    entry[4] = FAT32_LBA_TYPE;
    entry[5..8].copy_from_slice(&chs(last));
    // The start is a small constant; it fits in u32.
    entry[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&partition_sectors.to_le_bytes());
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// A window onto the partition inside the image file (or drive), so that `fatfs` sees a
/// whole volume.
pub struct Partition {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Partition {
    /// The first partition of the MBR at the start of `file` (an image or a whole drive),
    /// as the MBR's first entry places it.
    pub fn first(mut file: File) -> io::Result<Partition> {
        let mut sector = [0u8; 512];
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(&mut sector)?;
        if sector[510..512] != [0x55, 0xAA] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no MBR (no 0x55AA signature in the first sector)",
            ));
        }
        let entry = &sector[446..462];
        let field = |at: usize| {
            u32::from_le_bytes([entry[at], entry[at + 1], entry[at + 2], entry[at + 3]])
        };
        let (start, sectors) = (u64::from(field(8)), u64::from(field(12)));
        if start == 0 || sectors == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the MBR's first partition entry is empty",
            ));
        }
        Ok(Partition {
            file,
            start: start * SECTOR_BYTES,
            len: sectors * SECTOR_BYTES,
            pos: 0,
        })
    }

    /// How many bytes from the current position may be read or written (clamped to the end).
    fn room(&self, wanted: usize) -> usize {
        let left = self.len.saturating_sub(self.pos);
        usize::try_from(left).map_or(wanted, |left| wanted.min(left))
    }
}

impl Read for Partition {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let read = self.file.read(&mut buf[..n])?;
        self.pos += read as u64;
        Ok(read)
    }
}

impl Write for Partition {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.file.seek(SeekFrom::Start(self.start + self.pos))?;
        let written = self.file.write(&buf[..n])?;
        self.pos += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Partition {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition start",
            )
        })?;
        Ok(self.pos)
    }
}

/// The contents of one file on the drive.
#[derive(Debug, Clone)]
pub enum Content {
    /// Copied from this file of the host.
    File(PathBuf),
    /// These bytes (generated text, embedded defaults).
    Bytes(Vec<u8>),
}

/// One file on the drive: its path on the FAT partition ("config/cluster.ron") and contents.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path on the FAT partition, with `/` between directories.
    pub name: String,
    /// What goes in it.
    pub content: Content,
}

impl Entry {
    /// The size of the contents in bytes.
    pub fn size(&self) -> Result<u64, Error> {
        match &self.content {
            Content::Bytes(bytes) => Ok(bytes.len() as u64),
            Content::File(path) => {
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .map_err(|source| Error::ReadPart {
                        path: path.clone(),
                        name: self.name.clone(),
                        source,
                    })
            }
        }
    }
}

/// Lists a configuration directory as entries under `config/`, recursively, in name order.
pub fn config_entries(dir: &Path) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    collect_config(dir, "config", &mut entries)?;
    Ok(entries)
}

/// Adds every regular file under `dir` to `out`, named `prefix/relative/path`.
fn collect_config(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<(), Error> {
    let list_err = |source| Error::ReadConfig {
        path: dir.to_owned(),
        source,
    };
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(list_err)?
        .collect::<Result<_, _>>()
        .map_err(list_err)?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let name = format!("{prefix}/{}", child.file_name().to_string_lossy());
        let kind = child.file_type().map_err(list_err)?;
        if kind.is_dir() {
            collect_config(&child.path(), &name, out)?;
        } else if kind.is_file() {
            out.push(Entry {
                name,
                content: Content::File(child.path()),
            });
        } else {
            // Symbolic links and devices have no meaning on FAT; say so rather than guess.
            log::warn!(
                "skipping {}: not a regular file or directory",
                child.path().display()
            );
        }
    }
    Ok(())
}

/// What was written, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Size of the whole image.
    pub image_bytes: u64,
    /// Byte offset of the partition.
    pub partition_offset: u64,
    /// Size of the partition.
    pub partition_bytes: u64,
    /// Every file on the partition with its size, in the order written.
    pub files: Vec<(String, u64)>,
    /// Bytes free on the partition afterwards.
    pub free_bytes: u64,
}

/// Writes the MBR and a FAT32 partition holding `entries` into a new image file of `size`
/// bytes at `path`, then installs SYSLINUX into it. The file is created or truncated.
pub fn write_image(
    path: &Path,
    size: u64,
    entries: &[Entry],
    disk_id: u32,
) -> Result<Layout, Error> {
    let write_err = |source| Error::WriteImage {
        path: path.to_owned(),
        source,
    };
    let sizes = entries
        .iter()
        .map(Entry::size)
        .collect::<Result<Vec<_>, _>>()?;
    check_size(size, &sizes)?;
    let partition_bytes = size - PARTITION_OFFSET;
    // The size fits: the partition is smaller than 2 TiB as long as the image is.
    let partition_sectors = u32::try_from(partition_bytes / SECTOR_BYTES).map_err(|_| {
        write_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an MBR partition cannot exceed 2 TiB",
        ))
    })?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(write_err)?;
    file.set_len(size).map_err(write_err)?;
    let boot_code = std::fs::read(SYSLINUX_MBR).map_err(|source| Error::ReadPart {
        path: SYSLINUX_MBR.into(),
        name: "the MBR boot code".into(),
        source,
    })?;
    file.write_all(&mbr(&boot_code, disk_id, partition_sectors))
        .map_err(write_err)?;
    let partition = Partition {
        file: file.try_clone().map_err(write_err)?,
        start: PARTITION_OFFSET,
        len: u64::from(partition_sectors) * SECTOR_BYTES,
        pos: 0,
    };
    let (files, free_bytes) = fill_fat(path, partition, entries, disk_id)?;
    file.sync_all().map_err(write_err)?;
    install_syslinux(path)?;
    Ok(Layout {
        image_bytes: size,
        partition_offset: PARTITION_OFFSET,
        partition_bytes: u64::from(partition_sectors) * SECTOR_BYTES,
        files,
        free_bytes,
    })
}

/// Formats the partition as FAT32 and copies the entries in; returns their sizes and the
/// free space left.
fn fill_fat(
    image: &Path,
    mut partition: Partition,
    entries: &[Entry],
    volume_id: u32,
) -> Result<(Vec<(String, u64)>, u64), Error> {
    let fat_err = |step: &str| {
        let step = step.to_owned();
        move |source| Error::Fat {
            step,
            path: image.to_owned(),
            source,
        }
    };
    let options = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .volume_label(*VOLUME_LABEL)
        .volume_id(volume_id)
        .heads(255)
        .sectors_per_track(63);
    fatfs::format_volume(&mut partition, options).map_err(fat_err("format"))?;
    set_hidden_sectors(&mut partition).map_err(fat_err("set the hidden sectors"))?;
    partition
        .seek(SeekFrom::Start(0))
        .map_err(fat_err("rewind"))?;
    let fs = fatfs::FileSystem::new(partition, fatfs::FsOptions::new())
        .map_err(fat_err("open the new file system"))?;
    let mut files = Vec::new();
    for entry in entries {
        let written = copy_entry(&fs, entry).map_err(fat_err(&format!("copy {}", entry.name)))?;
        files.push((entry.name.clone(), written));
    }
    let stats = fs.stats().map_err(fat_err("count the free clusters"))?;
    let free = u64::from(stats.free_clusters()) * u64::from(stats.cluster_size());
    fs.unmount().map_err(fat_err("close the file system"))?;
    if free < MIN_FREE_BYTES {
        return Err(Error::NotEnoughFree {
            path: image.to_owned(),
            free,
            wanted: MIN_FREE_BYTES,
        });
    }
    Ok((files, free))
}

/// fatfs 0.3 always writes 0 hidden sectors; boot code that locates the partition from its
/// own boot sector needs the partition's real start there (as `mkfs.vfat --offset` writes).
/// The field is at byte 0x1C of the boot sector and of its FAT32 backup in sector 6.
fn set_hidden_sectors(partition: &mut Partition) -> io::Result<()> {
    const HIDDEN_SECTORS_FIELD: u64 = 0x1C;
    const BACKUP_BOOT_SECTOR: u64 = 6;
    // The start sector is the constant 2048; it fits in u32.
    let hidden = (PARTITION_START_SECTOR as u32).to_le_bytes();
    for sector in [0, BACKUP_BOOT_SECTOR] {
        partition.seek(SeekFrom::Start(
            sector * SECTOR_BYTES + HIDDEN_SECTORS_FIELD,
        ))?;
        partition.write_all(&hidden)?;
    }
    Ok(())
}

/// Creates the entry's directories and copies its contents; returns the bytes written.
fn copy_entry<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    entry: &Entry,
) -> io::Result<u64> {
    let mut dir = fs.root_dir();
    let (parents, name) = entry.name.rsplit_once('/').unwrap_or(("", &entry.name));
    for parent in parents.split('/').filter(|p| !p.is_empty()) {
        dir = dir.create_dir(parent)?;
    }
    let mut target = dir.create_file(name)?;
    target.truncate()?;
    let written = match &entry.content {
        Content::Bytes(bytes) => {
            target.write_all(bytes)?;
            bytes.len() as u64
        }
        Content::File(path) => io::copy(&mut File::open(path)?, &mut target)?,
    };
    target.flush()?;
    Ok(written)
}

/// Runs `syslinux --install` on the partition: writes its boot sector, `ldlinux.sys` and
/// `ldlinux.c32`. mtools' check that the image is a floppy-like device is skipped.
fn install_syslinux(image: &Path) -> Result<(), Error> {
    let output = Command::new("syslinux")
        .arg("--offset")
        .arg(PARTITION_OFFSET.to_string())
        .arg("--install")
        .arg(image)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|source| Error::SyslinuxSpawn {
            path: image.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::SyslinuxFailed {
            path: image.to_owned(),
            offset: PARTITION_OFFSET,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dom0_mem_rule() {
        // 0 + 0 + 512 MiB -> 512.
        assert_eq!(dom0_mem_mib(0, 0), 512);
        // One byte more than the working memory rounds up to the next 256 MiB.
        assert_eq!(dom0_mem_mib(1, 0), 768);
        // A Debian dom0: 100 MiB initrd, 300 MiB rootfs: 200 + 600 + 512 = 1312 -> 1536.
        assert_eq!(dom0_mem_mib(100 * MIB, 300 * MIB), 1536);
        // Exactly on a boundary stays there: 0 + 2*384 + 512 = 1280.
        assert_eq!(dom0_mem_mib(0, 384 * MIB), 1280);
    }

    #[test]
    fn image_size_rule() {
        assert_eq!(required_image_bytes(&[]), MIN_IMAGE_BYTES);
        let sizes = [300 * MIB, 10 * MIB, 1];
        let needed = required_image_bytes(&sizes);
        assert_eq!(needed % MIB, 0);
        assert!(needed >= PARTITION_OFFSET + 310 * MIB + MIN_FREE_BYTES);
        // Not wildly more than needed: under 3% on top.
        assert!(needed < (PARTITION_OFFSET + 310 * MIB + MIN_FREE_BYTES) * 103 / 100);
        assert!(check_size(needed, &sizes).is_ok());
        let err = check_size(needed - MIB, &sizes).unwrap_err().to_string();
        assert!(err.contains(&needed.to_string()), "{err}");
        assert!(err.contains(&(needed - MIB).to_string()), "{err}");
    }

    #[test]
    fn syslinux_cfg_follows_the_contract() {
        let cfg = syslinux_cfg(1280, &["pxen.drive_wait=5".to_owned()]);
        assert!(cfg.starts_with("SERIAL 0 115200\n"));
        assert!(cfg.contains("DEFAULT pxen\nLABEL pxen\n  KERNEL mboot.c32\n"));
        assert!(cfg.contains(
            "  APPEND xen.gz console=com1 com1=115200,8n1 dom0_mem=1280M,max:1280M --- \
             vmlinuz console=hvc0 printk.devkmsg=on pxen.boot=usb pxen.drive_wait=5 --- initrd.img\n"
        ));
    }

    #[test]
    fn chs_addresses() {
        assert_eq!(chs(0), [0, 1, 0]);
        // LBA 2048 = cylinder 0, head 32, sector 33.
        assert_eq!(chs(2048), [32, 33, 0]);
        // Cylinder 1 starts at 255*63.
        assert_eq!(chs(255 * 63), [0, 1, 1]);
        assert_eq!(chs(1 << 32), [254, 0xFF, 0xFF]);
    }

    #[test]
    fn mbr_parses_back_with_mbrman() {
        let sector = mbr(&[0xAB; 446], 0x1234_5678, 100_000);
        assert_eq!(&sector[..440], &[0xAB; 440][..]);
        let mut disk = vec![0u8; 512 * 4];
        disk[..512].copy_from_slice(&sector);
        let table = mbrman::MBR::read_from(&mut io::Cursor::new(disk), 512).unwrap();
        assert_eq!(table.header.disk_signature, 0x1234_5678u32.to_le_bytes());
        let part = &table[1];
        assert_eq!(part.boot, mbrman::BOOT_ACTIVE);
        assert_eq!(part.sys, 0x0c);
        assert_eq!(part.starting_lba, 2048);
        assert_eq!(part.sectors, 100_000);
        assert!(table[2].is_unused());
    }

    #[test]
    fn partition_window_clamps_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, vec![0u8; 100]).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut part = Partition {
            file,
            start: 10,
            len: 20,
            pos: 0,
        };
        part.seek(SeekFrom::End(-5)).unwrap();
        assert_eq!(part.write(b"0123456789").unwrap(), 5);
        assert!(part.write(b"x").is_err());
        assert!(part.seek(SeekFrom::Current(-100)).is_err());
        let disk = std::fs::read(&path).unwrap();
        assert_eq!(&disk[25..30], b"01234");
        assert_eq!(disk[30], 0);
    }

    /// Builds a real image (needs `syslinux` and its MBR, as the image builder does) and
    /// reads it back with mbrman and fatfs.
    #[test]
    fn image_parses_back() {
        let dir = tempfile::tempdir().unwrap();
        let xen = dir.path().join("xen.gz");
        std::fs::write(&xen, vec![0x5A; 300_000]).unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir_all(config.join("vms")).unwrap();
        std::fs::write(config.join("cluster.ron"), b"Cluster()").unwrap();
        std::fs::write(config.join("vms/a.ron"), b"Vm()").unwrap();
        let cfg = syslinux_cfg(768, &[]);
        let mut entries = vec![
            Entry {
                name: "xen.gz".into(),
                content: Content::File(xen),
            },
            Entry {
                name: "syslinux.cfg".into(),
                content: Content::Bytes(cfg.clone().into_bytes()),
            },
        ];
        entries.extend(config_entries(&config).unwrap());
        let image = dir.path().join("pxen.img");
        let layout = write_image(&image, MIN_IMAGE_BYTES, &entries, 0xCAFE_F00D).unwrap();
        assert_eq!(layout.partition_offset, 1024 * 1024);
        assert_eq!(
            layout.files,
            vec![
                ("xen.gz".to_owned(), 300_000),
                ("syslinux.cfg".to_owned(), cfg.len() as u64),
                ("config/cluster.ron".to_owned(), 9),
                ("config/vms/a.ron".to_owned(), 4),
            ]
        );

        let mut disk = File::open(&image).unwrap();
        let table = mbrman::MBR::read_from(&mut disk, 512).unwrap();
        assert_eq!(table[1].starting_lba, 2048);
        assert_eq!(table[1].boot, mbrman::BOOT_ACTIVE);
        assert_eq!(table[1].sys, 0x0c);
        let mbr_code = std::fs::read(SYSLINUX_MBR).unwrap();
        let mut head = [0u8; 440];
        disk.seek(SeekFrom::Start(0)).unwrap();
        disk.read_exact(&mut head).unwrap();
        assert_eq!(&head[..], &mbr_code[..440]);

        let partition = Partition {
            file: disk,
            start: PARTITION_OFFSET,
            len: layout.partition_bytes,
            pos: 0,
        };
        let fs = fatfs::FileSystem::new(partition, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
        assert_eq!(fs.volume_label(), "PXEN");
        let root = fs.root_dir();
        let mut text = String::new();
        root.open_file("syslinux.cfg")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, cfg);
        let size_of = |name: &str| {
            let mut bytes = Vec::new();
            root.open_file(name)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            bytes.len()
        };
        assert_eq!(size_of("xen.gz"), 300_000);
        assert_eq!(size_of("config/vms/a.ron"), 4);
        // Written by `syslinux --install`.
        assert!(size_of("ldlinux.sys") > 0);
        assert!(size_of("ldlinux.c32") > 0);
    }
}
