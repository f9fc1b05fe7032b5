//! PXEN's project tasks, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`).
//!
//! One module per task. Tasks call the project's own crates as libraries (the image builder,
//! the QEMU harness) and run `cargo` and Debian's tools as commands, printing each command
//! before it runs.

mod bench;
mod build;
mod demo;
mod deps;
mod logger;
mod test;
mod util;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// PXEN's project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "PXEN's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the Debian packages the project needs, if missing (root or sudo).
    Deps,
    /// Build the flash drive image.
    Build {
        /// Where to write the image and its logs.
        #[arg(long, default_value = build::DEFAULT_OUT)]
        out: PathBuf,
    },
    /// Install, build, and boot a cluster in QEMU: host0 from the image as a USB stick, which
    /// wakes the others and boots them over the network; host0's console on the terminal;
    /// prints host0's status page and the cluster timeline once every host is online (or on
    /// Ctrl-C). The demo image logs root in on the console: never write it to a real drive.
    Demo {
        /// How many hosts, host0 included.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Stay at host0's root shell once every host is online (type `poweroff` or press
        /// Ctrl-C to end).
        #[arg(long)]
        keep_running: bool,
        /// Where to write the demo image and the console logs.
        #[arg(long, default_value = build::DEMO_OUT)]
        out: PathBuf,
    },
    /// Every test: unit, privileged (as root) and the whole-system QEMU scenarios.
    Test,
    /// The boot service's TFTP and HTTP throughput beside tftpd-hpa and nginx, on loopback.
    Bench {
        /// Size of the file served, in MiB.
        #[arg(long, default_value_t = 100)]
        size_mib: usize,
        /// Fetches per client and server; the median is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

fn main() -> anyhow::Result<()> {
    logger::init();
    let cli = Cli::parse();
    let root = util::project_root();
    match cli.task {
        Task::Deps => deps::ensure(),
        Task::Build { out } => build::build(&root.join(out), None).map(|built| {
            println!(
                "image: {} (dom0_mem {} MiB)",
                built.image.display(),
                built.dom0_mem_mib
            );
        }),
        Task::Demo {
            hosts,
            keep_running,
            out,
        } => demo::run(&root.join(out), hosts, keep_running),
        Task::Test => test::run(&root),
        Task::Bench { size_mib, rounds } => bench::run(&root, size_mib, rounds),
    }
}
