//! Copying the dom0 root filesystem into RAM: a size-checked tmpfs filled from the layers in
//! the initramfs (`/rootfs/NN-name.tar`, unpacked in name order).
//!
//! Once this is done the host depends on neither the network nor the drive. Each layer is
//! deleted from the initramfs as soon as it is unpacked, so the memory it held is given back
//! before the next one is copied.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

const MIB: u64 = 1024 * 1024;
/// tmpfs stores file data in whole pages.
const PAGE: u64 = 4096;
/// Memory the kernel and the rest of the boot need besides the root filesystem.
pub const RESERVE: u64 = 128 * MIB;
/// Free space the root filesystem gets beyond its contents, at least.
pub const MIN_HEADROOM: u64 = 256 * MIB;

/// A step of copying the root filesystem that failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The layer directory could not be listed.
    #[error("cannot list the root filesystem layers in {dir}: {source}; the initramfs is incomplete, rebuild the image")]
    ListLayers {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// There is no layer at all.
    #[error("the initramfs holds no root filesystem layer (no {dir}/*.tar); rebuild the image with a root filesystem")]
    NoLayers {
        /// The directory.
        dir: PathBuf,
    },
    /// A layer could not be read.
    #[error("cannot read the root filesystem layer {layer}: {source}; the initramfs is damaged, rebuild the image")]
    ReadLayer {
        /// The tar file.
        layer: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The memory information could not be read.
    #[error("cannot read {path}: {source}")]
    MemInfo {
        /// `/proc/meminfo`.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The root filesystem does not fit in the memory this host has.
    #[error("the root filesystem needs {needed_mib} MiB of RAM (plus {reserve_mib} MiB for the system) but only {available_mib} MiB is available; give dom0 more memory: dom0_mem={suggest_mib}M on the Xen command line (syslinux.cfg), or use a smaller root filesystem")]
    DoesNotFit {
        /// The root filesystem's size in RAM.
        needed_mib: u64,
        /// The memory kept free for the system.
        reserve_mib: u64,
        /// The memory available.
        available_mib: u64,
        /// A dom0 memory size that would fit.
        suggest_mib: u64,
    },
    /// The mount point of the new root could not be created.
    #[error("cannot create the mount point {target}: {source}")]
    CreateTarget {
        /// The mount point.
        target: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The tmpfs could not be mounted.
    #[error("cannot mount a {size_mib} MiB tmpfs on {target}: {source}")]
    MountTmpfs {
        /// The mount point.
        target: PathBuf,
        /// The size asked for.
        size_mib: u64,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// A layer could not be unpacked.
    #[error("cannot unpack the root filesystem layer {layer} into {target}: {detail}; the RAM disk may be full or the layer damaged")]
    Unpack {
        /// The tar file.
        layer: PathBuf,
        /// The new root.
        target: PathBuf,
        /// Why, with every cause (the tar reader nests them).
        detail: String,
    },
}

/// A root filesystem layer and the RAM its contents take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The tar file.
    pub path: PathBuf,
    /// Bytes of file data, each file rounded up to whole pages as tmpfs stores it.
    pub ram_bytes: u64,
    /// Number of entries.
    pub entries: u64,
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`.
    pub available: u64,
}

/// Parses `/proc/meminfo` text (values in kB).
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(MemInfo {
        total: field("MemTotal")?,
        available: field("MemAvailable")?,
    })
}

/// Reads `/proc/meminfo`.
pub fn read_meminfo(path: &Path) -> Result<MemInfo, RootfsError> {
    let text = std::fs::read_to_string(path).map_err(|source| RootfsError::MemInfo {
        path: path.to_path_buf(),
        source,
    })?;
    parse_meminfo(&text).ok_or_else(|| RootfsError::MemInfo {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no MemTotal or MemAvailable line",
        ),
    })
}

/// The tmpfs size for a root filesystem that takes `needed` bytes, or why it does not fit.
///
/// The rule: the contents plus `RESERVE` for the system must fit in the memory available now.
/// The tmpfs limit is the contents plus headroom for what the host writes while it runs
/// (logs, state): a quarter of the contents, at least `MIN_HEADROOM`, and never more than the
/// machine's memory. tmpfs only takes memory for what is written, so the limit costs nothing.
pub fn plan_tmpfs_size(needed: u64, mem: MemInfo) -> Result<u64, RootfsError> {
    if needed + RESERVE > mem.available {
        let suggest = (mem.total.saturating_sub(mem.available) + needed + RESERVE + MIN_HEADROOM)
            .div_ceil(256 * MIB)
            * 256;
        return Err(RootfsError::DoesNotFit {
            needed_mib: needed.div_ceil(MIB),
            reserve_mib: RESERVE / MIB,
            available_mib: mem.available / MIB,
            suggest_mib: suggest,
        });
    }
    let headroom = (needed / 4).max(MIN_HEADROOM);
    Ok((needed + headroom).min(mem.total))
}

/// Lists the layers in `dir` (`*.tar`, in name order) with the RAM each one's contents take.
pub fn scan_layers(dir: &Path) -> Result<Vec<Layer>, RootfsError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RootfsError::ListLayers {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "tar"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(RootfsError::NoLayers {
            dir: dir.to_path_buf(),
        });
    }
    paths.into_iter().map(|path| measure_layer(&path)).collect()
}

/// Walks a tar's headers (seeking over the data) and adds up the RAM its files take.
fn measure_layer(path: &Path) -> Result<Layer, RootfsError> {
    let read_error = |source| RootfsError::ReadLayer {
        layer: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut archive = tar::Archive::new(file);
    let mut layer = Layer {
        path: path.to_path_buf(),
        ram_bytes: 0,
        entries: 0,
    };
    for entry in archive.entries_with_seek().map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        layer.entries += 1;
        if entry.header().entry_type().is_file() {
            layer.ram_bytes += entry.size().div_ceil(PAGE) * PAGE;
        }
    }
    Ok(layer)
}

/// Mounts a tmpfs of `size` bytes at `target` for the new root.
pub fn mount_tmpfs(target: &Path, size: u64) -> Result<(), RootfsError> {
    let mount_error = |source| RootfsError::MountTmpfs {
        target: target.to_path_buf(),
        size_mib: size / MIB,
        source,
    };
    std::fs::create_dir_all(target).map_err(|source| RootfsError::CreateTarget {
        target: target.to_path_buf(),
        source,
    })?;
    let options = format!("size={size},mode=0755");
    mount(
        Some("rootfs"),
        target,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(mount_error)
}

/// Unpacks each layer into `target`, deleting it from the initramfs once it is unpacked.
///
/// Ownership, permissions, times, extended attributes (file capabilities) and links are kept.
/// Device nodes are not expected: `/dev` is the devtmpfs moved in at the handoff.
pub fn unpack_layers(layers: &[Layer], target: &Path) -> Result<(), RootfsError> {
    for layer in layers {
        unpack_layer(&layer.path, target)?;
        if let Err(e) = std::fs::remove_file(&layer.path) {
            // The copy is done; the layer only wastes memory until the initramfs is emptied.
            log::warn!(
                "cannot delete {} after unpacking it: {e}",
                layer.path.display()
            );
        }
        log::info!(
            "unpacked {} ({} entries, {} MiB)",
            layer.path.display(),
            layer.entries,
            layer.ram_bytes / MIB
        );
    }
    Ok(())
}

fn unpack_layer(path: &Path, target: &Path) -> Result<(), RootfsError> {
    let unpack_error = |source: std::io::Error| RootfsError::Unpack {
        layer: path.to_path_buf(),
        target: target.to_path_buf(),
        detail: error_chain(&source),
    };
    let mut file = File::open(path).map_err(|source| RootfsError::ReadLayer {
        layer: path.to_path_buf(),
        source,
    })?;
    let mut magic = [0u8; 262];
    // An empty layer file is a valid, empty tar for our purposes.
    if file.read(&mut magic).map_err(unpack_error)? == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::Start(0)).map_err(unpack_error)?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    archive.unpack(target).map_err(unpack_error)
}

/// An error and all its causes, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:        2048000 kB\nMemFree:   100 kB\nMemAvailable:    1024000 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemInfo {
                total: 2048000 * 1024,
                available: 1024000 * 1024
            })
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn tmpfs_gets_contents_plus_headroom() {
        let mem = MemInfo {
            total: 4 * GIB,
            available: 3 * GIB,
        };
        assert_eq!(
            plan_tmpfs_size(400 * MIB, mem).unwrap(),
            400 * MIB + MIN_HEADROOM
        );
        assert_eq!(plan_tmpfs_size(2 * GIB, mem).unwrap(), 2 * GIB + GIB / 2);
    }

    #[test]
    fn tmpfs_never_exceeds_total_memory() {
        let mem = MemInfo {
            total: 1100 * MIB,
            available: 1050 * MIB,
        };
        assert_eq!(plan_tmpfs_size(900 * MIB, mem).unwrap(), 1100 * MIB);
    }

    #[test]
    fn too_big_a_root_filesystem_names_needed_available_and_a_fix() {
        let mem = MemInfo {
            total: 1024 * MIB,
            available: 600 * MIB,
        };
        let error = plan_tmpfs_size(500 * MIB, mem).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the root filesystem needs 500 MiB of RAM (plus 128 MiB for the system) but only 600 MiB \
             is available; give dom0 more memory: dom0_mem=1536M on the Xen command line \
             (syslinux.cfg), or use a smaller root filesystem"
        );
    }

    #[test]
    fn layers_are_measured_in_pages_and_listed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for (name, sizes) in [("10-b.tar", vec![1usize]), ("00-a.tar", vec![4096, 4097])] {
            let mut builder = tar::Builder::new(File::create(dir.path().join(name)).unwrap());
            for (i, size) in sizes.iter().enumerate() {
                let mut header = tar::Header::new_gnu();
                header.set_size(*size as u64);
                header.set_mode(0o644);
                builder
                    .append_data(&mut header, format!("f{i}"), &vec![7u8; *size][..])
                    .unwrap();
            }
            builder.finish().unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a layer").unwrap();
        let layers = scan_layers(dir.path()).unwrap();
        let summary: Vec<_> = layers
            .iter()
            .map(|l| {
                (
                    l.path.file_name().unwrap().to_str().unwrap(),
                    l.ram_bytes,
                    l.entries,
                )
            })
            .collect();
        assert_eq!(summary, [("00-a.tar", 3 * PAGE, 2), ("10-b.tar", PAGE, 1)]);
    }

    #[test]
    fn an_empty_directory_has_no_layers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            scan_layers(dir.path()),
            Err(RootfsError::NoLayers { .. })
        ));
    }
}
