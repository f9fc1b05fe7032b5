//! `pxen-mkimage`: builds a bootable PXEN flash drive image (or writes a flash drive).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Builds a bootable PXEN flash drive: MBR + FAT32 partition "PXEN" + SYSLINUX, holding Xen,
/// the dom0 kernel, the initramfs (PXEN's /init and the dom0 root filesystem) and the cluster
/// configuration. Needs no root and mounts nothing. Parts not given are fetched from Debian
/// (apt-get download, mmdebstrap) or built (cargo), and cached.
#[derive(Debug, Parser)]
#[command(name = "mkimage", version)]
struct Cli {
    /// The image file to write (replaced atomically), or a whole flash drive such as /dev/sdX
    /// (refused while mounted or in use; needs --yes).
    #[arg(long, value_name = "FILE|DEVICE", required_unless_present = "rebind")]
    out: Option<PathBuf>,
    /// Instead of building: bind the PXEN drive on DEVICE (e.g. a copy replacing a dead
    /// drive) to that device, so that it is the cluster's genuine source drive; the drive it
    /// was bound to before becomes a clone. Only pxen/identity.ron is rewritten; refused while
    /// the drive is mounted or its boot files differ from its manifest.
    #[arg(
        long,
        value_name = "DEVICE",
        conflicts_with_all = [
            "out", "config", "xen", "kernel", "modules", "rootfs", "overlay", "init", "cache",
            "size", "dom0_mem", "force", "extra_cmdline", "yes",
        ]
    )]
    rebind: Option<PathBuf>,
    /// The cluster configuration directory (RON files), copied to config/ on the drive and
    /// validated first. Default: the built-in example configuration.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// The Xen hypervisor (Multiboot image, gzipped or not). Default: boot/xen-4.17-amd64.gz
    /// from Debian's xen-hypervisor-4.17-amd64.
    #[arg(long, value_name = "FILE")]
    xen: Option<PathBuf>,
    /// The dom0 kernel (x86 bzImage); needs --modules. Default: from Debian's linux-image-amd64.
    #[arg(long, value_name = "FILE", requires = "modules")]
    kernel: Option<PathBuf>,
    /// The kernel's module directory, .../lib/modules/<version>; needs --kernel. Default: from
    /// the Debian kernel package.
    #[arg(long, value_name = "DIR", requires = "kernel")]
    modules: Option<PathBuf>,
    /// The dom0 root filesystem: an uncompressed tar or a directory, with an executable
    /// /sbin/init. Default: Debian 12 with Xen and libvirt, built with mmdebstrap and cached.
    #[arg(long, value_name = "TAR|DIR")]
    rootfs: Option<PathBuf>,
    /// A directory of extra files laid over the root filesystem. Default: none.
    #[arg(long, value_name = "DIR")]
    overlay: Option<PathBuf>,
    /// PXEN's /init, a static x86-64 executable. Default: built from this workspace
    /// (cargo build --release -p pxen, statically linked).
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// Where downloads and built parts are cached. Default: $PXEN_CACHE, else
    /// $XDG_CACHE_HOME/pxen, else $HOME/.cache/pxen.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Image size, in bytes or with a K, M, G or T suffix (powers of 1024), e.g. 2G.
    /// Default: what the files need plus 64 MiB free, rounded up to a MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// Memory for dom0 in MiB. Default: 2 x compressed initrd + 2 x root filesystem + 512 MiB,
    /// rounded up to 256 MiB; a smaller value is refused unless --force.
    #[arg(long, value_name = "MIB")]
    dom0_mem: Option<u64>,
    /// Use --dom0-mem even when it is below what the boot needs.
    #[arg(long)]
    force: bool,
    /// An extra argument for the dom0 kernel command line, e.g. pxen.drive_wait=30
    /// (repeat for more). Default: none.
    #[arg(long = "cmdline", value_name = "ARG")]
    extra_cmdline: Vec<String>,
    /// Confirm that the block device given as --out may be erased.
    #[arg(long)]
    yes: bool,
    /// Log every step, including the commands run.
    #[arg(long, short)]
    verbose: bool,
}

/// Parses "2G", "512M", "64k" or a plain number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let shift = match unit.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => {
                    return Err(format!(
                        "unknown unit '{unit}' in {text:?}: use K, M, G or T"
                    ))
                }
            };
            (&text[..at], shift)
        }
        _ => (text, 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size: write e.g. 2G, 512M or 1073741824"))?;
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Logs to stderr, one line per record.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "mkimage: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// The logger; a static, as `log::set_logger` needs.
static LOGGER: StderrLogger = StderrLogger;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // set_logger fails only if a logger is already set, which nothing here does.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(if cli.verbose {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Info
        });
    }
    if let Some(device) = cli.rebind {
        return rebind(&device);
    }
    // clap requires --out when --rebind is absent.
    let Some(out) = cli.out else {
        eprintln!("mkimage: error: --out FILE|DEVICE is required");
        return ExitCode::FAILURE;
    };
    let options = pxen_mkimage::Options {
        config_dir: cli.config,
        out,
        xen: cli.xen,
        kernel: cli.kernel,
        modules: cli.modules,
        rootfs: cli.rootfs,
        overlay: cli.overlay,
        init_binary: cli.init,
        cache_dir: cli.cache,
        size: cli.size,
        dom0_mem_mib: cli.dom0_mem,
        extra_cmdline: cli.extra_cmdline,
        yes: cli.yes,
    };
    match pxen_mkimage::build_image_with_force(&options, cli.force) {
        Ok(report) => {
            print_report(&options, &report);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mkimage: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--rebind DEVICE`: binds the drive and says to what.
fn rebind(device: &std::path::Path) -> ExitCode {
    match pxen_mkimage::rebind(device) {
        Ok(identity) => {
            println!(
                "{}: drive {} of cluster {} is bound to this device: {}",
                device.display(),
                identity.drive_id,
                identity.cluster_name,
                binding_text(&identity.binding)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("mkimage: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A binding in words.
fn binding_text(binding: &pxen::drive::identity::Binding) -> String {
    match binding {
        pxen::drive::identity::Binding::Unbound => {
            "unbound (it binds to the drive it first boots from as host0)".to_owned()
        }
        pxen::drive::identity::Binding::Bound {
            device,
            partition_uuid,
            ..
        } => format!("{device}, partition {partition_uuid}"),
    }
}

/// Prints what was built as a short table.
fn print_report(options: &pxen_mkimage::Options, report: &pxen_mkimage::ImageReport) {
    const MIB: f64 = 1024.0 * 1024.0;
    println!(
        "{}: {:.1} MiB, dom0_mem={}M",
        options.out.display(),
        report.image_bytes as f64 / MIB,
        report.dom0_mem_mib
    );
    println!(
        "drive {} of cluster {}, bound to {}",
        report.identity.drive_id,
        report.identity.cluster_name,
        binding_text(&report.identity.binding)
    );
    println!("{:<24} {:>12}", "file", "bytes");
    for (name, size) in &report.files {
        println!("{name:<24} {size:>12}");
    }
    let initramfs = &report.initramfs;
    println!(
        "initramfs: {} bytes compressed, {} uncompressed, root filesystem {} unpacked, {} early modules",
        initramfs.compressed_bytes,
        initramfs.uncompressed_bytes,
        initramfs.rootfs_unpacked_bytes,
        initramfs.early_modules.len()
    );
    for (phase, took) in &report.timings {
        println!("{phase:<40} {:>8.1} s", took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("2X").unwrap_err().contains("unknown unit"));
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
