//! Builds PXEN flash drive images: gets the parts (Debian's Xen and kernel, the dom0 root
//! filesystem, the static `/init`), checks them, builds the initramfs, and writes an MBR +
//! FAT32 + SYSLINUX image to a file or a flash drive, without root and without mounting.
//!
//! [`build_image`] is the one entry point; the `pxen-mkimage` command and `cargo xtask` call it.

pub mod drive_identity;
pub mod layout;
pub mod output;
pub mod parts;
pub mod validate;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use layout::{Content, Entry};

/// zstd level of the initramfs: level 10 is within 10% of level 19's size on a Debian root
/// filesystem at a fraction of its build time; decompression speed does not depend on it.
const COMPRESSION_LEVEL: i32 = 10;

/// What to build, and from what. Every `None` means the default described on each field.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The cluster configuration directory; default: the built-in `init/config-default/`.
    pub config_dir: Option<PathBuf>,
    /// The image file, or a whole block device (`/dev/sdX`).
    pub out: PathBuf,
    /// The Xen hypervisor; default: from Debian's `xen-hypervisor-4.17-amd64`.
    pub xen: Option<PathBuf>,
    /// The dom0 kernel bzImage; default: from Debian's `linux-image-amd64`. Needs `modules`.
    pub kernel: Option<PathBuf>,
    /// The kernel's `lib/modules/<version>` directory; default: from the Debian package.
    pub modules: Option<PathBuf>,
    /// The dom0 root filesystem, tar or directory; default: built with mmdebstrap.
    pub rootfs: Option<PathBuf>,
    /// A directory of extra files laid over the root filesystem.
    pub overlay: Option<PathBuf>,
    /// The static `/init`; default: `cargo build` of the `pxen` package in this workspace.
    pub init_binary: Option<PathBuf>,
    /// Where downloads and built parts are cached; default: see [`parts::cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Image size in bytes; default: what the files need plus 64 MiB free.
    pub size: Option<u64>,
    /// dom0 memory in MiB; default: [`layout::dom0_mem_mib`].
    pub dom0_mem_mib: Option<u64>,
    /// Extra arguments for the dom0 kernel command line.
    pub extra_cmdline: Vec<String>,
    /// Confirms overwriting a block device.
    pub yes: bool,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct ImageReport {
    /// Size of the image.
    pub image_bytes: u64,
    /// The drive's identity as written in `pxen/identity.ron`.
    pub identity: pxen::drive::identity::DriveIdentity,
    /// The initramfs that went into it.
    pub initramfs: pxen_initramfs::Report,
    /// The memory given to dom0, in MiB.
    pub dom0_mem_mib: u64,
    /// Every file on the FAT partition with its size (SYSLINUX's own files not included).
    pub files: Vec<(String, u64)>,
    /// How long each phase took.
    pub timings: Vec<(String, Duration)>,
}

