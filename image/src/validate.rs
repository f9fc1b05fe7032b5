//! Checks the parts of an image before anything is written, so that a wrong file is reported
//! by name at build time and not discovered as a hang at boot on real hardware.
//!
//! Each check reads only what it needs: the hypervisor's first 32 KiB (after gunzip), the
//! kernel's setup header, and the index of the root filesystem tar (or the directory tree).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use goblin::elf::header::{EM_386, EM_X86_64};

/// Multiboot 1 header magic; the header lies in the first 8192 bytes, 4-byte aligned.
const MULTIBOOT1_MAGIC: u32 = 0x1BAD_B002;
/// How far into the image a Multiboot 1 header may start.
const MULTIBOOT1_SEARCH: usize = 8192;
/// Multiboot 2 header magic; the header lies in the first 32768 bytes, 8-byte aligned.
const MULTIBOOT2_MAGIC: u32 = 0xE852_50D6;
/// How far into the image a Multiboot 2 header may start.
const MULTIBOOT2_SEARCH: usize = 32768;
/// The gzip magic bytes: Debian ships the hypervisor as `xen-4.17-amd64.gz`.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The ELF magic bytes.
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
/// Offset and value of the boot sector signature of an x86 Linux kernel image.
const BOOT_FLAG_OFFSET: usize = 0x1FE;
/// Offset of the "HdrS" setup header signature (Linux boot protocol 2.00 and later).
const HEADER_MAGIC_OFFSET: usize = 0x202;
/// Offset of the boot protocol version (u16, e.g. 0x020f for 2.15).
const PROTOCOL_OFFSET: usize = 0x206;
/// Offset of the pointer to the kernel version string (minus 0x200).
const KERNEL_VERSION_PTR_OFFSET: usize = 0x20E;
/// How many bytes of a bzImage are read: the setup code holding the version string is small.
const KERNEL_READ_LIMIT: u64 = 64 * 1024;
/// Symbolic links followed while resolving one path, as the Linux kernel allows.
const MAX_SYMLINK_HOPS: usize = 40;

/// What can be wrong with a part of the image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The hypervisor is gzip-compressed but does not decompress.
    #[error("{path} starts like a gzip file but does not decompress: {source}; the download is probably truncated, fetch it again")]
    Gunzip {
        /// The hypervisor file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The hypervisor is an ELF file for another architecture, or a broken ELF file.
    #[error("{path} is not an x86 ELF file ({reason}); pass the x86 Xen image (xen-4.17-amd64.gz), not xen-syms or a file for another architecture")]
    ElfArch {
        /// The hypervisor file.
        path: PathBuf,
        /// What goblin found.
        reason: String,
    },
    /// The hypervisor has no valid Multiboot 1 or 2 header, so `mboot.c32` cannot load it.
    #[error("{path} has no Multiboot header (no 0x1BADB002 with a valid checksum in the first 8 KiB, no 0xE85250D6 in the first 32 KiB); pass a Xen hypervisor image such as /boot/xen-4.17-amd64.gz")]
    NotMultiboot {
        /// The hypervisor file.
        path: PathBuf,
    },
    /// The kernel is not an x86 bzImage.
    #[error("{path} is not an x86 Linux bzImage: {reason}; pass the kernel image (/boot/vmlinuz-<version>)")]
    NotBzImage {
        /// The kernel file.
        path: PathBuf,
        /// Which signature is missing.
        reason: String,
    },
    /// The kernel's boot protocol is too old for an initrd loaded by `mboot.c32`.
    #[error("{path} uses Linux boot protocol {major}.{minor:02}, older than 2.00; use a kernel from this century")]
    OldProtocol {
        /// The kernel file.
        path: PathBuf,
        /// Protocol major version.
        major: u8,
        /// Protocol minor version.
        minor: u8,
    },
    /// The root filesystem path is neither a directory nor a file.
    #[error("root filesystem {path} does not exist or is neither a directory nor a tar file; pass --rootfs TAR|DIR")]
    RootfsMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The root filesystem tar could not be read as a tar archive.
    #[error("cannot read the tar archive {path}: {source}; pass an uncompressed tar (as written by mmdebstrap ... rootfs.tar)")]
    Tar {
        /// The tar file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The root filesystem has no executable init.
    #[error("root filesystem {rootfs} has no executable /sbin/init: {reason}; the kernel hands over to it, so install an init (e.g. systemd-sysv) in the root filesystem")]
    NoInit {
        /// The root filesystem (tar or directory).
        rootfs: PathBuf,
        /// What the resolution of /sbin/init found.
        reason: String,
    },
    /// The cluster configuration does not validate.
    #[error("the configuration in {dir} is not valid:\n{errors}\nfix the files named above, or check them with `pxen config check {dir}`")]
    Config {
        /// The configuration directory.
        dir: PathBuf,
        /// Every problem found, with file, line and column.
        errors: String,
    },
}

/// Which Multiboot header a hypervisor image carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multiboot {
    /// A Multiboot 1 header at this byte offset.
    V1(usize),
    /// A Multiboot 2 header at this byte offset.
    V2(usize),
}

