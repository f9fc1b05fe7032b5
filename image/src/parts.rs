//! Getting the parts of an image: Debian's Xen and kernel packages, the dom0 root filesystem
//! built with mmdebstrap, and the static `/init` built with cargo. Everything downloaded or
//! built is cached outside the repository, keyed by its inputs, so a second build is instant.
//!
//! Cache layout: `debs/<package>_<version>/` (an extracted package), `rootfs/<sha256>.tar`.
//! Every entry is written under a temporary name and renamed when complete, so an interrupted
//! build never leaves a bad entry behind.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// The Debian package with the hypervisor.
pub const XEN_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The hypervisor's path inside [`XEN_PACKAGE`].
pub const XEN_IN_PACKAGE: &str = "boot/xen-4.17-amd64.gz";
/// The metapackage that depends on the current dom0 kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
/// The Debian release of the root filesystem.
pub const SUITE: &str = "bookworm";
/// The packages of the dom0 root filesystem, on top of mmdebstrap's minbase variant.
pub const ROOTFS_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "kmod",
    "dbus",
    "procps",
    "iproute2",
    "bridge-utils",
    "ifupdown",
    "isc-dhcp-client",
    "openssh-server",
    "mdadm",
    "lvm2",
    "xen-utils-4.17",
    "xen-hypervisor-common",
    "libvirt-daemon-system",
    "libvirt-daemon-driver-xen",
    "libvirt-clients",
];
/// mmdebstrap's options: minbase, no recommends, no /dev entries in the tar (the kernel's
/// devtmpfs provides them, and creating device nodes needs root), and no documentation,
/// manual pages or translations (dom0 runs from RAM: every byte costs memory on every host).
/// Copyright files stay, as Debian's licences require.
pub const MMDEBSTRAP_OPTIONS: &[&str] = &[
    "--variant=minbase",
    "--skip=output/dev",
    "--aptopt=APT::Install-Recommends \"false\"",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-include=/usr/share/locale/locale.alias",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/info/*",
];
/// The machine's apt sources, part of the rootfs cache key: other mirrors, other packages.
const APT_SOURCES: &str = "/etc/apt/sources.list";
/// The directory of further apt sources.
const APT_SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// What can go wrong while getting the parts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No cache directory could be chosen.
    #[error("no cache directory: pass --cache DIR or set PXEN_CACHE, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
    /// A directory or file of the cache could not be created or renamed.
    #[error("cannot write {path} in the cache: {source}; check the permissions and free space of the cache directory (--cache)")]
    Cache {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tool could not be started.
    #[error("cannot run `{program}`: {source}; install it with `apt-get install {package}`")]
    Spawn {
        /// The program.
        program: String,
        /// The Debian package that provides it.
        package: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The end of what it printed on stderr.
        stderr: String,
    },
    /// apt knows no installable version of a package.
    #[error("apt has no candidate version of {package}, even after `apt-get update`; check /etc/apt/sources.list (the package is in Debian 12 main)")]
    NoCandidate {
        /// The package.
        package: String,
    },
    /// The kernel metapackage names no concrete kernel package.
    #[error("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image-<version> package; pass --kernel and --modules instead")]
    NoKernelPackage,
    /// A downloaded package does not match the hash in apt's signed index.
    #[error("{path} has SHA-256 {actual} but apt's index says {expected}; the download is corrupt: delete it and run again")]
    HashMismatch {
        /// The .deb file.
        path: PathBuf,
        /// The hash apt expects.
        expected: String,
        /// The hash of the file.
        actual: String,
    },
    /// A file expected inside an extracted package is missing.
    #[error("{path} is missing from the extracted package; the package layout changed: pass --xen/--kernel/--modules yourself")]
    MissingInPackage {
        /// The path expected.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The built `/init` is not a static executable.
    #[error("{path} is not statically linked ({reason}); /init runs before any library exists: build it with RUSTFLAGS=\"-C target-feature=+crt-static\" for x86_64-unknown-linux-gnu")]
    NotStatic {
        /// The binary.
        path: PathBuf,
        /// What makes it dynamic.
        reason: String,
    },
    /// The modules directory does not name a kernel release.
    #[error("cannot tell the kernel version of {path}: its name is not a kernel release and the kernel image has no version string; pass --modules as .../lib/modules/<version>")]
    NoKernelVersion {
        /// The modules directory.
        path: PathBuf,
    },
}

/// The cache directory: `--cache`, else `$PXEN_CACHE`, else `$XDG_CACHE_HOME/pxen`, else
/// `$HOME/.cache/pxen`. `env` looks up a variable (empty counts as unset).
pub fn cache_dir(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, Error> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    explicit
        .map(Path::to_owned)
        .or_else(|| var("PXEN_CACHE"))
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("pxen")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/pxen")))
        .ok_or(Error::NoCacheDir)
}

/// Runs a command and returns its output, or an error naming the command and its stderr.
fn run(command: &mut Command, package: &str) -> Result<Output, Error> {
    let line = format!("{command:?}").replace('"', "");
    log::debug!("running {line}");
    let output = command.output().map_err(|source| Error::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        package: package.to_owned(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The end of stderr holds the reason; mmdebstrap prints a lot before it.
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        return Err(Error::Failed {
            command: line,
            status: output.status,
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(output)
}

/// The "Candidate:" line of `apt-cache policy`, or None for "(none)" or no such package.
pub fn parse_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

/// The concrete kernel package in `apt-cache depends linux-image-amd64`.
pub fn parse_kernel_dependency(depends: &str) -> Option<String> {
    depends.lines().find_map(|l| {
        let name = l.trim().strip_prefix("Depends:")?.trim();
        (name.starts_with("linux-image-") && name.ends_with("-amd64") && name != KERNEL_METAPACKAGE)
            .then(|| name.to_owned())
    })
}

/// The "SHA256:" field of `apt-cache show PKG=VERSION`.
pub fn parse_sha256(show: &str) -> Option<String> {
    show.lines()
        .find_map(|l| l.strip_prefix("SHA256:"))
        .map(|v| v.trim().to_owned())
}

/// Reads apt's candidate version of a package, updating the lists once if apt knows none.
fn candidate(package: &str) -> Result<String, Error> {
    let policy = || -> Result<Option<String>, Error> {
        let out = run(Command::new("apt-cache").args(["policy", package]), "apt")?;
        Ok(parse_candidate(&String::from_utf8_lossy(&out.stdout)))
    };
    if let Some(version) = policy()? {
        return Ok(version);
    }
    apt_update(&format!("apt knows no version of {package}"))?;
    policy()?.ok_or_else(|| Error::NoCandidate {
        package: package.to_owned(),
    })
}

/// Runs `apt-get update`, saying why: it changes the machine's package lists.
fn apt_update(reason: &str) -> Result<(), Error> {
    log::warn!("{reason}: running `apt-get update` to refresh the package lists");
    run(Command::new("apt-get").args(["update", "-q"]), "apt").map(drop)
}

/// SHA-256 of a file as lowercase hex.
fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// Lowercase hex of bytes (sha2 0.11 digests have no `{:x}`).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a directory and its parents.
fn create_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Cache {
        path: path.to_owned(),
        source,
    })
}

/// Downloads `package=version` with apt, checks it against apt's index, and extracts it
/// into `<cache>/debs/<package>_<version>/`, unless that directory exists already.
pub fn extracted_package(cache: &Path, package: &str, version: &str) -> Result<PathBuf, Error> {
    let debs = cache.join("debs");
    // Debian versions may hold ':' (epochs); keep cache names plain.
    let target = debs.join(format!("{package}_{}", version.replace(':', "%3a")));
    if target.is_dir() {
        log::info!("{package} {version}: reusing {}", target.display());
        return Ok(target);
    }
    create_dir(&debs)?;
    let work = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&debs)
        .map_err(|source| Error::Cache {
            path: debs.clone(),
            source,
        })?;
    let spec = format!("{package}={version}");
    let download = || {
        run(
            Command::new("apt-get")
                .args(["download", "-q", &spec])
                .current_dir(work.path()),
            "apt",
        )
    };
    if let Err(first) = download() {
        // Usually the lists name a version the mirror no longer has: refresh and retry once.
        apt_update(&format!("downloading {spec} failed ({first})"))?;
        download()?;
    }
    let deb = find_deb(work.path())?;
    verify_deb(&deb, &spec)?;
    let unpacked = work.path().join("root");
    run(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked),
        "dpkg",
    )?;
    std::fs::rename(&unpacked, &target).map_err(|source| Error::Cache {
        path: target.clone(),
        source,
    })?;
    log::info!("{package} {version}: extracted into {}", target.display());
    Ok(target)
}

/// The one .deb file apt-get download wrote into `dir`.
fn find_deb(dir: &Path) -> Result<PathBuf, Error> {
    let read_err = |source| Error::Read {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            return Ok(path);
        }
    }
    Err(Error::MissingInPackage {
        path: dir.join("*.deb"),
    })
}

