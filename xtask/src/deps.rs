//! `cargo xtask deps`: installs the Debian packages the project needs, if missing.

use std::process::Command;

use anyhow::bail;

use crate::util;

/// Every Debian package the project's tasks and tests use, and what for. This is the one
/// list: `cargo xtask deps` installs it, `.ci/run` relies on it.
pub const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "runs the test and demo machines"),
    ("ipxe-qemu", "network boot ROMs for QEMU's NICs"),
    ("syslinux", "the image's bootloader (installer, MBR)"),
    (
        "syslinux-common",
        "mboot.c32 and libcom32.c32, which load Xen",
    ),
    ("pxelinux", "the network bootloader served to other hosts"),
    ("mmdebstrap", "builds the Debian dom0 root filesystem"),
    (
        "mtools",
        "reads files from FAT images without mounting (harness test)",
    ),
    ("dosfstools", "FAT tools (fsck.fat to check images)"),
    ("fdisk", "partition tools (sfdisk to inspect images)"),
    ("cpio", "initramfs archives (harness test)"),
    ("kmod", "depmod for the dom0 kernel modules"),
    (
        "busybox-static",
        "the shell of the harness test's initramfs",
    ),
    ("zstd", "decompresses Debian's kernel modules"),
    ("gzip", "decompresses xen.gz (harness test)"),
    (
        "curl",
        "a real HTTP and TFTP client for the boot service's tests",
    ),
    (
        "tftp-hpa",
        "a real TFTP client for the boot service's tests",
    ),
    (
        "atftp",
        "a real TFTP client with windowsize, for the boot service's tests",
    ),
    (
        "dnsmasq-base",
        "a real DHCP server that knows nothing of PXE, for host0's DHCP client test",
    ),
    (
        "iproute2",
        "network namespaces and veth pairs for host0's network tests",
    ),
    ("openssh-client", "a real SSH client for the QEMU scenarios"),
];

/// Installs the packages of [`PACKAGES`] that are not installed yet.
pub fn ensure() -> anyhow::Result<()> {
    let names: Vec<&str> = PACKAGES.iter().map(|(name, _)| *name).collect();
    install_missing(&names)
}

/// Installs those of `packages` that are not installed yet, saying which.
pub fn install_missing(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|name| !is_installed(name))
        .collect();
    if missing.is_empty() {
        println!("deps: all {} Debian packages are installed", packages.len());
        return Ok(());
    }
    println!("deps: installing {}", missing.join(" "));
    let sudo = if util::is_root() {
        None
    } else if util::output_of(Command::new("sudo").arg("--version")).is_some() {
        Some("sudo")
    } else {
        bail!(
            "the Debian packages {} are missing and installing them needs root: run this as root, or install sudo",
            missing.join(" ")
        );
    };
    util::run(privileged(sudo, "apt-get").arg("update"))?;
    util::run(
        privileged(sudo, "apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    Ok(())
}

/// `program`, run through `sudo` when given.
fn privileged(sudo: Option<&str>, program: &str) -> Command {
    match sudo {
        Some(sudo) => {
            let mut command = Command::new(sudo);
            // `env` carries DEBIAN_FRONTEND past sudo's environment reset.
            command.args(["env", "DEBIAN_FRONTEND=noninteractive", program]);
            command
        }
        None => Command::new(program),
    }
}

/// Whether dpkg reports `package` as installed (an unknown package is not).
fn is_installed(package: &str) -> bool {
    util::output_of(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| is_installed_status(&status))
}

/// dpkg's status of an installed package is "install ok installed"; a removed one keeps
/// "deinstall ok config-files".
fn is_installed_status(status: &str) -> bool {
    status.trim().ends_with(" installed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_installed_packages_count_as_installed() {
        assert!(is_installed_status("install ok installed"));
        assert!(!is_installed_status("deinstall ok config-files"));
        assert!(!is_installed_status("install ok half-installed"));
        assert!(!is_installed_status(""));
    }

    #[test]
    fn the_package_list_has_no_duplicates() {
        let mut names: Vec<&str> = PACKAGES.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PACKAGES.len());
    }
}
