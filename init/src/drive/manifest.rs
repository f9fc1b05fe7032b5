//! The manifest: the SHA-256 of every boot file on the drive, and checking the files against it.
//!
//! Files are hashed as a stream through a 1 MiB buffer, so an initramfs of hundreds of MiB is
//! never held in memory. A check reads every file of the manifest and reports every problem,
//! not only the first, so the log shows all of what is wrong with a drive.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::identity::hex;

/// The read buffer for hashing: large enough that a USB stick reads at full speed.
const BUFFER_BYTES: usize = 1024 * 1024;

/// One file that does not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestProblem {
    /// The file's SHA-256 differs from the manifest's.
    #[error("{file} does not match the drive's manifest: sha256 {expected} expected, {actual} found ({path}); rewrite the drive with ./mkimage")]
    Mismatch {
        /// Its path on the drive, as the manifest names it.
        file: String,
        /// Where it was read.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
        /// The hash of the file as it is.
        actual: String,
    },
    /// The file is not on the drive.
    #[error("{file} is missing from the drive ({path}), but its manifest lists it (sha256 {expected}); rewrite the drive with ./mkimage")]
    Missing {
        /// Its path on the drive.
        file: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
    },
    /// The file could not be read to the end.
    #[error("cannot read {file} ({path}) to check it against the drive's manifest (sha256 {expected}): {error}; the drive may be failing: check it with fsck.vfat, or write a new drive with ./mkimage")]
    Unreadable {
        /// Its path on the drive.
        file: String,
        /// Where it was read.
        path: PathBuf,
        /// The manifest's hash.
        expected: String,
        /// The I/O error, as text (the check is kept and compared in tests).
        error: String,
    },
}

impl ManifestProblem {
    /// The file's path on the drive, as the manifest names it.
    pub fn file(&self) -> &str {
        match self {
            ManifestProblem::Mismatch { file, .. }
            | ManifestProblem::Missing { file, .. }
            | ManifestProblem::Unreadable { file, .. } => file,
        }
    }
}

/// The result of checking a drive's files against its manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestCheck {
    /// How many files were checked.
    pub checked: usize,
    /// Every file that does not match, in the manifest's (path) order; empty if all match.
    pub problems: Vec<ManifestProblem>,
}

impl ManifestCheck {
    /// Whether every file matched.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The SHA-256 of everything `reader` yields, as 64 lowercase hex digits.
pub fn hash_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BUFFER_BYTES];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(&buffer[..n]),
            // A signal interrupted the read: nothing was read, read again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The SHA-256 of the file at `path`.
pub fn hash_file(path: &Path) -> io::Result<String> {
    hash_reader(File::open(path)?)
}

/// A file that could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash {path} for the drive's manifest: {source}")]
pub struct HashError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

/// The manifest of `files` (paths relative to `root`, with `/` between directories).
pub fn hash_files(root: &Path, files: &[&str]) -> Result<BTreeMap<String, String>, HashError> {
    files
        .iter()
        .map(|file| {
            let path = root.join(file);
            match hash_file(&path) {
                Ok(hash) => Ok((file.to_string(), hash)),
                Err(source) => Err(HashError { path, source }),
            }
        })
        .collect()
}

/// Checks every file of `manifest` under `root` (the drive's mounted FAT partition, or its
/// copy in RAM) and lists every one that is missing, unreadable or different.
pub fn check(root: &Path, manifest: &BTreeMap<String, String>) -> ManifestCheck {
    let problems = manifest
        .iter()
        .filter_map(|(file, expected)| check_file(root, file, expected))
        .collect();
    ManifestCheck {
        checked: manifest.len(),
        problems,
    }
}

/// The problem with one file, if any.
fn check_file(root: &Path, file: &str, expected: &str) -> Option<ManifestProblem> {
    let path = root.join(file);
    let (file, expected) = (file.to_owned(), expected.to_owned());
    match hash_file(&path) {
        Ok(actual) if actual == expected => None,
        Ok(actual) => Some(ManifestProblem::Mismatch {
            file,
            path,
            expected,
            actual,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(ManifestProblem::Missing {
            file,
            path,
            expected,
        }),
        Err(e) => Some(ManifestProblem::Unreadable {
            file,
            path,
            expected,
            error: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of "abc", from FIPS 180-2's examples.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    /// SHA-256 of nothing.
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_match_the_standard_vectors() {
        assert_eq!(hash_reader(&b"abc"[..]).unwrap(), ABC);
        assert_eq!(hash_reader(&b""[..]).unwrap(), EMPTY);
    }

    #[test]
    fn files_larger_than_the_buffer_hash_as_one_stream() {
        let bytes: Vec<u8> = (0..BUFFER_BYTES * 2 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big"), &bytes).unwrap();
        assert_eq!(
            hash_file(&dir.path().join("big")).unwrap(),
            hex(&Sha256::digest(&bytes))
        );
    }

    #[test]
    fn hash_files_names_the_file_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), b"abc").unwrap();
        let manifest = hash_files(dir.path(), &["sub/a"]).unwrap();
        assert_eq!(manifest.get("sub/a").map(String::as_str), Some(ABC));
        let error = hash_files(dir.path(), &["sub/a", "gone"]).unwrap_err();
        assert_eq!(error.path, dir.path().join("gone"));
        assert!(error.to_string().contains("gone"), "{error}");
    }

    #[test]
    fn check_lists_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good"), b"abc").unwrap();
        std::fs::write(dir.path().join("changed"), b"abd").unwrap();
        // A directory where a file should be: it exists but cannot be read as a file.
        std::fs::create_dir(dir.path().join("unreadable")).unwrap();
        let manifest: BTreeMap<String, String> = ["good", "changed", "missing", "unreadable"]
            .iter()
            .map(|f| (f.to_string(), ABC.to_string()))
            .collect();
        let result = check(dir.path(), &manifest);
        assert_eq!(result.checked, 4);
        assert!(!result.is_ok());
        let files: Vec<&str> = result.problems.iter().map(ManifestProblem::file).collect();
        assert_eq!(files, ["changed", "missing", "unreadable"]);
        let ManifestProblem::Mismatch {
            actual, expected, ..
        } = &result.problems[0]
        else {
            panic!("{:?}", result.problems[0]);
        };
        assert_eq!(expected, ABC);
        assert_eq!(actual, &hash_reader(&b"abd"[..]).unwrap());
        assert!(matches!(
            result.problems[1],
            ManifestProblem::Missing { .. }
        ));
        assert!(matches!(
            result.problems[2],
            ManifestProblem::Unreadable { .. }
        ));
        let message = result.problems[0].to_string();
        assert!(
            message.contains(ABC) && message.contains(actual),
            "{message}"
        );
    }

    #[test]
    fn a_matching_drive_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"abc").unwrap();
        std::fs::write(dir.path().join("b"), b"").unwrap();
        let manifest = hash_files(dir.path(), &["a", "b"]).unwrap();
        let result = check(dir.path(), &manifest);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(result.checked, 2);
    }
}
