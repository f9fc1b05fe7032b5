//! The test overlay: files added to the dom0 root filesystem of the test image only.
//!
//! It gives root a shell on the Xen console (`hvc0`) without a password, so that tests can
//! run commands inside the booted dom0 ([`crate::Machine::run`]). It must never be put on a
//! real drive.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the autologin drop-in goes, relative to the overlay's root.
pub const AUTOLOGIN_DROP_IN: &str = "etc/systemd/system/serial-getty@hvc0.service.d/autologin.conf";

/// The drop-in: Debian 12's own `serial-getty@.service` command line (systemd 252), with
/// `--autologin root` and `--noclear` added and the `-o '-p -- \\u'` login options removed
/// (with `--autologin`, agetty runs `login -f root`). The empty `ExecStart=` clears the
/// unit's command before setting ours; without it systemd refuses a second `ExecStart`.
pub const AUTOLOGIN_CONF: &str = "\
# PXEN test image only: root is logged in on the Xen console without a password.
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 - $TERM
";

/// Writing the overlay failed.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A directory of the overlay could not be created.
    #[error("cannot create the test overlay directory {path}: {source}; check that its parent is writable")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file of the overlay could not be written.
    #[error(
        "cannot write the test overlay file {path}: {source}; check free space and permissions"
    )]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Writes the test overlay into `dir` (created if missing), for the image builder's
/// `overlay` option.
pub fn write_test_overlay(dir: &Path) -> Result<(), OverlayError> {
    let file = dir.join(AUTOLOGIN_DROP_IN);
    // The constant path has a parent: it names a file inside `etc/...`.
    if let Some(parent) = file.parent() {
        fs::create_dir_all(parent).map_err(|source| OverlayError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    fs::write(&file, AUTOLOGIN_CONF)
        .map_err(|source| OverlayError::WriteFile { path: file, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overlay_holds_the_autologin_drop_in() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        write_test_overlay(dir.path()).expect("the overlay is written");
        let written = fs::read_to_string(dir.path().join(AUTOLOGIN_DROP_IN)).expect("readable");
        assert_eq!(written, AUTOLOGIN_CONF);
        let exec_lines: Vec<&str> = written
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(
            exec_lines[0], "ExecStart=",
            "the unit's command must be cleared first"
        );
        assert!(exec_lines[1].contains("--autologin root"));
    }

    #[test]
    fn writing_twice_is_harmless() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        write_test_overlay(dir.path()).expect("first write");
        write_test_overlay(dir.path()).expect("second write");
    }

    #[test]
    fn an_unwritable_place_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").expect("a plain file");
        let error = write_test_overlay(&blocker).expect_err("a file is not a directory");
        assert!(
            error.to_string().contains(&*blocker.to_string_lossy()),
            "{error}"
        );
    }
}
