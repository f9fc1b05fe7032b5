//! The files the boot service serves, shared by TFTP and HTTP.
//!
//! Both protocols get a path from a client on the network, so both go through the same two
//! gates: [`SafePath::parse`] refuses any path that could name something outside the served
//! tree (before the file system is touched), and a [`FileSource`] resolves what is left. A
//! [`DirSource`] also refuses symbolic links that lead outside its root and anything that is
//! not a regular file (a FIFO would block a transfer forever, a device would serve the disk).
//!
//! An open file is a [`Content`]: a length and positioned reads, so that many transfers of
//! the same file (a whole cluster fetching the kernel at once) share one source without a
//! shared cursor.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A requested path made safe: relative, '/'-separated, no '..', '.', empty components, NUL,
/// backslash; one leading '/' is allowed and ignored (PXE clients send both forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath(String);

/// Why a requested path was refused. Each variant carries the path as the client sent it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// Nothing was named (an empty path, or a lone '/').
    #[error(
        "the requested path {requested:?} names no file; ask for a file below the boot directory, such as pxelinux.0"
    )]
    Empty {
        /// The path as requested.
        requested: String,
    },
    /// A NUL byte: the file system would cut the path there.
    #[error("the requested path {requested:?} contains a NUL byte, which no file name can hold")]
    Nul {
        /// The path as requested.
        requested: String,
    },
    /// A backslash: DOS-style separators are refused rather than guessed at.
    #[error(
        "the requested path {requested:?} contains a backslash; use '/' to separate directories"
    )]
    Backslash {
        /// The path as requested.
        requested: String,
    },
    /// `a//b`, a trailing '/', or more than one leading '/'.
    #[error("the requested path {requested:?} has an empty component ('//' or a trailing '/'); name a file with single '/' separators")]
    EmptyComponent {
        /// The path as requested.
        requested: String,
    },
    /// A `.` component.
    #[error(
        "the requested path {requested:?} contains a '.' component; request the path without it"
    )]
    CurrentDir {
        /// The path as requested.
        requested: String,
    },
    /// A `..` component: the classic escape from the served directory.
    #[error("the requested path {requested:?} contains '..'; nothing outside the boot directory is served")]
    ParentDir {
        /// The path as requested.
        requested: String,
    },
}

impl SafePath {
    /// Checks a path requested by a client; see [`SafePath`] for the rules.
    pub fn parse(requested: &str) -> Result<SafePath, PathError> {
        let owned = || requested.to_string();
        if requested.contains('\0') {
            return Err(PathError::Nul { requested: owned() });
        }
        if requested.contains('\\') {
            return Err(PathError::Backslash { requested: owned() });
        }
        let relative = requested.strip_prefix('/').unwrap_or(requested);
        if relative.is_empty() {
            return Err(PathError::Empty { requested: owned() });
        }
        for component in relative.split('/') {
            match component {
                "" => return Err(PathError::EmptyComponent { requested: owned() }),
                "." => return Err(PathError::CurrentDir { requested: owned() }),
                ".." => return Err(PathError::ParentDir { requested: owned() }),
                _ => {}
            }
        }
        Ok(SafePath(relative.to_string()))
    }

    /// The path, relative, without a leading '/'.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SafePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An open file being served: its length and positioned reads (many transfers share one source).
pub trait Content: Send + Sync {
    /// The length in bytes; it does not change while the content is open.
    fn len(&self) -> u64;

    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;

