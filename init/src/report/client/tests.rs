//! The client's pure parts, then the client against the boot service's real HTTP server on
//! loopback, with a `/report` route that decodes reports as host0 does.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::*;
use crate::report::wire::{decode, sign, ReportError, TimelineEntry};
use crate::serve::files::DirSource;
use crate::serve::http::status::StatusBoard;
use crate::serve::http::wire::{Head, Limits, RequestRepr, Status};
use crate::serve::http::{spawn, HttpConfig, HttpHandle, PostRoute, Reply};

const SECRET: &[u8] = b"the cluster secret";

fn report() -> HostReport {
    HostReport {
        hostname: "node1".into(),
        serial: Some("CZ 123/45".into()),
        macs: vec![
            "52:54:00:12:34:56".parse().unwrap(),
            "52:54:00:ab:cd:ef".parse().unwrap(),
        ],
        boot_id: "6f0f5d3c-2b1e-4c8e-9a55-3a1f0e3b7c11".into(),
        boot_source: "usb".into(),
        timeline: vec![
            TimelineEntry {
                phase: "init".into(),
                seconds: 3.125,
            },
            TimelineEntry {
                phase: "rootfs-in-ram".into(),
                seconds: 12.0625,
            },
            TimelineEntry {
                phase: "dom0-up".into(),
                seconds: 30.5,
            },
        ],
    }
}

fn fast_policy(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        deadline: Some(deadline),
        first_interval: Duration::from_millis(10),
        factor: 2,
        max_interval: Duration::from_millis(50),
        jitter: 0.2,
        attempt_timeout: Duration::from_secs(5),
    }
}

fn server(text: &str) -> Server {
    Server::parse(text).unwrap()
}

fn bad_server_why(text: &str) -> &'static str {
    match Server::parse(text) {
        Err(ClientError::BadServer { why, .. }) => why,
        other => panic!("{text}: expected BadServer, got {other:?}"),
    }
}

#[test]
fn server_urls_parse_and_bad_ones_say_why() {
    let expect = |host: &str, port| Server {
        host: host.into(),
        port,
    };
    assert_eq!(server("http://10.77.0.50:80"), expect("10.77.0.50", 80));
    assert_eq!(server("http://10.77.0.50"), expect("10.77.0.50", 80));
    assert_eq!(server("HTTP://host0.lan:8080/"), expect("host0.lan", 8080));
    for (text, why) in [
        ("10.77.0.50", "it does not start with http://"),
        ("https://10.77.0.50", "only http:// is supported"),
        (
            "http://10.77.0.50/boot",
            "it has a path; give the server only, the path is PXEN's",
        ),
        (
            "http://10.77.0.50?x",
            "it has a path; give the server only, the path is PXEN's",
        ),
        (
            "http://root@10.77.0.50",
            "user names in the address are not supported",
        ),
        ("http://[::1]:80", "IPv6 addresses are not supported"),
        (
            "http://10.77.0.50:0",
            "its port is not a number from 1 to 65535",
        ),
        (
            "http://10.77.0.50:65536",
            "its port is not a number from 1 to 65535",
        ),
        (
            "http://10.77.0.50:+80",
            "its port is not a number from 1 to 65535",
        ),
        (
            "http://10.77.0.50:",
            "its port is not a number from 1 to 65535",
        ),
        ("http://", "its host is not an IPv4 address or a host name"),
        (
            "http://host_0",
            "its host is not an IPv4 address or a host name",
        ),
    ] {
        assert_eq!(bad_server_why(text), why, "{text}");
    }
    let error = Server::parse("ftp://x").unwrap_err().to_string();
    assert!(
        error.contains("\"ftp://x\"") && error.contains("pxen.server="),
        "{error}"
    );
}

#[test]
fn the_request_is_what_the_boot_service_parses() {
    let body = encode_report();
    let authorization = sign(SECRET, &body);
    let request = build_request(
        &server("http://10.77.0.50"),
        &report_post(&body, &authorization),
    );
    let head = Head::new_checked(&request[..], &Limits::default()).unwrap();
    let parsed = RequestRepr::parse(&head).unwrap();
    assert_eq!(parsed.method, "POST");
    assert_eq!(parsed.target, "/report");
    assert_eq!(parsed.header("host"), Some("10.77.0.50:80"));
    assert_eq!(parsed.header("authorization"), Some(authorization.as_str()));
    assert!(!parsed.keep_alive());
    assert_eq!(&request[head.len()..], body.as_slice());
    assert_eq!(
        decode(
            SECRET,
            &request[head.len()..],
            parsed.header("authorization")
        ),
        Ok(report())
    );
}