/// What the kernel's setup header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInfo {
    /// Linux boot protocol version, major and minor.
    pub protocol: (u8, u8),
    /// The release the kernel reports (`uname -r`), when the header points to it.
    pub release: Option<String>,
}

/// Checks that `path` is a Multiboot hypervisor image, gzip-compressed or not.
pub fn check_hypervisor(path: &Path) -> Result<Multiboot, Error> {
    let head = read_hypervisor_head(path)?;
    if head.starts_with(&ELF_MAGIC) {
        check_elf_x86(path, &head)?;
    }
    find_multiboot(&head).ok_or_else(|| Error::NotMultiboot {
        path: path.to_owned(),
    })
}

/// Reads the first 32 KiB of the hypervisor, decompressed when it is gzipped.
fn read_hypervisor_head(path: &Path) -> Result<Vec<u8>, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut magic = [0u8; 2];
    let mut file = File::open(path).map_err(read_err)?;
    let magic_len = file.read(&mut magic).map_err(read_err)?;
    let file = File::open(path).map_err(read_err)?;
    let mut head = Vec::with_capacity(MULTIBOOT2_SEARCH);
    if magic_len == 2 && magic == GZIP_MAGIC {
        GzDecoder::new(file)
            .take(MULTIBOOT2_SEARCH as u64)
            .read_to_end(&mut head)
            .map_err(|source| Error::Gunzip {
                path: path.to_owned(),
                source,
            })?;
    } else {
        file.take(MULTIBOOT2_SEARCH as u64)
            .read_to_end(&mut head)
            .map_err(read_err)?;
    }
    Ok(head)
}

/// Xen's bootable image is a 32-bit x86 ELF; `xen-syms` is 64-bit. Either is x86; anything
/// else is the wrong file.
fn check_elf_x86(path: &Path, head: &[u8]) -> Result<(), Error> {
    let arch_err = |reason: String| Error::ElfArch {
        path: path.to_owned(),
        reason,
    };
    let header = goblin::elf::Elf::parse_header(head).map_err(|e| arch_err(e.to_string()))?;
    match header.e_machine {
        EM_386 | EM_X86_64 => Ok(()),
        other => Err(arch_err(format!(
            "machine {}",
            goblin::elf::header::machine_to_str(other)
        ))),
    }
}

/// Finds a Multiboot 1 or 2 header whose checksum is right, as a boot loader does.
pub fn find_multiboot(image: &[u8]) -> Option<Multiboot> {
    let word = |at: usize| -> Option<u32> {
        let bytes = image.get(at..at + 4)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let v1 = (0..MULTIBOOT1_SEARCH).step_by(4).find(|&at| {
        // Header: magic, flags, checksum; the three add up to zero modulo 2^32.
        matches!((word(at), word(at + 4), word(at + 8)),
            (Some(MULTIBOOT1_MAGIC), Some(flags), Some(sum))
                if MULTIBOOT1_MAGIC.wrapping_add(flags).wrapping_add(sum) == 0)
    });
    if let Some(at) = v1 {
        return Some(Multiboot::V1(at));
    }
    (0..MULTIBOOT2_SEARCH).step_by(8).find_map(|at| {
        // Header: magic, architecture, header length, checksum; the four add up to zero.
        match (word(at), word(at + 4), word(at + 8), word(at + 12)) {
            (Some(MULTIBOOT2_MAGIC), Some(arch), Some(len), Some(sum))
                if MULTIBOOT2_MAGIC
                    .wrapping_add(arch)
                    .wrapping_add(len)
                    .wrapping_add(sum)
                    == 0 =>
            {
                Some(Multiboot::V2(at))
            }
            _ => None,
        }
    })
}

/// Checks that `path` is an x86 bzImage and reads its boot protocol and release.
pub fn check_kernel(path: &Path) -> Result<KernelInfo, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut head = Vec::new();
    File::open(path)
        .map_err(read_err)?
        .take(KERNEL_READ_LIMIT)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    parse_bzimage(&head).map_err(|problem| match problem {
        BzImageProblem::Signature(reason) => Error::NotBzImage {
            path: path.to_owned(),
            reason,
        },
        BzImageProblem::OldProtocol(major, minor) => Error::OldProtocol {
            path: path.to_owned(),
            major,
            minor,
        },
    })
}

