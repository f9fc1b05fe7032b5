//! `cargo xtask bench`: the boot service's throughput beside reference servers, side by side
//! on this machine, on loopback: PXEN's TFTP beside tftpd-hpa and PXEN's HTTP beside nginx,
//! each serving the same file to the same client (curl). Reported as MB/s (median of the
//! rounds) and as the ratio PXEN / reference; nothing is asserted.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{deps, util};

/// The reference servers, installed on demand (they are not needed by the tests).
const REFERENCE_PACKAGES: &[&str] = &["tftpd-hpa", "nginx-light"];
const PXEN_HTTP: u16 = 18080;
const PXEN_TFTP: u16 = 16969;
const TFTPD_HPA: u16 = 16970;
const NGINX: u16 = 18081;
const FILE: &str = "bench.bin";
/// A small file to ask for while waiting for a server to start.
const PROBE: &str = "initrd.img";
/// How long a server may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A server process, stopped when dropped: SIGTERM, so that nginx's master stops its workers
/// too (SIGKILL would leave them running).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !terminated {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs the benchmark with a file of `size_mib` MiB, `rounds` times per client and server.
pub fn run(root: &Path, size_mib: usize, rounds: usize) -> anyhow::Result<()> {
    deps::install_missing(REFERENCE_PACKAGES)?;
    util::run(
        util::cargo()
            .current_dir(root)
            .args(["build", "--release", "-p", "pxen"]),
    )?;
    let dir = tempfile_dir()?;
    write_drive(&dir, size_mib)?;
    let servers = [
        start_pxen(root, &dir)?,
        start_tftpd_hpa(&dir)?,
        start_nginx(&dir)?,
    ];

    println!("\n{size_mib} MiB file on loopback, curl, median of {rounds} rounds (MB/s):");
    println!(
        "{:<28} {:>10} {:>12} {:>8}",
        "transfer", "PXEN", "reference", "ratio"
    );
    for blksize in [1468, 65464] {
        let pxen = median_speed(rounds, &tftp_url(PXEN_TFTP), Some(blksize))?;
        let reference = median_speed(rounds, &tftp_url(TFTPD_HPA), Some(blksize))?;
        report(
            &format!("TFTP blksize {blksize} (tftpd-hpa)"),
            pxen,
            reference,
        );
    }
    let pxen = median_speed(
        rounds,
        &format!("http://127.0.0.1:{PXEN_HTTP}/{FILE}"),
        None,
    )?;
    let reference = median_speed(rounds, &format!("http://127.0.0.1:{NGINX}/{FILE}"), None)?;
    report("HTTP (nginx)", pxen, reference);
    // The servers stop before their files go (nginx removes its pid file as it stops).
    drop(servers);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn report(name: &str, pxen: f64, reference: f64) {
    println!(
        "{name:<28} {:>10.1} {:>12.1} {:>8.2}",
        pxen / 1e6,
        reference / 1e6,
        pxen / reference
    );
}

fn tftp_url(port: u16) -> String {
    format!("tftp://127.0.0.1:{port}/{FILE}")
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pxen-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("config"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The files `pxen serve` needs (a drive's boot configuration) plus the benchmark file.
fn write_drive(dir: &Path, size_mib: usize) -> anyhow::Result<()> {
    let cfg = "DEFAULT pxen\nLABEL pxen\n  KERNEL mboot.c32\n  APPEND xen.gz --- vmlinuz --- initrd.img\n";
    std::fs::write(dir.join("syslinux.cfg"), cfg)?;
    std::fs::write(dir.join("initrd.img"), b"bench")?;
    std::fs::write(
        dir.join("config/cluster.ron"),
        "Cluster(name: \"bench\", secret: \"bench-secret-0123456789\")",
    )?;
    let mut rng = pxen::rand::XorShift::new(0x5eed);
    std::fs::write(dir.join(FILE), rng.bytes(size_mib << 20))?;
    Ok(())
}

fn start_pxen(root: &Path, dir: &Path) -> anyhow::Result<Server> {
    let mut child = Command::new(root.join("target/release/pxen"))
        .arg("serve")
        .arg("--root")
        .arg(dir)
        .args(["--listen", "127.0.0.1", "--no-proxydhcp"])
        .args([
            "--http-port",
            &PXEN_HTTP.to_string(),
            "--tftp-port",
            &PXEN_TFTP.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start pxen serve")?;
    let stderr = child.stderr.take().context("pxen serve has no stderr")?;
    let server = Server(child);
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    while let Some(left) = START_DEADLINE.checked_sub(started.elapsed()) {
        match receive.recv_timeout(left) {
            Ok(line) if line.contains("boot service:") => return Ok(server),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    bail!("`pxen serve` did not say `boot service:` within {START_DEADLINE:?}")
}

fn start_tftpd_hpa(dir: &Path) -> anyhow::Result<Server> {
    let child = Command::new("/usr/sbin/in.tftpd")
        .args([
            "--foreground",
            "--address",
            &format!("127.0.0.1:{TFTPD_HPA}"),
            "--secure",
        ])
        .arg(dir)
        .spawn()
        .context("cannot start tftpd-hpa's in.tftpd")?;
    let server = Server(child);
    wait_until_served(
        &format!("tftp://127.0.0.1:{TFTPD_HPA}/{PROBE}"),
        "tftpd-hpa",
    )?;
    Ok(server)
}

fn start_nginx(dir: &Path) -> anyhow::Result<Server> {
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\nerror_log stderr;\npid {pid};\nevents {{}}\nhttp {{\n  access_log off;\n  sendfile on;\n  \
             client_body_temp_path {tmp};\n  server {{\n    listen 127.0.0.1:{NGINX};\n    root {root};\n  }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            tmp = dir.join("nginx-tmp").display(),
            root = dir.display(),
        ),
    )?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"])
        .spawn()
        .context("cannot start nginx")?;
    let server = Server(child);
    wait_until_served(&format!("http://127.0.0.1:{NGINX}/{PROBE}"), "nginx")?;
    Ok(server)
}

/// Waits until `url` (a small file) is served, retrying until the start deadline.
fn wait_until_served(url: &str, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < START_DEADLINE {
        let probe = Command::new("curl")
            .args([
                "--silent",
                "--fail",
                "--max-time",
                "2",
                "--range",
                "0-0",
                "--output",
                "/dev/null",
                url,
            ])
            .status()?;
        if probe.success() {
            return Ok(());
        }
        // A server starting up has no event to wait on from here: ask again shortly.
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{name} did not serve {url} within {START_DEADLINE:?}")
}

/// The median download speed (bytes per second) of `rounds` fetches of `url`.
fn median_speed(rounds: usize, url: &str, blksize: Option<u32>) -> anyhow::Result<f64> {
    let mut speeds = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut curl = Command::new("curl");
        curl.args([
            "--silent",
            "--show-error",
            "--fail",
            "--output",
            "/dev/null",
            "--write-out",
            "%{speed_download}",
        ]);
        if let Some(blksize) = blksize {
            curl.args(["--tftp-blksize", &blksize.to_string()]);
        }
        let output = curl.arg(url).output().context("cannot run curl")?;
        if !output.status.success() {
            bail!(
                "curl {url} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        speeds.push(
            text.trim()
                .parse::<f64>()
                .with_context(|| format!("curl printed {text:?}"))?,
        );
    }
    speeds.sort_by(f64::total_cmp);
    Ok(speeds[speeds.len() / 2])
}
