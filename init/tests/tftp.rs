//! The TFTP server on loopback, against real clients (curl, tftp-hpa, atftp) and against a
//! scripted client for what real clients cannot be made to do (duplicate ACKs, silence).
//!
//! The real clients are Debian packages `curl`, `tftp-hpa` and `atftp` (`cargo xtask deps`
//! installs them); a missing one fails its test with the package to install.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pxen::serve::files::DirSource;
use pxen::serve::tftp::wire::{ErrorCode, Repr, Request};
use pxen::serve::tftp::{spawn, TftpConfig, TftpEvent, TftpHandle};

/// How long any awaited event or packet may take before the test fails naming it.
const DEADLINE: Duration = Duration::from_secs(20);

/// A served directory and the server, with its events as one-line summaries.
struct Server {
    dir: tempfile::TempDir,
    handle: TftpHandle,
    events: Receiver<String>,
}

impl Server {
    fn start(configure: impl FnOnce(&mut TftpConfig)) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("small"), b"hello, cluster\n").expect("write");
        std::fs::write(dir.path().join("five"), pseudo_random(5_000_000, 1)).expect("write");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape")).expect("symlink");
        let (sender, events) = channel();
        let sender = Mutex::new(sender);
        let mut config = TftpConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            on_event: Some(Arc::new(move |event: &TftpEvent| {
                let line = summary(event);
                // The receiver lives as long as the test; a send after it is dropped is moot.
                let _ = sender.lock().map(|sender| sender.send(line));
            })),
            ..TftpConfig::default()
        };
        configure(&mut config);
        let source = DirSource::new(dir.path().to_path_buf()).expect("source");
        let handle = spawn(config, Arc::new(source)).expect("the server binds");
        Server {
            dir,
            handle,
            events,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("tftp://{}/{path}", self.handle.local_addr())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits for an event whose summary contains `wanted`; returns it.
    fn expect_event(&self, wanted: &str) -> String {
        loop {
            match self.events.recv_timeout(DEADLINE) {
                Ok(line) if line.contains(wanted) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no server event containing {wanted:?} within {DEADLINE:?}"),
            }
        }
    }
}

fn summary(event: &TftpEvent) -> String {
    match event {
        TftpEvent::Started {
            path,
            size,
            blksize,
            windowsize,
            ..
        } => {
            format!("started {path} size={size} blksize={blksize} windowsize={windowsize}")
        }
        TftpEvent::Finished(report) => match &report.result {
            Ok(()) => format!(
                "finished {} size={} blksize={}",
                report.path, report.size, report.blksize
            ),
            Err(error) => format!("failed {}: {error}", report.path),
        },
        TftpEvent::Refused {
            request,
            code,
            reason,
            ..
        } => {
            format!("refused {request:?} code={} {reason}", code.to_u16())
        }
    }
}

/// Deterministic bytes that do not compress or repeat at block boundaries.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Runs a client program; a missing program fails the test with the package that provides it.
fn run(program: &str, package: &str, args: &[&str]) -> Output {
    let output = Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .output();
    match output {
        Ok(output) if output.status.code() == Some(127) => {
            panic!("{program} is not installed: install the Debian package {package} (cargo xtask deps)")
        }
        Ok(output) => output,
        Err(error) => {
            panic!("cannot run {program} (Debian package {package}) under timeout(1): {error}")
        }
    }
}

fn assert_same_file(got: &Path, expected: &Path) {
    let got = std::fs::read(got).unwrap_or_else(|e| panic!("{}: {e}", got.display()));
    let expected = std::fs::read(expected).expect("the served file");
    assert_eq!(got.len(), expected.len(), "length");
    assert!(
        got == expected,
        "the received file differs from the served one"
    );
}

fn curl(server: &Server, path: &str, blksize: u16, out: &Path) -> Output {
    let blksize = blksize.to_string();
    let url = server.url(path);
    run(
        "curl",
        "curl",
        &[
            "-sS",
            "--max-time",
            "50",
            "--tftp-blksize",
            &blksize,
            "-o",
            &out.to_string_lossy(),
            &url,
        ],
    )
}

