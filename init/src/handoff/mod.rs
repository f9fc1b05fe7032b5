//! The handoff to the real init: the host's identity written into the new root, then
//! `switch_root`.
//!
//! `pivot_root` cannot be used on the initramfs (it is the kernel's root mount, which cannot be
//! unmounted), so this does what util-linux's `switch_root` does: move the basic mounts into
//! the new root, delete the initramfs' contents to give its memory back, move the new root
//! onto `/`, `chroot` into it and `exec` the real init, which keeps PID 1.
//!
//! Everything that can fail for a reason the administrator can fix (a missing init, an
//! unwritable root) is checked before the first irreversible step.

pub mod apply;
pub mod dom0;
pub mod plan;

use std::convert::Infallible;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::unistd::{chdir, chroot, execv};

use crate::mounts::BASIC_MOUNTS;

/// How many symbolic links resolving the init may follow, as the kernel's own limit.
const MAX_SYMLINKS: usize = 40;

/// A step of the handoff that failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The real init does not exist in the new root.
    #[error("the real init {init} does not exist in the root filesystem ({resolved}); boot with init=PATH naming the root filesystem's init, or use a root filesystem that has one")]
    InitMissing {
        /// The init as asked for.
        init: PathBuf,
        /// Where it led inside the new root.
        resolved: PathBuf,
    },
    /// The real init is not an executable file.
    #[error("the real init {init} ({resolved}) is not an executable file; fix its permissions in the root filesystem or boot with another init=PATH")]
    InitNotExecutable {
        /// The init as asked for.
        init: PathBuf,
        /// Where it led inside the new root.
        resolved: PathBuf,
    },
    /// The init's symbolic links loop.
    #[error("the real init {init} is a loop of symbolic links in the root filesystem; fix the links or boot with another init=PATH")]
    InitLinkLoop {
        /// The init as asked for.
        init: PathBuf,
    },
    /// A file of the host's identity could not be written.
    #[error("cannot write {path} in the new root: {source}")]
    WriteIdentity {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A basic mount could not be moved into the new root.
    #[error("cannot move {from} to {to}: {source}")]
    MoveMount {
        /// The mount point in the initramfs.
        from: PathBuf,
        /// Its place in the new root.
        to: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// A mount point for a basic mount could not be created in the new root.
    #[error("cannot create {path} in the new root: {source}")]
    CreateMountPoint {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A system call of the switch itself failed.
    #[error("switch_root failed at `{step}` for {path}: {source}")]
    Switch {
        /// The step (chdir, mount --move, chroot).
        step: &'static str,
        /// The path it worked on.
        path: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// The real init could not be executed.
    #[error("cannot execute the real init {init}: {source}; the root filesystem may be for another architecture")]
    Exec {
        /// The init.
        init: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
}

/// Resolves `path` inside `root` as the kernel would after `chroot(root)`: symbolic links are
/// followed, with absolute targets taken relative to `root`. Returns the host path.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, usize> {
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(next) = pending.pop() {
        let mut components: Vec<Component> = next.components().collect();
        components.reverse();
        while let Some(component) = components.pop() {
            match component {
                Component::RootDir => resolved = PathBuf::new(),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => {
                    let candidate = resolved.join(name);
                    match std::fs::read_link(root.join(&candidate)) {
                        Ok(target) => {
                            links += 1;
                            if links > MAX_SYMLINKS {
                                return Err(links);
                            }
                            let rest: PathBuf = components.iter().rev().collect();
                            components.clear();
                            pending.push(rest);
                            pending.push(target);
                        }
                        Err(_) => resolved = candidate,
                    }
                }
            }
        }
    }
    Ok(root.join(resolved))
}

/// Checks that `init` is an executable file inside `new_root`.
pub fn check_init(new_root: &Path, init: &Path) -> Result<(), HandoffError> {
    let resolved = resolve_in_root(new_root, init).map_err(|_| HandoffError::InitLinkLoop {
        init: init.to_path_buf(),
    })?;
    let metadata = std::fs::metadata(&resolved).map_err(|_| HandoffError::InitMissing {
        init: init.to_path_buf(),
        resolved: resolved.clone(),
    })?;
    if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
        return Err(HandoffError::InitNotExecutable {
            init: init.to_path_buf(),
            resolved,
        });
    }
    Ok(())
}

/// The text of `/etc/hosts` for a host without a cluster configuration: loopback, and the
/// host's own name on 127.0.1.1 as Debian does, so that the name resolves without the network
/// (see [`apply::render_hosts`], which adds the cluster's hosts).
pub fn hosts_file(hostname: &str) -> String {
    apply::render_hosts(hostname, None, &[])
}

/// Writes the host's name into the new root: `/etc/hostname` and `/etc/hosts`.
pub fn write_identity(new_root: &Path, hostname: &str) -> Result<(), HandoffError> {
    let etc = new_root.join("etc");
    let write = |name: &str, text: String| {
        let path = etc.join(name);
        std::fs::create_dir_all(&etc)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|source| HandoffError::WriteIdentity { path, source })
    };
    write("hostname", format!("{hostname}\n"))?;
    write("hosts", hosts_file(hostname))
}

/// Switches to `new_root` (a mount point) and executes `init` there as this process.
///
/// `args` are passed on to the real init after its name (the kernel gives PID 1 the command
/// line words it does not know, such as `single`). Returns only on failure; a failure after
/// the initramfs has been emptied is still reported, but nothing is left to fall back on.
pub fn switch_root(
    new_root: &Path,
    init: &Path,
    args: &[CString],
) -> Result<Infallible, HandoffError> {
    check_init(new_root, init)?;
    move_basic_mounts(new_root)?;
    let switch = |step, path: &Path, source| HandoffError::Switch {
        step,
        path: path.to_path_buf(),
        source,
    };
    chdir(new_root).map_err(|e| switch("chdir", new_root, e))?;
    empty_initramfs(Path::new("/"), new_root);
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| switch("mount --move . /", new_root, e))?;
    chroot(".").map_err(|e| switch("chroot", new_root, e))?;
    chdir("/").map_err(|e| switch("chdir", Path::new("/"), e))?;
    exec_init(init, args)
}

