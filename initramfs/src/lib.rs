//! Builds PXEN's initramfs: a zstd-compressed newc cpio archive holding `/init`, the early
//! kernel modules and the dom0 root filesystem as tar layers (see the README's "The
//! initramfs" for the contract with `/init`).
//!
//! The same inputs give a byte-identical archive: entries are sorted, owners, times and
//! inode numbers are fixed, and the generated layers are written with fixed metadata.

mod early;
mod layers;
mod modinfo;
mod module_layer;

use std::collections::BTreeMap;

use pxen::cpio;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub use module_layer::MODULE_SELECTION;

/// Modules `/init` loads before the hand-off, so it can find the flash drive and the network.
/// Each is checked to exist in Debian 12's 6.1 kernel (`linux-image-6.1.0-*-amd64`).
pub const DEFAULT_EARLY_MODULES: &[&str] = &[
    // USB host controllers: USB 3 (xHCI), USB 2 (EHCI), USB 1.1 (OHCI and UHCI).
    "xhci-pci",
    "ehci-pci",
    "ohci-pci",
    "uhci-hcd",
    // USB flash drives: the Bulk-Only and the USB Attached SCSI protocols, and SCSI disks.
    "usb-storage",
    "uas",
    "sd_mod",
    // The drive's FAT32 partition, with the code pages its file names use.
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859-1",
    // Common wired NICs: Intel PRO/1000, Intel PCIe gigabit, Intel 82575/6 and i350,
    // Intel 10 GbE, Realtek gigabit, Broadcom Tigon3 and NetXtreme II.
    "e1000",
    "e1000e",
    "igb",
    "ixgbe",
    "r8169",
    "tg3",
    "bnx2",
    // Virtual machines (tests under QEMU, nested clusters): virtio NIC on virtio PCI.
    "virtio_net",
    "virtio_pci",
];

/// Where the root filesystem layer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// A plain tar (as `mmdebstrap ... rootfs.tar` writes it), copied byte for byte.
    Tar(PathBuf),
    /// A directory, packed into a tar.
    Dir(PathBuf),
}

/// What goes into the initramfs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The static `pxen` binary; becomes `/init` (mode 0755).
    pub init_binary: PathBuf,
    /// The kernel version, e.g. `6.1.0-56-amd64`.
    pub kernel_version: String,
    /// The kernel's module tree: the `lib/modules/<version>` directory that holds `kernel/`,
    /// `modules.order`, `modules.builtin` ...
    pub modules_dir: PathBuf,
    /// Module names loaded by `/init` before the hand-off (with their dependencies); see
    /// [`DEFAULT_EARLY_MODULES`].
    pub early_modules: Vec<String>,
    /// The dom0 root filesystem.
    pub rootfs: LayerSource,
    /// An optional directory of extra files; becomes `/rootfs/20-overlay.tar`.
    pub overlay: Option<PathBuf>,
    /// zstd level of the whole archive, at most 19 (the kernel's decompressor needs the
    /// small window levels up to 19 use).
    pub compression_level: i32,
}

/// What was built, for reports and for sizing dom0 memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Size of the compressed initramfs file.
    pub compressed_bytes: u64,
    /// Size of the cpio archive before compression.
    pub uncompressed_bytes: u64,
    /// Sum of the sizes of the regular files in all layers: the tmpfs space the root
    /// filesystem takes once unpacked.
    pub rootfs_unpacked_bytes: u64,
    /// The early modules, with dependencies, in load order.
    pub early_modules: Vec<String>,
    /// Number of modules in `10-modules.tar`.
    pub rootfs_module_count: usize,
    /// Each layer's file name (e.g. `00-base.tar`) and size in bytes.
    pub layers: Vec<(String, u64)>,
}

/// The highest zstd level whose window the kernel's initramfs decompressor accepts.
const MAX_COMPRESSION_LEVEL: i32 = 19;

/// Directories of the initramfs besides those holding files: mount points `/init` uses.
const DIRECTORIES: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "lib",
    "lib/modules",
    "rootfs",
];