#[test]
fn curl_fetches_five_megabytes_intact_at_every_block_size() {
    let server = Server::start(|_| {});
    let out = tempfile::tempdir().expect("tempdir");
    for blksize in [512u16, 1468, 8192] {
        let received = out.path().join(format!("five-{blksize}"));
        let output = curl(&server, "five", blksize, &received);
        assert!(
            output.status.success(),
            "curl blksize {blksize}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_same_file(&received, &server.path("five"));
        server.expect_event(&format!("started five size=5000000 blksize={blksize}"));
        server.expect_event(&format!("finished five size=5000000 blksize={blksize}"));
    }
}

#[test]
fn atftp_fetches_with_a_window_and_tsize() {
    let server = Server::start(|config| config.max_windowsize = 16);
    let out = tempfile::tempdir().expect("tempdir");
    // 64 blocks of 8192 bytes would not fit the 64 KiB window budget: 8 are granted.
    for (blksize, windowsize, granted) in [("1468", "4", 4), ("8192", "64", 8), ("512", "64", 16)] {
        let received = out.path().join(format!("five-{blksize}"));
        let output = run(
            "atftp",
            "atftp",
            &[
                "--option",
                &format!("blksize {blksize}"),
                "--option",
                &format!("windowsize {windowsize}"),
                "--option",
                "tsize 0",
                "-g",
                "-r",
                "five",
                "-l",
                &received.to_string_lossy(),
                "127.0.0.1",
                &server.handle.local_addr().port().to_string(),
            ],
        );
        assert!(
            output.status.success(),
            "atftp: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_same_file(&received, &server.path("five"));
        server.expect_event(&format!(
            "started five size=5000000 blksize={blksize} windowsize={granted}"
        ));
        server.expect_event("finished five");
    }
}

#[test]
fn curl_crosses_the_block_number_rollover() {
    // 65536 blocks of 8 bytes and more: block numbers wrap from 65535 to 0.
    let server = Server::start(|_| {});
    std::fs::write(server.path("long"), pseudo_random(600_000, 2)).expect("write");
    let out = tempfile::tempdir().expect("tempdir");
    let received = out.path().join("long");
    let output = curl(&server, "long", 8, &received);
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_same_file(&received, &server.path("long"));
}

/// Runs one tftp-hpa command (`-c`) against the server on loopback.
fn tftp_hpa(port: &str, mode: &str, command: &[&str]) -> Output {
    let mut args = vec!["-m", mode, "127.0.0.1", port, "-c"];
    args.extend_from_slice(command);
    run("tftp", "tftp-hpa", &args)
}

#[test]
fn tftp_hpa_gets_octet_and_is_refused_netascii_and_writes() {
    let server = Server::start(|_| {});
    let out = tempfile::tempdir().expect("tempdir");
    let port = server.handle.local_addr().port().to_string();
    let received = out.path().join("five");
    let output = tftp_hpa(
        &port,
        "octet",
        &["get", "five", &received.to_string_lossy()],
    );
    assert!(
        output.status.success(),
        "tftp: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_same_file(&received, &server.path("five"));

    let output = tftp_hpa(
        &port,
        "netascii",
        &["get", "small", &out.path().join("ascii").to_string_lossy()],
    );
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("Error code 4") && said.contains("octet (binary) mode only"),
        "{said}"
    );

    let output = tftp_hpa(
        &port,
        "octet",
        &["put", &server.path("small").to_string_lossy(), "uploaded"],
    );
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("Error code 2: PXEN serves read-only"),
        "{said}"
    );
    assert!(!server.path("uploaded").exists());

    let output = tftp_hpa(
        &port,
        "octet",
        &[
            "get",
            "../../etc/passwd",
            &out.path().join("passwd").to_string_lossy(),
        ],
    );
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("Error code 2") && said.contains("contains '..'"),
        "{said}"
    );
}