/// Why a buffer is not a usable bzImage.
#[derive(Debug, PartialEq, Eq)]
enum BzImageProblem {
    /// A signature is missing; the text says which.
    Signature(String),
    /// The boot protocol is older than 2.00.
    OldProtocol(u8, u8),
}

/// Parses the start of a bzImage (see the kernel's Documentation/arch/x86/boot.rst).
fn parse_bzimage(head: &[u8]) -> Result<KernelInfo, BzImageProblem> {
    if head.get(BOOT_FLAG_OFFSET..BOOT_FLAG_OFFSET + 2) != Some(&[0x55, 0xAA]) {
        return Err(BzImageProblem::Signature(
            "no boot flag 0xAA55 at offset 0x1FE".into(),
        ));
    }
    if head.get(HEADER_MAGIC_OFFSET..HEADER_MAGIC_OFFSET + 4) != Some(b"HdrS") {
        return Err(BzImageProblem::Signature(
            "no \"HdrS\" setup header at offset 0x202".into(),
        ));
    }
    let u16_at = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let protocol = u16_at(PROTOCOL_OFFSET).unwrap_or(0);
    let (major, minor) = ((protocol >> 8) as u8, (protocol & 0xff) as u8);
    if major < 2 {
        return Err(BzImageProblem::OldProtocol(major, minor));
    }
    let release = u16_at(KERNEL_VERSION_PTR_OFFSET)
        .filter(|&ptr| ptr != 0)
        .and_then(|ptr| release_at(head, usize::from(ptr) + 0x200));
    Ok(KernelInfo {
        protocol: (major, minor),
        release,
    })
}

/// The kernel version string is "6.1.0-28-amd64 (builder) #1 SMP ..."; the release is its
/// first word.
fn release_at(head: &[u8], at: usize) -> Option<String> {
    let text = head.get(at..)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ')?;
    let release = std::str::from_utf8(&text[..end]).ok()?;
    (!release.is_empty()).then(|| release.to_owned())
}

/// Reads the kernel release from a bzImage, for `--kernel` without `--modules`.
pub fn kernel_release(path: &Path) -> Result<Option<String>, Error> {
    Ok(check_kernel(path)?.release)
}

/// One entry of a root filesystem, as far as resolving `/sbin/init` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// A regular file with its permission bits.
    File { mode: u32 },
    /// A directory.
    Dir,
    /// A symbolic link and its target, as stored.
    Symlink(String),
    /// A tar hard link to another entry of the archive (path relative to the root).
    HardLink(String),
    /// A device, fifo or socket.
    Other,
}

/// A root filesystem to look into: a directory on the host, or the index of a tar archive.
/// Paths are relative to the root, without a leading `/`.
trait Tree {
    /// The entry at `path`, without following a symbolic link at its end.
    fn node(&self, path: &str) -> Option<Node>;
}

/// A root filesystem unpacked in a directory of the host.
struct DirTree<'a>(&'a Path);

