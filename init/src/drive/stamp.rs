//! The drive's stamp: a small file host0 rewrites at every boot, chained to the one before it.
//!
//! `pxen/stamp.ron` on the drive's FAT partition says which drive it belongs to, how many times
//! the drive has booted a host0, when, on which machine, and the SHA-256 of the exact bytes of
//! the stamp file before it. Because every stamp hashes its predecessor, two drives that were
//! byte-identical (an image written twice, a clone) stop being identical as soon as one of them
//! is used, and a stamp copied from one drive to another does not chain to that drive's backup.
//!
//! # Writing without losing the previous stamp
//!
//! [`write_stamp`] keeps three names in the stamp directory:
//!
//! 1. write `stamp.ron.new` and fsync it;
//! 2. rename `stamp.ron` to `stamp.ron.bak` (replacing the older backup);
//! 3. rename `stamp.ron.new` to `stamp.ron`;
//! 4. fsync the directory.
//!
//! [`read_current`] takes `stamp.ron` if it parses and chains to `stamp.ron.bak`; else
//! `stamp.ron.new` if it is complete (exactly the bytes PXEN renders for what it parses to) and
//! chains to the backup; else `stamp.ron.bak`. Whichever step a crash or a pulled stick
//! interrupts, one of the three names holds a complete stamp, the old one or the new one: before
//! step 2 `stamp.ron` is untouched; between steps 2 and 3 the fsynced `.new` chains to the
//! backup that step 2 made; after step 3 `stamp.ron` is the new stamp.
//!
//! When the previous write was interrupted, [`write_stamp`] first finishes it or works around
//! the damage, so that the stamp it replaces always ends up as the backup: a current stamp found
//! in `stamp.ron.new` is renamed to `stamp.ron` first (and the directory fsynced), and a current
//! stamp found in `stamp.ron.bak` stays there while the new stamp goes straight to `stamp.ron`.
//!
//! What this does not do: FAT (vfat) has no journal. A rename is several sector writes (the
//! directory entries, the allocation table), and a power cut between them can leave the file
//! system needing `fsck.vfat`. Linux's vfat does rename over an existing file, and its fsync
//! (of a file or of a directory) writes the object and the allocation table out and flushes the
//! device's cache, but a cheap stick may still lose writes it claimed done. The sequence
//! guarantees that, as long as what was synced stays synced, some complete stamp exists at every
//! instant, so the previous stamp survives; it does not make FAT itself crash-proof.
//!
//! The sequence itself is [`replace::replace`], shared with the hosts' saved state; its file
//! operations go through [`FileOps`], so that the tests can cut the power after each step.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::replace::{self, ReplaceError, Rotation, Slot};
pub use super::replace::{FileOps, StdFileOps};

/// The stamp file, in the stamp directory (`pxen/` on the drive's FAT partition).
pub const STAMP_FILE: &str = "stamp.ron";

/// The stamp being written, before it is renamed to [`STAMP_FILE`].
pub const NEW_FILE: &str = "stamp.ron.new";

/// The stamp before the current one.
pub const BACKUP_FILE: &str = "stamp.ron.bak";

/// Hex digits in a drive ID (16 random bytes).
const DRIVE_ID_DIGITS: usize = 32;

/// Hex digits in a SHA-256.
const SHA256_DIGITS: usize = 64;

/// What to do about a stamp file that cannot be used, in every parse error.
const FIX_DAMAGED: &str = "stamp files are written by host0, not by hand: PXEN falls back to \
                           the other stamp files; delete all three to start a new chain";

/// One stamp, as `pxen/stamp.ron` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    /// The drive's ID (32 lowercase hex digits), as its identity file names it.
    pub drive_id: String,
    /// The boots as host0 so far, from 1.
    pub counter: u64,
    /// When host0 wrote it, in Unix seconds of host0's clock.
    pub time: u64,
    /// The machine ID (the DMI serial, or what the identity module chose) of the host that
    /// wrote it.
    pub machine_serial: String,
    /// The SHA-256 (64 lowercase hex digits) of the previous stamp file's exact bytes; empty
    /// for the first stamp of a chain.
    pub previous: String,
}