    /// Whether the content has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes held in memory are content too (generated files, tests).
impl Content for Vec<u8> {
    fn len(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let count = buf.len().min(self.len() - start);
        buf[..count].copy_from_slice(&self[start..start + count]);
        Ok(count)
    }
}

/// Where served files come from: a directory, or generated files.
pub trait FileSource: Send + Sync {
    /// Opens the file at `path` for serving.
    fn open(&self, path: &SafePath) -> Result<Arc<dyn Content>, OpenError>;
}

/// A safe path could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// There is no such file (TFTP error 1, HTTP 404).
    #[error("{path}: no such file in the boot directory")]
    NotFound {
        /// The requested path.
        path: String,
    },
    /// The file exists but is not served (TFTP error 2, HTTP 403).
    #[error("{path}: not served: {why}")]
    Forbidden {
        /// The requested path.
        path: String,
        /// The rule that refused it.
        why: &'static str,
    },
    /// The file system failed (TFTP error 0, HTTP 500).
    #[error("{path}: cannot be opened: {source}")]
    Io {
        /// The requested path.
        path: String,
        /// The system's answer.
        source: std::io::Error,
    },
}

/// Serves the regular files below `root`; refuses symlinks that lead outside root, and
/// anything that is not a regular file.
#[derive(Debug)]
pub struct DirSource {
    /// The served directory, canonical (symbolic links resolved), so that resolved file paths
    /// can be checked to lie below it.
    root: PathBuf,
}

impl DirSource {
    /// Serves the files below `root`, which must be an existing directory.
    pub fn new(root: PathBuf) -> std::io::Result<DirSource> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!(
                    "{} is not a directory; give the directory that holds the boot files",
                    root.display()
                ),
            ));
        }
        Ok(DirSource { root })
    }

    /// The served directory, with symbolic links resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file's real location, checked to lie below the root.
    fn resolve(&self, path: &SafePath) -> Result<PathBuf, OpenError> {
        let joined = self.root.join(path.as_str());
        let resolved = joined
            .canonicalize()
            .map_err(|source| io_error(path, source))?;
        if !resolved.starts_with(&self.root) {
            return Err(OpenError::Forbidden {
                path: path.to_string(),
                why: "a symbolic link leads outside the boot directory",
            });
        }
        Ok(resolved)
    }
}

impl FileSource for DirSource {
    fn open(&self, path: &SafePath) -> Result<Arc<dyn Content>, OpenError> {
        let resolved = self.resolve(path)?;
        // O_NOFOLLOW: the path was just resolved, so a symbolic link here means one was swapped
        // in since; O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&resolved)
            .map_err(|source| io_error(path, source))?;
        let metadata = file.metadata().map_err(|source| io_error(path, source))?;
        if !metadata.is_file() {
            return Err(OpenError::Forbidden {
                path: path.to_string(),
                why: "it is not a regular file",
            });
        }
        Ok(Arc::new(FileContent {
            file,
            len: metadata.len(),
        }))
    }
}

/// Maps the file system's answer to the error a client gets.
fn io_error(path: &SafePath, source: std::io::Error) -> OpenError {
    match source.kind() {
        // A missing file, or a path through a regular file ("pxelinux.0/x").
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => OpenError::NotFound {
            path: path.to_string(),
        },
        // ELOOP from O_NOFOLLOW: see DirSource::open.
        _ if source.raw_os_error() == Some(libc::ELOOP) => OpenError::Forbidden {
            path: path.to_string(),
            why: "a symbolic link was swapped in while opening",
        },
        _ => OpenError::Io {
            path: path.to_string(),
            source,
        },
    }
}

/// An open regular file of a [`DirSource`].
struct FileContent {
    /// The open file; positioned reads need no lock.
    file: File,
    /// Its length when opened.
    len: u64,
}

impl Content for FileContent {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn safe_paths_are_relative_and_keep_their_components() {
        for (requested, safe) in [
            ("pxelinux.0", "pxelinux.0"),
            ("/pxelinux.0", "pxelinux.0"),
            ("pxelinux.cfg/default", "pxelinux.cfg/default"),
            (
                "/pxelinux.cfg/01-52-54-00-12-34-56",
                "pxelinux.cfg/01-52-54-00-12-34-56",
            ),
            ("a..b/..c/d..", "a..b/..c/d.."),
            (".hidden", ".hidden"),
        ] {
            assert_eq!(
                SafePath::parse(requested).map(|p| p.as_str().to_string()),
                Ok(safe.to_string()),
                "{requested:?}"
            );
        }
    }

