//! The basic file systems PID 1 needs before anything else: `/proc`, `/sys`, `/dev`, `/run`.
//!
//! They are mounted in the initramfs and moved into the new root at the handoff, so the real
//! init finds them already there (as systemd expects).

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// A basic file system that could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be created.
    #[error("cannot create the mount point {path}: {source}")]
    CreateMountPoint {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The mount itself failed.
    #[error(
        "cannot mount {fstype} on {path}: {source}; the kernel must have {fstype} support built in"
    )]
    Mount {
        /// The file system type.
        fstype: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
}

/// One basic mount: where, what, and with which flags.
pub struct BasicMount {
    /// The mount point (absolute).
    pub path: &'static str,
    /// The file system type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// File system options.
    pub options: &'static str,
}

/// The basic mounts, in the order they are made.
pub const BASIC_MOUNTS: &[BasicMount] = &[
    BasicMount {
        path: "/proc",
        fstype: "proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        options: "",
    },
    BasicMount {
        path: "/sys",
        fstype: "sysfs",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        options: "",
    },
    BasicMount {
        path: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        options: "mode=0755",
    },
    BasicMount {
        path: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        options: "mode=0755",
    },
];

/// Mounts the basic file systems under `root` (normally `/`). A file system that is already
/// mounted there (a restarted PID 1, a test) is mounted again on top, which is harmless.
pub fn mount_basics(root: &Path) -> Result<(), MountError> {
    for basic in BASIC_MOUNTS {
        let path = root.join(basic.path.trim_start_matches('/'));
        std::fs::create_dir_all(&path).map_err(|source| MountError::CreateMountPoint {
            path: path.clone(),
            source,
        })?;
        mount(
            Some(basic.fstype),
            &path,
            Some(basic.fstype),
            basic.flags,
            Some(basic.options),
        )
        .map_err(|source| MountError::Mount {
            fstype: basic.fstype,
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}