/// A stamp file's bytes are not a valid stamp. Each message starts with `line:column:`, so
/// that a file path in front of it points at the spot.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The bytes are not UTF-8 text (a torn write, or a damaged sector).
    #[error("{line}:{col}: the stamp is not UTF-8 text; {FIX_DAMAGED}")]
    NotUtf8 {
        /// The line of the first invalid byte, from 1.
        line: usize,
        /// Its column, from 1.
        col: usize,
    },
    /// The text is not a RON `Stamp(...)` with exactly the stamp's fields.
    #[error("{line}:{col}: {what}; {FIX_DAMAGED}")]
    Syntax {
        /// The line, from 1.
        line: usize,
        /// The column, from 1.
        col: usize,
        /// What the RON parser found wrong.
        what: String,
    },
    /// A field has a value no stamp can have.
    #[error("{line}:{col}: {field} {value:?} {why}; {FIX_DAMAGED}")]
    Field {
        /// The line of the field, from 1.
        line: usize,
        /// Its column, from 1.
        col: usize,
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Two stamps are not consecutive stamps of one chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The newer stamp's bytes are not a stamp.
    #[error("the newer stamp cannot be parsed: {0}")]
    NewerUnparsable(#[source] ParseError),
    /// The older stamp's bytes are not a stamp.
    #[error("the older stamp cannot be parsed: {0}")]
    OlderUnparsable(#[source] ParseError),
    /// The stamps name different drives.
    #[error("the newer stamp belongs to drive {newer} but the older one to drive {older}: a stamp was copied from another drive; only host0 writes stamps, so remove the copied file")]
    OtherDrive {
        /// The newer stamp's drive ID.
        newer: String,
        /// The older stamp's drive ID.
        older: String,
    },
    /// The newer stamp does not hash the older stamp's bytes.
    #[error("the newer stamp names previous {found:?} but the older stamp file hashes to {expected}: they are not consecutive stamps of one chain (a stamp from a clone of this drive, or an edited stamp file); only host0 writes stamps, so remove the foreign file")]
    Previous {
        /// The SHA-256 of the older stamp's bytes.
        expected: String,
        /// The newer stamp's `previous`.
        found: String,
    },
    /// The counters do not count up by one.
    #[error("the newer stamp has counter {newer} but the older one {older}: consecutive stamps count up by one; only host0 writes stamps, so remove the edited file")]
    Counter {
        /// The newer stamp's counter.
        newer: u64,
        /// The older stamp's counter.
        older: u64,
    },
}

/// Reading or writing the stamp files failed.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    /// A stamp file exists but cannot be read.
    #[error("cannot read the stamp file {path}: {source}; the drive may be failing (check it with fsck.vfat)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A stamp file's bytes are not a stamp.
    #[error("{path}:{source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        source: ParseError,
    },
    /// A stamp file does not chain to the backup beside it.
    #[error("{path} does not follow {BACKUP_FILE} beside it: {source}")]
    Unchained {
        /// The file.
        path: PathBuf,
        /// How the chain breaks.
        source: ChainError,
    },
    /// `stamp.ron.new` parses, but is not exactly what PXEN writes for it: a torn write.
    #[error("{path} is not complete (its bytes are not those PXEN writes for the stamp they parse to): a write interrupted before its fsync; it is ignored, and replaced at host0's next boot")]
    Incomplete {
        /// The file.
        path: PathBuf,
    },
    /// The directory holds none of the stamp files: the drive has not booted a host0 yet.
    #[error("{dir} holds no stamp ({STAMP_FILE}, {NEW_FILE} or {BACKUP_FILE}): the drive has not booted a host0 yet; the first boot as host0 writes stamp #1")]
    NoStamp {
        /// The stamp directory.
        dir: PathBuf,
    },
    /// Stamp files exist, but none can be used.
    #[error("no usable stamp in {dir}: {problems}; host0 starts a new chain at stamp #1")]
    Unusable {
        /// The stamp directory.
        dir: PathBuf,
        /// Why each file was rejected.
        problems: Problems,
    },
    /// The stamp to write would not parse back (a drive ID or serial no stamp can have).
    #[error("refusing to write a stamp that would not read back: {source}; the drive ID comes from the drive's identity file and the serial from the identity module")]
    Invalid {
        /// What is wrong with it.
        source: ParseError,
    },
    /// The stamp to write does not follow the current one.
    #[error("refusing to write a stamp that does not follow the current stamp {path}: {source}; build it with stamp::next from the stamp read_current returns")]
    NotNext {
        /// The current stamp's file.
        path: PathBuf,
        /// How the chain would break.
        source: ChainError,
    },
    /// The stamp to write names a previous stamp, but there is none.
    #[error("refusing to write stamp #{counter}: {dir} has no usable stamp for it to follow; start a new chain with stamp::next(None, ...)")]
    Orphan {
        /// The stamp directory.
        dir: PathBuf,
        /// The counter of the stamp to write.
        counter: u64,
    },
    /// Replacing `stamp.ron` failed at one of its steps.
    #[error(transparent)]
    Write(#[from] ReplaceError),
}

/// Why each stamp file was rejected, for [`StampError::Unusable`].
#[derive(Debug)]
pub struct Problems(pub Vec<StampError>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; and ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl Stamp {
    /// The stamp's file bytes: always the same layout, so that the same stamp renders to the
    /// same bytes (and the same hash) on every host.
    pub fn render(&self) -> String {
        // `{:?}` quotes and escapes strings the way RON reads them back (\", \\, \n, \u{..}).
        format!(
            "Stamp(\n    drive_id: {:?},\n    counter: {},\n    time: {},\n    \
             machine_serial: {:?},\n    previous: {:?},\n)\n",
            self.drive_id, self.counter, self.time, self.machine_serial, self.previous
        )
    }

    /// Parses and checks a stamp file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Stamp, ParseError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let (line, col) = line_col(&bytes[..e.valid_up_to()]);
            ParseError::NotUtf8 { line, col }
        })?;
        let stamp: Stamp = ron::from_str(text).map_err(|e| ParseError::Syntax {
            line: e.span.start.line,
            col: e.span.start.col,
            what: e.code.to_string(),
        })?;
        stamp.check(text)?;
        Ok(stamp)
    }

    /// Whether this is the first stamp of a chain (it follows nothing).
    pub fn is_first(&self) -> bool {
        self.counter == 1 && self.previous.is_empty()
    }

    /// The checks serde's types cannot express; `text` locates the failing field.
    fn check(&self, text: &str) -> Result<(), ParseError> {
        let field_error = |field: &'static str, value: String, why: &'static str| {
            let (line, col) = field_position(text, field);
            ParseError::Field {
                line,
                col,
                field,
                value,
                why,
            }
        };
        if !is_lower_hex(&self.drive_id, DRIVE_ID_DIGITS) {
            return Err(field_error(
                "drive_id",
                self.drive_id.clone(),
                "is not 32 lowercase hex digits",
            ));
        }
        if self.counter == 0 {
            return Err(field_error(
                "counter",
                self.counter.to_string(),
                "is not a boot count (stamps count from 1)",
            ));
        }
        if self.counter == 1 && !self.previous.is_empty() {
            return Err(field_error(
                "previous",
                self.previous.clone(),
                "is not empty, but stamp #1 follows no stamp",
            ));
        }
        if self.counter > 1 && !is_lower_hex(&self.previous, SHA256_DIGITS) {
            return Err(field_error(
                "previous",
                self.previous.clone(),
                "is not a SHA-256 (64 lowercase hex digits) of the previous stamp",
            ));
        }
        if self.machine_serial.trim().is_empty() {
            return Err(field_error(
                "machine_serial",
                self.machine_serial.clone(),
                "is empty: it names the host that wrote the stamp",
            ));
        }
        Ok(())
    }
}

