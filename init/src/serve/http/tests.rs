//! The server on loopback, against `curl` and raw sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::status::{HostState, StatusBoard};
use super::wire::Status;
use super::{spawn, HttpConfig, HttpHandle, Reply};
use crate::serve::files::DirSource;
use crate::serve::http::wire::RequestRepr;
use crate::serve::http::PostRoute;

const SMALL_LEN: usize = 1000;
const BIG_LEN: usize = 50 * 1024 * 1024;

/// Bytes that differ at every position modulo a prime, so a shifted range is caught.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

struct Fixture {
    root: tempfile::TempDir,
    out: tempfile::TempDir,
    server: HttpHandle,
    small: Vec<u8>,
}

impl Fixture {
    fn new(configure: impl FnOnce(&mut HttpConfig)) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let small = pattern(SMALL_LEN, 7);
        std::fs::write(root.path().join("small.bin"), &small).unwrap();
        std::fs::create_dir(root.path().join("dir")).unwrap();
        std::fs::write(root.path().join("dir/a b.txt"), b"spaced").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("passwd")).unwrap();
        let mut config = HttpConfig::new("127.0.0.1:0".parse().unwrap());
        configure(&mut config);
        let board = StatusBoard::new("test<cluster>");
        board.update_by_mac("52:54:00:00:00:01", HostState::Online, |host| {
            host.hostname = Some("host-<one>".into());
        });
        let source = Arc::new(DirSource::new(root.path().to_path_buf()).unwrap());
        let server = spawn(config, source, board).unwrap();
        Fixture {
            root,
            out: tempfile::tempdir().unwrap(),
            server,
            small,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }

    /// Runs curl; returns what `-w` printed.
    fn curl(&self, args: &[&str]) -> String {
        let output = Command::new("curl")
            .args(["-s", "--max-time", "60"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "curl {args:?}: {:?}", output);
        String::from_utf8(output.stdout).unwrap()
    }

    /// GETs `path` into a file; returns (status code, body).
    fn get(&self, path: &str, extra: &[&str]) -> (String, Vec<u8>) {
        let file = self.out.path().join("body");
        let file_arg = file.to_str().unwrap();
        let url = self.url(path);
        let mut args = vec!["--path-as-is", "-o", file_arg, "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        args.push(&url);
        let code = self.curl(&args);
        (code, std::fs::read(&file).unwrap_or_default())
    }
}

/// Sends raw bytes on a new connection and reads until the server closes it.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the server to close the connection within 10 s");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn get_head_and_ranges_with_curl() {
    let f = Fixture::new(|_| {});
    let (code, body) = f.get("/small.bin", &[]);
    assert_eq!(
        (code.as_str(), body.as_slice()),
        ("200", f.small.as_slice())
    );
    let (code, body) = f.get("/dir/a%20b.txt", &[]);
    assert_eq!((code.as_str(), body.as_slice()), ("200", &b"spaced"[..]));

    let head = f.curl(&["-I", &f.url("/small.bin")]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 1000\r\n"), "{head}");
    assert!(head.contains("Accept-Ranges: bytes\r\n"), "{head}");

    let cases: [(&str, usize, usize, &str); 4] = [
        ("0-99", 0, 100, "bytes 0-99/1000"),
        ("100-", 100, 1000, "bytes 100-999/1000"),
        ("-50", 950, 1000, "bytes 950-999/1000"),
        ("990-2000", 990, 1000, "bytes 990-999/1000"),
    ];
    for (range, start, end, content_range) in cases {
        let (code, body) = f.get("/small.bin", &["-r", range]);
        assert_eq!(code, "206", "{range}");
        assert_eq!(body, f.small[start..end], "{range}");
        let head = f.curl(&["-I", "-r", range, &f.url("/small.bin")]);
        assert!(
            head.contains(&format!("Content-Range: {content_range}\r\n")),
            "{range}: {head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", end - start)),
            "{range}: {head}"
        );
    }
    let head = f.curl(&["-i", "-r", "1000-", &f.url("/small.bin")]);
    assert!(head.starts_with("HTTP/1.1 416 "), "{head}");
    assert!(head.contains("Content-Range: bytes */1000\r\n"), "{head}");
    // Several ranges: the whole file, as documented.
    let (code, body) = f.get("/small.bin", &["-r", "0-1,5-6"]);
    assert_eq!((code.as_str(), body.len()), ("200", SMALL_LEN));
}

#[test]
fn curl_reuses_one_connection_for_two_requests() {
    let f = Fixture::new(|_| {});
    let url = f.url("/small.bin");
    let connects = f.curl(&[
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{num_connects} ",
        &url,
        &url,
    ]);
    assert_eq!(connects, "1 0 ");
}