/// The report's request for a given body and signature.
fn report_post<'a>(body: &'a [u8], authorization: &str) -> SignedPost<'a> {
    SignedPost {
        what: "report",
        path: REPORT_PATH.to_string(),
        content_type: "application/json",
        headers: Vec::new(),
        body,
        authorization: authorization.to_string(),
    }
}

fn encode_report() -> Vec<u8> {
    wire::encode(&report())
}

#[test]
fn answers_parse_whole_and_in_pieces() {
    let full = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 5\r\n\r\nhello";
    let expected = Answer {
        status: 200,
        body: b"hello".to_vec(),
    };
    assert_eq!(parse_answer(full, false), Ok(Some(expected.clone())));
    for cut in 0..full.len() {
        assert_eq!(parse_answer(&full[..cut], false), Ok(None), "cut at {cut}");
    }
    // Without Content-Length the body ends at the close.
    let open_ended = b"HTTP/1.0 401 Unauthorized\r\n\r\nwrong secret";
    assert_eq!(parse_answer(open_ended, false), Ok(None));
    assert_eq!(
        parse_answer(open_ended, true),
        Ok(Some(Answer {
            status: 401,
            body: b"wrong secret".to_vec()
        }))
    );
}

#[test]
fn malformed_answers_say_what_is_wrong() {
    assert_eq!(
        parse_answer(b"HTTP/1.1 200 OK\r\n", true),
        Err(MalformedAnswer::ClosedInHead { received: 17 })
    );
    assert_eq!(
        parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", true),
        Err(MalformedAnswer::ClosedInBody {
            received: 5,
            expected: 9
        })
    );
    for line in [
        "SSH-2.0-OpenSSH_9.2",
        "HTTP/1.1 20 OK",
        "HTTP/2 200 OK",
        "HTTP/1.1 2x0 OK",
    ] {
        let answer = format!("{line}\r\n\r\n");
        assert!(
            matches!(
                parse_answer(answer.as_bytes(), true),
                Err(MalformedAnswer::StatusLine { .. })
            ),
            "{line}"
        );
    }
    for lengths in [
        "Content-Length: -1",
        "Content-Length: 1\r\nContent-Length: 2",
    ] {
        let answer = format!("HTTP/1.1 200 OK\r\n{lengths}\r\n\r\nxx");
        assert!(
            matches!(
                parse_answer(answer.as_bytes(), false),
                Err(MalformedAnswer::ContentLength { .. })
            ),
            "{lengths}"
        );
    }
    let huge = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        MAX_ANSWER_BODY + 1
    );
    assert_eq!(
        parse_answer(huge.as_bytes(), false),
        Err(MalformedAnswer::BodyTooLarge {
            len: MAX_ANSWER_BODY + 1
        })
    );
    let endless_head = vec![b'x'; MAX_ANSWER_HEAD + 1];
    assert_eq!(
        parse_answer(&endless_head, false),
        Err(MalformedAnswer::HeadTooLarge)
    );
}

#[test]
fn only_answers_about_the_report_itself_stop_the_retries() {
    let status = |status| AttemptError::Status {
        status,
        answer: String::new(),
    };
    for code in [400, 403, 404, 405, 413, 499] {
        assert!(status(code).is_final(), "{code}");
    }
    for code in [401, 408, 429, 500, 503, 302] {
        assert!(!status(code).is_final(), "{code}");
    }
    let refused = AttemptError::ConnectionRefused {
        addr: "127.0.0.1:80".parse().unwrap(),
    };
    assert!(!refused.is_final());
    assert!(status(401).to_string().contains("cluster secret differs"));
}

#[test]
fn delays_grow_to_the_cap_with_bounded_jitter() {
    let policy = RetryPolicy {
        first_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(10),
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let mut delays = Delays::new(&policy, 1);
    let secs: Vec<u64> = (0..6).map(|_| delays.next_delay().as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 10, 10]);

    let jittery = RetryPolicy {
        jitter: 0.5,
        ..policy
    };
    let run = |seed| {
        let mut delays = Delays::new(&jittery, seed);
        (0..20).map(|_| delays.next_delay()).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7), "same seed, same waits");
    assert_ne!(run(7), run(8), "another seed, other waits");
    let nominal = [1.0, 2.0, 4.0, 8.0].into_iter().chain([10.0; 16]);
    for (delay, nominal) in run(7).into_iter().zip(nominal) {
        let secs = delay.as_secs_f64();
        assert!(
            (nominal * 0.5..=nominal * 1.5).contains(&secs),
            "{secs} for {nominal}"
        );
    }
}