/// Moves `/proc`, `/sys`, `/dev` and `/run` into the new root. A basic mount that is not
/// there (not mounted in this initramfs) is skipped: the real init mounts it itself.
fn move_basic_mounts(new_root: &Path) -> Result<(), HandoffError> {
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).ok();
    for basic in BASIC_MOUNTS {
        let from = Path::new(basic.path);
        let is_mount = std::fs::metadata(from)
            .map(|m| Some(m.dev()) != root_dev)
            .unwrap_or(false);
        if !is_mount {
            continue;
        }
        let to = new_root.join(basic.path.trim_start_matches('/'));
        let move_error = |source| HandoffError::MoveMount {
            from: from.to_path_buf(),
            to: to.clone(),
            source,
        };
        std::fs::create_dir_all(&to).map_err(|source| HandoffError::CreateMountPoint {
            path: to.clone(),
            source,
        })?;
        mount(
            Some(from),
            &to,
            None::<&str>,
            MsFlags::MS_MOVE,
            None::<&str>,
        )
        .map_err(move_error)?;
    }
    Ok(())
}

/// Deletes everything on the initramfs file system under `dir`, except `keep` (the new root)
/// and other mounted file systems, to give the initramfs' memory back. Errors are logged and
/// skipped: what is left only wastes memory.
pub fn empty_initramfs(dir: &Path, keep: &Path) {
    let Ok(root_dev) = std::fs::symlink_metadata(dir).map(|m| m.dev()) else {
        return;
    };
    remove_tree_on(dir, root_dev, keep);
}

fn remove_tree_on(dir: &Path, dev: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path == keep {
            continue;
        }
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.dev() != dev {
            continue;
        }
        let removed = if metadata.is_dir() {
            remove_tree_on(&path, dev, keep);
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            log::debug!("initramfs: cannot remove {}: {e}", path.display());
        }
    }
}

fn exec_init(init: &Path, args: &[CString]) -> Result<Infallible, HandoffError> {
    let exec_error = |source| HandoffError::Exec {
        init: init.to_path_buf(),
        source,
    };
    let program =
        CString::new(init.as_os_str().as_bytes()).map_err(|_| exec_error(nix::Error::EINVAL))?;
    let mut argv = vec![program.clone()];
    argv.extend_from_slice(args);
    execv(&program, &argv).map_err(exec_error)
}

/// The arguments the kernel gave PID 1 (after its name), to pass on to the real init.
pub fn passthrough_args() -> Vec<CString> {
    std::env::args_os()
        .skip(1)
        .filter_map(|a| CString::new(OsStr::as_bytes(&a)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn init_links_resolve_inside_the_new_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib/systemd")).unwrap();
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        std::fs::write(r.join("usr/lib/systemd/systemd"), "#!").unwrap();
        std::fs::set_permissions(
            r.join("usr/lib/systemd/systemd"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("usr/sbin", r.join("sbin")).unwrap();
        symlink("/lib/systemd/systemd", r.join("usr/sbin/init")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/sbin/init")).unwrap(),
            r.join("usr/lib/systemd/systemd")
        );
        check_init(r, Path::new("/sbin/init")).unwrap();
    }

    #[test]
    fn init_problems_are_named() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("sbin")).unwrap();
        std::fs::write(r.join("sbin/plain"), "data").unwrap();
        symlink("/sbin/loop", r.join("sbin/loop")).unwrap();
        assert!(matches!(
            check_init(r, Path::new("/sbin/init")),
            Err(HandoffError::InitMissing { .. })
        ));
        assert!(matches!(
            check_init(r, Path::new("/sbin/plain")),
            Err(HandoffError::InitNotExecutable { .. })
        ));
        assert!(matches!(
            check_init(r, Path::new("/sbin/loop")),
            Err(HandoffError::InitLinkLoop { .. })
        ));
        assert!(matches!(
            check_init(r, Path::new("/sbin")),
            Err(HandoffError::InitNotExecutable { .. })
        ));
    }

    #[test]
    fn identity_files_are_deterministic() {
        let root = tempfile::tempdir().unwrap();
        write_identity(root.path(), "pxen-0123456789").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
            "pxen-0123456789\n"
        );
        let hosts = std::fs::read_to_string(root.path().join("etc/hosts")).unwrap();
        assert_eq!(hosts, hosts_file("pxen-0123456789"));
        assert!(hosts.contains("127.0.1.1\tpxen-0123456789\n"));
    }

    #[test]
    fn emptying_keeps_the_new_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("rootfs/deep/er")).unwrap();
        std::fs::write(r.join("rootfs/deep/er/f"), "x").unwrap();
        std::fs::write(r.join("init"), "x").unwrap();
        std::fs::create_dir_all(r.join("newroot/etc")).unwrap();
        std::fs::write(r.join("newroot/etc/hostname"), "h").unwrap();
        empty_initramfs(r, &r.join("newroot"));
        let left: Vec<_> = std::fs::read_dir(r)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["newroot"]);
        assert!(r.join("newroot/etc/hostname").exists());
    }
}
