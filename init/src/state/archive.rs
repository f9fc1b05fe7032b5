//! A host's state as one newc cpio archive: packing it from a root, checking one that came
//! from the network or the drive, and restoring it into a root.
//!
//! [`pack`] takes the files [`STATE_FILES`] keeps, with their mode, owner and group, and
//! symbolic links as links, sorted by name, with every time zero: the same files give the
//! same bytes, so [`content_hash`] says whether anything changed. [`check`] accepts only
//! entries [`STATE_FILES`] keeps: plain relative names, regular files, directories and links,
//! within [`MAX_ARCHIVE`]. [`restore`] writes each entry below the root without ever following
//! a symbolic link on the way (every directory is opened with `O_NOFOLLOW`), each file and
//! link first under a temporary name and then renamed over the old one.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};

use super::{is_kept, is_plain_relative, Pattern, MAX_ARCHIVE, STATE_FILES};
use crate::cpio::{self, ReadEntry};
use crate::drive::identity::hex;

/// File type bits of `st_mode` (see inode(7)).
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
/// Permission bits restored.
const PERMISSION_BITS: u32 = 0o7777;
/// The longest file name part kept of a machine ID before the hash is added.
const MAX_NAME_CHARS: usize = 64;
/// The prefix of the temporary names [`restore`] writes before renaming.
const TEMP_PREFIX: &str = ".pxen-state-";