#[test]
fn unsafe_and_missing_paths_are_refused() {
    let f = Fixture::new(|_| {});
    for path in [
        "/../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/a%00b",
        "/a%2fb",
        "//etc/passwd",
        "/dir/./a",
        "/a\\b",
        "/passwd",
        "/dir",
    ] {
        let (code, body) = f.get(path, &[]);
        assert_eq!(code, "403", "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
    assert_eq!(f.get("/missing", &[]).0, "404");
    assert_eq!(f.get("/%zz", &[]).0, "400");
    let answer = f.curl(&["-i", "-X", "DELETE", &f.url("/small.bin")]);
    assert!(
        answer.starts_with("HTTP/1.1 405 ") && answer.contains("Allow: GET, HEAD\r\n"),
        "{answer}"
    );
}

#[test]
fn a_big_file_arrives_byte_for_byte_while_concurrent_and_slow_clients_run() {
    let f = Fixture::new(|_| {});
    let big = pattern(BIG_LEN, 11);
    std::fs::write(f.root.path().join("big.bin"), &big).unwrap();
    // A client reading at 20 kB/s holds its connection for the whole test: the others must
    // finish all the same.
    let mut slow = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--limit-rate",
            "20k",
            &f.url("/big.bin"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let downloads: Vec<_> = (0..4)
        .map(|i| {
            let file = f.out.path().join(format!("big{i}"));
            let child = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    file.to_str().unwrap(),
                    "-w",
                    "%{http_code}",
                    &f.url("/big.bin"),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            (file, child)
        })
        .collect();
    for (file, child) in downloads {
        let output = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "200");
        assert!(
            std::fs::read(&file).unwrap() == big,
            "{} differs from the served file",
            file.display()
        );
    }
    assert!(
        slow.try_wait().unwrap().is_none(),
        "the slow client was expected to be still downloading"
    );
    slow.kill().unwrap();
    slow.wait().unwrap();
}

#[test]
fn limits_and_unsupported_requests_get_their_status() {
    let f = Fixture::new(|config| config.limits.max_headers = 4);
    let addr = f.server.local_addr();
    let long_uri = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(5000));
    assert!(raw(addr, long_uri.as_bytes()).starts_with("HTTP/1.1 414 "));
    let many = "GET / HTTP/1.1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\n\r\n";
    assert!(raw(addr, many.as_bytes()).starts_with("HTTP/1.1 431 "));
    let big_header = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "b".repeat(5000));
    assert!(raw(addr, big_header.as_bytes()).starts_with("HTTP/1.1 431 "));
    let chunked = "GET /small.bin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let answer = raw(addr, chunked.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 501 ") && answer.contains("Connection: close\r\n"),
        "{answer}"
    );
    assert!(raw(addr, b"GET / HTTP/2.0\r\n\r\n").starts_with("HTTP/1.1 505 "));
    assert!(raw(addr, b"GET / HTTP/1.1\nHost: x\n\n").starts_with("HTTP/1.1 400 "));

    // HTTP/1.0 closes unless asked; a keep-alive request is answered with keep-alive, and a
    // second request on the same connection still works; a GET body is read and skipped.
    let answer = raw(addr, b"HEAD /small.bin HTTP/1.0\r\n\r\n");
    assert!(
        answer.contains("Connection: close\r\n") && answer.contains("Content-Length: 1000\r\n"),
        "{answer}"
    );
    let two = b"HEAD /small.bin HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabcGET /small.bin HTTP/1.0\r\n\r\n";
    let answer = raw(addr, two);
    assert!(answer.contains("Connection: keep-alive\r\n"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert!(
        answer.ends_with(&String::from_utf8_lossy(&f.small).into_owned()),
        "{answer}"
    );
}

#[test]
fn idle_connections_close_and_excess_connections_get_503() {
    let f = Fixture::new(|config| {
        config.max_connections = 1;
        config.idle_timeout = Duration::from_millis(300);
    });
    let addr = f.server.local_addr();
    let mut first = TcpStream::connect(addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    first
        .write_all(b"HEAD /small.bin HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    // The first connection is now being served (kept alive): no room for a second.
    assert!(raw(addr, b"GET /small.bin HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503 "));
    // Idle past the idle timeout: the server closes it (read returns end of file).
    assert_eq!(
        first
            .read(&mut buf)
            .expect("the server to close the idle connection within 10 s"),
        0
    );
}

#[test]
fn status_pages_show_the_board_escaped() {
    let f = Fixture::new(|_| {});
    let (code, page) = f.get("/", &[]);
    let page = String::from_utf8(page).unwrap();
    assert_eq!(code, "200");
    assert!(
        page.contains("host-&lt;one&gt;") && page.contains("online"),
        "{page}"
    );
    let (code, json) = f.get("/status.json", &[]);
    assert_eq!(code, "200");
    assert!(String::from_utf8(json)
        .unwrap()
        .contains("\"state\":\"online\""));
    let answer = f.curl(&["-i", "-X", "POST", &f.url("/")]);
    assert!(
        answer.starts_with("HTTP/1.1 405 ") && answer.contains("Allow: GET, HEAD\r\n"),
        "{answer}"
    );
}

struct Echo;

impl PostRoute for Echo {
    fn handle(&self, request: &RequestRepr, body: &[u8], _peer: SocketAddr) -> Reply {
        let text = format!(
            "{} got {} bytes: {}",
            request.target,
            body.len(),
            String::from_utf8_lossy(body)
        );
        Reply::text(Status::Ok, &text)
    }
}

#[test]
fn post_routes_get_the_whole_body() {
    let f = Fixture::new(|config| {
        config.post_routes.insert("/report", Arc::new(Echo));
        config.max_body = 100;
    });
    let answer = f.curl(&["--data-binary", "hello=1", &f.url("/report")]);
    assert_eq!(answer, "/report got 7 bytes: hello=1");
    let too_big = "x".repeat(101);
    let code = f.curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        &too_big,
        &f.url("/report"),
    ]);
    assert_eq!(code, "413");
    let answer = f.curl(&["-i", &f.url("/report")]);
    assert!(
        answer.starts_with("HTTP/1.1 405 ") && answer.contains("Allow: POST\r\n"),
        "{answer}"
    );
}

#[test]
fn stopping_closes_the_listener() {
    let f = Fixture::new(|_| {});
    let addr = f.server.local_addr();
    f.server.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "connecting after stop should be refused"
    );
}
