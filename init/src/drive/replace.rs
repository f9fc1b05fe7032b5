//! Replacing a file crash-safely, keeping the version before it as a backup: the stamp
//! (`pxen/stamp.ron`) and every host's saved state (`pxen/hosts/NAME/state.cpio`) are written
//! this way.
//!
//! A file `NAME` has two companions in its directory, `NAME.new` and `NAME.bak`. [`replace`]:
//!
//! 1. writes `NAME.new` and fsyncs it;
//! 2. renames `NAME` to `NAME.bak` (replacing the older backup);
//! 3. renames `NAME.new` to `NAME`;
//! 4. fsyncs the directory.
//!
//! Whichever step a crash or a pulled stick interrupts, one of the three names holds a
//! complete version, the old one or the new one: before step 2 `NAME` is untouched; between
//! steps 2 and 3 the fsynced `.new` is complete and the old version is the backup; after step 3
//! `NAME` is the new version. [`read_best`] takes `NAME`, else a complete `NAME.new`, else
//! `NAME.bak`. The caller says where the current version is ([`Slot`]), so that an interrupted
//! write is finished first and the version it replaces always ends up as the backup.
//!
//! FAT has no journal: this keeps a complete version as long as what was synced stays synced;
//! it does not make the file system itself crash-proof (see [`super::stamp`]).
//!
//! The operations go through [`FileOps`], so that tests can cut the power after any step;
//! [`StdFileOps`] is the real implementation.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file operations a replacement needs, so that tests can interrupt them after any step.
pub trait FileOps {
    /// Creates or truncates `path` and writes `bytes` into it (not yet synced).
    fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Flushes `path`'s data and size to the media.
    fn fsync_file(&mut self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Flushes the directory `dir` (its entries: creations and renames) to the media.
    fn fsync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// The whole content of `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// [`FileOps`] on the real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFileOps;

impl FileOps for StdFileOps {
    fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        File::create(path)?.write_all(bytes)
    }

    fn fsync_file(&mut self, path: &Path) -> io::Result<()> {
        // fsync flushes the file, whichever descriptor it is called on.
        File::open(path)?.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn fsync_dir(&mut self, dir: &Path) -> io::Result<()> {
        // Linux fsyncs a directory through a read-only descriptor of it.
        File::open(dir)?.sync_all()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// Which of the three names holds a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `NAME`: the normal case.
    Current,
    /// `NAME.new`: the last write was interrupted after it moved `NAME` away.
    New,
    /// `NAME.bak`: `NAME` (and `NAME.new`) are missing or damaged.
    Backup,
}

impl Slot {
    /// The suffix this slot adds to the file's name.
    pub fn suffix(self) -> &'static str {
        match self {
            Slot::Current => "",
            Slot::New => ".new",
            Slot::Backup => ".bak",
        }
    }
}

/// A file replaced with [`replace`]: its directory and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    dir: PathBuf,
    name: String,
}

impl Rotation {
    /// The file `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Rotation {
        Rotation {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of `slot`'s version.
    pub fn path(&self, slot: Slot) -> PathBuf {
        self.dir.join(format!("{}{}", self.name, slot.suffix()))
    }
}

/// A step of [`replace`] failed; the previous version is still readable with [`read_best`].
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// Step 1: writing `NAME.new` failed.
    #[error("cannot write {path}: {source}; its directory must exist, on a drive mounted read-write with free space")]
    WriteNew {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Step 1: fsyncing `NAME.new` failed.
    #[error(
        "cannot flush {path} to the drive: {source}; the drive may have been pulled or be failing"
    )]
    SyncNew {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Step 2: renaming `NAME` to `NAME.bak` failed.
    #[error(
        "cannot rename {from} to {to}: {source}; the drive may have been pulled or be failing"
    )]
    Backup {
        /// The current version.
        from: PathBuf,
        /// The backup.
        to: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Step 3: renaming `NAME.new` to `NAME` failed.
    #[error(
        "cannot rename {from} to {to}: {source}; the drive may have been pulled or be failing"
    )]
    Install {
        /// The new version.
        from: PathBuf,
        /// The file.
        to: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Step 4: fsyncing the directory failed.
    #[error("cannot flush the directory {dir} to the drive: {source}; the drive may have been pulled or be failing")]
    SyncDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Writes `bytes` as the current version of `file`, keeping the version that is current now
/// as the backup. `current` says where that version is (`None`: there is none to keep).
pub fn replace(
    fs: &mut impl FileOps,
    file: &Rotation,
    bytes: &[u8],
    current: Option<Slot>,
) -> Result<(), ReplaceError> {
    match current {
        Some(Slot::Current) => {
            write_new(fs, file, bytes)?;
            back_up_current(fs, file)?;
            install_new(fs, file)
        }
        Some(Slot::New) => {
            // Finish the interrupted write first: the version in `.new` must become the
            // backup, and writing the new `.new` over it would leave only the older backup.
            install_new(fs, file)?;
            write_new(fs, file, bytes)?;
            back_up_current(fs, file)?;
            install_new(fs, file)
        }
        // The current version is already the backup (NAME is missing or damaged), or there
        // is none: renaming NAME to the backup would replace a good version with a bad one.
        Some(Slot::Backup) | None => {
            write_new(fs, file, bytes)?;
            install_new(fs, file)
        }
    }
}

/// The best version of `file`: `NAME` if `usable` accepts it, else `NAME.new`, else
/// `NAME.bak`; `None` when none is there and usable. A version that cannot be read or is
/// refused is logged and passed over.
pub fn read_best(
    fs: &impl FileOps,
    file: &Rotation,
    usable: impl Fn(&[u8]) -> Result<(), String>,
) -> Option<(Slot, Vec<u8>)> {
    [Slot::Current, Slot::New, Slot::Backup]
        .into_iter()
        .find_map(|slot| {
            let path = file.path(slot);
            let checked = match fs.read(&path) {
                Ok(bytes) => usable(&bytes).map(|()| bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                Err(e) => Err(e.to_string()),
            };
            checked
                .map_err(|why| log::warn!("{}: passed over: {why}", path.display()))
                .ok()
                .map(|bytes| (slot, bytes))
        })
}

/// Step 1: writes `NAME.new` and fsyncs it.
fn write_new(fs: &mut impl FileOps, file: &Rotation, bytes: &[u8]) -> Result<(), ReplaceError> {
    let path = file.path(Slot::New);
    if let Err(source) = fs.write_file(&path, bytes) {
        return Err(ReplaceError::WriteNew { path, source });
    }
    fs.fsync_file(&path)
        .map_err(|source| ReplaceError::SyncNew { path, source })
}

/// Step 2: renames `NAME` to `NAME.bak`.
fn back_up_current(fs: &mut impl FileOps, file: &Rotation) -> Result<(), ReplaceError> {
    let (from, to) = (file.path(Slot::Current), file.path(Slot::Backup));
    fs.rename(&from, &to)
        .map_err(|source| ReplaceError::Backup { from, to, source })
}

/// Steps 3 and 4: renames `NAME.new` to `NAME` and fsyncs the directory.
fn install_new(fs: &mut impl FileOps, file: &Rotation) -> Result<(), ReplaceError> {
    let (from, to) = (file.path(Slot::New), file.path(Slot::Current));
    if let Err(source) = fs.rename(&from, &to) {
        return Err(ReplaceError::Install { from, to, source });
    }
    fs.fsync_dir(file.dir())
        .map_err(|source| ReplaceError::SyncDir {
            dir: file.dir().to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real file system, with the power cut after `budget` writing operations.
    struct CutFs {
        budget: usize,
    }

    impl CutFs {
        fn spend(&mut self) -> io::Result<()> {
            match self.budget.checked_sub(1) {
                Some(left) => {
                    self.budget = left;
                    Ok(())
                }
                None => Err(io::Error::other("power cut")),
            }
        }
    }

    impl FileOps for CutFs {
        fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            self.spend()?;
            StdFileOps.write_file(path, bytes)
        }
        fn fsync_file(&mut self, path: &Path) -> io::Result<()> {
            self.spend()?;
            StdFileOps.fsync_file(path)
        }
        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.spend()?;
            StdFileOps.rename(from, to)
        }
        fn fsync_dir(&mut self, dir: &Path) -> io::Result<()> {
            self.spend()?;
            StdFileOps.fsync_dir(dir)
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            StdFileOps.read(path)
        }
    }

    fn complete(bytes: &[u8]) -> Result<(), String> {
        match bytes.ends_with(b"END") {
            true => Ok(()),
            false => Err("torn".into()),
        }
    }

    #[test]
    fn a_cut_at_any_step_leaves_the_old_version_or_the_new_one() {
        for budget in 0..6 {
            let dir = tempfile::tempdir().unwrap();
            let file = Rotation::new(dir.path(), "state.cpio");
            replace(&mut StdFileOps, &file, b"old END", None).unwrap();
            let result = replace(
                &mut CutFs { budget },
                &file,
                b"new END",
                Some(Slot::Current),
            );
            let (_, best) = read_best(&StdFileOps, &file, complete).unwrap();
            assert!(
                best == b"old END" || best == b"new END",
                "budget {budget}: {best:?}"
            );
            if result.is_ok() {
                assert_eq!(best, b"new END");
                assert_eq!(std::fs::read(file.path(Slot::Backup)).unwrap(), b"old END");
            }
        }
    }

    #[test]
    fn an_interrupted_write_is_finished_before_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = Rotation::new(dir.path(), "state.cpio");
        std::fs::write(file.path(Slot::New), b"second END").unwrap();
        std::fs::write(file.path(Slot::Backup), b"first END").unwrap();
        let (slot, _) = read_best(&StdFileOps, &file, complete).unwrap();
        assert_eq!(slot, Slot::New);
        replace(&mut StdFileOps, &file, b"third END", Some(slot)).unwrap();
        assert_eq!(
            std::fs::read(file.path(Slot::Current)).unwrap(),
            b"third END"
        );
        assert_eq!(
            std::fs::read(file.path(Slot::Backup)).unwrap(),
            b"second END"
        );
    }

    #[test]
    fn a_torn_version_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        let file = Rotation::new(dir.path(), "state.cpio");
        assert_eq!(read_best(&StdFileOps, &file, complete), None);
        std::fs::write(file.path(Slot::Current), b"torn").unwrap();
        std::fs::write(file.path(Slot::Backup), b"good END").unwrap();
        assert_eq!(
            read_best(&StdFileOps, &file, complete),
            Some((Slot::Backup, b"good END".to_vec()))
        );
    }
}
