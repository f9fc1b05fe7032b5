//! The root filesystem layers: plain tar files that `/init` unpacks in name order.
//!
//! This module reads a given tar (to learn its size and layout without changing a byte of
//! it) and writes a directory tree as a tar, keeping what the dom0 needs: modes, ownership,
//! times, symlinks, hard links and extended attributes (e.g. file capabilities).

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What `/init` and the rest of the build need to know about a layer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Sum of the sizes of its regular files: the tmpfs space it takes once unpacked.
    pub regular_bytes: u64,
    /// Whether it holds `lib` as a symbolic link (a merged-/usr system such as Debian 12).
    pub lib_is_symlink: bool,
}

/// Failures while reading or writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The tar could not be opened.
    #[error("cannot open root filesystem tar {path}: {source}")]
    Open {
        /// The tar file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tar is damaged or not a tar.
    #[error("cannot read root filesystem tar {path}: {source}; is it a complete, uncompressed tar (as written by `mmdebstrap ... rootfs.tar`)?")]
    ReadTar {
        /// The tar file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file or directory of the tree to pack could not be read.
    #[error("cannot read {path} while packing it into a layer: {source}; check that it exists and is readable (run as root for a root filesystem)")]
    ReadTree {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tar being written could not be written.
    #[error("cannot write layer {path}: {source}; check free space there")]
    WriteTar {
        /// The tar being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads a tar without changing it: sums its regular files and looks at its `lib` entry.
pub fn scan_tar(path: &Path) -> Result<Summary, Error> {
    let file = File::open(path).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    let read_error = |source| Error::ReadTar {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut summary = Summary::default();
    for entry in archive.entries().map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let kind = entry.header().entry_type();
        if kind.is_file() || kind == tar::EntryType::Continuous {
            summary.regular_bytes += entry.size();
        } else if kind.is_symlink() && is_top_level_lib(&entry.path().map_err(read_error)?) {
            summary.lib_is_symlink = true;
        }
    }
    Ok(summary)
}

/// Whether a path in a tar is the root's `lib` (`lib`, `./lib`, `/lib`).
fn is_top_level_lib(path: &Path) -> bool {
    let mut parts = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)));
    parts.next().is_some_and(|c| c.as_os_str() == "lib") && parts.next().is_none()
}

/// Writes the tree under `root` (not `root` itself) to a new tar at `out`, entries sorted by
/// name. Device nodes, sockets and fifos are skipped: `/init` mounts a fresh `/dev`, and the
/// others are created by the programs that use them.
pub fn tar_directory(root: &Path, out: &Path) -> Result<Summary, Error> {
    let write_error = |source| Error::WriteTar {
        path: out.to_owned(),
        source,
    };
    let file = File::create(out).map_err(write_error)?;
    let mut packer = Packer {
        builder: tar::Builder::new(BufWriter::new(file)),
        out: out.to_owned(),
        first_links: HashMap::new(),
        summary: Summary::default(),
    };
    packer.directory(root, Path::new(""))?;
    let summary = packer.summary;
    let mut writer = packer.builder.into_inner().map_err(write_error)?;
    writer.flush().map_err(write_error)?;
    writer.get_ref().sync_all().map_err(write_error)?;
    Ok(summary)
}

/// The state of `tar_directory`.
struct Packer {
    builder: tar::Builder<BufWriter<File>>,
    out: PathBuf,
    /// (device, inode) of files with several links, to the first name written for them.
    first_links: HashMap<(u64, u64), PathBuf>,
    summary: Summary,
}

impl Packer {
    /// Writes the entries of the directory `root/relative`, recursively, sorted by name.
    fn directory(&mut self, root: &Path, relative: &Path) -> Result<(), Error> {
        let dir = root.join(relative);
        let read_error = |source| Error::ReadTree {
            path: dir.clone(),
            source,
        };
        let mut names = std::fs::read_dir(&dir)
            .map_err(read_error)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        names.sort();
        for name in names {
            let child = relative.join(&name);
            self.entry(root, &child)?;
        }
        Ok(())
    }

    /// Writes one entry (and, for a directory, its content).
    fn entry(&mut self, root: &Path, relative: &Path) -> Result<(), Error> {
        let path = root.join(relative);
        let read_error = |source| Error::ReadTree {
            path: path.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(read_error)?;
        let kind = meta.file_type();
        if kind.is_block_device() || kind.is_char_device() || kind.is_fifo() || kind.is_socket() {
            log::debug!(
                "not packing {}: device nodes, fifos and sockets are not copied",
                path.display()
            );
            return Ok(());
        }
        self.xattrs(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        if kind.is_dir() {
            self.append(&mut header, relative, std::io::empty())?;
            return self.directory(root, relative);
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(read_error)?;
            if relative == Path::new("lib") {
                self.summary.lib_is_symlink = true;
            }
            return self.link(&mut header, relative, &target);
        }
        if let Some(first) = self.hard_link_target(&meta, relative) {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            return self.link(&mut header, relative, &first);
        }
        self.summary.regular_bytes += meta.len();
        let file = File::open(&path).map_err(read_error)?;
        self.append(&mut header, relative, file)
    }

    /// For a file with several links: the name it was first written under, if it was.
    fn hard_link_target(&mut self, meta: &Metadata, relative: &Path) -> Option<PathBuf> {
        if meta.nlink() < 2 {
            return None;
        }
        let key = (meta.dev(), meta.ino());
        if let Some(first) = self.first_links.get(&key) {
            return Some(first.clone());
        }
        self.first_links.insert(key, relative.to_owned());
        None
    }

    /// Writes a pax header carrying the extended attributes of `path`, if it has any.
    fn xattrs(&mut self, path: &Path) -> Result<(), Error> {
        let read_error = |source| Error::ReadTree {
            path: path.to_owned(),
            source,
        };
        let mut names: Vec<_> = xattr::list(path).map_err(read_error)?.collect();
        names.sort();
        let mut records = Vec::new();
        for name in names {
            // An attribute removed since it was listed is simply not copied.
            if let Some(value) = xattr::get(path, &name).map_err(read_error)? {
                let key = format!("SCHILY.xattr.{}", name.to_string_lossy());
                records.extend(pax_record(&key, &value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(records.len() as u64);
        self.append(&mut header, Path::new("././@PaxHeader"), records.as_slice())
    }

    /// Appends an entry with its data.
    fn append(
        &mut self,
        header: &mut tar::Header,
        name: &Path,
        data: impl std::io::Read,
    ) -> Result<(), Error> {
        self.builder
            .append_data(header, name, data)
            .map_err(|source| Error::WriteTar {
                path: self.out.clone(),
                source,
            })
    }

    /// Appends a symbolic or hard link (the header says which).
    fn link(&mut self, header: &mut tar::Header, name: &Path, target: &Path) -> Result<(), Error> {
        self.builder
            .append_link(header, name, target)
            .map_err(|source| Error::WriteTar {
                path: self.out.clone(),
                source,
            })
    }
}

/// One pax extended-header record: `<length> <key>=<value>\n`, where the length counts the
/// whole record including its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // the space, the '=' and the newline
    let mut length = rest + 1;
    while length != rest + length.to_string().len() {
        length = rest + length.to_string().len();
    }
    let mut record = format!("{length} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pax_record_length_counts_itself() {
        let record = pax_record("SCHILY.xattr.user.a", b"1");
        assert_eq!(record, b"25 SCHILY.xattr.user.a=1\n");
        assert_eq!(record.len(), 25);
        let long = pax_record("k", &[b'v'; 95]);
        assert_eq!(long.len(), 102);
        assert!(long.starts_with(b"102 k="));
    }

    #[test]
    fn lib_entry_is_recognised_in_its_spellings() {
        assert!(is_top_level_lib(Path::new("./lib")));
        assert!(is_top_level_lib(Path::new("lib")));
        assert!(!is_top_level_lib(Path::new("usr/lib")));
        assert!(!is_top_level_lib(Path::new("lib64")));
    }

    #[test]
    fn directory_round_trips_with_links_modes_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::fs::write(root.join("usr/lib/a"), b"hello").unwrap();
        std::fs::set_permissions(
            root.join("usr/lib/a"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::fs::hard_link(root.join("usr/lib/a"), root.join("usr/b")).unwrap();
        let tar_path = dir.path().join("l.tar");
        let summary = tar_directory(&root, &tar_path).unwrap();
        assert_eq!(
            summary,
            Summary {
                regular_bytes: 5,
                lib_is_symlink: true
            }
        );
        assert_eq!(
            scan_tar(&tar_path).unwrap(),
            summary,
            "reading back gives the same summary"
        );
        let unpacked = dir.path().join("out");
        let mut archive = tar::Archive::new(File::open(&tar_path).unwrap());
        archive.set_preserve_permissions(true);
        archive.unpack(&unpacked).unwrap();
        assert_eq!(
            std::fs::read_link(unpacked.join("lib")).unwrap(),
            Path::new("usr/lib")
        );
        let a = std::fs::metadata(unpacked.join("usr/lib/a")).unwrap();
        assert_eq!(a.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(a.nlink(), 2, "hard link kept");
        assert_eq!(std::fs::read(unpacked.join("usr/b")).unwrap(), b"hello");
    }

    #[test]
    fn extended_attributes_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let file = root.join("ping");
        std::fs::write(&file, b"x").unwrap();
        // Some filesystems (e.g. an older tmpfs) refuse user attributes: nothing to test there.
        if xattr::set(&file, "user.pxen", b"cap").is_err() {
            return;
        }
        let tar_path = dir.path().join("x.tar");
        tar_directory(&root, &tar_path).unwrap();
        let mut archive = tar::Archive::new(File::open(&tar_path).unwrap());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap(), Path::new("ping"));
        let extensions: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .unwrap()
            .expect("a pax header precedes the file")
            .map(|e| {
                let e = e.unwrap();
                (e.key().unwrap().to_owned(), e.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            extensions,
            [("SCHILY.xattr.user.pxen".to_owned(), b"cap".to_vec())]
        );
        let unpacked = dir.path().join("out");
        entry.set_unpack_xattrs(true);
        std::fs::create_dir(&unpacked).unwrap();
        entry.unpack_in(&unpacked).unwrap();
        assert_eq!(
            xattr::get(unpacked.join("ping"), "user.pxen")
                .unwrap()
                .as_deref(),
            Some(&b"cap"[..])
        );
    }

    #[test]
    fn same_tree_gives_identical_tars() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/z"), b"z").unwrap();
        std::fs::write(root.join("etc/a"), b"a").unwrap();
        tar_directory(&root, &dir.path().join("1.tar")).unwrap();
        tar_directory(&root, &dir.path().join("2.tar")).unwrap();
        let one = std::fs::read(dir.path().join("1.tar")).unwrap();
        assert_eq!(one, std::fs::read(dir.path().join("2.tar")).unwrap());
    }

    #[test]
    fn missing_tar_is_reported_with_its_path() {
        let error = scan_tar(Path::new("/nonexistent/rootfs.tar")).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/rootfs.tar"),
            "{error}"
        );
    }
}
