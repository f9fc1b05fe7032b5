//! `/init`'s part: giving a host its saved state back before the handoff.
//!
//! The image's SSH host keys are removed first, always: mmdebstrap bakes one set of keys into
//! the root filesystem, the same on every host, and a key every host shares identifies none.
//! Then this host's archive is restored if there is one: from the RAM copy of the drive on a
//! USB boot, from the initramfs (where host0 appends every host's state) on a network boot.
//! Without one, dom0's SSH server makes fresh keys (the drop-in of
//! [`crate::handoff::dom0::render_ssh_keys_drop_in`]) and systemd a fresh machine ID, which
//! `pxen state save` then sends to host0. The hash restored (or `none`) is left in
//! [`BASE_FILE`] for `pxen state save`. Nothing here stops a boot: a host without its state
//! is still a host that runs.

use std::path::{Path, PathBuf};

use super::archive::{self, content_hash, state_file_name};
use super::{BASE_FILE, HOSTS_DIR, NO_BASE, STATE_FILE};
use crate::drive::replace::{read_best, Rotation, StdFileOps};
use crate::handoff::dom0;
use crate::identity::{self, MachineIds};

/// What became of this host's state at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The archive with this hash was restored.
    State {
        /// Its content hash.
        hash: String,
        /// The entries written.
        entries: usize,
    },
    /// There is no saved state for this host.
    Nothing,
    /// There is one, but it could not be restored.
    Failed(String),
}

impl Restored {
    /// What `pxen state save` takes as host0's copy: the hash restored, else `none`.
    pub fn base(&self) -> &str {
        match self {
            Restored::State { hash, .. } => hash,
            Restored::Nothing | Restored::Failed(_) => NO_BASE,
        }
    }
}

/// The per-host directory of the machine with `ids` below `source` (a drive's root, or the
/// initramfs'), `None` when the machine has no usable ID.
pub fn host_dir(source: &Path, ids: &MachineIds) -> Option<PathBuf> {
    let id = identity::choose_id(ids)?;
    Some(source.join(HOSTS_DIR).join(state_file_name(&id.value)))
}

/// Restores the state of the machine with `ids`, found below `source`, into `new_root`;
/// installs the state units (on host0 the drive's too, by the role `/init` wrote) and
/// leaves the base for `pxen state save`. Failures are logged with what to do, never fatal.
pub fn restore_host_state(new_root: &Path, ids: &MachineIds, source: &Path) {
    let restored = match host_dir(source, ids) {
        Some(dir) => restore_from(new_root, &dir),
        None => {
            log::error!("state: this machine has no usable serial, UUID or MAC, so it has no saved state; its SSH host keys will change at every boot");
            remove_image_host_keys(new_root);
            Restored::Nothing
        }
    };
    let host0 =
        std::fs::read_to_string(dom0::ROLE_FILE).is_ok_and(|role| role.trim() == dom0::ROLE_HOST0);
    let marker = Path::new(crate::boot::DRIVE_COPY)
        .join(super::store::MARKER)
        .display()
        .to_string();
    if let Err(e) = dom0::install_state(new_root, host0, &marker) {
        log::error!("{e}; this host's state will not be saved to host0");
    }
    if let Err(e) = std::fs::write(BASE_FILE, format!("{}\n", restored.base())) {
        log::error!("state: cannot write {BASE_FILE}: {e}; `pxen state save` will send the state as a host with none saved, and host0 will refuse it if it holds one");
    }
}

/// Removes the image's SSH host keys, then restores the archive in `dir` if there is one.
pub fn restore_from(new_root: &Path, dir: &Path) -> Restored {
    remove_image_host_keys(new_root);
    let usable = |bytes: &[u8]| archive::check(bytes).map(|_| ()).map_err(|e| e.to_string());
    let Some((_, bytes)) = read_best(&StdFileOps, &Rotation::new(dir, STATE_FILE), usable) else {
        log::info!(
            "state: none saved in {}: this host gets fresh SSH host keys and machine ID, saved to host0 once it is up",
            dir.display()
        );
        return Restored::Nothing;
    };
    let hash = content_hash(&bytes);
    match archive::restore(&bytes, new_root) {
        Ok(entries) => {
            log::info!(
                "state: restored {entries} saved files from {} (state {})",
                dir.display(),
                &hash[..12]
            );
            Restored::State { hash, entries }
        }
        Err(e) => {
            log::error!("state: {e}; the host boots without its saved state, which host0 keeps: fix the cause and reboot it");
            Restored::Failed(e.to_string())
        }
    }
}

/// Removes `etc/ssh/ssh_host_*` from `root` (see the module docs); a failure is logged.
fn remove_image_host_keys(root: &Path) {
    let dir = root.join("etc/ssh");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                log::error!(
                    "state: cannot remove the image's SSH host key {}: {e}; this host may present the image's key, shared by every host",
                    entry.path().display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::replace::{replace, Slot};

    fn ids(serial: &str) -> MachineIds {
        MachineIds {
            product_serial: Some(serial.to_string()),
            ..MachineIds::default()
        }
    }

    #[test]
    fn without_a_saved_state_the_image_keys_go() {
        let root = tempfile::tempdir().unwrap();
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/ssh")).unwrap();
        std::fs::write(root.path().join("etc/ssh/ssh_host_rsa_key"), "IMAGE").unwrap();
        std::fs::write(root.path().join("etc/ssh/sshd_config"), "kept").unwrap();
        let dir = host_dir(source.path(), &ids("SN-1")).unwrap();
        assert_eq!(restore_from(root.path(), &dir), Restored::Nothing);
        assert!(!root.path().join("etc/ssh/ssh_host_rsa_key").exists());
        assert!(root.path().join("etc/ssh/sshd_config").exists());
        assert_eq!(Restored::Nothing.base(), NO_BASE);
    }

    #[test]
    fn a_saved_state_replaces_the_image_keys() {
        let saved = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(saved.path().join("etc/ssh")).unwrap();
        std::fs::write(saved.path().join("etc/ssh/ssh_host_ed25519_key"), "MINE").unwrap();
        let archive = archive::pack(saved.path()).unwrap();
        let source = tempfile::tempdir().unwrap();
        let dir = host_dir(source.path(), &ids("SN-1")).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let file = Rotation::new(&dir, STATE_FILE);
        replace(&mut StdFileOps, &file, &archive, None).unwrap();

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/ssh")).unwrap();
        std::fs::write(root.path().join("etc/ssh/ssh_host_rsa_key"), "IMAGE").unwrap();
        let restored = restore_from(root.path(), &dir);
        assert_eq!(restored.base(), content_hash(&archive));
        assert!(!root.path().join("etc/ssh/ssh_host_rsa_key").exists());
        let key = root.path().join("etc/ssh/ssh_host_ed25519_key");
        assert_eq!(std::fs::read(key).unwrap(), b"MINE");
        assert!(dir.starts_with(source.path().join("pxen/hosts")));
        let torn = Rotation::new(&dir, STATE_FILE);
        std::fs::write(torn.path(Slot::Current), &archive[..archive.len() / 2]).unwrap();
        std::fs::write(torn.path(Slot::Backup), &archive).unwrap();
        assert_eq!(
            restore_from(root.path(), &dir).base(),
            content_hash(&archive)
        );
    }
}