/// Compares the .deb's SHA-256 with the one in apt's (signed) package index.
fn verify_deb(deb: &Path, spec: &str) -> Result<(), Error> {
    let show = run(Command::new("apt-cache").args(["show", spec]), "apt")?;
    let expected = parse_sha256(&String::from_utf8_lossy(&show.stdout)).unwrap_or_default();
    let actual = sha256_file(deb)?;
    if expected != actual {
        return Err(Error::HashMismatch {
            path: deb.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// The hypervisor, kernel and modules from Debian's packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianBoot {
    /// `xen-4.17-amd64.gz`.
    pub xen: PathBuf,
    /// `vmlinuz-<release>`.
    pub vmlinuz: PathBuf,
    /// The kernel release, e.g. `6.1.0-28-amd64`.
    pub kernel_version: String,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
}

/// Fetches (or reuses from the cache) Debian's Xen hypervisor and dom0 kernel.
pub fn debian_boot(cache: &Path) -> Result<DebianBoot, Error> {
    let xen_dir = extracted_package(cache, XEN_PACKAGE, &candidate(XEN_PACKAGE)?)?;
    let depends = run(
        Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]),
        "apt",
    )?;
    let kernel_package = parse_kernel_dependency(&String::from_utf8_lossy(&depends.stdout))
        .ok_or(Error::NoKernelPackage)?;
    let kernel_dir = extracted_package(cache, &kernel_package, &candidate(&kernel_package)?)?;
    let kernel_version = kernel_package
        .strip_prefix("linux-image-")
        .unwrap_or(&kernel_package)
        .to_owned();
    let boot = DebianBoot {
        xen: xen_dir.join(XEN_IN_PACKAGE),
        vmlinuz: kernel_dir.join(format!("boot/vmlinuz-{kernel_version}")),
        modules_dir: kernel_dir.join(format!("lib/modules/{kernel_version}")),
        kernel_version,
    };
    for path in [&boot.xen, &boot.vmlinuz, &boot.modules_dir] {
        if !path.exists() {
            return Err(Error::MissingInPackage { path: path.clone() });
        }
    }
    Ok(boot)
}

/// The kernel release a modules directory belongs to: its name when it looks like one
/// (`lib/modules/6.1.0-28-amd64`), else the release in the kernel image's header.
pub fn modules_version(
    modules_dir: &Path,
    kernel_release: Option<String>,
) -> Result<String, Error> {
    let name = modules_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with(|c: char| c.is_ascii_digit()) && name.contains('.') {
        return Ok(name);
    }
    kernel_release.ok_or_else(|| Error::NoKernelVersion {
        path: modules_dir.to_owned(),
    })
}

/// The cache key of a root filesystem: SHA-256 over the suite, the sorted package list,
/// the mmdebstrap options and the apt sources, each length-prefixed so no two differ only
/// in where one ends.
pub fn rootfs_key(suite: &str, packages: &[&str], options: &[&str], apt_sources: &[u8]) -> String {
    let mut sorted = packages.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(suite.as_bytes());
    for package in &sorted {
        field(package.as_bytes());
    }
    for option in options {
        field(option.as_bytes());
    }
    field(apt_sources);
    hex(&hasher.finalize())
}

/// The machine's apt sources: sources.list and every file in sources.list.d, in name order.
fn read_apt_sources() -> Result<Vec<u8>, Error> {
    let mut files = vec![PathBuf::from(APT_SOURCES)];
    if let Ok(dir) = std::fs::read_dir(APT_SOURCES_DIR) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut all = Vec::new();
    for file in files.iter().filter(|f| f.is_file()) {
        all.extend(file.to_string_lossy().as_bytes());
        all.push(0);
        all.extend(std::fs::read(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?);
    }
    Ok(all)
}

/// Builds (or reuses from the cache) the default dom0 root filesystem as a tar.
pub fn debian_rootfs(cache: &Path) -> Result<PathBuf, Error> {
    let key = rootfs_key(
        SUITE,
        ROOTFS_PACKAGES,
        MMDEBSTRAP_OPTIONS,
        &read_apt_sources()?,
    );
    let dir = cache.join("rootfs");
    let target = dir.join(format!("{key}.tar"));
    if target.is_file() {
        log::info!("dom0 root filesystem: reusing {}", target.display());
        return Ok(target);
    }
    create_dir(&dir)?;
    let partial = dir.join(format!(".{key}.tar.partial"));
    log::info!("dom0 root filesystem: building with mmdebstrap (a few minutes)");
    let started = Instant::now();
    let mut command = Command::new("mmdebstrap");
    command
        .args(MMDEBSTRAP_OPTIONS)
        .arg(format!("--include={}", ROOTFS_PACKAGES.join(",")))
        // Name the format: the temporary name does not end in .tar.
        .arg("--format=tar")
        .arg(SUITE)
        .arg(&partial);
    run(&mut command, "mmdebstrap")?;
    std::fs::rename(&partial, &target).map_err(|source| Error::Cache {
        path: target.clone(),
        source,
    })?;
    let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    log::info!(
        "dom0 root filesystem: {} bytes in {:.0?}, cached as {}",
        size,
        started.elapsed(),
        target.display()
    );
    Ok(target)
}

/// Builds the static `/init` (package `pxen`) in the workspace and checks it is static.
pub fn build_init(workspace: &Path) -> Result<PathBuf, Error> {
    const TARGET: &str = "x86_64-unknown-linux-gnu";
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !rustflags.is_empty() {
        rustflags.push(' ');
    }
    rustflags.push_str("-C target-feature=+crt-static");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    log::info!("building the static /init (cargo build --release -p pxen --target {TARGET})");
    run(
        Command::new(cargo)
            .args(["build", "--release", "-p", "pxen", "--target", TARGET])
            .env("RUSTFLAGS", rustflags)
            .current_dir(workspace),
        "cargo (rustup)",
    )?;
    let binary = workspace.join(format!("target/{TARGET}/release/pxen"));
    check_static(&binary)?;
    Ok(binary)
}

/// Checks that an executable has no program interpreter and needs no shared library.
pub fn check_static(binary: &Path) -> Result<(), Error> {
    let bytes = std::fs::read(binary).map_err(|source| Error::Read {
        path: binary.to_owned(),
        source,
    })?;
    let not_static = |reason: String| Error::NotStatic {
        path: binary.to_owned(),
        reason,
    };
    let elf =
        goblin::elf::Elf::parse(&bytes).map_err(|e| not_static(format!("not an ELF file: {e}")))?;
    if let Some(interpreter) = elf.interpreter {
        return Err(not_static(format!(
            "it asks for the interpreter {interpreter}"
        )));
    }
    if !elf.libraries.is_empty() {
        return Err(not_static(format!("it needs {}", elf.libraries.join(", "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = &[
            ("PXEN_CACHE", "/c/pxen"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            cache_dir(Some(Path::new("/opt")), env(all)).unwrap(),
            Path::new("/opt")
        );
        assert_eq!(cache_dir(None, env(all)).unwrap(), Path::new("/c/pxen"));
        assert_eq!(
            cache_dir(
                None,
                env(&[("PXEN_CACHE", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])
            )
            .unwrap(),
            Path::new("/x/pxen")
        );
        assert_eq!(
            cache_dir(None, env(&[("HOME", "/h")])).unwrap(),
            Path::new("/h/.cache/pxen")
        );
        assert!(matches!(cache_dir(None, env(&[])), Err(Error::NoCacheDir)));
    }

    #[test]
    fn apt_output_parsing() {
        let policy = "xen-hypervisor-4.17-amd64:\n  Installed: (none)\n  Candidate: 4.17.5+72-1\n  Version table:\n";
        assert_eq!(parse_candidate(policy).as_deref(), Some("4.17.5+72-1"));
        assert_eq!(
            parse_candidate("foo:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(parse_candidate(""), None);
        let depends =
            "linux-image-amd64\n  Depends: linux-image-6.1.0-28-amd64\n  Recommends: firmware\n";
        assert_eq!(
            parse_kernel_dependency(depends).as_deref(),
            Some("linux-image-6.1.0-28-amd64")
        );
        assert_eq!(
            parse_kernel_dependency("linux-image-amd64\n  Depends: foo\n"),
            None
        );
        assert_eq!(
            parse_sha256("Package: x\nSHA256: abc123\n").as_deref(),
            Some("abc123")
        );
    }

    #[test]
    fn rootfs_key_depends_on_every_input_but_package_order() {
        let base = rootfs_key(
            "bookworm",
            &["a", "b"],
            &["--x"],
            b"deb http://m bookworm main",
        );
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            rootfs_key(
                "bookworm",
                &["b", "a"],
                &["--x"],
                b"deb http://m bookworm main"
            )
        );
        assert_ne!(
            base,
            rootfs_key(
                "trixie",
                &["a", "b"],
                &["--x"],
                b"deb http://m bookworm main"
            )
        );
        assert_ne!(
            base,
            rootfs_key(
                "bookworm",
                &["a", "c"],
                &["--x"],
                b"deb http://m bookworm main"
            )
        );
        assert_ne!(
            base,
            rootfs_key(
                "bookworm",
                &["a", "b"],
                &["--y"],
                b"deb http://m bookworm main"
            )
        );
        assert_ne!(
            base,
            rootfs_key(
                "bookworm",
                &["a", "b"],
                &["--x"],
                b"deb http://n bookworm main"
            )
        );
        // Length prefixes: moving a boundary changes the key.
        assert_ne!(
            rootfs_key("s", &["ab"], &[], b""),
            rootfs_key("s", &["a", "b"], &[], b"")
        );
    }

    #[test]
    fn modules_version_from_name_or_kernel() {
        let dir = Path::new("/x/lib/modules/6.1.0-28-amd64");
        assert_eq!(modules_version(dir, None).unwrap(), "6.1.0-28-amd64");
        let odd = Path::new("/x/mods");
        assert_eq!(
            modules_version(odd, Some("6.1.0-9".into())).unwrap(),
            "6.1.0-9"
        );
        assert!(matches!(
            modules_version(odd, None),
            Err(Error::NoKernelVersion { .. })
        ));
    }

    #[test]
    fn static_check_on_real_binaries() {
        // A dynamically linked system binary is refused, with the interpreter named.
        let err = check_static(Path::new("/bin/sh")).unwrap_err().to_string();
        assert!(err.contains("interpreter"), "{err}");
        // busybox-static is static.
        check_static(Path::new("/bin/busybox")).unwrap();
    }
}