/// Packing, checking or restoring a state archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A kept file could not be read.
    #[error("cannot read {path} to save it: {source}; check that it is readable by root")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kept files are larger than an archive may be.
    #[error("the state of {root} is {size} bytes, more than the {MAX_ARCHIVE} kept per host (the largest file is {largest}); remove old domain definitions or unneeded files from the kept directories")]
    TooLarge {
        /// The root packed.
        root: PathBuf,
        /// The size so far.
        size: usize,
        /// The largest file.
        largest: PathBuf,
    },
    /// The cpio writer failed.
    #[error("cannot pack the state: {0}")]
    Pack(#[from] cpio::Error),
    /// The archive is not valid newc.
    #[error("the state archive is damaged: {0}; it is ignored (host0 keeps the previous one as state.cpio.bak)")]
    Format(#[from] cpio::ReadError),
    /// The archive holds something [`STATE_FILES`] does not keep, or in a form not restored.
    #[error("the state archive holds {name:?}, which {why}; only the files listed in PXEN's STATE_FILES are kept, so this archive was not made by `pxen state save`")]
    Refused {
        /// The entry's name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An entry could not be written below the root.
    #[error("cannot restore {path}: {source}; a symbolic link on the way, or a directory where a file belongs, is refused")]
    Write {
        /// The path in the root.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The hex SHA-256 of an archive: equal archives are equal states.
pub fn content_hash(archive: &[u8]) -> String {
    hex(&Sha256::digest(archive))
}

/// The per-host file name for the machine ID `value` ([`crate::identity::choose_id`]), safe
/// on FAT: letters (lower case: FAT ignores case), digits, `.`, `_` and `-`, every other
/// character `_`. When anything had to change, `-` and 8 hex digits of SHA-256 of the raw
/// value are added, so that two IDs that differ only where they were changed stay apart.
pub fn state_file_name(value: &str) -> String {
    let mut safe: String = value
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    // FAT drops a trailing dot, and a leading one hides the directory.
    if safe.starts_with('.') {
        safe.replace_range(..1, "_");
    }
    if safe.ends_with('.') {
        safe.replace_range(safe.len() - 1.., "_");
    }
    if safe == value && !safe.is_empty() {
        return safe;
    }
    let digest = hex(&Sha256::digest(value.as_bytes()));
    format!("{safe}-{}", &digest[..8])
}

/// Packs the files [`STATE_FILES`] keeps below `root` into an archive (see the module docs).
pub fn pack(root: &Path) -> Result<Vec<u8>, ArchiveError> {
    let names = kept_paths(root)?;
    let mut writer = cpio::Writer::new(Vec::new());
    let mut size = 0;
    let mut largest = (0, PathBuf::new());
    for name in &names {
        let path = root.join(name);
        let read_error = |source| ArchiveError::Read {
            path: path.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(read_error)?;
        size += meta.len() as usize;
        if meta.len() as usize >= largest.0 {
            largest = (meta.len() as usize, path.clone());
        }
        if size > MAX_ARCHIVE {
            return Err(ArchiveError::TooLarge {
                root: root.to_path_buf(),
                size,
                largest: largest.1,
            });
        }
        add_entry(&mut writer, name, &path, &meta).map_err(read_error)?;
    }
    let (archive, _) = writer.finish()?;
    Ok(archive)
}

/// Adds one kept path to the archive, by its type.
fn add_entry(
    writer: &mut cpio::Writer<Vec<u8>>,
    name: &str,
    path: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<()> {
    let owner = (meta.uid(), meta.gid());
    let mode = meta.permissions().mode();
    let kind = meta.file_type();
    let written = if kind.is_dir() {
        writer.directory_owned(name, mode, owner)
    } else if kind.is_symlink() {
        let target = std::fs::read_link(path)?;
        writer.symlink_owned(name, owner, &target.to_string_lossy())
    } else {
        let data = std::fs::read(path)?;
        writer.file_owned(name, mode, owner, data.len() as u64, &mut data.as_slice())
    };
    written.map_err(std::io::Error::other)
}

/// Every path below `root` that [`STATE_FILES`] keeps, relative to it, sorted (a directory
/// before what it holds). Only regular files, directories of trees and links are taken.
fn kept_paths(root: &Path) -> Result<BTreeSet<String>, ArchiveError> {
    let mut names = BTreeSet::new();
    for kept in STATE_FILES {
        match kept.pattern {
            Pattern::File(name) => {
                if is_file_or_link(&root.join(name)) {
                    names.insert(name.to_string());
                }
            }
            Pattern::Glob(pattern) => glob_paths(root, pattern, &mut names)?,
            Pattern::Tree(dir) => tree_paths(root, dir, &mut names)?,
        }
    }
    Ok(names)
}

fn is_file_or_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() || m.is_symlink())
}

/// The files of `pattern`'s directory that match it.
fn glob_paths(
    root: &Path,
    pattern: &str,
    names: &mut BTreeSet<String>,
) -> Result<(), ArchiveError> {
    let (dir, _) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    for entry in list_dir(&root.join(dir))? {
        let name = format!("{dir}/{entry}");
        if is_kept(&name, false) && is_file_or_link(&root.join(&name)) {
            names.insert(name);
        }
    }
    Ok(())
}

/// `dir` and everything below it, when it is a directory (not a link to one).
fn tree_paths(root: &Path, dir: &str, names: &mut BTreeSet<String>) -> Result<(), ArchiveError> {
    let is_dir = std::fs::symlink_metadata(root.join(dir)).is_ok_and(|m| m.is_dir());
    if !is_dir {
        return Ok(());
    }
    names.insert(dir.to_string());
    for entry in list_dir(&root.join(dir))? {
        let name = format!("{dir}/{entry}");
        let path = root.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            tree_paths(root, &name, names)?;
        } else if meta.is_file() || meta.is_symlink() {
            names.insert(name);
        } else {
            // Sockets and FIFOs are runtime objects, not state.
            log::debug!("state: {} is not a file, not saved", path.display());
        }
    }
    Ok(())
}

/// The names in `dir`; none when it does not exist.
fn list_dir(dir: &Path) -> Result<Vec<String>, ArchiveError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ArchiveError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// Reads `archive` and checks every entry: a name [`STATE_FILES`] keeps, plain and relative,
/// not twice; a regular file, a directory or a link; an owner that can be set. Returns the
/// entries without the trailer.
pub fn check(archive: &[u8]) -> Result<Vec<ReadEntry>, ArchiveError> {
    if archive.len() > MAX_ARCHIVE {
        return Err(ArchiveError::Refused {
            name: String::new(),
            why: "is in an archive larger than the 16 MiB kept per host",
        });
    }
    let mut entries = cpio::read_archive(archive)?;
    entries.pop(); // The trailer: read_archive ends at it.
    let mut seen = BTreeSet::new();
    for entry in &entries {
        check_entry(entry)?;
        if !seen.insert(entry.name.as_str()) {
            return Err(refused(entry, "appears twice"));
        }
    }
    Ok(entries)
}

fn check_entry(entry: &ReadEntry) -> Result<(), ArchiveError> {
    if !is_plain_relative(&entry.name) {
        return Err(refused(
            entry,
            "is not a plain relative path (absolute, empty, `.` or `..` components)",
        ));
    }
    let kind = entry.mode & S_IFMT;
    if !matches!(kind, S_IFREG | S_IFDIR | S_IFLNK) {
        return Err(refused(
            entry,
            "is neither a regular file, a directory nor a link",
        ));
    }
    if !is_kept(&entry.name, kind == S_IFDIR) {
        return Err(refused(entry, "is not in the list of kept files"));
    }
    // -1 means "leave unchanged" to chown(2), and is no owner.
    if entry.uid_gid.0 == u32::MAX || entry.uid_gid.1 == u32::MAX {
        return Err(refused(entry, "has the owner or group -1"));
    }
    if kind == S_IFLNK && (entry.data.is_empty() || entry.data.contains(&0)) {
        return Err(refused(
            entry,
            "is a link with an empty or NUL-holding target",
        ));
    }
    Ok(())
}

fn refused(entry: &ReadEntry, why: &'static str) -> ArchiveError {
    ArchiveError::Refused {
        name: entry.name.clone(),
        why,
    }
}

/// Checks `archive` and writes its entries below `root` (see the module docs); returns how
/// many were restored.
pub fn restore(archive: &[u8], root: &Path) -> Result<usize, ArchiveError> {
    let entries = check(archive)?;
    let root_fd = open_dir(None, root).map_err(|source| ArchiveError::Write {
        path: root.to_path_buf(),
        source,
    })?;
    for entry in &entries {
        restore_entry(&root_fd, entry).map_err(|source| ArchiveError::Write {
            path: root.join(&entry.name),
            source,
        })?;
    }
    Ok(entries.len())
}

/// Writes one checked entry below the root open as `root`.
fn restore_entry(root: &OwnedFd, entry: &ReadEntry) -> std::io::Result<()> {
    let (parent, name) = match entry.name.rsplit_once('/') {
        Some((parent, name)) => (open_parents(root, parent)?, name),
        None => (open_dir(Some(root), Path::new("."))?, entry.name.as_str()),
    };
    let owner = (
        Some(rustix::fs::Uid::from_raw(entry.uid_gid.0)),
        Some(rustix::fs::Gid::from_raw(entry.uid_gid.1)),
    );
    let mode = Mode::from_raw_mode(entry.mode & PERMISSION_BITS);
    match entry.mode & S_IFMT {
        S_IFDIR => {
            make_dir(&parent, name)?;
            let dir = open_dir(Some(&parent), Path::new(name))?;
            rustix::fs::fchown(&dir, owner.0, owner.1)?;
            rustix::fs::fchmod(&dir, mode)?;
        }
        S_IFLNK => {
            let temp = temp_name(name);
            remove_temp(&parent, &temp)?;
            rustix::fs::symlinkat(entry.data.as_slice(), &parent, &temp)?;
            rustix::fs::chownat(&parent, &temp, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?;
            rustix::fs::renameat(&parent, &temp, &parent, name)?;
        }
        _ => {
            let temp = temp_name(name);
            remove_temp(&parent, &temp)?;
            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
            let fd = rustix::fs::openat(&parent, &temp, flags | OFlags::CLOEXEC, Mode::RUSR)?;
            rustix::fs::fchown(&fd, owner.0, owner.1)?;
            rustix::fs::fchmod(&fd, mode)?;
            File::from(fd).write_all(&entry.data)?;
            rustix::fs::renameat(&parent, &temp, &parent, name)?;
        }
    }
    Ok(())
}

/// Opens (creating what is missing, mode 0755) each directory of `parent` below `root`,
/// refusing to follow a link on the way.
fn open_parents(root: &OwnedFd, parent: &str) -> std::io::Result<OwnedFd> {
    let mut dir = open_dir(Some(root), Path::new("."))?;
    for part in parent.split('/') {
        make_dir(&dir, part)?;
        dir = open_dir(Some(&dir), Path::new(part))?;
    }
    Ok(dir)
}

/// Creates the directory `name` in `parent` unless something of that name exists.
fn make_dir(parent: &OwnedFd, name: &str) -> std::io::Result<()> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Err(rustix::io::Errno::EXIST) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory `path` (relative to `parent`, or as given without one), never
/// following a link as its last component.
fn open_dir(parent: Option<&OwnedFd>, path: &Path) -> std::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match parent {
        Some(parent) => rustix::fs::openat(parent, path, flags, Mode::empty())?,
        None => rustix::fs::open(path, flags, Mode::empty())?,
    };
    Ok(fd)
}

fn temp_name(name: &str) -> String {
    format!("{TEMP_PREFIX}{name}")
}

/// Removes a temporary file left by an interrupted restore.
fn remove_temp(parent: &OwnedFd, temp: &str) -> std::io::Result<()> {
    match rustix::fs::unlinkat(parent, temp, AtFlags::empty()) {
        Err(rustix::io::Errno::NOENT) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A dom0 root with a state: keys, machine ID, libvirt definitions with an autostart link,
    /// and files that are not state.
    fn sample_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = root.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(
            "etc/machine-id",
            "0123456789abcdef0123456789abcdef\n",
            0o444,
        );
        write("etc/ssh/ssh_host_ed25519_key", "PRIVATE", 0o600);
        write(
            "etc/ssh/ssh_host_ed25519_key.pub",
            "ssh-ed25519 AAAA",
            0o644,
        );
        write("etc/ssh/sshd_config", "not state", 0o644);
        write("etc/libvirt/libxl/vm1.xml", "<domain/>", 0o600);
        write("etc/shadow", "not state", 0o640);
        std::fs::create_dir(root.path().join("etc/libvirt/libxl/autostart")).unwrap();
        symlink(
            "/etc/libvirt/libxl/vm1.xml",
            root.path().join("etc/libvirt/libxl/autostart/vm1.xml"),
        )
        .unwrap();
        root
    }

    fn names(archive: &[u8]) -> Vec<String> {
        check(archive)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    #[test]
    fn packing_takes_the_kept_files_sorted_and_is_deterministic() {
        let root = sample_root();
        let archive = pack(root.path()).unwrap();
        assert_eq!(
            names(&archive),
            [
                "etc/libvirt/libxl",
                "etc/libvirt/libxl/autostart",
                "etc/libvirt/libxl/autostart/vm1.xml",
                "etc/libvirt/libxl/vm1.xml",
                "etc/machine-id",
                "etc/ssh/ssh_host_ed25519_key",
                "etc/ssh/ssh_host_ed25519_key.pub",
            ]
        );
        let later = pack(root.path()).unwrap();
        assert_eq!(archive, later, "the same files give the same bytes");
        assert_eq!(content_hash(&archive), content_hash(&later));
        std::fs::write(root.path().join("etc/libvirt/libxl/vm1.xml"), "<changed/>").unwrap();
        assert_ne!(
            content_hash(&pack(root.path()).unwrap()),
            content_hash(&archive)
        );
    }

    #[test]
    fn restoring_gives_back_modes_owners_and_links() {
        let source = sample_root();
        let key = source.path().join("etc/ssh/ssh_host_ed25519_key");
        let owned = rustix::process::geteuid().is_root();
        if owned {
            std::os::unix::fs::chown(&key, Some(1234), Some(5678)).unwrap();
        }
        let archive = pack(source.path()).unwrap();
        let target = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(target.path().join("etc/ssh")).unwrap();
        std::fs::write(target.path().join("etc/machine-id"), "").unwrap();
        assert_eq!(restore(&archive, target.path()).unwrap(), 7);

        let restored = target.path().join("etc/ssh/ssh_host_ed25519_key");
        assert_eq!(std::fs::read(&restored).unwrap(), b"PRIVATE");
        let meta = std::fs::metadata(&restored).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        if owned {
            assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
        }
        assert_eq!(
            std::fs::read_link(target.path().join("etc/libvirt/libxl/autostart/vm1.xml")).unwrap(),
            Path::new("/etc/libvirt/libxl/vm1.xml")
        );
        let id = std::fs::metadata(target.path().join("etc/machine-id")).unwrap();
        assert_eq!(id.mode() & 0o777, 0o444);
        assert_eq!(
            pack(target.path()).unwrap(),
            archive,
            "a round trip changes nothing"
        );
    }

    fn archive_with(name: &str) -> Vec<u8> {
        let mut writer = cpio::Writer::new(Vec::new());
        writer.file_bytes(name, 0o644, b"x").unwrap();
        writer.finish().unwrap().0
    }

    #[test]
    fn names_outside_the_list_or_the_root_are_refused() {
        for name in [
            "etc/shadow",
            "etc/ssh/../shadow",
            "etc/libvirt/libxl/../../shadow",
            "etc/libvirt/libxl/./x",
            "etc/ssh/ssh_host_../../shadow_key",
        ] {
            let error = check(&archive_with(name)).unwrap_err();
            assert!(
                matches!(error, ArchiveError::Refused { .. }),
                "{name}: {error}"
            );
        }
        // The cpio writer refuses absolute names itself; a hand-made one is refused too.
        let absolute = archive_with("xetc/machine-id");
        let at = absolute
            .windows(16)
            .position(|w| w == b"xetc/machine-id\0")
            .unwrap();
        let mut absolute = absolute;
        absolute[at] = b'/';
        assert!(matches!(
            check(&absolute),
            Err(ArchiveError::Refused { .. })
        ));
        assert!(matches!(check(b"junk"), Err(ArchiveError::Format(_))));
    }

    #[test]
    fn a_link_on_the_way_is_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(target.path().join("etc/libvirt")).unwrap();
        symlink(outside.path(), target.path().join("etc/libvirt/libxl")).unwrap();
        let error = restore(&archive_with("etc/libvirt/libxl/vm.xml"), target.path()).unwrap_err();
        assert!(matches!(error, ArchiveError::Write { .. }), "{error}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn host_file_names_are_fat_safe_and_distinct() {
        assert_eq!(state_file_name("cz1234-56_x"), "cz1234-56_x");
        let upper = state_file_name("CZ123");
        assert!(upper.starts_with("cz123-") && upper.len() == 14, "{upper}");
        assert_ne!(state_file_name("cz123 "), state_file_name("cz123/"));
        assert_ne!(state_file_name("a."), state_file_name("a_"));
        assert_ne!(state_file_name(""), "");
        let long = state_file_name(&"x".repeat(300));
        assert!(long.len() < 80, "{long}");
        for name in [state_file_name("../..\\:*"), state_file_name(".hidden")] {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{name}"
            );
            assert!(!name.starts_with('.') && !name.ends_with('.'), "{name}");
        }
    }
}