impl Tree for DirTree<'_> {
    fn node(&self, path: &str) -> Option<Node> {
        let full = self.0.join(path);
        // symlink_metadata: the link itself, so that links are resolved inside the tree and
        // never against the host's own root.
        let meta = std::fs::symlink_metadata(&full).ok()?;
        let kind = meta.file_type();
        Some(if kind.is_symlink() {
            Node::Symlink(
                std::fs::read_link(&full)
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if kind.is_dir() {
            Node::Dir
        } else if kind.is_file() {
            Node::File {
                mode: meta.permissions().mode(),
            }
        } else {
            Node::Other
        })
    }
}

/// The index of a tar archive: every path, with its parents as directories.
struct TarTree(HashMap<String, Node>);

impl Tree for TarTree {
    fn node(&self, path: &str) -> Option<Node> {
        match self.0.get(path)? {
            // A hard link is the same file as its target: one lookup, no chain in tar.
            Node::HardLink(target) => self.0.get(target.as_str()).cloned(),
            node => Some(node.clone()),
        }
    }
}

/// "./usr/sbin/" and "/usr/sbin" both become "usr/sbin".
fn normalise(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

impl TarTree {
    /// Reads the index of the tar archive at `path` (headers only, the data is skipped).
    fn read(path: &Path) -> Result<Self, Error> {
        let tar_err = |source| Error::Tar {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut archive = tar::Archive::new(file);
        let mut index = HashMap::new();
        for entry in archive.entries().map_err(tar_err)? {
            let entry = entry.map_err(tar_err)?;
            let name = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            let link = || {
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .unwrap_or_default()
            };
            let node = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Node::File {
                    mode: entry.header().mode().map_err(tar_err)?,
                },
                tar::EntryType::Directory => Node::Dir,
                tar::EntryType::Symlink => Node::Symlink(link()),
                tar::EntryType::Link => Node::HardLink(normalise(&link())),
                _ => Node::Other,
            };
            add_parents(&mut index, &name);
            index.insert(name, node);
        }
        Ok(Self(index))
    }
}

/// A tar archive need not list the directories its files are in; they exist all the same.
fn add_parents(index: &mut HashMap<String, Node>, name: &str) {
    let mut parent = name;
    while let Some((dir, _)) = parent.rsplit_once('/') {
        index.entry(dir.to_owned()).or_insert(Node::Dir);
        parent = dir;
    }
}

/// Follows `path` inside `tree` as the kernel would inside a chroot: symbolic links in any
/// component, absolute targets relative to the tree's root, `..` never above the root.
/// Returns the final entry and its resolved path, or what went wrong.
fn resolve(tree: &dyn Tree, path: &str) -> Result<(Node, String), String> {
    let mut pending: Vec<String> = path.rsplit('/').map(str::to_owned).collect();
    let mut current: Vec<String> = Vec::new();
    let mut hops = 0;
    let mut node = Node::Dir;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                current.pop();
                node = Node::Dir;
                continue;
            }
            name => current.push(name.to_owned()),
        }
        let here = current.join("/");
        node = tree
            .node(&here)
            .ok_or_else(|| format!("/{here} does not exist"))?;
        match &node {
            Node::Symlink(target) => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(format!("too many symbolic links at /{here}"));
                }
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(target.rsplit('/').map(str::to_owned));
                node = Node::Dir;
            }
            Node::Dir => {}
            _ if pending.iter().any(|c| !c.is_empty() && c != ".") => {
                return Err(format!("/{here} is not a directory"));
            }
            _ => {}
        }
    }
    Ok((node, current.join("/")))
}

/// The root filesystem given to the image: a tar archive or a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsKind {
    /// An uncompressed tar archive.
    Tar,
    /// A directory tree.
    Dir,
}

/// Checks that the root filesystem at `path` exists and has an executable `/sbin/init`,
/// following symbolic links inside it (Debian: /sbin -> usr/sbin, init -> ../lib/systemd/systemd).
pub fn check_rootfs(path: &Path) -> Result<RootfsKind, Error> {
    let meta = std::fs::metadata(path).map_err(|_| Error::RootfsMissing {
        path: path.to_owned(),
    })?;
    let (kind, resolved) = if meta.is_dir() {
        (RootfsKind::Dir, resolve(&DirTree(path), "sbin/init"))
    } else if meta.is_file() {
        (RootfsKind::Tar, resolve(&TarTree::read(path)?, "sbin/init"))
    } else {
        return Err(Error::RootfsMissing {
            path: path.to_owned(),
        });
    };
    let no_init = |reason: String| Error::NoInit {
        rootfs: path.to_owned(),
        reason,
    };
    match resolved.map_err(no_init)? {
        (Node::File { mode }, _) if mode & 0o111 != 0 => Ok(kind),
        (Node::File { mode }, at) => Err(no_init(format!(
            "/{at} is not executable (mode {:o})",
            mode & 0o7777
        ))),
        (_, at) => Err(no_init(format!("/{at} is not a regular file"))),
    }
}

