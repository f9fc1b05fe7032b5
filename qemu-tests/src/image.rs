//! Reading files out of a PXEN drive image, so a test can boot its parts directly.

use std::path::Path;
use std::process::Command;

/// Where the FAT partition of a PXEN image starts (sector 2048), for mtools' `@@offset`.
pub const PARTITION_OFFSET: u64 = 2048 * 512;

/// A file could not be copied out of the image.
#[derive(Debug, thiserror::Error)]
#[error("cannot copy {name} out of the image {image} into {to}: {why}; mtools must be installed (`cargo xtask deps`)")]
pub struct ImageReadError {
    /// The image.
    pub image: String,
    /// The file on the FAT partition.
    pub name: String,
    /// Where it was to go.
    pub to: String,
    /// What went wrong.
    pub why: String,
}

/// Copies `name` from the FAT partition of `image` to `to`, with `mcopy` (no mounting).
pub fn copy_out(image: &Path, name: &str, to: &Path) -> Result<(), ImageReadError> {
    let error = |why: String| ImageReadError {
        image: image.display().to_string(),
        name: name.to_string(),
        to: to.display().to_string(),
        why,
    };
    let output = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{PARTITION_OFFSET}", image.display()))
        .arg(format!("::/{name}"))
        .arg(to)
        .output()
        .map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        return Err(error(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// A file could not be written into an image.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {from} into the image {image} as {name}: {why}; mtools must be installed (`cargo xtask deps`)")]
pub struct ImageWriteError {
    /// The image.
    pub image: String,
    /// The file written.
    pub from: String,
    /// Its name on the FAT partition.
    pub name: String,
    /// What went wrong.
    pub why: String,
}

/// Writes `from` into the FAT partition of `image` as `name`, replacing any file of that
/// name, with `mcopy` (no mounting): the way an administrator edits a drive.
pub fn copy_in(image: &Path, from: &Path, name: &str) -> Result<(), ImageWriteError> {
    let error = |why: String| ImageWriteError {
        image: image.display().to_string(),
        from: from.display().to_string(),
        name: name.to_string(),
        why,
    };
    let output = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{PARTITION_OFFSET}", image.display()))
        .arg(from)
        .arg(format!("::/{name}"))
        .output()
        .map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        return Err(error(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}
