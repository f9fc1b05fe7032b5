//! The privileged part of the boot, for real: as root, in private mount and PID namespaces,
//! a fake initramfs (a tmpfs) is entered with `chroot`, the root filesystem layers are copied
//! into a size-checked tmpfs, and `switch_root` executes a real init (busybox `sh`) as PID 1.
//!
//! The test re-executes its own binary under `unshare --mount --pid --fork`, so the child is
//! PID 1 of a new PID namespace and nothing it mounts is seen outside.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pxen::{handoff, mounts, rootfs};

const CHILD_ENV: &str = "PXEN_HANDOFF_TEST_DIR";
const TEST_NAME: &str = "rootfs_copy_and_switch_root_exec_the_real_init";
const BUSYBOX: &str = "/bin/busybox";
const DEADLINE: Duration = Duration::from_secs(60);

/// The real init of the test root filesystem: it reports what it sees as one line.
const TEST_INIT: &str = r#"#!/bin/busybox sh
b=/bin/busybox
echo "PXEN-TEST-INIT pid=$$ fstype=$($b stat -f -c %T /) hostname=$($b cat /etc/hostname) \
suid=$($b stat -c %a /usr/bin/suid-file) owner=$($b stat -c %u:%g /srv/owned) \
link=$($b readlink /usr/bin/link) hardlink=$($b stat -c %h /usr/bin/suid-file) \
layer=$($b cat /etc/layer) proc=$($b cat /proc/1/comm) args=$*"
"#;

#[test]
#[ignore = "needs root and unshare: run by `cargo xtask test`"]
fn rootfs_copy_and_switch_root_exec_the_real_init() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: install busybox-static (cargo xtask deps)"
    );
    let dir = tempfile::tempdir().unwrap();
    let layers = dir.path().join("layers");
    std::fs::create_dir(&layers).unwrap();
    write_base_layer(&layers.join("00-base.tar"));
    write_overlay_layer(&layers.join("20-overlay.tar"));

    let mut process = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            TEST_NAME,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) must be installed");
    let report = wait_for_line(process.stdout.take().unwrap(), "PXEN-TEST-INIT", DEADLINE);
    let status = process.wait().unwrap();

    let report = report.unwrap_or_else(|output| {
        panic!("the test init never reported within {DEADLINE:?}; the child printed:\n{output}")
    });
    eprintln!("{report}");
    for expected in [
        "pid=1 ",
        "fstype=tmpfs ",
        "hostname=pxen-test-host ",
        "suid=4755 ",
        "owner=1234:5678 ",
        "link=suid-file ",
        "hardlink=2 ",
        "layer=overlay ",
        "proc=init ",
        "args=single",
    ] {
        assert!(
            report.contains(expected),
            "expected {expected:?} in the test init's report: {report}"
        );
    }
    assert!(status.success(), "the namespace exited with {status}");
}

/// Reads lines until one contains `marker`; on timeout returns everything read.
fn wait_for_line(
    stdout: impl std::io::Read + Send + 'static,
    marker: &'static str,
    deadline: Duration,
) -> Result<String, String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    let start = std::time::Instant::now();
    let mut seen = String::new();
    while let Some(left) = deadline.checked_sub(start.elapsed()) {
        match receive.recv_timeout(left) {
            Ok(line) if line.contains(marker) => return Ok(line),
            Ok(line) => seen += &(line + "\n"),
            Err(_) => break,
        }
    }
    Err(seen)
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(1_700_000_000);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn add_file(builder: &mut tar::Builder<std::fs::File>, path: &str, mode: u32, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    builder.append_data(&mut h, path, data).unwrap();
}

/// A small root filesystem: busybox, an init script, and entries that test what unpacking
/// must keep (set-uid mode, ownership, symbolic and hard links).
fn write_base_layer(path: &Path) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for dir in ["bin", "sbin", "etc", "usr", "usr/bin", "srv"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        builder.append_data(&mut h, dir, &[][..]).unwrap();
    }
    add_file(
        &mut builder,
        "bin/busybox",
        0o755,
        &std::fs::read(BUSYBOX).unwrap(),
    );
    add_file(&mut builder, "sbin/init", 0o755, TEST_INIT.as_bytes());
    add_file(&mut builder, "usr/bin/suid-file", 0o4755, b"x");
    add_file(&mut builder, "etc/layer", 0o644, b"base");
    let mut owned = header(tar::EntryType::Regular, 0o600, 1);
    owned.set_uid(1234);
    owned.set_gid(5678);
    builder
        .append_data(&mut owned, "srv/owned", &b"o"[..])
        .unwrap();
    let mut link = header(tar::EntryType::Symlink, 0o777, 0);
    builder
        .append_link(&mut link, "usr/bin/link", "suid-file")
        .unwrap();
    let mut hard = header(tar::EntryType::Link, 0o4755, 0);
    builder
        .append_link(&mut hard, "usr/bin/hard", "usr/bin/suid-file")
        .unwrap();
    builder.finish().unwrap();
}

/// A later layer overrides a file of the base.
fn write_overlay_layer(path: &Path) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    add_file(&mut builder, "etc/layer", 0o644, b"overlay");
    builder.finish().unwrap();
}

/// PID 1 of the new namespaces: enter a fake initramfs and boot from it like `/init` does.
fn child(dir: &Path) -> ! {
    let error = match boot_from_fake_initramfs(dir) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    println!("CHILD-ERROR: {error}");
    std::process::exit(1);
}

fn boot_from_fake_initramfs(dir: &Path) -> Result<std::convert::Infallible, String> {
    assert_eq!(
        std::process::id(),
        1,
        "the child must be PID 1 of its namespace"
    );
    let initramfs = dir.join("initramfs");
    std::fs::create_dir_all(&initramfs).map_err(|e| e.to_string())?;
    nix::mount::mount(
        Some("initramfs"),
        &initramfs,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| format!("mount tmpfs: {e}"))?;
    let layers_in_initramfs = initramfs.join("rootfs");
    std::fs::create_dir(&layers_in_initramfs).map_err(|e| e.to_string())?;
    for name in ["00-base.tar", "20-overlay.tar"] {
        std::fs::copy(
            dir.join("layers").join(name),
            layers_in_initramfs.join(name),
        )
        .map_err(|e| e.to_string())?;
    }
    nix::unistd::chroot(&initramfs).map_err(|e| format!("chroot: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir: {e}"))?;

    mounts::mount_basics(Path::new("/")).map_err(|e| e.to_string())?;
    let layers = rootfs::scan_layers(Path::new("/rootfs")).map_err(|e| e.to_string())?;
    let needed = layers.iter().map(|l| l.ram_bytes).sum();
    let mem = rootfs::read_meminfo(Path::new("/proc/meminfo")).map_err(|e| e.to_string())?;
    let size = rootfs::plan_tmpfs_size(needed, mem).map_err(|e| e.to_string())?;
    let new_root = PathBuf::from("/newroot");
    rootfs::mount_tmpfs(&new_root, size).map_err(|e| e.to_string())?;
    rootfs::unpack_layers(&layers, &new_root).map_err(|e| e.to_string())?;
    if Path::new("/rootfs/00-base.tar").exists() {
        return Err("a layer was left in the initramfs after unpacking".into());
    }
    handoff::write_identity(&new_root, "pxen-test-host").map_err(|e| e.to_string())?;
    let args = [std::ffi::CString::new("single").unwrap()];
    handoff::switch_root(&new_root, Path::new("/sbin/init"), &args).map_err(|e| e.to_string())
}