#[test]
fn curl_is_refused_escapes_and_told_of_missing_files() {
    let server = Server::start(|_| {});
    let out = tempfile::tempdir().expect("tempdir");
    let received = out.path().join("x");
    // curl's exit codes: 68 = TFTP file not found, 69 = TFTP permission problem.
    for (path, exit, event) in [
        ("missing", 68, "refused \"missing\" code=1"),
        (
            "escape",
            69,
            "refused \"escape\" code=2 escape: not served: a symbolic link leads outside",
        ),
        (
            "%2e%2e/%2e%2e/etc/passwd",
            69,
            "refused \"../../etc/passwd\" code=2",
        ),
        (
            "%5cetc%5cpasswd",
            69,
            "refused \"\\\\etc\\\\passwd\" code=2",
        ),
    ] {
        let output = curl(&server, path, 512, &received);
        assert_eq!(
            output.status.code(),
            Some(exit),
            "{path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        server.expect_event(event);
    }
    assert!(!received.exists() || std::fs::read(&received).expect("read").is_empty());
}

#[test]
fn concurrent_curls_each_get_the_whole_file() {
    let server = Server::start(|_| {});
    let out = tempfile::tempdir().expect("tempdir");
    let children: Vec<_> = (0..8)
        .map(|n| {
            let received = out.path().join(format!("five-{n}"));
            let child = Command::new("curl")
                .args(["-sS", "--max-time", "50", "--tftp-blksize", "1468", "-o"])
                .arg(&received)
                .arg(server.url("five"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run curl (Debian package curl): {e}"));
            (child, received)
        })
        .collect();
    for (mut child, received) in children {
        assert!(
            child.wait().expect("wait for curl").success(),
            "{}",
            received.display()
        );
        assert_same_file(&received, &server.path("five"));
    }
}

/// A scripted client on its own socket.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Client {
    fn new(server: &Server) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Client {
            socket,
            server: server.handle.local_addr(),
        }
    }

    fn send(&self, repr: &Repr<'_>) {
        self.send_bytes(&repr.to_bytes());
    }

    fn send_bytes(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).expect("send");
    }

    fn read(&self, filename: &str, options: &[(&str, &str)]) {
        self.send(&Repr::ReadRequest(Request {
            filename,
            mode: "octet",
            options: options.to_vec(),
        }));
    }

    /// The next packet, and the server's transfer socket it came from.
    fn receive(&self, awaited: &str) -> (Vec<u8>, SocketAddr) {
        let mut buffer = vec![0u8; 65536];
        let (len, from) = self
            .socket
            .recv_from(&mut buffer)
            .unwrap_or_else(|e| panic!("no {awaited} from the server within {DEADLINE:?}: {e}"));
        buffer.truncate(len);
        (buffer, from)
    }

    fn expect_error(&self, code: ErrorCode, message_part: &str) {
        let (bytes, _) = self.receive("ERROR");
        match Repr::parse_bytes(&bytes) {
            Ok(Repr::Error { code: got, message }) => {
                assert_eq!(got, code, "{message}");
                assert!(
                    message.contains(message_part),
                    "{message:?} should contain {message_part:?}"
                );
            }
            other => panic!("expected ERROR {code:?}, got {other:?}"),
        }
    }

    fn expect_data(&self, block: u16) -> (Vec<u8>, SocketAddr) {
        let (bytes, from) = self.receive(&format!("DATA {block}"));
        match Repr::parse_bytes(&bytes) {
            Ok(Repr::Data { block: got, data }) => {
                assert_eq!(got, block, "block number");
                (data.to_vec(), from)
            }
            other => panic!("expected DATA {block}, got {other:?}"),
        }
    }

    fn ack(&self, to: SocketAddr, block: u16) {
        self.socket
            .send_to(&Repr::Ack { block }.to_bytes(), to)
            .expect("send ACK");
    }
}

#[test]
fn every_escape_and_bad_request_gets_its_error_code() {
    let server = Server::start(|_| {});
    let client = Client::new(&server);
    for (path, code, message) in [
        ("../etc/passwd", ErrorCode::AccessViolation, "contains '..'"),
        (
            "/../../etc/passwd",
            ErrorCode::AccessViolation,
            "contains '..'",
        ),
        (
            "//etc/passwd",
            ErrorCode::AccessViolation,
            "empty component",
        ),
        ("..\\etc\\passwd", ErrorCode::AccessViolation, "backslash"),
        (
            "escape",
            ErrorCode::AccessViolation,
            "symbolic link leads outside",
        ),
        (
            "/etc/passwd",
            ErrorCode::FileNotFound,
            "etc/passwd: no such file",
        ),
        ("missing", ErrorCode::FileNotFound, "missing: no such file"),
    ] {
        client.read(path, &[]);
        client.expect_error(code, message);
    }
    client.send_bytes(b"\x00\x01small\x00octet\x00blksize\x00");
    client.expect_error(
        ErrorCode::IllegalOperation,
        "malformed request: the TFTP option \"blksize\" has no value",
    );
    client.send(&Repr::WriteRequest(Request {
        filename: "small",
        mode: "octet",
        options: vec![],
    }));
    client.expect_error(ErrorCode::AccessViolation, "PXEN serves read-only");
    client.send_bytes(b"\x00\x09");
    client.expect_error(ErrorCode::IllegalOperation, "unknown TFTP opcode 9");
    client.send_bytes(b"\x00\x01small");
    client.expect_error(ErrorCode::IllegalOperation, "malformed request");
    client.send(&Repr::Ack { block: 3 });
    client.expect_error(ErrorCode::IllegalOperation, "read requests only, not ACK");
}

