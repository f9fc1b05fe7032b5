//! `pxen serve` as a user runs it, on loopback: the boot files of a drive directory, with the
//! generated network boot files, fetched by real clients (curl over HTTP and TFTP).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pxen::report::client::{post_report, RetryPolicy};
use pxen::report::wire::{HostReport, TimelineEntry};

const DRIVE_CFG: &str = "DEFAULT pxen\nLABEL pxen\n  KERNEL mboot.c32\n  \
    APPEND xen.gz console=com1 dom0_mem=1536M,max:1536M --- vmlinuz console=hvc0 pxen.boot=usb --- initrd.img\n";
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A free port: bound by the system, then released for the server to take.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the server when the test ends, whatever happens.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pxen serve` on `root` with ports of its own, for a test that speaks only HTTP to
/// it; returns the server and its HTTP port.
fn serve_http(root: &Path) -> (Server, u16) {
    let http = free_tcp_port();
    let server = start_server(
        root,
        http,
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
    );
    (server, http)
}

/// Starts `pxen serve` and waits for its "boot service:" line.
fn start_server(root: &Path, http: u16, tftp: u16, dhcp: u16, pxe: u16) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pxen"))
        .args(["serve", "--root"])
        .arg(root)
        .args([
            "--listen",
            "127.0.0.1",
            "--http-port",
            &http.to_string(),
            "--tftp-port",
            &tftp.to_string(),
        ])
        .args([
            "--dhcp-port",
            &dhcp.to_string(),
            "--pxe-port",
            &pxe.to_string(),
        ])
        // A port of its own, so the tests' servers (of different clusters) do not hear each
        // other, and a short probe.
        .args([
            "--announce-port",
            &free_udp_port().to_string(),
            "--settle",
            "0.5",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the pxen binary runs");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match receive.recv_timeout(READY_DEADLINE) {
            Ok(line) if line.contains("boot service:") => return server,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "`pxen serve` did not say `boot service:` within {READY_DEADLINE:?}; it said:\n{}",
                seen.join("\n")
            ),
        }
    }
}

fn curl(url: &str) -> Vec<u8> {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "30",
            url,
        ])
        .output()
        .expect("curl is installed (cargo xtask deps)");
    assert!(
        output.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn pxen_serve_serves_the_drive_and_the_generated_network_boot_files() {
    let drive = tempfile::tempdir().unwrap();
    let root = drive.path();
    std::fs::write(root.join("syslinux.cfg"), DRIVE_CFG).unwrap();
    let initrd: Vec<u8> = (0..100_001u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("initrd.img"), &initrd).unwrap();
    std::fs::write(root.join("xen.gz"), b"xen image").unwrap();
    std::fs::create_dir(root.join("config")).unwrap();
    std::fs::write(
        root.join("config/cluster.ron"),
        "Cluster(name: \"loopback-lab\", secret: \"loopback-secret-0123\")",
    )
    .unwrap();

    let (http, tftp) = (free_tcp_port(), free_udp_port());
    let _server = start_server(root, http, tftp, free_udp_port(), free_udp_port());

    let cfg = String::from_utf8(curl(&format!(
        "http://127.0.0.1:{http}/pxelinux.cfg/default"
    )))
    .unwrap();
    assert!(
        cfg.contains(&format!(
            "APPEND http://127.0.0.1:{http}/xen.gz console=com1 dom0_mem=1536M,max:1536M"
        )),
        "{cfg}"
    );
    assert!(
        cfg.contains(&format!(
            "pxen.boot=net pxen.server=http://127.0.0.1:{http}"
        )),
        "{cfg}"
    );
    assert!(!cfg.contains("pxen.boot=usb"), "{cfg}");

    for url in [
        format!("tftp://127.0.0.1:{tftp}/initrd.img"),
        format!("http://127.0.0.1:{http}/initrd.img"),
    ] {
        let served = curl(&url);
        assert_eq!(
            &served[..initrd.len()],
            &initrd[..],
            "{url}: the drive's initramfs comes first"
        );
        let appended_at = initrd.len().next_multiple_of(4);
        assert!(
            served[initrd.len()..appended_at].iter().all(|&b| b == 0),
            "{url}: zero padding"
        );
        let appended =
            pxen::cpio::read_archive(&served[appended_at..]).expect("an appended newc archive");
        let config = appended
            .iter()
            .find(|e| e.name == "pxen/config/cluster.ron")
            .expect("the configuration is appended");
        assert_eq!(
            config.data,
            b"Cluster(name: \"loopback-lab\", secret: \"loopback-secret-0123\")"
        );
    }
    assert_eq!(
        curl(&format!("tftp://127.0.0.1:{tftp}/xen.gz")),
        b"xen image"
    );
    let status = String::from_utf8(curl(&format!("http://127.0.0.1:{http}/"))).unwrap();
    assert!(
        status.contains("loopback-lab"),
        "the status page names the cluster: {status}"
    );
}

/// Runs the `pxen` command and returns its standard output, asserting it succeeded.
fn pxen(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_pxen"))
        .args(args)
        .output()
        .expect("the pxen binary runs");
    assert!(
        output.status.success(),
        "pxen {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn report(hostname: &str, serial: &str, mac: &str) -> HostReport {
    HostReport {
        hostname: hostname.into(),
        serial: Some(serial.into()),
        macs: vec![mac.parse().unwrap()],
        boot_id: "8d3c1e9a-boot".into(),
        boot_source: "net".into(),
        timeline: vec![TimelineEntry {
            phase: "dom0-up".into(),
            seconds: 120.5,
        }],
    }
}

#[test]
fn hosts_report_to_pxen_serve_and_pxen_status_shows_them() {
    let drive = small_drive(
        "Cluster(name: \"report-lab\", secret: \"report-secret-0123\", \
         hosts: [Host(serial: \"S1\", hostname: \"node1\")])",
    );
    let root = drive.path();
    let (_server, http) = serve_http(root);
    let server = format!("http://127.0.0.1:{http}");

    let before = pxen(&["status", "--server", &server]);
    assert!(
        before.contains("node1") && before.contains("expected (not seen yet)"),
        "{before}"
    );

    let quick = RetryPolicy {
        deadline: Some(Duration::from_secs(1)),
        first_interval: Duration::from_millis(100),
        ..RetryPolicy::default()
    };
    let forged = post_report(
        &server,
        b"not-the-cluster-secret",
        &report("node1", "S1", "52:54:00:00:00:01"),
        &quick,
    )
    .unwrap_err()
    .to_string();
    assert!(
        forged.contains("401") && forged.contains("signature does not match"),
        "a report signed with another secret is refused, and says why: {forged}"
    );
    let still = pxen(&["status", "--server", &server, "--json"]);
    assert!(!still.contains("\"online\""), "{still}");

    for (hostname, serial, mac) in [
        ("node1", "S1", "52:54:00:00:00:01"),
        ("stray", "S9", "52:54:00:00:00:09"),
    ] {
        let accepted = post_report(
            &server,
            b"report-secret-0123",
            &report(hostname, serial, mac),
            &RetryPolicy::default(),
        )
        .expect("host0 accepts a report signed with the cluster secret");
        assert_eq!(accepted.answer, format!("accepted: {hostname} is online"));
    }
    let after = pxen(&["status", "--server", &server]);
    let lines: Vec<&str> = after.lines().collect();
    assert!(lines[0].contains("2 host(s), 2 online"), "{after}");
    assert!(
        lines[2].starts_with("node1")
            && lines[2].contains("online  ")
            && lines[2].contains("dom0-up at 120.5 s"),
        "{after}"
    );
    assert!(
        lines[3].starts_with("stray")
            && lines[3].contains("online (new: not in the configuration)"),
        "{after}"
    );
}

/// A drive directory with a boot menu, a tiny initramfs and the configuration `cluster_ron`.
fn small_drive(cluster_ron: &str) -> tempfile::TempDir {
    let drive = tempfile::tempdir().unwrap();
    let root = drive.path();
    std::fs::write(root.join("syslinux.cfg"), DRIVE_CFG).unwrap();
    std::fs::write(root.join("initrd.img"), b"initrd").unwrap();
    std::fs::create_dir(root.join("config")).unwrap();
    std::fs::write(root.join("config/cluster.ron"), cluster_ron).unwrap();
    drive
}

/// Runs the `pxen` command and returns whether it succeeded and what it said on both outputs.
fn pxen_outcome(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pxen"))
        .args(args)
        .output()
        .expect("the pxen binary runs");
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    said += &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[test]
fn a_host_state_is_saved_refused_on_a_wrong_base_and_served_in_the_initrd() {
    let drive = small_drive("Cluster(name: \"state-lab\", secret: \"state-secret-0123456\")");
    let root = drive.path();
    let (_server, http) = serve_http(root);
    let url = format!("http://127.0.0.1:{http}");

    let dom0 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dom0.path().join("etc/ssh")).unwrap();
    let key = dom0.path().join("etc/ssh/ssh_host_ed25519_key");
    std::fs::write(&key, "HOST KEY").unwrap();
    let base = dom0.path().join("state-base");
    let config = root.join("config");
    let save = |base: &Path| {
        pxen_outcome(&[
            "state",
            "save",
            "--root",
            dom0.path().to_str().unwrap(),
            "--server",
            &url,
            "--config",
            config.to_str().unwrap(),
            "--name",
            "sn-1",
            "--base",
            base.to_str().unwrap(),
            "--deadline",
            "20",
        ])
    };
    let (saved, said) = save(&base);
    assert!(saved && said.contains("saved"), "{said}");
    let stored = std::fs::read(root.join("pxen/hosts/sn-1/state.cpio")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&base).unwrap().trim(),
        pxen::state::archive::content_hash(&stored)
    );
    let (again, said) = save(&base);
    assert!(again && said.contains("unchanged"), "{said}");

    // A host that booted without its saved state (base `none`) must not replace it.
    std::fs::write(&key, "ANOTHER KEY").unwrap();
    let fresh = dom0.path().join("fresh-base");
    let (refused, said) = save(&fresh);
    assert!(!refused && said.contains("409"), "{said}");
    assert_eq!(
        std::fs::read(root.join("pxen/hosts/sn-1/state.cpio")).unwrap(),
        stored
    );

    let initrd = curl(&format!("{url}/initrd.img"));
    let tail = initrd
        .windows(stored.len())
        .position(|window| window == stored.as_slice());
    assert!(
        tail.is_some(),
        "the served initrd.img carries the stored state"
    );
}