/// The stamp that follows `previous` (a stamp and the exact bytes it was read from), written
/// by the machine `machine_serial` at `now` (Unix seconds); the first stamp of a chain when
/// `previous` is `None`.
pub fn next(
    previous: Option<(&Stamp, &[u8])>,
    drive_id: &str,
    machine_serial: &str,
    now: u64,
) -> Stamp {
    let (counter, previous) = match previous {
        None => (1, String::new()),
        // Saturating: only a forged stamp reaches u64::MAX; write_stamp then refuses the
        // result (its counter does not follow), with a message, instead of a panic in PID 1.
        Some((stamp, bytes)) => (stamp.counter.saturating_add(1), sha256_hex(bytes)),
    };
    Stamp {
        drive_id: drive_id.to_string(),
        counter,
        time: now,
        machine_serial: machine_serial.to_string(),
        previous,
    }
}

/// Checks that the stamp file `newer_bytes` directly follows the stamp file `older_bytes`:
/// same drive, `previous` is the SHA-256 of the older bytes, counter one more.
pub fn verify_chain(newer_bytes: &[u8], older_bytes: &[u8]) -> Result<(), ChainError> {
    let newer = Stamp::parse(newer_bytes).map_err(ChainError::NewerUnparsable)?;
    let older = Stamp::parse(older_bytes).map_err(ChainError::OlderUnparsable)?;
    check_link(&newer, &older, older_bytes)
}

/// [`verify_chain`] on parsed stamps; `older_bytes` are the bytes `older` was parsed from.
fn check_link(newer: &Stamp, older: &Stamp, older_bytes: &[u8]) -> Result<(), ChainError> {
    if newer.drive_id != older.drive_id {
        return Err(ChainError::OtherDrive {
            newer: newer.drive_id.clone(),
            older: older.drive_id.clone(),
        });
    }
    let expected = sha256_hex(older_bytes);
    if newer.previous != expected {
        return Err(ChainError::Previous {
            expected,
            found: newer.previous.clone(),
        });
    }
    if older.counter.checked_add(1) != Some(newer.counter) {
        return Err(ChainError::Counter {
            newer: newer.counter,
            older: older.counter,
        });
    }
    Ok(())
}

/// Which of the three stamp files a stamp was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampFile {
    /// `stamp.ron`: the normal case.
    Current,
    /// `stamp.ron.new`: the last write was interrupted after it moved `stamp.ron` away.
    New,
    /// `stamp.ron.bak`: `stamp.ron` (and `stamp.ron.new`) were missing or damaged.
    Backup,
}

impl StampFile {
    /// The slot of [`replace`] this file is.
    pub fn slot(self) -> Slot {
        match self {
            StampFile::Current => Slot::Current,
            StampFile::New => Slot::New,
            StampFile::Backup => Slot::Backup,
        }
    }

    /// The file's name in the stamp directory.
    pub fn name(self) -> &'static str {
        match self {
            StampFile::Current => STAMP_FILE,
            StampFile::New => NEW_FILE,
            StampFile::Backup => BACKUP_FILE,
        }
    }
}

impl fmt::Display for StampFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The drive's current stamp, as [`read_current`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentStamp {
    /// The file it came from.
    pub file: StampFile,
    /// The stamp.
    pub stamp: Stamp,
    /// The file's exact bytes (the next stamp's `previous` hashes them).
    pub bytes: Vec<u8>,
}

/// The current stamp in `dir`: `stamp.ron` if it parses and chains to `stamp.ron.bak`, else
/// `stamp.ron.new` if it is complete and chains to the backup, else `stamp.ron.bak`.
///
/// "Chains to the backup" holds trivially for a first stamp and when the backup is missing or
/// unusable (there is nothing to check against). Every file passed over is logged with the
/// reason. Fails with [`StampError::NoStamp`] when none of the files exists and
/// [`StampError::Unusable`] when none can be used.
pub fn read_current(fs: &impl FileOps, dir: &Path) -> Result<CurrentStamp, StampError> {
    let mut problems = Vec::new();
    let (backup, backup_problem) = match load(fs, dir, StampFile::Backup) {
        Ok(backup) => (backup, None),
        Err(problem) => (None, Some(problem)),
    };
    for file in [StampFile::Current, StampFile::New] {
        let candidate = load(fs, dir, file).and_then(|loaded| match loaded {
            Some(candidate) => accept(dir, candidate, backup.as_ref()).map(Some),
            None => Ok(None),
        });
        match candidate {
            Ok(Some(current)) => {
                log_passed_over(problems.iter().chain(&backup_problem), current.file);
                return Ok(current);
            }
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    if let Some(current) = backup {
        log_passed_over(&problems, current.file);
        return Ok(current);
    }
    problems.extend(backup_problem);
    if problems.is_empty() {
        Err(StampError::NoStamp {
            dir: dir.to_path_buf(),
        })
    } else {
        Err(StampError::Unusable {
            dir: dir.to_path_buf(),
            problems: Problems(problems),
        })
    }
}

/// The stamp in `file`, `None` when the file does not exist.
fn load(
    fs: &impl FileOps,
    dir: &Path,
    file: StampFile,
) -> Result<Option<CurrentStamp>, StampError> {
    let path = dir.join(file.name());
    let bytes = match fs.read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StampError::Read { path, source }),
    };
    let stamp = Stamp::parse(&bytes).map_err(|source| StampError::Parse { path, source })?;
    Ok(Some(CurrentStamp { file, stamp, bytes }))
}

/// `candidate` (read from `stamp.ron` or `stamp.ron.new`) if it can be the current stamp.
fn accept(
    dir: &Path,
    candidate: CurrentStamp,
    backup: Option<&CurrentStamp>,
) -> Result<CurrentStamp, StampError> {
    let path = dir.join(candidate.file.name());
    // `stamp.ron.new` is the one file a crash can leave half-written. A torn RON file almost
    // never parses, but one cut in its last line could: demand the exact rendered bytes.
    if candidate.file == StampFile::New && candidate.bytes != candidate.stamp.render().as_bytes() {
        return Err(StampError::Incomplete { path });
    }
    match backup {
        Some(backup) if !candidate.stamp.is_first() => {
            check_link(&candidate.stamp, &backup.stamp, &backup.bytes)
                .map_err(|source| StampError::Unchained { path, source })?;
        }
        // A first stamp follows nothing, and without a usable backup there is nothing to
        // check against: the candidate is the best stamp there is.
        _ => {}
    }
    Ok(candidate)
}

