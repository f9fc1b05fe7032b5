//! Safe request paths and the sources of the files the boot service serves (TFTP and HTTP).
//!
//! Every protocol turns the path a client asked for into a [`SafePath`] first, so no request
//! can name anything outside the served tree, whatever the protocol's own quoting rules are.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A requested path made safe: relative, '/'-separated, no '..', '.', empty components, NUL,
/// backslash; one leading '/' is allowed and ignored (PXE clients send both forms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath(String);

/// Why a requested path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// Nothing is left once the leading '/' is dropped.
    #[error("requested path {requested:?} names no file")]
    Empty {
        /// The path as the client sent it.
        requested: String,
    },
    /// A `..` component would climb out of the served directory.
    #[error("requested path {requested:?} contains a '..' component; paths cannot leave the boot directory")]
    ParentComponent {
        /// The path as the client sent it.
        requested: String,
    },
    /// A `.` component: harmless, but refused so every file has exactly one name.
    #[error("requested path {requested:?} contains a '.' component; ask for the plain path")]
    CurrentComponent {
        /// The path as the client sent it.
        requested: String,
    },
    /// `a//b`, a trailing '/', or more than one leading '/' (an absolute path in disguise).
    #[error("requested path {requested:?} contains an empty component ('//' or a trailing '/')")]
    EmptyComponent {
        /// The path as the client sent it.
        requested: String,
    },
    /// A NUL byte, which would truncate the path at the operating system.
    #[error("requested path {requested:?} contains a NUL byte")]
    Nul {
        /// The path as the client sent it.
        requested: String,
    },
    /// A backslash: a Windows separator some PXE clients send, which could hide a '..'.
    #[error("requested path {requested:?} contains a backslash; use '/' as the separator")]
    Backslash {
        /// The path as the client sent it.
        requested: String,
    },
}

impl SafePath {
    /// Checks a requested path against the rules above.
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
                "." => return Err(PathError::CurrentComponent { requested: owned() }),
                ".." => return Err(PathError::ParentComponent { requested: owned() }),
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

/// An open file being served: its length and positioned reads (many transfers share one source).
pub trait Content: Send + Sync {
    /// The length in bytes.
    fn len(&self) -> u64;
    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Whether the content is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where served files come from: a directory, or generated files.
pub trait FileSource: Send + Sync {
    /// Opens the file at `path`.
    fn open(&self, path: &SafePath) -> Result<Arc<dyn Content>, OpenError>;
}

/// Why a file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No such file.
    #[error("{path}: no such file in the boot directory")]
    NotFound {
        /// The requested path.
        path: String,
    },
    /// The file exists but may not be served.
    #[error("{path}: refused: {why}")]
    Forbidden {
        /// The requested path.
        path: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// The file system failed.
    #[error("{path}: cannot open: {source}")]
    Io {
        /// The requested path.
        path: String,
        /// The error from the operating system.
        source: std::io::Error,
    },
}

/// Serves the regular files below `root`; refuses symlinks that lead outside root, and
/// anything that is not a regular file.
#[derive(Debug)]
pub struct DirSource {
    /// The served directory, canonical (no symlinks, absolute).
    root: PathBuf,
}

impl DirSource {
    /// Serves the files below `root`, which must be an existing directory.
    pub fn new(root: PathBuf) -> std::io::Result<DirSource> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(DirSource { root })
    }
}

impl FileSource for DirSource {
    fn open(&self, path: &SafePath) -> Result<Arc<dyn Content>, OpenError> {
        let io_error = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                OpenError::NotFound { path: path.as_str().to_string() }
            } else {
                OpenError::Io { path: path.as_str().to_string(), source }
            }
        };
        // Resolving every symlink first, then checking the result is still below the root,
        // is what keeps a symlink in the boot directory from serving /etc/shadow.
        let real = self.root.join(path.as_str()).canonicalize().map_err(io_error)?;
        if !real.starts_with(&self.root) {
            return Err(OpenError::Forbidden {
                path: path.as_str().to_string(),
                why: "it is a symlink leading outside the boot directory",
            });
        }
        let file = File::open(&real).map_err(io_error)?;
        let metadata = file.metadata().map_err(io_error)?;
        if !metadata.is_file() {
            return Err(OpenError::Forbidden { path: path.as_str().to_string(), why: "it is not a regular file" });
        }
        Ok(Arc::new(FileContent { file, len: metadata.len() }))
    }
}

/// A regular file, opened once and read by position.
struct FileContent {
    file: File,
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

    #[test]
    fn safe_paths_accept_both_leading_forms() {
        assert_eq!(SafePath::parse("pxelinux.0").unwrap().as_str(), "pxelinux.0");
        assert_eq!(SafePath::parse("/pxelinux.cfg/default").unwrap().as_str(), "pxelinux.cfg/default");
        assert_eq!(SafePath::parse("a..b/c.d").unwrap().as_str(), "a..b/c.d");
    }

    #[test]
    fn unsafe_paths_are_refused_by_their_rule() {
        use PathError::*;
        type Expected = fn(String) -> PathError;
        let cases: [(&str, Expected); 10] = [
            ("", |requested| Empty { requested }),
            ("/", |requested| Empty { requested }),
            ("../etc/passwd", |requested| ParentComponent { requested }),
            ("/a/../../b", |requested| ParentComponent { requested }),
            ("./a", |requested| CurrentComponent { requested }),
            ("//etc/passwd", |requested| EmptyComponent { requested }),
            ("a//b", |requested| EmptyComponent { requested }),
            ("a/", |requested| EmptyComponent { requested }),
            ("a\0b", |requested| Nul { requested }),
            ("..\\boot.ini", |requested| Backslash { requested }),
        ];
        for (path, expected) in cases {
            assert_eq!(SafePath::parse(path), Err(expected(path.to_string())));
        }
    }

    #[test]
    fn dir_source_serves_files_and_refuses_escapes() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"no").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("file"), b"hello").unwrap();
        std::fs::create_dir(root.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("file", root.path().join("inside")).unwrap();
        let source = DirSource::new(root.path().to_path_buf()).unwrap();
        let open = |p: &str| source.open(&SafePath::parse(p).unwrap());

        let content = open("inside").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(content.len(), 5);
        assert_eq!(content.read_at(1, &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");
        assert!(matches!(open("missing"), Err(OpenError::NotFound { .. })));
        assert!(matches!(open("escape"), Err(OpenError::Forbidden { .. })));
        assert!(matches!(open("dir"), Err(OpenError::Forbidden { .. })));
    }
}