#[test]
fn options_are_acknowledged_and_ack_0_starts_the_data() {
    let server = Server::start(|_| {});
    let client = Client::new(&server);
    client.read(
        "five",
        &[("blksize", "1024"), ("tsize", "0"), ("color", "blue")],
    );
    let (bytes, transfer) = client.receive("OACK");
    assert_eq!(
        Repr::parse_bytes(&bytes),
        Ok(Repr::OptionAck {
            options: vec![("blksize", "1024"), ("tsize", "5000000")]
        })
    );
    assert_ne!(
        transfer,
        server.handle.local_addr(),
        "the transfer runs on its own port"
    );
    client.ack(transfer, 0);
    let (data, from) = client.expect_data(1);
    assert_eq!((data.len(), from), (1024, transfer));
    assert_eq!(data, pseudo_random(5_000_000, 1)[..1024]);
}

#[test]
fn duplicate_acks_do_not_cause_duplicate_data() {
    let server = Server::start(|_| {});
    let client = Client::new(&server);
    std::fs::write(server.path("three"), vec![7u8; 1100]).expect("write");
    client.read("three", &[]);
    let (_, transfer) = client.expect_data(1);
    client.ack(transfer, 1);
    client.ack(transfer, 1);
    client.ack(transfer, 1);
    client.expect_data(2);
    client.ack(transfer, 2);
    // Had a duplicate ACK 1 been answered, a second DATA 2 would arrive before DATA 3.
    let (last, _) = client.expect_data(3);
    assert_eq!(last.len(), 1100 - 1024);
    client.ack(transfer, 3);
    server.expect_event("finished three");
}

#[test]
fn silence_gets_retransmissions_then_a_timeout_error() {
    let server = Server::start(|config| {
        config.initial_timeout = Duration::from_millis(50);
        config.max_timeout = Duration::from_millis(200);
        config.retries = 3;
    });
    let client = Client::new(&server);
    client.read("small", &[]);
    for _ in 0..=3 {
        let (data, _) = client.expect_data(1);
        assert_eq!(data, b"hello, cluster\n");
    }
    client.expect_error(ErrorCode::NotDefined, "timed out");
    let failed = server.expect_event("failed small");
    assert!(
        failed.contains("stopped acknowledging small at block 1 (after 3 retransmissions"),
        "{failed}"
    );
}

#[test]
fn a_repeated_request_is_not_served_twice_and_a_full_server_says_so() {
    let server = Server::start(|config| config.max_transfers = 2);
    let first = Client::new(&server);
    first.read("small", &[]);
    let (_, transfer) = first.expect_data(1);
    // The client repeats its request (as when the answer is slow): had that started a second
    // transfer, two would be running and the next client would be refused.
    first.read("small", &[]);
    let second = Client::new(&server);
    second.read("small", &[]);
    let (_, second_transfer) = second.expect_data(1);
    assert_eq!(server.handle.active_transfers(), 2);
    let third = Client::new(&server);
    third.read("small", &[]);
    third.expect_error(ErrorCode::NotDefined, "busy: 2 transfers are running");
    server.expect_event("refused \"small\" code=0");
    first.ack(transfer, 1);
    second.ack(second_transfer, 1);
    server.expect_event("finished small");
    server.expect_event("finished small");
}

#[test]
fn stopping_the_server_ends_running_transfers_with_an_error() {
    let server = Server::start(|_| {});
    let client = Client::new(&server);
    client.read("small", &[]);
    client.expect_data(1);
    let Server {
        handle,
        events,
        dir: _dir,
    } = server;
    handle.stop();
    client.expect_error(ErrorCode::NotDefined, "stopping");
    let failed = events
        .recv_timeout(DEADLINE)
        .into_iter()
        .chain(events.iter())
        .find(|e| e.starts_with("failed small"));
    assert!(
        failed.is_some_and(|e| e.contains("TFTP server is stopping")),
        "no 'failed small' event after the stop"
    );
}