/// What can go wrong while building an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Getting a part failed.
    #[error(transparent)]
    Parts(#[from] parts::Error),
    /// A part is not what it should be.
    #[error(transparent)]
    Validate(#[from] validate::Error),
    /// Building the initramfs failed.
    #[error("cannot build the initramfs: {0}")]
    Initramfs(#[from] pxen_initramfs::Error),
    /// Writing the image failed.
    #[error(transparent)]
    Layout(#[from] layout::Error),
    /// Writing or binding the drive's identity failed.
    #[error(transparent)]
    DriveIdentity(#[from] drive_identity::Error),
    /// The user's kernel arguments set what mkimage sets itself.
    #[error("--cmdline {argument}: mkimage sets pxen.drive= itself, to the new drive's ID, so /init can tell the drive it booted from; leave it out")]
    ReservedArgument {
        /// The argument given.
        argument: String,
    },
    /// Writing to `--out` failed.
    #[error(transparent)]
    Output(#[from] output::Error),
    /// Only one of `--kernel` and `--modules` was given.
    #[error("--kernel and --modules go together: a kernel cannot load another kernel's modules; pass both, or neither to use Debian's")]
    KernelWithoutModules,
    /// The scratch directory for the initramfs could not be created.
    #[error("cannot create a scratch directory in {dir}: {source}")]
    Scratch {
        /// The cache directory.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `--dom0-mem` is below what the boot needs.
    #[error("--dom0-mem {given} is below the {needed} MiB dom0 needs to unpack and copy this root filesystem; the boot would run out of memory. Pass --force to use it anyway")]
    Dom0MemTooSmall {
        /// MiB given.
        given: u64,
        /// MiB the rule asks for.
        needed: u64,
    },
}

/// Builds the image described by `opts`, refusing a `dom0_mem_mib` below the sizing rule.
pub fn build_image(opts: &Options) -> Result<ImageReport, Error> {
    build_image_with_force(opts, false)
}

/// Builds the image described by `opts`; with `force`, a `dom0_mem_mib` below the sizing rule
/// is used anyway (for hosts known to need less, at the user's risk).
pub fn build_image_with_force(opts: &Options, force: bool) -> Result<ImageReport, Error> {
    let mut timer = Timer::start();
    output::preflight(&opts.out, opts.yes)?;
    let drive_id = pxen::drive::identity::new_drive_id();
    let cmdline = kernel_arguments(&drive_id, &opts.extra_cmdline)?;
    // Read now, so that a device that cannot be bound is refused before minutes of work.
    let bind_to = drive_identity::device_of_out(&opts.out)?
        .map(|device| (device, format!("mkimage --out {}", opts.out.display())));
    let cache = parts::cache_dir(opts.cache_dir.as_deref(), |name| std::env::var_os(name))?;
    let (config, cluster) = config_entries(opts.config_dir.as_deref())?;
    timer.lap("check the configuration");
    let boot = boot_parts(opts, &cache)?;
    timer.lap("get and check xen.gz, vmlinuz, modules");
    let rootfs = match &opts.rootfs {
        Some(path) => path.clone(),
        None => parts::debian_rootfs(&cache)?,
    };
    let rootfs = match validate::check_rootfs(&rootfs)? {
        validate::RootfsKind::Tar => pxen_initramfs::LayerSource::Tar(rootfs),
        validate::RootfsKind::Dir => pxen_initramfs::LayerSource::Dir(rootfs),
    };
    timer.lap("get and check the root filesystem");
    let init_binary = match &opts.init_binary {
        Some(path) => path.clone(),
        None => parts::build_init(&workspace_dir())?,
    };
    parts::check_static(&init_binary)?;
    timer.lap("build and check /init");

    std::fs::create_dir_all(&cache).map_err(|source| Error::Scratch {
        dir: cache.clone(),
        source,
    })?;
    let scratch = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&cache)
        .map_err(|source| Error::Scratch {
            dir: cache.clone(),
            source,
        })?;
    let initrd = scratch.path().join("initrd.img");
    let spec = pxen_initramfs::Spec {
        init_binary,
        kernel_version: boot.kernel_version.clone(),
        modules_dir: boot.modules_dir.clone(),
        early_modules: pxen_initramfs::DEFAULT_EARLY_MODULES
            .iter()
            .map(|m| m.to_string())
            .collect(),
        rootfs,
        overlay: opts.overlay.clone(),
        compression_level: COMPRESSION_LEVEL,
    };
    let initramfs = pxen_initramfs::build(&spec, &initrd)?;
    timer.lap("build the initramfs");

    let dom0_mem_mib = dom0_mem(opts.dom0_mem_mib, &initramfs, force)?;
    let mut entries = boot_entries(&boot, &initrd, dom0_mem_mib, &cmdline);
    entries.extend(config);
    let sizes = entries
        .iter()
        .map(Entry::size)
        .collect::<Result<Vec<_>, _>>()?;
    let image_bytes = match opts.size {
        Some(size) => {
            layout::check_size(size, &sizes)?;
            size
        }
        None => layout::required_image_bytes(&sizes),
    };
    let staging = output::stage(&opts.out, scratch.path(), image_bytes, opts.yes)?;
    let mut written = layout::write_image(staging.path(), image_bytes, &entries, disk_id())?;
    let identity = drive_identity::write_new(
        staging.path(),
        &drive_identity::NewIdentity {
            secret: cluster.secret,
            cluster_name: cluster.name,
            drive_id,
            created: unix_now(),
            bind_to,
        },
    )?;
    let identity_bytes = pxen::drive::identity::render(&identity).len() as u64;
    written.files.push((
        pxen::drive::identity::IDENTITY_FILE.to_owned(),
        identity_bytes,
    ));
    log_layout(&written, dom0_mem_mib);
    output::finish(staging)?;
    timer.lap("write the image");
    Ok(ImageReport {
        image_bytes: written.image_bytes,
        identity,
        initramfs,
        dom0_mem_mib,
        files: written.files,
        timings: timer.laps,
    })
}

/// The workspace this crate was built in: `pxen` (the `/init`) is built from it.
fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Validates the configuration and lists it as `config/...` files, with the cluster it
/// describes; the built-in default when no directory is given.
fn config_entries(dir: Option<&Path>) -> Result<(Vec<Entry>, pxen::config::Cluster), Error> {
    match dir {
        Some(dir) => {
            let cluster = validate::load_config(dir)?;
            Ok((layout::config_entries(dir)?, cluster))
        }
        // The built-in default, as `pxen config default` writes it: every new drive gets a
        // secret of its own.
        None => {
            let secret = pxen::config::generate_secret();
            let files = pxen::config::default_files(&secret);
            let cluster = default_cluster(&files)?;
            let entries = files
                .into_iter()
                .map(|(name, text)| Entry {
                    name: format!("config/{name}"),
                    content: Content::Bytes(text.into_bytes()),
                })
                .collect();
            Ok((entries, cluster))
        }
    }
}

/// The cluster the built-in default files describe (parsed, as `/init` will parse them).
fn default_cluster(files: &[(&str, String)]) -> Result<pxen::config::Cluster, Error> {
    let text = files
        .iter()
        .find(|(name, _)| *name == pxen::config::CLUSTER_FILE)
        .map(|(_, text)| text.as_str())
        .unwrap_or_default();
    pxen::config::parse_cluster(Path::new(pxen::config::CLUSTER_FILE), text).map_err(|errors| {
        Error::Validate(validate::Error::Config {
            dir: PathBuf::from("(built-in default)"),
            errors: errors.to_string(),
        })
    })
}

/// `./mkimage --rebind DEVICE`: binds the PXEN drive on `device` (e.g. a copy replacing a dead
/// drive) to that device; see [`drive_identity::rebind`].
pub fn rebind(device: &Path) -> Result<pxen::drive::identity::DriveIdentity, Error> {
    Ok(drive_identity::rebind(device, unix_now())?)
}

/// The kernel argument that names the drive an image's `syslinux.cfg` boots from.
pub const DRIVE_ARGUMENT: &str = "pxen.drive=";

/// The dom0 kernel arguments mkimage adds to the contract's: `pxen.drive=<drive_id>`, then
/// the user's, which must not set `pxen.drive=` themselves.
fn kernel_arguments(drive_id: &str, extra: &[String]) -> Result<Vec<String>, Error> {
    if let Some(argument) = extra.iter().find(|a| a.starts_with(DRIVE_ARGUMENT)) {
        return Err(Error::ReservedArgument {
            argument: argument.clone(),
        });
    }
    let mut arguments = vec![format!("{DRIVE_ARGUMENT}{drive_id}")];
    arguments.extend(extra.iter().cloned());
    Ok(arguments)
}

/// Now, in Unix seconds (0 on a clock set before 1970, which only makes the dates wrong).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The hypervisor, kernel and modules: the user's, else Debian's (fetched only if needed).
fn boot_parts(opts: &Options, cache: &Path) -> Result<parts::DebianBoot, Error> {
    let own_kernel = match (&opts.kernel, &opts.modules) {
        (Some(kernel), Some(modules)) => Some((kernel.clone(), modules.clone())),
        (None, None) => None,
        _ => return Err(Error::KernelWithoutModules),
    };
    // Debian's packages are fetched only for what the user did not bring.
    let boot = match own_kernel {
        Some((vmlinuz, modules_dir)) => parts::DebianBoot {
            xen: match &opts.xen {
                Some(xen) => xen.clone(),
                None => parts::debian_boot(cache)?.xen,
            },
            kernel_version: parts::modules_version(
                &modules_dir,
                validate::kernel_release(&vmlinuz)?,
            )?,
            vmlinuz,
            modules_dir,
        },
        None => {
            let debian = parts::debian_boot(cache)?;
            parts::DebianBoot {
                xen: opts.xen.clone().unwrap_or(debian.xen),
                ..debian
            }
        }
    };
    let multiboot = validate::check_hypervisor(&boot.xen)?;
    let kernel = validate::check_kernel(&boot.vmlinuz)?;
    log::info!(
        "xen: {} ({multiboot:?}); kernel: {} (boot protocol {}.{:02}, release {})",
        boot.xen.display(),
        boot.vmlinuz.display(),
        kernel.protocol.0,
        kernel.protocol.1,
        boot.kernel_version
    );
    Ok(boot)
}

/// dom0 memory: the rule's value, or the user's if it is not below it (or `force`).
fn dom0_mem(
    given: Option<u64>,
    initramfs: &pxen_initramfs::Report,
    force: bool,
) -> Result<u64, Error> {
    let needed = layout::dom0_mem_mib(initramfs.compressed_bytes, initramfs.rootfs_unpacked_bytes);
    match given {
        None => Ok(needed),
        Some(given) if given >= needed => Ok(given),
        Some(given) if force => {
            log::warn!("--dom0-mem {given} is below the {needed} MiB the rule asks for; used because of --force");
            Ok(given)
        }
        Some(given) => Err(Error::Dom0MemTooSmall { given, needed }),
    }
}

/// The boot files on the drive, in the order they are written.
fn boot_entries(
    boot: &parts::DebianBoot,
    initrd: &Path,
    dom0_mem_mib: u64,
    extra: &[String],
) -> Vec<Entry> {
    let module = |name: &str| Entry {
        name: name.into(),
        content: Content::File(Path::new(layout::SYSLINUX_MODULES).join(name)),
    };
    vec![
        Entry {
            name: "syslinux.cfg".into(),
            content: Content::Bytes(layout::syslinux_cfg(dom0_mem_mib, extra).into_bytes()),
        },
        module("mboot.c32"),
        module("libcom32.c32"),
        // Served by host0 to the hosts it boots over the network; `ldlinux.c32`, which it
        // loads next, is installed beside it by SYSLINUX.
        Entry {
            name: "lpxelinux.0".into(),
            content: Content::File(layout::PXELINUX.into()),
        },
        Entry {
            name: "xen.gz".into(),
            content: Content::File(boot.xen.clone()),
        },
        Entry {
            name: "vmlinuz".into(),
            content: Content::File(boot.vmlinuz.clone()),
        },
        Entry {
            name: "initrd.img".into(),
            content: Content::File(initrd.to_owned()),
        },
    ]
}

/// A disk signature and FAT volume id that differ between builds, so two drives built
/// separately never share a partition UUID.
fn disk_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Fold the 128-bit count into 32 bits; any bits will do, only difference matters.
    (nanos as u32) ^ ((nanos >> 32) as u32) ^ std::process::id()
}

/// Logs the layout: partition, files, free space, dom0 memory.
fn log_layout(layout: &layout::Layout, dom0_mem_mib: u64) {
    log::info!(
        "image: {} bytes; FAT32 partition 'PXEN' at byte {} ({} bytes, {} free); dom0_mem={dom0_mem_mib}M",
        layout.image_bytes,
        layout.partition_offset,
        layout.partition_bytes,
        layout.free_bytes
    );
    for (name, size) in &layout.files {
        log::info!("  {name:<24} {size:>12}");
    }
}

/// Measures the phases of a build.
struct Timer {
    last: Instant,
    laps: Vec<(String, Duration)>,
}

impl Timer {
    /// A timer whose first lap starts now.
    fn start() -> Self {
        Self {
            last: Instant::now(),
            laps: Vec::new(),
        }
    }

    /// Records the time since the previous lap (or since the start) under `phase`.
    fn lap(&mut self, phase: &str) {
        let now = Instant::now();
        self.laps.push((phase.to_owned(), now - self.last));
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drive_id_goes_on_the_kernel_command_line() {
        let extra = vec!["pxen.drive_wait=30".to_owned()];
        let arguments = kernel_arguments("9c1e", &extra).unwrap();
        assert_eq!(arguments, ["pxen.drive=9c1e", "pxen.drive_wait=30"]);
        let cfg = layout::syslinux_cfg(768, &arguments);
        assert!(
            cfg.contains("pxen.boot=usb pxen.drive=9c1e pxen.drive_wait=30 --- initrd.img"),
            "{cfg}"
        );
        let error = kernel_arguments("9c1e", &["pxen.drive=other".to_owned()]).unwrap_err();
        assert!(error.to_string().contains("pxen.drive=other"), "{error}");
    }
}