/// Logs why the files before `taken` were passed over.
fn log_passed_over<'a>(problems: impl IntoIterator<Item = &'a StampError>, taken: StampFile) {
    for problem in problems {
        log::warn!("{problem}; using {taken}");
    }
}

/// Writes `stamp` as the drive's current stamp in `dir`, keeping the current one as the
/// backup, so that a crash at any step leaves the old stamp or the new one readable (see the
/// module documentation for the sequence and what FAT does and does not guarantee).
///
/// `stamp` must follow the current stamp ([`next`] of what [`read_current`] returns), or be a
/// first stamp (`next(None, ...)`), which starts a new chain.
pub fn write_stamp(fs: &mut impl FileOps, dir: &Path, stamp: &Stamp) -> Result<(), StampError> {
    let bytes = stamp.render().into_bytes();
    Stamp::parse(&bytes).map_err(|source| StampError::Invalid { source })?;
    let current = current_for_write(fs, dir)?;
    check_follows(dir, stamp, current.as_ref())?;
    let slot = current.map(|current| current.file.slot());
    Ok(replace::replace(
        fs,
        &Rotation::new(dir, STAMP_FILE),
        &bytes,
        slot,
    )?)
}

/// The current stamp, `None` when there is none to keep (a new drive, or all files damaged).
fn current_for_write(fs: &impl FileOps, dir: &Path) -> Result<Option<CurrentStamp>, StampError> {
    match read_current(fs, dir) {
        Ok(current) => Ok(Some(current)),
        Err(StampError::NoStamp { .. }) => Ok(None),
        Err(unusable @ StampError::Unusable { .. }) => {
            log::warn!("{unusable}");
            Ok(None)
        }
        // read_current fails only in the two ways above; anything it learns to say later is
        // passed on rather than written over.
        Err(other) => Err(other),
    }
}

/// Refuses a stamp that read_current would not take as following the current one.
fn check_follows(
    dir: &Path,
    stamp: &Stamp,
    current: Option<&CurrentStamp>,
) -> Result<(), StampError> {
    if stamp.is_first() {
        if let Some(current) = current {
            log::warn!(
                "starting a new stamp chain in {} over stamp #{} of {}",
                dir.display(),
                current.stamp.counter,
                current.file
            );
        }
        return Ok(());
    }
    let Some(current) = current else {
        return Err(StampError::Orphan {
            dir: dir.to_path_buf(),
            counter: stamp.counter,
        });
    };
    check_link(stamp, &current.stamp, &current.bytes).map_err(|source| StampError::NotNext {
        path: dir.join(current.file.name()),
        source,
    })
}

