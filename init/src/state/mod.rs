//! Per-host state that survives reboots: the few files of dom0 that make a host the same host
//! after a reboot, saved to the central drive and given back at the next boot.
//!
//! [`STATE_FILES`] is the one list of what is kept. The files travel as one newc cpio archive
//! ([`archive`]): packed from `/` in dom0 by `pxen state save` ([`upload`]), sent to host0
//! signed with the cluster secret and retried until host0 acknowledges it, stored by host0's
//! boot service crash-safely in `pxen/hosts/NAME/state.cpio` of its RAM copy of the drive
//! ([`store`]), written through to the physical drive by `pxen state sync` ([`sync`]), and
//! carried to every host inside the initramfs host0 serves (beside the configuration) or read
//! from the drive on a USB boot, then restored by `/init` into the new root before the handoff
//! ([`at_boot`]).
//!
//! | module | concern |
//! | --- | --- |
//! | [`archive`] | packing, checking and restoring the archive; the host's file name; the content hash |
//! | [`at_boot`] | `/init`: finding this host's archive, restoring it (or removing the image's SSH host keys), the dom0 units |
//! | [`upload`] | `pxen state save`: pack, compare with the last acknowledged hash, send |
//! | [`store`] | host0: the `POST /state/NAME` decision and route, the stored archives, the initramfs tail |
//! | [`sync`] | `pxen state sync`: host0's RAM copy written through to the physical drive |
//!
//! # Trust
//!
//! The archives hold private keys (SSH host keys). They travel like the cluster secret, which
//! is already in the configuration appended to the served initramfs: anyone on the boot LAN can
//! fetch the initramfs and read them. A boot LAN must be trusted as much as the configuration
//! is.

pub mod archive;
pub mod at_boot;
pub mod store;
pub mod sync;
pub mod upload;

/// The largest state archive packed, accepted or restored, in bytes.
pub const MAX_ARCHIVE: usize = 16 * 1024 * 1024;

/// Where the hosts' states are kept, relative to the drive's root (and to the initramfs').
pub const HOSTS_DIR: &str = "pxen/hosts";

/// A host's state archive in its directory under [`HOSTS_DIR`].
pub const STATE_FILE: &str = "state.cpio";

/// Where `/init` leaves the hash of the state it restored (or `none`): what host0 holds for
/// this host, as far as this host knows. `pxen state save` compares with it and updates it.
pub const BASE_FILE: &str = "/run/pxen/state-base";

/// The base of a host that booted with no saved state.
pub const NO_BASE: &str = "none";

/// How a kept path is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Exactly this file.
    File(&'static str),
    /// The files of one directory whose names match a pattern with one `*` (any characters
    /// but `/`).
    Glob(&'static str),
    /// This directory and everything below it (files, directories, symbolic links).
    Tree(&'static str),
}

/// One entry of [`STATE_FILES`]: what is kept, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// The path, relative to dom0's root.
    pub pattern: Pattern,
    /// Why it is kept (the README lists the same).
    pub why: &'static str,
}

/// THE list of what is kept of each host, relative to dom0's root. Files that are absent are
/// simply not saved.
pub const STATE_FILES: &[Kept] = &[
    Kept {
        pattern: Pattern::File("etc/machine-id"),
        why: "systemd's machine ID: journal files, DHCP client IDs and libvirt name the host by it",
    },
    Kept {
        pattern: Pattern::Glob("etc/ssh/ssh_host_*_key"),
        why: "the SSH host keys: a rebooted host presents the same key, so clients trust it",
    },
    Kept {
        pattern: Pattern::Glob("etc/ssh/ssh_host_*_key.pub"),
        why: "their public halves",
    },
    Kept {
        pattern: Pattern::Tree("etc/libvirt/libxl"),
        why: "libvirt's domain definitions for Xen (libxl), autostart links included",
    },
    Kept {
        pattern: Pattern::Tree("etc/libvirt/qemu/networks"),
        why: "libvirt's virtual network definitions",
    },
    Kept {
        pattern: Pattern::Tree("etc/libvirt/storage"),
        why: "libvirt's storage pool definitions",
    },
    Kept {
        pattern: Pattern::File("var/xapi/state.db"),
        why: "XCP-ng (a user-supplied root filesystem): xapi's database of the pool, hosts and VMs",
    },
    Kept {
        pattern: Pattern::File("etc/xensource-inventory"),
        why: "XCP-ng: the host's inventory (its UUID, the management interface)",
    },
];

/// Whether `name` (a path relative to dom0's root, no trailing `/`) is kept by [`STATE_FILES`].
/// A directory entry is kept only where a [`Pattern::Tree`] keeps it.
pub fn is_kept(name: &str, is_dir: bool) -> bool {
    STATE_FILES.iter().any(|kept| match kept.pattern {
        Pattern::File(path) => !is_dir && name == path,
        Pattern::Glob(pattern) => !is_dir && glob_matches(pattern, name),
        Pattern::Tree(dir) => {
            name == dir || name.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
        }
    })
}

/// Whether `name` matches `pattern`, whose one `*` stands for one or more characters but `/`.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let Some((head, tail)) = pattern.split_once('*') else {
        return pattern == name;
    };
    name.len() > head.len() + tail.len()
        && name.starts_with(head)
        && name.ends_with(tail)
        && !name[head.len()..name.len() - tail.len()].contains('/')
}

/// Whether `name` is a path PXEN may write below a root: relative, made of normal components
/// (no empty, `.` or `..` component), without NUL bytes.
pub fn is_plain_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\0')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_keeps_what_it_says_and_nothing_else() {
        for kept in [
            "etc/machine-id",
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_rsa_key.pub",
            "etc/libvirt/libxl/vm1.xml",
            "etc/libvirt/libxl/autostart/vm1.xml",
            "etc/libvirt/storage/default.xml",
            "var/xapi/state.db",
            "etc/xensource-inventory",
        ] {
            assert!(is_kept(kept, false), "{kept}");
        }
        assert!(is_kept("etc/libvirt/libxl", true));
        assert!(is_kept("etc/libvirt/libxl/autostart", true));
        for refused in [
            "etc/shadow",
            "etc/machine-id.old",
            "etc/ssh/ssh_host__key",
            "etc/ssh/sshd_config",
            "etc/ssh/ssh_host_x/y_key",
            "etc/libvirt/libxl.conf",
            "etc/libvirt/libxlfoo/x",
        ] {
            assert!(!is_kept(refused, false), "{refused}");
        }
        assert!(!is_kept("etc/ssh", true));
        assert!(!is_kept("etc/machine-id", true));
    }

    #[test]
    fn only_plain_relative_paths_may_be_written() {
        assert!(is_plain_relative("etc/libvirt/libxl/a.xml"));
        for bad in [
            "",
            "/etc/machine-id",
            "etc//x",
            "etc/./x",
            "etc/../x",
            "..",
            "etc/x/",
        ] {
            assert!(!is_plain_relative(bad), "{bad:?}");
        }
    }
}