#[test]
fn extreme_policies_neither_panic_nor_spin() {
    let endless = RetryPolicy {
        first_interval: Duration::MAX,
        max_interval: Duration::MAX,
        // Stretched up to 1.5 times: past Duration::MAX half the time.
        jitter: 0.5,
        ..RetryPolicy::default()
    };
    let mut delays = Delays::new(&endless, 3);
    for _ in 0..100 {
        assert!(delays.next_delay() > Duration::from_secs(1 << 60));
    }
    let no_growth = RetryPolicy {
        factor: 0,
        jitter: f64::NAN,
        ..RetryPolicy::default()
    };
    let mut delays = Delays::new(&no_growth, 3);
    let waits: Vec<Duration> = (0..3).map(|_| delays.next_delay()).collect();
    assert_eq!(waits, [Duration::from_secs(1); 3]);
}

#[test]
fn an_invalid_report_is_not_sent() {
    let mut bad = report();
    bad.hostname = "Node_1".into();
    // Had it been sent, the closed port would refuse it and the client give up at once.
    let result = post_report(
        "http://127.0.0.1:9",
        SECRET,
        &bad,
        &fast_policy(Duration::ZERO),
    );
    assert!(
        matches!(
            result,
            Err(ClientError::InvalidReport(InvalidReport::Hostname { .. }))
        ),
        "{result:?}"
    );
}

/// host0's `/report` route as the lead's will be: decode, then 401 for authentication
/// failures, 400 for bad reports, 200 with the hostname.
struct Recorder {
    secret: Vec<u8>,
    reports: Mutex<Vec<HostReport>>,
}

impl PostRoute for Recorder {
    fn handle(&self, request: &RequestRepr, body: &[u8], _peer: SocketAddr) -> Reply {
        match decode(&self.secret, body, request.header("authorization")) {
            Ok(report) => {
                let text = format!("welcome, {}", report.hostname);
                self.reports.lock().unwrap().push(report);
                Reply::text(Status::Ok, &text)
            }
            Err(error @ ReportError::Auth(_)) => {
                Reply::text(Status::Unauthorized, &error.to_string())
            }
            Err(error) => Reply::text(Status::BadRequest, &error.to_string()),
        }
    }
}

/// A route that refuses every report as malformed.
struct Refuser;

impl PostRoute for Refuser {
    fn handle(&self, _request: &RequestRepr, _body: &[u8], _peer: SocketAddr) -> Reply {
        Reply::text(Status::BadRequest, "unknown report version")
    }
}

struct Host0 {
    _root: tempfile::TempDir,
    server: HttpHandle,
    recorder: Arc<Recorder>,
}

impl Host0 {
    /// The boot service's HTTP server on `listen`, with the recording `/report` route.
    fn start(listen: SocketAddr) -> Host0 {
        let recorder = Arc::new(Recorder {
            secret: SECRET.to_vec(),
            reports: Mutex::new(Vec::new()),
        });
        let (root, server) = serve(listen, recorder.clone());
        Host0 {
            _root: root,
            server,
            recorder,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.local_addr())
    }

    fn reports(&self) -> Vec<HostReport> {
        self.recorder.reports.lock().unwrap().clone()
    }
}

fn serve(listen: SocketAddr, route: Arc<dyn PostRoute>) -> (tempfile::TempDir, HttpHandle) {
    let root = tempfile::tempdir().unwrap();
    let source = Arc::new(DirSource::new(root.path().to_path_buf()).unwrap());
    let mut config = HttpConfig::new(listen);
    config.post_routes.insert(REPORT_PATH, route);
    let server = spawn(config, source, StatusBoard::new("test")).unwrap();
    (root, server)
}

fn loopback_any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn a_good_report_arrives_intact() {
    let host0 = Host0::start(loopback_any_port());
    let accepted = post_report(
        &host0.url(),
        SECRET,
        &report(),
        &fast_policy(Duration::from_secs(10)),
    )
    .unwrap();
    assert_eq!(
        accepted,
        Accepted {
            attempts: 1,
            answer: "welcome, node1".into()
        }
    );
    assert_eq!(host0.reports(), [report()]);
}