/// The SHA-256 of `bytes` as 64 lowercase hex digits.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` is exactly `digits` lowercase hex digits.
fn is_lower_hex(text: &str, digits: usize) -> bool {
    text.len() == digits
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The line and column (from 1) just after `prefix`.
fn line_col(prefix: &[u8]) -> (usize, usize) {
    let line = 1 + prefix.iter().filter(|&&b| b == b'\n').count();
    let line_start = prefix
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    (line, 1 + prefix.len() - line_start)
}

/// The line and column of `field:` in `text`; the start of the text if it is not there
/// (serde found the field, so only an unusual spelling such as `r#counter` misses it).
fn field_position(text: &str, field: &str) -> (usize, usize) {
    text.find(&format!("{field}:"))
        .map_or((1, 1), |at| line_col(&text.as_bytes()[..at]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    const DRIVE_A: &str = "9c1e00000000000000000000000000aa";
    const DRIVE_B: &str = "0f3a00000000000000000000000000bb";
    const SERIAL: &str = "PXT-H0-0001";

    fn dir() -> PathBuf {
        PathBuf::from("drive/pxen")
    }

    /// What a power cut leaves of a file whose data was not fsynced.
    #[derive(Debug, Clone, Copy)]
    enum Torn {
        /// The first half of the bytes.
        Half,
        /// The right size, but the data never reached the media.
        Zeros,
        /// Created, nothing written.
        Empty,
    }

    impl Torn {
        fn apply(self, bytes: &[u8]) -> Vec<u8> {
            match self {
                Torn::Half => bytes[..bytes.len() / 2].to_vec(),
                Torn::Zeros => vec![0; bytes.len()],
                Torn::Empty => Vec::new(),
            }
        }
    }

    /// How a step of the write sequence fails.
    #[derive(Debug, Clone, Copy)]
    enum Crash {
        /// The step returns an error (a write half done), the machine runs on.
        Error,
        /// The power goes at the step: it and every later step fail, and after the reboot the
        /// data not fsynced is torn and, unless `names_persisted`, the renames and creations
        /// since the last directory fsync are lost.
        PowerLoss { names_persisted: bool, torn: Torn },
    }

    fn every_crash() -> Vec<Crash> {
        let mut crashes = vec![Crash::Error];
        for names_persisted in [true, false] {
            for torn in [Torn::Half, Torn::Zeros, Torn::Empty] {
                crashes.push(Crash::PowerLoss {
                    names_persisted,
                    torn,
                });
            }
        }
        crashes
    }

    /// A step of the write sequence, with file names.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Op {
        Write(&'static str),
        SyncFile(&'static str),
        Rename(&'static str, &'static str),
        SyncDir,
    }

    /// A file system in memory that records the steps and fails the one it is told to.
    #[derive(Debug, Clone, Default)]
    struct FakeFs {
        files: BTreeMap<PathBuf, Vec<u8>>,
        /// Files written since their last fsync.
        unsynced: BTreeSet<PathBuf>,
        /// The files as of the last directory fsync (or the start).
        at_last_dir_sync: BTreeMap<PathBuf, Vec<u8>>,
        ops: Vec<Op>,
        crash: Option<(usize, Crash)>,
        powered_off: bool,
    }

    fn name_of(path: &Path) -> &'static str {
        [STAMP_FILE, NEW_FILE, BACKUP_FILE]
            .into_iter()
            .find(|name| path == dir().join(name))
            .unwrap_or_else(|| panic!("unexpected path {}", path.display()))
    }

    impl FakeFs {
        fn with_files(files: BTreeMap<PathBuf, Vec<u8>>) -> FakeFs {
            FakeFs {
                at_last_dir_sync: files.clone(),
                files,
                ..FakeFs::default()
            }
        }

        fn crashing(&self, at: usize, crash: Crash) -> FakeFs {
            FakeFs {
                crash: Some((at, crash)),
                ops: Vec::new(),
                ..self.clone()
            }
        }

        fn step(&mut self, op: Op) -> io::Result<()> {
            if self.powered_off {
                return Err(io::Error::other("the drive lost power"));
            }
            let index = self.ops.len();
            self.ops.push(op);
            match self.crash {
                Some((at, crash)) if at == index => {
                    self.powered_off = matches!(crash, Crash::PowerLoss { .. });
                    Err(io::Error::other(format!(
                        "{crash:?} injected at step {index}"
                    )))
                }
                _ => Ok(()),
            }
        }

        /// The file system a read sees after the crash (and the reboot, for a power loss).
        fn after_crash(self) -> FakeFs {
            match self.crash {
                Some((
                    _,
                    Crash::PowerLoss {
                        names_persisted,
                        torn,
                    },
                )) if self.powered_off => {
                    let mut files = if names_persisted {
                        self.files.clone()
                    } else {
                        self.at_last_dir_sync.clone()
                    };
                    for path in &self.unsynced {
                        if let Some(bytes) = files.get_mut(path) {
                            *bytes = torn.apply(&self.files.get(path).unwrap_or(bytes).clone());
                        }
                    }
                    FakeFs::with_files(files)
                }
                _ => FakeFs::with_files(self.files),
            }
        }

        fn set(&mut self, name: &str, bytes: &[u8]) {
            self.files.insert(dir().join(name), bytes.to_vec());
            self.at_last_dir_sync = self.files.clone();
        }

        fn get(&self, name: &str) -> Option<&[u8]> {
            self.files.get(&dir().join(name)).map(Vec::as_slice)
        }
    }

    impl FileOps for FakeFs {
        fn write_file(&mut self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            let result = self.step(Op::Write(name_of(path)));
            let written = if result.is_ok() {
                bytes
            } else {
                &bytes[..bytes.len() / 2]
            };
            if !self.powered_off || result.is_err() {
                self.files.insert(path.to_path_buf(), written.to_vec());
                self.unsynced.insert(path.to_path_buf());
            }
            result
        }

        fn fsync_file(&mut self, path: &Path) -> io::Result<()> {
            self.step(Op::SyncFile(name_of(path)))?;
            self.unsynced.remove(path);
            Ok(())
        }

        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.step(Op::Rename(name_of(from), name_of(to)))?;
            let bytes = self
                .files
                .remove(from)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            self.files.insert(to.to_path_buf(), bytes);
            if self.unsynced.remove(from) {
                self.unsynced.insert(to.to_path_buf());
            } else {
                self.unsynced.remove(to);
            }
            Ok(())
        }

        fn fsync_dir(&mut self, dir: &Path) -> io::Result<()> {
            assert_eq!(dir, super::tests::dir());
            self.step(Op::SyncDir)?;
            self.at_last_dir_sync = self.files.clone();
            Ok(())
        }

        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    /// The stamp host0 writes at its next boot on `fs`.
    fn next_for(fs: &impl FileOps, drive_id: &str, now: u64) -> Stamp {
        match read_current(fs, &dir()) {
            Ok(current) => next(
                Some((&current.stamp, &current.bytes)),
                drive_id,
                SERIAL,
                now,
            ),
            Err(_) => next(None, drive_id, SERIAL, now),
        }
    }

    /// A boot as host0: reads the current stamp and writes the next one.
    fn boot(fs: &mut impl FileOps, drive_id: &str, now: u64) -> Stamp {
        let stamp = next_for(fs, drive_id, now);
        write_stamp(fs, &dir(), &stamp).unwrap();
        stamp
    }

    fn drive_after_boots(boots: u64) -> FakeFs {
        let mut fs = FakeFs::default();
        for now in 1..=boots {
            boot(&mut fs, DRIVE_A, 1_795_000_000 + now);
        }
        fs.ops.clear();
        fs
    }

    fn example() -> Stamp {
        Stamp {
            drive_id: DRIVE_A.to_string(),
            counter: 7,
            time: 1_795_003_600,
            machine_serial: SERIAL.to_string(),
            previous: "ab".repeat(32),
        }
    }

    #[test]
    fn renders_the_documented_layout() {
        let expected = format!(
            "Stamp(\n    drive_id: \"{DRIVE_A}\",\n    counter: 7,\n    time: 1795003600,\n    \
             machine_serial: \"PXT-H0-0001\",\n    previous: \"{}\",\n)\n",
            "ab".repeat(32)
        );
        assert_eq!(example().render(), expected);
        assert_eq!(Stamp::parse(expected.as_bytes()).unwrap(), example());
    }

    #[test]
    fn any_serial_reads_back_as_written() {
        for serial in [
            "with \"quotes\" and \\ backslash",
            "tab\tnew\nline\rcr",
            "nul\0bell\u{7}del\u{7f}",
            "ünïcödé 機械 🖥",
            "combining \u{301} at start: \u{301}x",
            "   spaces   ",
        ] {
            let stamp = Stamp {
                machine_serial: serial.to_string(),
                ..example()
            };
            assert_eq!(
                Stamp::parse(stamp.render().as_bytes()).unwrap(),
                stamp,
                "{serial:?}"
            );
        }
    }

    #[test]
    fn parse_errors_say_where_and_what() {
        let text = example().render().replace("time:", "when:");
        let error = Stamp::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(error.starts_with("4:"), "{error}");
        assert!(error.contains("when"), "{error}");
        assert!(error.contains("delete all three"), "{error}");

        let text = example().render().replace(DRIVE_A, "9C1E");
        let error = Stamp::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(
            error.starts_with("2:5: drive_id \"9C1E\" is not 32 lowercase hex"),
            "{error}"
        );

        let mut bytes = example().render().into_bytes();
        bytes[30] = 0xff;
        let error = Stamp::parse(&bytes).unwrap_err();
        assert!(
            matches!(error, ParseError::NotUtf8 { line: 2, col: 24 }),
            "{error}"
        );

        let error = StampError::Parse {
            path: dir().join(STAMP_FILE),
            source: Stamp::parse(b"Stamp(\n    drive_id: ").unwrap_err(),
        };
        assert!(
            error.to_string().starts_with("drive/pxen/stamp.ron:2:"),
            "{error}"
        );
    }

    #[test]
    fn counters_and_previous_hashes_must_agree() {
        let first_with_previous = Stamp {
            counter: 1,
            ..example()
        };
        let later_without_previous = Stamp {
            previous: String::new(),
            ..example()
        };
        let zero = Stamp {
            counter: 0,
            previous: String::new(),
            ..example()
        };
        let no_serial = Stamp {
            machine_serial: " ".to_string(),
            ..example()
        };
        for (stamp, field) in [
            (first_with_previous, "previous"),
            (later_without_previous, "previous"),
            (zero, "counter"),
            (no_serial, "machine_serial"),
        ] {
            match Stamp::parse(stamp.render().as_bytes()) {
                Err(ParseError::Field { field: found, .. }) => assert_eq!(found, field),
                other => panic!("{stamp:?}: expected a {field} error, got {other:?}"),
            }
        }
    }

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn next_counts_up_and_hashes_the_previous_bytes() {
        let first = next(None, DRIVE_A, SERIAL, 100);
        assert_eq!((first.counter, first.previous.as_str()), (1, ""));
        assert!(first.is_first());
        let first_bytes = first.render();
        let second = next(
            Some((&first, first_bytes.as_bytes())),
            DRIVE_A,
            "OTHER",
            200,
        );
        assert_eq!(second.counter, 2);
        assert_eq!(second.time, 200);
        assert_eq!(second.machine_serial, "OTHER");
        assert_eq!(second.previous, sha256_hex(first_bytes.as_bytes()));
        verify_chain(second.render().as_bytes(), first_bytes.as_bytes()).unwrap();
    }

    #[test]
    fn the_chain_verifies_across_ten_writes() {
        let mut fs = FakeFs::default();
        let mut files: Vec<Vec<u8>> = Vec::new();
        for now in 0..10 {
            let stamp = boot(&mut fs, DRIVE_A, 1_795_000_000 + now);
            let current = read_current(&fs, &dir()).unwrap();
            assert_eq!(current.file, StampFile::Current);
            assert_eq!(current.stamp, stamp);
            if let Some(previous) = files.last() {
                assert_eq!(fs.get(BACKUP_FILE), Some(previous.as_slice()));
            }
            files.push(current.bytes);
        }
        assert_eq!(read_current(&fs, &dir()).unwrap().stamp.counter, 10);
        for pair in files.windows(2) {
            verify_chain(&pair[1], &pair[0]).unwrap();
        }
        // Not consecutive: skipping a stamp breaks the chain.
        assert!(matches!(
            verify_chain(&files[5], &files[3]),
            Err(ChainError::Previous { .. })
        ));
    }

    #[test]
    fn a_stamp_moved_between_drives_does_not_chain() {
        let mut a = FakeFs::default();
        let mut b = FakeFs::default();
        for now in 0..3 {
            boot(&mut a, DRIVE_A, now);
            boot(&mut b, DRIVE_B, now);
        }
        let from_b = b.get(STAMP_FILE).unwrap().to_vec();
        let a_backup = a.get(BACKUP_FILE).unwrap().to_vec();
        let error = verify_chain(&from_b, &a_backup).unwrap_err();
        assert!(matches!(error, ChainError::OtherDrive { .. }), "{error}");
        assert!(error.to_string().contains("copied from another drive"));

        // Copied over drive A's stamp.ron, it is passed over for the backup.
        a.set(STAMP_FILE, &from_b);
        let current = read_current(&a, &dir()).unwrap();
        assert_eq!(current.file, StampFile::Backup);
        assert_eq!(current.bytes, a_backup);
    }

    #[test]
    fn two_identical_drives_diverge_at_their_first_use() {
        let original = drive_after_boots(3);
        let mut clone = original.clone();
        let mut original = original;
        // The same stamp #4 bytes would need the same second and the same machine; a clone
        // booted elsewhere or later differs, and so does everything chained after it.
        boot(&mut original, DRIVE_A, 2_000_000_000);
        boot(&mut clone, DRIVE_A, 2_000_000_001);
        boot(&mut original, DRIVE_A, 2_000_000_002);
        let original_5 = original.get(STAMP_FILE).unwrap();
        let clone_4 = clone.get(STAMP_FILE).unwrap();
        let error = verify_chain(original_5, clone_4).unwrap_err();
        assert!(matches!(error, ChainError::Previous { .. }), "{error}");
        assert!(error.to_string().contains("clone"), "{error}");
    }

    #[test]
    fn chain_errors_name_what_breaks() {
        let first = next(None, DRIVE_A, SERIAL, 1);
        let first_bytes = first.render();
        let mut skipped = next(Some((&first, first_bytes.as_bytes())), DRIVE_A, SERIAL, 2);
        skipped.counter = 3;
        assert!(matches!(
            verify_chain(skipped.render().as_bytes(), first_bytes.as_bytes()),
            Err(ChainError::Counter { newer: 3, older: 1 })
        ));
        assert!(matches!(
            verify_chain(b"garbage", first_bytes.as_bytes()),
            Err(ChainError::NewerUnparsable(_))
        ));
        assert!(matches!(
            verify_chain(first_bytes.as_bytes(), b""),
            Err(ChainError::OlderUnparsable(_))
        ));
    }

    #[test]
    fn the_write_sequence_is_the_documented_one() {
        let mut fs = drive_after_boots(3);
        boot(&mut fs, DRIVE_A, 10);
        assert_eq!(
            fs.ops,
            [
                Op::Write(NEW_FILE),
                Op::SyncFile(NEW_FILE),
                Op::Rename(STAMP_FILE, BACKUP_FILE),
                Op::Rename(NEW_FILE, STAMP_FILE),
                Op::SyncDir,
            ]
        );
    }

    /// Drive A after three boots and a fourth write stopped after it moved stamp.ron away.
    fn interrupted_drive() -> FakeFs {
        let mut fs = drive_after_boots(3);
        let stamp = next_for(&fs, DRIVE_A, 10);
        let current = fs.files.remove(&dir().join(STAMP_FILE)).unwrap();
        fs.set(BACKUP_FILE, &current);
        fs.set(NEW_FILE, stamp.render().as_bytes());
        fs
    }

    #[test]
    fn an_interrupted_write_is_finished_before_the_next() {
        let mut fs = interrupted_drive();
        let current = read_current(&fs, &dir()).unwrap();
        assert_eq!((current.file, current.stamp.counter), (StampFile::New, 4));
        boot(&mut fs, DRIVE_A, 11);
        assert_eq!(
            fs.ops,
            [
                Op::Rename(NEW_FILE, STAMP_FILE),
                Op::SyncDir,
                Op::Write(NEW_FILE),
                Op::SyncFile(NEW_FILE),
                Op::Rename(STAMP_FILE, BACKUP_FILE),
                Op::Rename(NEW_FILE, STAMP_FILE),
                Op::SyncDir,
            ]
        );
        let current = read_current(&fs, &dir()).unwrap();
        assert_eq!(
            (current.file, current.stamp.counter),
            (StampFile::Current, 5)
        );
        verify_chain(&current.bytes, fs.get(BACKUP_FILE).unwrap()).unwrap();
    }

    #[test]
    fn a_damaged_stamp_is_replaced_without_touching_the_backup() {
        let mut fs = drive_after_boots(3);
        fs.set(STAMP_FILE, b"Stamp(\n    drive_id: \"9c");
        let backup = fs.get(BACKUP_FILE).unwrap().to_vec();
        boot(&mut fs, DRIVE_A, 11);
        assert_eq!(
            fs.ops,
            [
                Op::Write(NEW_FILE),
                Op::SyncFile(NEW_FILE),
                Op::Rename(NEW_FILE, STAMP_FILE),
                Op::SyncDir,
            ]
        );
        assert_eq!(fs.get(BACKUP_FILE), Some(&backup as &[u8]));
        verify_chain(fs.get(STAMP_FILE).unwrap(), &backup).unwrap();
    }

    /// The states a drive can be in before a write: normal, new, interrupted, damaged.
    fn states_before_a_write() -> Vec<(&'static str, FakeFs)> {
        let mut damaged = drive_after_boots(3);
        damaged.set(STAMP_FILE, b"\0\0\0\0");
        let mut missing = drive_after_boots(3);
        missing.files.remove(&dir().join(STAMP_FILE));
        missing.at_last_dir_sync = missing.files.clone();
        let mut all_damaged = drive_after_boots(3);
        all_damaged.set(STAMP_FILE, b"Stamp(");
        all_damaged.set(BACKUP_FILE, b"");
        vec![
            ("after three boots", drive_after_boots(3)),
            ("after one boot", drive_after_boots(1)),
            ("new", FakeFs::default()),
            ("interrupted", interrupted_drive()),
            ("stamp.ron damaged", damaged),
            ("stamp.ron missing", missing),
            ("all damaged", all_damaged),
        ]
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_old_stamp_or_the_new_one() {
        for (state, drive) in states_before_a_write() {
            let old = read_current(&drive, &dir())
                .ok()
                .map(|current| current.bytes);
            let stamp = next_for(&drive, DRIVE_A, 2_000_000_000);
            let new = stamp.render().into_bytes();
            let mut clean = drive.clone();
            write_stamp(&mut clean, &dir(), &stamp).unwrap();
            let steps = clean.ops.len();
            for at in 0..=steps {
                for crash in every_crash() {
                    let context = format!("{state}, {crash:?} at step {at} of {steps}");
                    let mut fs = drive.crashing(at, crash);
                    let result = write_stamp(&mut fs, &dir(), &stamp);
                    assert_eq!(result.is_err(), at < steps, "{context}: {result:?}");
                    let mut fs = fs.after_crash();
                    match read_current(&fs, &dir()) {
                        Ok(read) if at == steps => assert_eq!(read.bytes, new, "{context}"),
                        Ok(read) => assert!(
                            read.bytes == new || Some(&read.bytes) == old.as_ref(),
                            "{context}: read {}",
                            String::from_utf8_lossy(&read.bytes)
                        ),
                        Err(e) => assert!(old.is_none(), "{context}: {e}"),
                    }
                    // And the next boot writes its stamp, chained to the one it found.
                    let after = boot(&mut fs, DRIVE_A, 2_000_000_100);
                    let read = read_current(&fs, &dir()).unwrap();
                    assert_eq!(
                        (read.file, &read.stamp),
                        (StampFile::Current, &after),
                        "{context}"
                    );
                    if !after.is_first() {
                        verify_chain(&read.bytes, fs.get(BACKUP_FILE).unwrap()).unwrap();
                    }
                }
            }
        }
    }

    #[test]
    fn a_torn_new_file_is_ignored_for_the_old_stamp() {
        let drive = interrupted_drive();
        let new = drive.get(NEW_FILE).unwrap().to_vec();
        let backup = drive.get(BACKUP_FILE).unwrap().to_vec();
        // Every prefix (the last one only lacks the final newline, and still parses).
        for cut in 0..new.len() {
            let mut fs = drive.clone();
            fs.set(NEW_FILE, &new[..cut]);
            let current = read_current(&fs, &dir()).unwrap();
            assert_eq!(current.file, StampFile::Backup, "cut at {cut}");
            assert_eq!(current.bytes, backup);
        }
        let mut fs = drive.clone();
        fs.set(NEW_FILE, &vec![0; new.len()]);
        assert_eq!(read_current(&fs, &dir()).unwrap().file, StampFile::Backup);
        // Beside an intact stamp.ron, a torn .new is not even looked at.
        let mut fs = drive_after_boots(3);
        fs.set(NEW_FILE, &new[..new.len() / 2]);
        assert_eq!(read_current(&fs, &dir()).unwrap().file, StampFile::Current);
    }

    #[test]
    fn a_corrupt_stamp_falls_back_to_the_backup() {
        let drive = drive_after_boots(3);
        let stamp = drive.get(STAMP_FILE).unwrap().to_vec();
        let backup = drive.get(BACKUP_FILE).unwrap().to_vec();
        let mut edited = Stamp::parse(&stamp).unwrap();
        edited.counter = 9;
        for corrupt in [
            stamp[..stamp.len() - 3].to_vec(),
            vec![0xff; stamp.len()],
            Vec::new(),
            edited.render().into_bytes(),
        ] {
            let mut fs = drive.clone();
            fs.set(STAMP_FILE, &corrupt);
            let current = read_current(&fs, &dir()).unwrap();
            assert_eq!(current.file, StampFile::Backup);
            assert_eq!(current.bytes, backup);
        }
    }

    #[test]
    fn a_stamp_without_a_usable_backup_is_taken_as_is() {
        let mut fs = drive_after_boots(3);
        fs.set(BACKUP_FILE, b"damaged");
        let current = read_current(&fs, &dir()).unwrap();
        assert_eq!(
            (current.file, current.stamp.counter),
            (StampFile::Current, 3)
        );
    }

    #[test]
    fn no_stamp_and_unusable_stamps_are_told_apart() {
        let error = read_current(&FakeFs::default(), &dir()).unwrap_err();
        assert!(matches!(error, StampError::NoStamp { .. }), "{error}");
        let mut fs = FakeFs::default();
        fs.set(STAMP_FILE, b"Stamp(");
        fs.set(BACKUP_FILE, b"\xff");
        let error = read_current(&fs, &dir()).unwrap_err().to_string();
        assert!(error.contains("drive/pxen/stamp.ron:1:6"), "{error}");
        assert!(error.contains("drive/pxen/stamp.ron.bak:1:1"), "{error}");
    }

    #[test]
    fn only_stamps_that_follow_the_current_one_are_written() {
        let mut fs = drive_after_boots(3);
        let current = read_current(&fs, &dir()).unwrap();
        let mut wrong = next(Some((&current.stamp, &current.bytes)), DRIVE_A, SERIAL, 9);
        wrong.counter += 1;
        let error = write_stamp(&mut fs, &dir(), &wrong).unwrap_err();
        assert!(matches!(error, StampError::NotNext { .. }), "{error}");
        let other_drive = next(Some((&current.stamp, &current.bytes)), DRIVE_B, SERIAL, 9);
        let error = write_stamp(&mut fs, &dir(), &other_drive).unwrap_err();
        assert!(error.to_string().contains("another drive"), "{error}");
        assert!(fs.ops.is_empty(), "nothing written: {:?}", fs.ops);

        let error = write_stamp(&mut FakeFs::default(), &dir(), &example()).unwrap_err();
        assert!(
            matches!(error, StampError::Orphan { counter: 7, .. }),
            "{error}"
        );
        let bad_id = next(None, "not hex", SERIAL, 9);
        let error = write_stamp(&mut FakeFs::default(), &dir(), &bad_id).unwrap_err();
        assert!(matches!(error, StampError::Invalid { .. }), "{error}");

        // A first stamp starts a new chain over an existing one.
        let restart = next(None, DRIVE_A, SERIAL, 9);
        write_stamp(&mut fs, &dir(), &restart).unwrap();
        assert_eq!(read_current(&fs, &dir()).unwrap().stamp, restart);
    }

    #[test]
    fn the_real_file_system_keeps_the_stamp_and_its_backup() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("pxen");
        std::fs::create_dir(&dir).unwrap();
        let mut fs = StdFileOps;
        let mut written = Vec::new();
        for now in 0..3 {
            let stamp = match read_current(&fs, &dir) {
                Ok(current) => next(Some((&current.stamp, &current.bytes)), DRIVE_A, SERIAL, now),
                Err(StampError::NoStamp { .. }) => next(None, DRIVE_A, SERIAL, now),
                Err(e) => panic!("{e}"),
            };
            write_stamp(&mut fs, &dir, &stamp).unwrap();
            written.push(stamp.render().into_bytes());
        }
        let current = read_current(&fs, &dir).unwrap();
        assert_eq!(
            (current.file, current.stamp.counter),
            (StampFile::Current, 3)
        );
        assert_eq!(std::fs::read(dir.join(STAMP_FILE)).unwrap(), written[2]);
        assert_eq!(std::fs::read(dir.join(BACKUP_FILE)).unwrap(), written[1]);
        assert!(!dir.join(NEW_FILE).exists());
        verify_chain(&written[2], &written[1]).unwrap();

        let missing = root.path().join("absent");
        let error = write_stamp(&mut fs, &missing, &next(None, DRIVE_A, SERIAL, 0)).unwrap_err();
        assert!(
            matches!(error, StampError::Write(ReplaceError::WriteNew { .. })),
            "{error}"
        );
        assert!(
            error.to_string().contains("absent/stamp.ron.new"),
            "{error}"
        );
    }
}
