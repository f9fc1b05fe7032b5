//! `pxen state sync`, on host0's dom0: the states the boot service stored in the RAM copy of
//! the drive, written through to the drive itself.
//!
//! The boot service runs chrooted in the RAM copy and cannot reach the drive, so it touches
//! [`super::store::MARKER`] after each store, which starts this through
//! `pxen-state-sync.path`; a timer runs it every 2 minutes too, for when the drive was out.
//! It finds the source drive as `/init` does (the PXEN partition with the drive ID of
//! `pxen.drive=`), mounts it read-write with synchronous writes, writes every state that
//! differs from the drive's crash-safely with a backup, and unmounts it. Without the drive it
//! says how many states are in RAM only, and succeeds: they are written when it is back.

use std::path::{Path, PathBuf};

use super::store::Store;
use crate::drive::replace::ReplaceError;
use crate::drive::{self, source, DriveError};

/// Writing the states to the drive failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The drive could not be mounted read-write.
    #[error("{0}; the hosts' states stay in RAM only, and are written at the next try")]
    Mount(#[from] DriveError),
    /// A state could not be written to the drive.
    #[error("cannot write the state of {name} to the drive: {source}; the previous one is kept there, and the write is tried again in 2 minutes")]
    Write {
        /// The host's state name.
        name: String,
        /// Why.
        source: ReplaceError,
    },
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// This many states were written to the drive (the others were already there).
    Written(usize),
    /// The drive is not plugged in; this many states are in RAM only.
    NoDrive(usize),
}

/// Writes every state of `from` that differs from `to`'s into `to`; returns how many.
pub fn copy_changed(from: &Store, to: &Store) -> Result<usize, SyncError> {
    let mut written = 0;
    for (name, state) in from.all() {
        if to.read(&name).as_deref() == Some(state.as_slice()) {
            continue;
        }
        to.write(&name, &state).map_err(|source| SyncError::Write {
            name: name.clone(),
            source,
        })?;
        written += 1;
    }
    Ok(written)
}

/// Finds the source drive with the drive ID `wanted`, and writes the states of the RAM copy
/// at `ram_root` to it, mounted at `mount_point` for the time of the writes.
pub fn sync_to_drive(
    ram_root: &Path,
    wanted: Option<&str>,
    mount_point: &Path,
) -> Result<Synced, SyncError> {
    let ram = Store::new(ram_root);
    let (sys, dev) = (Path::new("/sys"), Path::new("/dev"));
    let partition = drive::find_all(sys, dev, std::time::Duration::ZERO)
        .ok()
        .and_then(|found| source::choose(source::survey(&found, sys, dev, mount_point), wanted))
        .map(|candidate| candidate.partition);
    let Some(partition): Option<PathBuf> = partition else {
        return Ok(Synced::NoDrive(ram.all().len()));
    };
    drive::mount_readwrite(&partition, mount_point)?;
    let copied = copy_changed(&ram, &Store::new(mount_point));
    drive::unmount(mount_point);
    copied.map(Synced::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::tests::state;

    #[test]
    fn only_changed_states_are_written_and_the_old_one_is_kept() {
        let (ram, drive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ram, drive) = (Store::new(ram.path()), Store::new(drive.path()));
        ram.write("sn-1", &state("one")).unwrap();
        ram.write("sn-2", &state("two")).unwrap();
        drive.write("sn-2", &state("two")).unwrap();
        drive.write("sn-1", &state("old")).unwrap();
        assert_eq!(copy_changed(&ram, &drive).unwrap(), 1);
        assert_eq!(drive.read("sn-1"), Some(state("one")));
        assert_eq!(copy_changed(&ram, &drive).unwrap(), 0);
    }
}