/// Name of the list of early modules, in `lib/modules/<version>/`.
const EARLY_LOAD_LIST: &str = "pxen-early.load";

/// Failures while building the initramfs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The compression level is out of range.
    #[error("zstd compression level {level} is too high: the kernel cannot decompress levels above {MAX_COMPRESSION_LEVEL} (their window is too large); use 19 or less")]
    CompressionLevel {
        /// The level asked for.
        level: i32,
    },
    /// The init binary is missing or not a file.
    #[error("the init binary {path} is missing or not a regular file: {reason}; build the `pxen` crate (static, release) first")]
    InitBinary {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The kernel module tree or an early module could not be used.
    #[error(transparent)]
    Modules(#[from] early::Error),
    /// A root filesystem layer could not be read or written.
    #[error(transparent)]
    Layer(#[from] layers::Error),
    /// The modules layer could not be built.
    #[error(transparent)]
    ModulesLayer(#[from] module_layer::Error),
    /// The archive could not be written.
    #[error(transparent)]
    Cpio(#[from] cpio::Error),
    /// A temporary or output file could not be created, written or renamed.
    #[error("cannot write {path}: {source}; check that its directory exists, is writable and has free space")]
    Output {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file to be put in the archive could not be opened.
    #[error("cannot open {path} to put it into the initramfs: {source}")]
    Input {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One entry of the archive.
enum Entry {
    /// A directory, mode 0755.
    Directory,
    /// A character device node, mode 0600.
    CharDevice { major: u32, minor: u32 },
    /// A file made by the build.
    Bytes { mode: u32, data: Vec<u8> },
    /// A file copied from disk as it is when the archive is written.
    File { mode: u32, path: PathBuf },
}

/// Builds the initramfs described by `spec` and writes it to `out` (replacing it only once
/// it is complete). Temporary files go next to `out`.
pub fn build(spec: &Spec, out: &Path) -> Result<Report, Error> {
    if spec.compression_level > MAX_COMPRESSION_LEVEL {
        return Err(Error::CompressionLevel {
            level: spec.compression_level,
        });
    }
    check_init_binary(&spec.init_binary)?;
    let tree = early::ModuleTree::scan(&spec.modules_dir)?;
    let early = early::resolve(&tree, &spec.early_modules)?;
    log::info!("early modules, in load order: {}", names(&early).join(" "));

    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".pxen-initramfs-")
        .tempdir_in(out_dir)
        .map_err(|source| Error::Output {
            path: out_dir.to_owned(),
            source,
        })?;
    let layers = build_layers(spec, &tree, staging.path())?;

    let mut entries = base_entries(spec, &early);
    for layer in &layers.files {
        entries.insert(
            format!("rootfs/{}", layer.0),
            Entry::File {
                mode: 0o644,
                path: layer.1.clone(),
            },
        );
    }
    let (compressed_bytes, uncompressed_bytes) =
        write_archive(&entries, spec.compression_level, out, staging.path())?;
    let report = Report {
        compressed_bytes,
        uncompressed_bytes,
        rootfs_unpacked_bytes: layers.regular_bytes,
        early_modules: names(&early),
        rootfs_module_count: layers.module_count,
        layers: layers.sizes()?,
    };
    log::info!("initramfs {}: {report:?}", out.display());
    Ok(report)
}

/// The names of the early modules, in load order.
fn names(early: &[early::EarlyModule]) -> Vec<String> {
    early.iter().map(|m| m.name.clone()).collect()
}

/// Fails unless `path` is a regular file (following symlinks).
fn check_init_binary(path: &Path) -> Result<(), Error> {
    let reason = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => return Ok(()),
        Ok(_) => "it is not a regular file".to_owned(),
        Err(error) => error.to_string(),
    };
    Err(Error::InitBinary {
        path: path.to_owned(),
        reason,
    })
}

/// The layers made for one build.
struct Layers {
    /// (file name under `rootfs/`, where the tar is), in name order.
    files: Vec<(String, PathBuf)>,
    regular_bytes: u64,
    module_count: usize,
}

impl Layers {
    /// Each layer's file name and size, for the report.
    fn sizes(&self) -> Result<Vec<(String, u64)>, Error> {
        self.files
            .iter()
            .map(|(name, path)| {
                let meta = std::fs::metadata(path).map_err(|source| Error::Input {
                    path: path.clone(),
                    source,
                })?;
                Ok((name.clone(), meta.len()))
            })
            .collect()
    }
}

/// Writes (or, for a tar base, finds) the layers.
fn build_layers(spec: &Spec, tree: &early::ModuleTree, staging: &Path) -> Result<Layers, Error> {
    let (base_path, base) = match &spec.rootfs {
        LayerSource::Tar(path) => (path.clone(), layers::scan_tar(path)?),
        LayerSource::Dir(dir) => {
            let path = staging.join("00-base.tar");
            let summary = layers::tar_directory(dir, &path)?;
            (path, summary)
        }
    };
    let depmod_root = staging.join("depmod");
    std::fs::create_dir(&depmod_root).map_err(|source| Error::Output {
        path: depmod_root.clone(),
        source,
    })?;
    let modules_path = staging.join("10-modules.tar");
    let modules = module_layer::build(
        tree,
        &spec.kernel_version,
        base.lib_is_symlink,
        &depmod_root,
        &modules_path,
    )?;
    let mut layers = Layers {
        files: vec![
            ("00-base.tar".to_owned(), base_path),
            ("10-modules.tar".to_owned(), modules_path),
        ],
        regular_bytes: base.regular_bytes + modules.regular_bytes,
        module_count: modules.module_count,
    };
    if let Some(overlay) = &spec.overlay {
        let path = staging.join("20-overlay.tar");
        layers.regular_bytes += layers::tar_directory(overlay, &path)?.regular_bytes;
        layers.files.push(("20-overlay.tar".to_owned(), path));
    }
    Ok(layers)
}

/// Every entry except the layers, by name: sorting by name puts each directory before its
/// content, as the kernel needs.
fn base_entries(spec: &Spec, early: &[early::EarlyModule]) -> BTreeMap<String, Entry> {
    let mut entries = BTreeMap::new();
    for dir in DIRECTORIES {
        entries.insert((*dir).to_owned(), Entry::Directory);
    }
    entries.insert(
        "dev/console".to_owned(),
        Entry::CharDevice { major: 5, minor: 1 },
    );
    entries.insert(
        "init".to_owned(),
        Entry::File {
            mode: 0o755,
            path: spec.init_binary.clone(),
        },
    );
    let modules_root = format!("lib/modules/{}", spec.kernel_version);
    let mut load_list = String::new();
    for module in early {
        let name = format!("{modules_root}/{}", module.path);
        for parent in Path::new(&name).ancestors().skip(1) {
            if parent.as_os_str().is_empty() {
                break;
            }
            entries.insert(parent.to_string_lossy().into_owned(), Entry::Directory);
        }
        entries.insert(
            name,
            Entry::Bytes {
                mode: 0o644,
                data: module.elf.clone(),
            },
        );
        load_list.push_str(&module.path);
        load_list.push('\n');
    }
    entries.insert(modules_root.clone(), Entry::Directory);
    entries.insert(
        format!("{modules_root}/{EARLY_LOAD_LIST}"),
        Entry::Bytes {
            mode: 0o644,
            data: load_list.into_bytes(),
        },
    );
    entries
}

/// Writes the compressed archive to a temporary file in `staging`, then renames it to
/// `out`. Returns (compressed size, uncompressed size).
fn write_archive(
    entries: &BTreeMap<String, Entry>,
    level: i32,
    out: &Path,
    staging: &Path,
) -> Result<(u64, u64), Error> {
    let partial = staging.join("initramfs.partial");
    let output_error = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Output { path, source }
    };
    let file = File::create(&partial).map_err(output_error(&partial))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let encoder =
        zstd_encoder(BufWriter::new(file), level, threads).map_err(output_error(&partial))?;
    let mut writer = cpio::Writer::new(encoder);
    for (name, entry) in entries {
        match entry {
            Entry::Directory => writer.directory(name, 0o755)?,
            Entry::CharDevice { major, minor } => {
                writer.char_device(name, 0o600, *major, *minor)?
            }
            Entry::Bytes { mode, data } => writer.file_bytes(name, *mode, data)?,
            Entry::File { mode, path } => {
                let mut file = File::open(path).map_err(|source| Error::Input {
                    path: path.clone(),
                    source,
                })?;
                let size = file
                    .metadata()
                    .map_err(|source| Error::Input {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                writer.file(name, *mode, size, &mut file)?;
            }
        }
    }
    let (encoder, uncompressed) = writer.finish()?;
    let mut buffered = encoder.finish().map_err(output_error(&partial))?;
    buffered.flush().map_err(output_error(&partial))?;
    let file = buffered.get_ref();
    file.sync_all().map_err(output_error(&partial))?;
    let compressed = file.metadata().map_err(output_error(&partial))?.len();
    std::fs::rename(&partial, out).map_err(output_error(out))?;
    Ok((compressed, uncompressed))
}

/// A zstd encoder the kernel can decode: a window of at most 8 MiB (level <= 19), no
/// long-distance matching, a checksum; on `threads` worker threads. zstd's multithreaded
/// output does not depend on the number of workers (see the test), so the archive is the
/// same on every build machine.
fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    threads: usize,
) -> std::io::Result<zstd::Encoder<'static, W>> {
    let mut encoder = zstd::Encoder::new(out, level)?;
    encoder.long_distance_matching(false)?;
    encoder.include_checksum(true)?;
    // More than u32::MAX threads do not exist; zstd caps the count far below that anyway.
    encoder.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
    Ok(encoder)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel module tree with vfat (needing fat) and a sound module, in `dir/modules`.
    fn module_tree(dir: &Path) -> PathBuf {
        let root = dir.join("modules");
        std::fs::create_dir_all(root.join("kernel/fs/fat")).unwrap();
        std::fs::create_dir_all(root.join("kernel/sound")).unwrap();
        std::fs::write(
            root.join("kernel/fs/fat/vfat.ko"),
            modinfo::test_elf(b"depends=fat\0"),
        )
        .unwrap();
        std::fs::write(
            root.join("kernel/fs/fat/fat.ko"),
            modinfo::test_elf(b"depends=\0"),
        )
        .unwrap();
        std::fs::write(
            root.join("kernel/sound/snd.ko"),
            modinfo::test_elf(b"depends=\0"),
        )
        .unwrap();
        std::fs::write(root.join("modules.builtin"), "kernel/fs/nls/nls_cp437.ko\n").unwrap();
        std::fs::write(
            root.join("modules.order"),
            "kernel/fs/fat/fat.ko\nkernel/fs/fat/vfat.ko\n",
        )
        .unwrap();
        root
    }

    fn spec(dir: &Path) -> Spec {
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr/lib")).unwrap();
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::os::unix::fs::symlink("usr/lib", rootfs.join("lib")).unwrap();
        std::fs::write(rootfs.join("etc/hostname"), b"dom0\n").unwrap();
        let overlay = dir.join("overlay");
        std::fs::create_dir_all(overlay.join("etc")).unwrap();
        std::fs::write(overlay.join("etc/motd"), b"PXEN\n").unwrap();
        let init = dir.join("pxen");
        std::fs::write(&init, b"\x7fELF static init").unwrap();
        Spec {
            init_binary: init,
            kernel_version: "6.1.0-test".to_owned(),
            modules_dir: module_tree(dir),
            early_modules: vec!["vfat".to_owned(), "nls_cp437".to_owned()],
            rootfs: LayerSource::Dir(rootfs),
            overlay: Some(overlay),
            compression_level: 3,
        }
    }

    #[test]
    fn build_writes_the_contracted_layout_reproducibly() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        let first = dir.path().join("initrd-1.img");
        let report = build(&spec, &first).unwrap();
        let second = dir.path().join("initrd-2.img");
        assert_eq!(build(&spec, &second).unwrap(), report);
        let bytes = std::fs::read(&first).unwrap();
        assert_eq!(
            bytes,
            std::fs::read(&second).unwrap(),
            "same inputs, same bytes"
        );
        assert_eq!(report.compressed_bytes, bytes.len() as u64);

        let archive = zstd::decode_all(bytes.as_slice()).unwrap();
        assert_eq!(report.uncompressed_bytes, archive.len() as u64);
        let entries = cpio::read_archive(&archive).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        for expected in [
            "dev",
            "dev/console",
            "init",
            "lib/modules/6.1.0-test/kernel/fs/fat/fat.ko",
            "lib/modules/6.1.0-test/pxen-early.load",
            "proc",
            "rootfs/00-base.tar",
            "rootfs/10-modules.tar",
            "rootfs/20-overlay.tar",
            "run",
            "sys",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        let mut sorted = names[..names.len() - 1].to_vec();
        sorted.sort();
        assert_eq!(
            sorted,
            names[..names.len() - 1],
            "entries sorted, so parents come first"
        );
        let load = entries
            .iter()
            .find(|e| e.name.ends_with(EARLY_LOAD_LIST))
            .unwrap();
        assert_eq!(load.data, b"kernel/fs/fat/fat.ko\nkernel/fs/fat/vfat.ko\n");
        assert_eq!(
            report.early_modules,
            ["fat", "vfat"],
            "nls_cp437 is built in"
        );
        assert_eq!(
            report.rootfs_module_count, 2,
            "fat and vfat; sound/ is excluded"
        );
        let layer_names: Vec<&str> = report.layers.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(
            layer_names,
            ["00-base.tar", "10-modules.tar", "20-overlay.tar"]
        );
        // 5 + 5 bytes of rootfs files, plus the compressed modules and depmod's files.
        assert!(report.rootfs_unpacked_bytes > 10, "{report:?}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".pxen-initramfs-"))
            .collect();
        assert!(leftovers.is_empty(), "staging removed: {leftovers:?}");
    }

    #[test]
    fn missing_init_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        spec.init_binary = dir.path().join("no-such-pxen");
        let error = build(&spec, &dir.path().join("out.img")).unwrap_err();
        assert!(matches!(error, Error::InitBinary { .. }), "{error}");
        assert!(error.to_string().contains("no-such-pxen"));
    }

    #[test]
    fn compression_level_above_19_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec(dir.path());
        spec.compression_level = 22;
        let error = build(&spec, &dir.path().join("out.img")).unwrap_err();
        assert!(
            matches!(error, Error::CompressionLevel { level: 22 }),
            "{error}"
        );
    }

    #[test]
    fn compressed_output_does_not_depend_on_the_thread_count() {
        // 12 MiB of compressible but not repetitive data: several zstd jobs at level 1.
        let mut rng = pxen::rand::XorShift::new(0x2545_f491_4f6c_dd1d);
        let data: Vec<u8> = (0..12 << 20).map(|_| b"abcdefgh"[rng.below(8)]).collect();
        let compress = |threads| {
            let mut encoder = zstd_encoder(Vec::new(), 1, threads).unwrap();
            encoder.write_all(&data).unwrap();
            encoder.finish().unwrap()
        };
        let one = compress(1);
        assert_eq!(one, compress(2));
        assert_eq!(one, compress(3));
        assert_eq!(zstd::decode_all(one.as_slice()).unwrap(), data);
    }

    #[test]
    fn default_early_modules_have_no_duplicates() {
        let mut names: Vec<String> = DEFAULT_EARLY_MODULES
            .iter()
            .map(|n| modinfo::normalise(n))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DEFAULT_EARLY_MODULES.len());
    }
}