    #[test]
    fn every_escape_is_refused_with_its_own_reason() {
        type Expected = fn(String) -> PathError;
        let cases: &[(&str, Expected)] = &[
            ("", |requested| PathError::Empty { requested }),
            ("/", |requested| PathError::Empty { requested }),
            ("..", |requested| PathError::ParentDir { requested }),
            ("../etc/passwd", |requested| PathError::ParentDir {
                requested,
            }),
            ("/../etc/passwd", |requested| PathError::ParentDir {
                requested,
            }),
            ("boot/../../etc", |requested| PathError::ParentDir {
                requested,
            }),
            ("boot/..", |requested| PathError::ParentDir { requested }),
            ("./pxelinux.0", |requested| PathError::CurrentDir {
                requested,
            }),
            ("//etc/passwd", |requested| PathError::EmptyComponent {
                requested,
            }),
            ("a//b", |requested| PathError::EmptyComponent { requested }),
            ("dir/", |requested| PathError::EmptyComponent { requested }),
            ("..\\etc\\passwd", |requested| PathError::Backslash {
                requested,
            }),
            ("C:\\boot.ini", |requested| PathError::Backslash {
                requested,
            }),
            ("pxelinux.0\0.txt", |requested| PathError::Nul { requested }),
        ];
        for (requested, expected) in cases {
            assert_eq!(
                SafePath::parse(requested),
                Err(expected(requested.to_string())),
                "{requested:?}"
            );
        }
    }

    #[test]
    fn path_errors_quote_the_request() {
        let error = SafePath::parse("../etc/shadow").expect_err("'..' must be refused");
        assert!(error.to_string().contains("\"../etc/shadow\""), "{error}");
    }

    fn read_all(content: &dyn Content) -> Vec<u8> {
        let mut buf = vec![0; content.len() as usize];
        let n = content.read_at(0, &mut buf).expect("read");
        buf.truncate(n);
        buf
    }

    fn open(source: &DirSource, path: &str) -> Result<Arc<dyn Content>, OpenError> {
        source.open(&SafePath::parse(path).expect("a safe path"))
    }

    #[test]
    fn a_directory_source_serves_files_and_links_that_stay_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/file"), b"inside").expect("write");
        symlink("sub/file", dir.path().join("link")).expect("symlink");
        let source = DirSource::new(dir.path().to_path_buf()).expect("source");
        assert_eq!(
            read_all(&*open(&source, "/sub/file").expect("open")),
            b"inside"
        );
        let linked = open(&source, "link").expect("a link inside the root is served");
        assert_eq!(linked.len(), 6);
        assert_eq!(read_all(&*linked), b"inside");
    }

    #[test]
    fn a_directory_source_refuses_what_is_not_a_regular_file_inside() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), b"secret").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("file"), b"x").expect("write");
        symlink(outside.path().join("secret"), dir.path().join("escape")).expect("symlink");
        symlink(outside.path(), dir.path().join("escape-dir")).expect("symlink");
        nix::unistd::mkfifo(&dir.path().join("fifo"), nix::sys::stat::Mode::S_IRWXU)
            .expect("mkfifo");
        let source = DirSource::new(dir.path().to_path_buf()).expect("source");

        let forbidden = |path: &str, reason: &str| match open(&source, path) {
            Err(OpenError::Forbidden { why, .. }) => assert!(why.contains(reason), "{path}: {why}"),
            other => panic!(
                "{path}: expected Forbidden ({reason}), got {:?}",
                other.map(|c| c.len())
            ),
        };
        forbidden("escape", "outside");
        forbidden("escape-dir/secret", "outside");
        forbidden("sub", "not a regular file");
        forbidden("fifo", "not a regular file");
        for missing in ["missing", "sub/missing", "file/below-a-file"] {
            assert!(
                matches!(open(&source, missing), Err(OpenError::NotFound { .. })),
                "{missing}"
            );
        }
    }

    #[test]
    fn memory_content_reads_at_any_offset() {
        let content: Vec<u8> = (0..10).collect();
        let mut buf = [0u8; 4];
        assert_eq!(Content::read_at(&content, 8, &mut buf).expect("read"), 2);
        assert_eq!(&buf[..2], &[8, 9]);
        assert_eq!(Content::read_at(&content, 10, &mut buf).expect("read"), 0);
        assert_eq!(
            Content::read_at(&content, u64::MAX, &mut buf).expect("read"),
            0
        );
    }
}
