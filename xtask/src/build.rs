//! `cargo xtask build`: builds the flash drive image with the image builder's library.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where images go unless `--out` says otherwise (relative to the workspace root).
pub const DEFAULT_OUT: &str = "target/pxen";

/// Where the demo's image (with root logged in on the console) goes by default.
pub const DEMO_OUT: &str = "target/pxen-demo";

/// The image's file name inside the output directory.
const IMAGE_NAME: &str = "pxen.img";

/// A built image and what its users need to know to boot it.
pub struct BuiltImage {
    /// The image file.
    pub image: PathBuf,
    /// dom0's memory in MiB, as written on Xen's command line in the image.
    pub dom0_mem_mib: u64,
}

/// Builds the image into `out_dir`, adding the files of `overlay` (a directory) to the dom0
/// root filesystem if given. The image builder fetches and caches the Debian parts and
/// builds `/init` itself.
pub fn build(out_dir: &Path, overlay: Option<PathBuf>) -> anyhow::Result<BuiltImage> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the output directory {}", out_dir.display()))?;
    let image = out_dir.join(IMAGE_NAME);
    let options = pxen_mkimage::Options {
        out: image.clone(),
        overlay,
        // Everything else is the builder's default: Debian's Xen and kernel, a Debian dom0
        // root filesystem, `/init` built from this workspace, the default configuration.
        ..Default::default()
    };
    println!("build: writing {}", image.display());
    let report = pxen_mkimage::build_image(&options)
        .with_context(|| format!("building the image {} failed", image.display()))?;
    print_report(&report);
    Ok(BuiltImage {
        image,
        dom0_mem_mib: report.dom0_mem_mib,
    })
}

fn print_report(report: &pxen_mkimage::ImageReport) {
    println!(
        "build: image {} MiB, dom0_mem {} MiB",
        report.image_bytes >> 20,
        report.dom0_mem_mib
    );
    println!(
        "build: initramfs {} MiB compressed, {} MiB uncompressed",
        report.initramfs.compressed_bytes >> 20,
        report.initramfs.uncompressed_bytes >> 20
    );
    for (file, bytes) in &report.files {
        println!("build:   {file:<16} {:>10} bytes", bytes);
    }
    for (step, took) in &report.timings {
        println!("build:   {step:<24} {:>8.1} s", took.as_secs_f64());
    }
}
