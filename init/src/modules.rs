//! Loading the early kernel modules that the initramfs ships (USB storage, FAT, NICs).
//!
//! The initramfs builder lists them in `/lib/modules/<kver>/pxen-early.load`, dependencies
//! first, so loading them in that order needs no dependency resolution here. A module that
//! fails to load is reported and skipped: a missing NIC driver must not keep a host down, and
//! the real init loads the full module set from the root filesystem later.

use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};

/// The list of early modules, relative to the module directory of the running kernel.
pub const LOAD_LIST: &str = "pxen-early.load";

/// The early module list could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the early module list {path}: {source}; the initramfs was built for another kernel than the one running, rebuild the image with matching kernel and modules")]
pub struct ListError {
    /// The list file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// What loading the early modules did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadSummary {
    /// Modules newly loaded.
    pub loaded: usize,
    /// Modules already in the kernel.
    pub already: usize,
    /// Modules for hardware this machine does not have.
    pub no_device: usize,
    /// Modules that failed otherwise, with the error.
    pub failed: Vec<(String, String)>,
}

/// Loads the early modules of the running kernel from `modules_root` (normally
/// `/lib/modules`), in the order of the load list.
pub fn load_early(modules_root: &Path) -> Result<LoadSummary, ListError> {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = modules_root.join(release);
    let list_path = dir.join(LOAD_LIST);
    let list = std::fs::read_to_string(&list_path).map_err(|source| ListError {
        path: list_path.clone(),
        source,
    })?;
    let mut summary = LoadSummary::default();
    for relative in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match load_one(&dir.join(relative)) {
            Ok(()) => summary.loaded += 1,
            Err(Outcome::Already) => summary.already += 1,
            Err(Outcome::NoDevice) => summary.no_device += 1,
            Err(Outcome::Failed(why)) => {
                log::warn!("kernel module {relative} not loaded: {why}");
                summary.failed.push((relative.to_string(), why));
            }
        }
    }
    Ok(summary)
}

/// Why a module was not newly loaded.
enum Outcome {
    Already,
    NoDevice,
    Failed(String),
}

fn load_one(path: &Path) -> Result<(), Outcome> {
    let file = File::open(path)
        .map_err(|e| Outcome::Failed(format!("cannot open {}: {e}", path.display())))?;
    let no_params = CString::default();
    match finit_module(&file, &no_params, ModuleInitFlags::empty()) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(Outcome::Already),
        // Device drivers refuse to stay loaded when none of their devices is present.
        Err(Errno::ENODEV | Errno::ENXIO) => Err(Outcome::NoDevice),
        Err(errno) => Err(Outcome::Failed(format!("{}: {errno}", path.display()))),
    }
}