/// Validates the cluster configuration directory with the same code `/init` uses at boot, and
/// returns it (the image's identity names its cluster).
pub fn load_config(dir: &Path) -> Result<pxen::config::Cluster, Error> {
    pxen::config::load_dir(dir).map_err(|errors| Error::Config {
        dir: dir.to_owned(),
        errors: errors.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn word(v: u32) -> [u8; 4] {
        v.to_le_bytes()
    }

    fn multiboot1_image(at: usize, checksum_ok: bool) -> Vec<u8> {
        let mut image = vec![0u8; 16384];
        let flags = 0x0001_0003u32;
        let mut sum = 0u32.wrapping_sub(MULTIBOOT1_MAGIC).wrapping_sub(flags);
        if !checksum_ok {
            sum = sum.wrapping_add(1);
        }
        image[at..at + 4].copy_from_slice(&word(MULTIBOOT1_MAGIC));
        image[at + 4..at + 8].copy_from_slice(&word(flags));
        image[at + 8..at + 12].copy_from_slice(&word(sum));
        image
    }

    #[test]
    fn finds_multiboot1_with_valid_checksum() {
        assert_eq!(
            find_multiboot(&multiboot1_image(64, true)),
            Some(Multiboot::V1(64))
        );
    }

    #[test]
    fn rejects_multiboot1_with_bad_checksum_misalignment_or_too_far() {
        assert_eq!(find_multiboot(&multiboot1_image(64, false)), None);
        assert_eq!(find_multiboot(&multiboot1_image(66, true)), None);
        assert_eq!(find_multiboot(&multiboot1_image(8192, true)), None);
    }

    #[test]
    fn finds_multiboot2_with_valid_checksum() {
        let mut image = vec![0u8; 32768];
        let (arch, len) = (0u32, 24u32);
        let sum = 0u32
            .wrapping_sub(MULTIBOOT2_MAGIC)
            .wrapping_sub(arch)
            .wrapping_sub(len);
        let at = 8 * 1000;
        for (i, v) in [MULTIBOOT2_MAGIC, arch, len, sum].into_iter().enumerate() {
            image[at + 4 * i..at + 4 * i + 4].copy_from_slice(&word(v));
        }
        assert_eq!(find_multiboot(&image), Some(Multiboot::V2(at)));
        image[at + 12] ^= 1;
        assert_eq!(find_multiboot(&image), None);
    }

    #[test]
    fn gzipped_hypervisor_is_accepted_and_garbage_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("xen.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&good).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(&multiboot1_image(32, true)).unwrap();
        gz.finish().unwrap();
        assert_eq!(check_hypervisor(&good).unwrap(), Multiboot::V1(32));

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, vec![0x42u8; 20000]).unwrap();
        assert!(matches!(
            check_hypervisor(&garbage),
            Err(Error::NotMultiboot { .. })
        ));

        let truncated = dir.path().join("truncated.gz");
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            check_hypervisor(&truncated),
            Err(Error::Gunzip { .. }) | Err(Error::NotMultiboot { .. })
        ));
    }

    #[test]
    fn elf_for_another_architecture_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("xen-arm");
        let mut image = multiboot1_image(128, true);
        // A minimal ELF64 little-endian header for AArch64 (e_machine 183).
        image[..4].copy_from_slice(&ELF_MAGIC);
        image[4] = 2;
        image[5] = 1;
        image[6] = 1;
        image[16..18].copy_from_slice(&2u16.to_le_bytes());
        image[18..20].copy_from_slice(&183u16.to_le_bytes());
        image[20..24].copy_from_slice(&1u32.to_le_bytes());
        image[52..54].copy_from_slice(&64u16.to_le_bytes());
        std::fs::write(&path, &image).unwrap();
        let err = check_hypervisor(&path).unwrap_err();
        assert!(matches!(err, Error::ElfArch { .. }), "{err}");
    }

    fn bzimage(protocol: u16, release: &[u8]) -> Vec<u8> {
        let mut image = vec![0u8; 0x1000];
        image[0x1FE] = 0x55;
        image[0x1FF] = 0xAA;
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&protocol.to_le_bytes());
        let at = 0x800;
        image[0x20E..0x210].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
        image[at..at + release.len()].copy_from_slice(release);
        image
    }

    #[test]
    fn bzimage_gives_protocol_and_release() {
        let info = parse_bzimage(&bzimage(0x020f, b"6.1.0-28-amd64 (debian) #1 SMP\0")).unwrap();
        assert_eq!(info.protocol, (2, 15));
        assert_eq!(info.release.as_deref(), Some("6.1.0-28-amd64"));
    }

    #[test]
    fn bzimage_problems_are_named() {
        let mut no_flag = bzimage(0x020f, b"x\0");
        no_flag[0x1FE] = 0;
        assert!(
            matches!(parse_bzimage(&no_flag), Err(BzImageProblem::Signature(s)) if s.contains("0xAA55"))
        );
        let mut no_hdrs = bzimage(0x020f, b"x\0");
        no_hdrs[0x202] = b'X';
        assert!(
            matches!(parse_bzimage(&no_hdrs), Err(BzImageProblem::Signature(s)) if s.contains("HdrS"))
        );
        assert_eq!(
            parse_bzimage(&bzimage(0x0104, b"x\0")),
            Err(BzImageProblem::OldProtocol(1, 4))
        );
        assert!(matches!(
            parse_bzimage(&[0u8; 100]),
            Err(BzImageProblem::Signature(_))
        ));
    }

    /// A Debian-like tree: merged /usr and systemd as init through a relative link.
    fn debian_like_tar(dir: &Path, init_mode: u32) -> PathBuf {
        let path = dir.join("rootfs.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut add_link = |name: &str, target: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, name, target).unwrap();
        };
        add_link("./sbin", "usr/sbin");
        add_link("./usr/sbin/init", "../lib/systemd/systemd");
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(init_mode);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "./usr/lib/systemd/systemd", &b"ELF!"[..])
            .unwrap();
        builder.finish().unwrap();
        path
    }

    #[test]
    fn tar_init_is_found_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let tar = debian_like_tar(dir.path(), 0o755);
        assert_eq!(check_rootfs(&tar).unwrap(), RootfsKind::Tar);
    }

    #[test]
    fn tar_init_not_executable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tar = debian_like_tar(dir.path(), 0o644);
        let err = check_rootfs(&tar).unwrap_err().to_string();
        assert!(
            err.contains("/usr/lib/systemd/systemd is not executable"),
            "{err}"
        );
    }

    #[test]
    fn dir_init_symlinks_resolve_inside_the_tree_not_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        // An absolute link: on the host /bin/busybox may or may not exist; inside the tree
        // it must be found at <root>/bin/busybox.
        std::os::unix::fs::symlink("/bin", root.join("sbin")).unwrap();
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin/init")).unwrap();
        assert!(matches!(
            check_rootfs(root),
            Err(Error::NoInit { reason, .. }) if reason == "/bin/busybox does not exist"
        ));
        std::fs::write(root.join("bin/busybox"), b"x").unwrap();
        std::fs::set_permissions(
            root.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(check_rootfs(root).unwrap(), RootfsKind::Dir);
    }

    #[test]
    fn symlink_loops_end_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::os::unix::fs::symlink("init", root.join("loop")).unwrap();
        std::fs::create_dir(root.join("sbin")).unwrap();
        std::os::unix::fs::symlink("../loop", root.join("sbin/init")).unwrap();
        std::os::unix::fs::symlink("sbin/init", root.join("init")).unwrap();
        let err = check_rootfs(root).unwrap_err().to_string();
        assert!(err.contains("too many symbolic links"), "{err}");
    }

    #[test]
    fn missing_rootfs_is_named() {
        assert!(matches!(
            check_rootfs(Path::new("/nonexistent/rootfs.tar")),
            Err(Error::RootfsMissing { .. })
        ));
    }
}