#[test]
fn a_wrong_secret_is_retried_until_the_deadline_and_blamed() {
    let host0 = Host0::start(loopback_any_port());
    let mut unauthorized = 0;
    let result = post_report_observed(
        &host0.url(),
        b"an older secret",
        &report(),
        &fast_policy(Duration::from_millis(500)),
        &mut |error| {
            if matches!(error, AttemptError::Status { status: 401, .. }) {
                unauthorized += 1;
            }
        },
    );
    let Err(error @ ClientError::GaveUp { attempts, .. }) = result else {
        panic!("expected to give up, got {result:?}");
    };
    assert!(attempts >= 3, "only {attempts} attempts in 500 ms");
    assert_eq!(unauthorized, attempts, "every attempt got 401");
    let text = error.to_string();
    assert!(text.contains("host0 answered 401"), "{text}");
    assert!(
        text.contains("wrong cluster secret or altered body"),
        "{text}"
    );
    assert!(
        text.contains("cluster secret differs from host0's"),
        "{text}"
    );
    assert!(host0.reports().is_empty());
}

/// One attempt with a hand-made request, for bodies the client would never send.
fn send_raw(host0: &Host0, body: &[u8], authorization: &str) -> Answer {
    let target = server(&host0.url());
    let request = build_request(&target, &report_post(body, authorization));
    attempt(&target, &request, Duration::from_secs(5)).unwrap()
}

#[test]
fn a_signed_but_malformed_body_gets_400_with_the_reason() {
    let host0 = Host0::start(loopback_any_port());
    let answer = send_raw(&host0, b"{not json", &sign(SECRET, b"{not json"));
    assert_eq!(answer.status, 400);
    assert!(
        answer
            .text()
            .contains("is not a valid report body (JSON): key must be a string at line 1 column 2"),
        "{}",
        answer.text()
    );
    let mut bad = report();
    bad.boot_source = "floppy".into();
    let body = wire::encode(&bad);
    let answer = send_raw(&host0, &body, &sign(SECRET, &body));
    assert_eq!(answer.status, 400);
    assert!(
        answer.text().contains("boot_source \"floppy\" is neither"),
        "{}",
        answer.text()
    );
    assert!(host0.reports().is_empty());
}

#[test]
fn a_tampered_body_gets_401() {
    let host0 = Host0::start(loopback_any_port());
    let body = encode_report();
    let authorization = sign(SECRET, &body);
    let tampered = String::from_utf8(body).unwrap().replace("node1", "evil1");
    let answer = send_raw(&host0, tampered.as_bytes(), &authorization);
    assert_eq!(answer.status, 401);
    assert!(
        answer
            .text()
            .contains("wrong cluster secret or altered body"),
        "{}",
        answer.text()
    );
    assert!(host0.reports().is_empty());
}

#[test]
fn a_report_host0_calls_wrong_is_not_retried() {
    let (_root, refuser) = serve(loopback_any_port(), Arc::new(Refuser));
    let url = format!("http://{}", refuser.local_addr());
    let result = post_report(
        &url,
        SECRET,
        &report(),
        &fast_policy(Duration::from_secs(10)),
    );
    let Err(ClientError::Refused {
        attempts,
        status,
        answer,
        ..
    }) = result
    else {
        panic!("expected Refused, got {result:?}");
    };
    assert_eq!((attempts, status), (1, 400));
    assert_eq!(answer, "unknown report version");
}

#[test]
fn a_client_started_before_the_server_retries_until_it_listens() {
    // Hold the port bound but not listening: connections to it are refused, as on a host0
    // whose boot service has not started yet, and no other test can take the port.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    reserved.bind(&loopback_any_port().into()).unwrap();
    let addr = reserved.local_addr().unwrap().as_socket().unwrap();

    let (failures_tx, failures) = mpsc::channel::<String>();
    let (result_tx, result) = mpsc::channel();
    let url = format!("http://{addr}");
    let client = std::thread::spawn(move || {
        let outcome = post_report_observed(
            &url,
            SECRET,
            &report(),
            &fast_policy(Duration::from_secs(30)),
            &mut |error| {
                let kind = match error {
                    AttemptError::ConnectionRefused { .. } => "refused".to_string(),
                    other => other.to_string(),
                };
                // The receiver stops listening once it has seen enough; later sends may fail.
                let _ = failures_tx.send(kind);
            },
        );
        result_tx.send(outcome).unwrap();
    });

    for n in 1..=3 {
        let failure = failures
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("waiting for refused attempt {n}: {e}"));
        assert_eq!(failure, "refused", "attempt {n}");
    }
    drop(reserved);
    let host0 = Host0::start(addr);
    let accepted = result
        .recv_timeout(Duration::from_secs(30))
        .expect("the client's result within 30 s of the server starting")
        .unwrap();
    client.join().unwrap();
    assert!(accepted.attempts >= 4, "{accepted:?}");
    assert_eq!(host0.reports(), [report()]);
}
