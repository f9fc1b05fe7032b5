//! Sending a host's report to host0: one HTTP/1.1 `POST /report`, retried until host0
//! accepts it.
//!
//! The request is small and fixed (a JSON body with `Content-Length`), and the answer only
//! needs its status and a short text, so this is a minimal client over `TcpStream` rather
//! than an HTTP library on every host's boot path. Each attempt has its own timeout, so a
//! host0 that accepts the connection but never answers costs one timeout, not a hang.
//!
//! Failures are expected while the cluster boots (host0's boot service not listening yet, the
//! network coming up, host0 restarting): every one is logged with its reason and retried with
//! exponential backoff and jitter, so hosts woken together do not retry in lockstep. A 401
//! (host0 holds another cluster secret, for example a configuration changed on the drive) is
//! retried too, since host0 may come back with the same configuration as this host, but it is
//! logged as an error because it needs an administrator. Only an answer saying the report
//! itself is wrong (a 4xx other than 401, 408 and 429) stops the retries: sending the same
//! bytes again cannot succeed.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::wire::{self, HostReport, InvalidReport};
use crate::rand::{random_seed, XorShift};

/// The path host0 receives reports on.
pub const REPORT_PATH: &str = "/report";

/// The largest answer head read, in bytes.
const MAX_ANSWER_HEAD: usize = 16 * 1024;
/// The largest answer body read, in bytes: host0 answers a report with a line of text, and
/// its status page as JSON takes a few hundred bytes per host.
const MAX_ANSWER_BODY: usize = 4 * 1024 * 1024;
/// Characters of host0's answer kept for logs and errors.
const ANSWER_EXCERPT_CHARS: usize = 500;

/// When to retry, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Give up once this long has passed since the first attempt; `None` retries forever.
    /// The last attempt may start just before the deadline and take its whole
    /// [`RetryPolicy::attempt_timeout`].
    pub deadline: Option<Duration>,
    /// The wait after the first failed attempt.
    pub first_interval: Duration,
    /// Each wait is this many times the previous one…
    pub factor: u32,
    /// …up to this wait.
    pub max_interval: Duration,
    /// Each wait is randomly stretched or shrunk by up to this fraction (0.0 to 1.0).
    pub jitter: f64,
    /// The longest one attempt may take: connecting, sending the report and reading the
    /// answer.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Forever; 1 s, 2 s, 4 s, … up to 10 s between attempts, ±20 %; 10 s per attempt. A
    /// report is one small request, so retrying every 10 s costs host0 nothing even from
    /// hundreds of hosts, and a host is seen online at most 10 s after host0 can hear it.
    fn default() -> RetryPolicy {
        RetryPolicy {
            deadline: None,
            first_interval: Duration::from_secs(1),
            factor: 2,
            max_interval: Duration::from_secs(10),
            jitter: 0.2,
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// host0 accepted the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// How many attempts it took, from 1.
    pub attempts: u32,
    /// host0's answer text (cut short).
    pub answer: String,
}

/// Why the report was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address is not an `http://HOST[:PORT]` URL.
    #[error("the report server {text:?} is not usable: {why}; give it as http://ADDRESS[:PORT], like http://10.77.0.50:80 (pxen.server= on the kernel command line)")]
    BadServer {
        /// The address given.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The report breaks the bounds host0 checks, so it was not sent.
    #[error("the report was not sent, host0 would refuse it: {0}")]
    InvalidReport(#[from] InvalidReport),
    /// host0 answered that what was sent is wrong; sending it again cannot help.
    #[error("{server} refused the {what} at attempt {attempts} with status {status}: {answer}{}", refusal_hint(*status))]
    Refused {
        /// The server.
        server: String,
        /// What was sent: `report`, `state`.
        what: &'static str,
        /// The attempts made.
        attempts: u32,
        /// The HTTP status.
        status: u16,
        /// host0's answer text (cut short).
        answer: String,
    },
    /// A page could not be fetched from host0 (`pxen status`).
    #[error("cannot fetch {path} from {server}: {source}")]
    Fetch {
        /// The server.
        server: String,
        /// The path asked for.
        path: String,
        /// Why.
        source: AttemptError,
    },
    /// The deadline passed without what was sent being accepted.
    #[error("{server} did not accept the {what} in {attempts} attempts over {:.1} s; the last one failed: {last}", elapsed.as_secs_f64())]
    GaveUp {
        /// The server.
        server: String,
        /// What was sent: `report`, `state`.
        what: &'static str,
        /// The attempts made.
        attempts: u32,
        /// The time since the first attempt.
        elapsed: Duration,
        /// Why the last attempt failed.
        last: Box<AttemptError>,
    },
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The server's name could not be resolved.
    #[error(
        "cannot resolve {host}: {source} (check the name service, or give host0's IP address)"
    )]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The name resolved to no IPv4 address.
    #[error("{host} has no IPv4 address")]
    NoAddress {
        /// The name.
        host: String,
    },
    /// Nothing listens on host0's HTTP port (yet).
    #[error("connection to {addr} refused (host0's boot service is not listening yet, or not on this port)")]
    ConnectionRefused {
        /// The address connected to.
        addr: SocketAddr,
    },
    /// Connecting failed for another reason than a refusal or a timeout.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address connected to.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The attempt took longer than [`RetryPolicy::attempt_timeout`].
    #[error("timed out {stage} {addr} after {:.1} s (host0 is down, unreachable or overloaded)", timeout.as_secs_f64())]
    Timeout {
        /// What was being done: connecting, sending or waiting for the answer.
        stage: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The attempt's timeout.
        timeout: Duration,
    },
    /// Sending the request failed.
    #[error("sending the request to {addr}: {source}")]
    Send {
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// Reading the answer failed.
    #[error("reading the answer of {addr}: {source}")]
    Receive {
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
    /// The answer is not HTTP as expected.
    #[error("the answer of {addr} is not understood: {source}")]
    Answer {
        /// The address.
        addr: SocketAddr,
        /// What is wrong with it.
        source: MalformedAnswer,
    },
    /// host0 answered with a status other than 2xx.
    #[error("host0 answered {status}: {answer}{}", status_hint(*status))]
    Status {
        /// The HTTP status.
        status: u16,
        /// host0's answer text (cut short).
        answer: String,
    },
}

impl AttemptError {
    /// True when retrying cannot help: host0 answered that the report itself is wrong (a 4xx
    /// other than 401 Unauthorized, 408 Request Timeout and 429 Too Many Requests).
    fn is_final(&self) -> bool {
        matches!(self, AttemptError::Status { status, .. }
            if (400..500).contains(status) && !matches!(status, 401 | 408 | 429))
    }
}

/// What an answer status most likely means for the report, to help the administrator.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 => " (this host's cluster secret differs from host0's: the configuration on the drive changed since this host booted, or host0 runs another one; the report is retried in case host0 comes back with this host's configuration)",
        408 | 429 => " (host0 is busy or the network is slow)",
        400..=499 => " (host0 refuses the report itself)",
        500..=599 => " (host0's boot service had a problem; see its log)",
        _ => "",
    }
}

/// What a final refusal most likely means, to help the administrator.
fn refusal_hint(status: u16) -> &'static str {
    match status {
        409 => "",
        _ => " (this PXEN version's request is not what host0 expects; are host0 and this host running the same image?)",
    }
}

/// Why an answer could not be read as HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedAnswer {
    /// The connection closed before the end of the head.
    #[error("the connection closed after {received} bytes, before the end of the answer head")]
    ClosedInHead {
        /// The bytes received.
        received: usize,
    },
    /// The head is larger than the limit.
    #[error("the answer head is larger than {MAX_ANSWER_HEAD} bytes")]
    HeadTooLarge,
    /// The first line is not `HTTP/1.x NNN reason`.
    #[error("the status line {line:?} is not `HTTP/1.x NNN reason`")]
    StatusLine {
        /// The line (cut short).
        line: String,
    },
    /// A `Content-Length` is not a number, or two disagree.
    #[error("the Content-Length {value:?} is not one decimal number")]
    ContentLength {
        /// The header's value (cut short).
        value: String,
    },
    /// The body is larger than the limit.
    #[error("the answer body of {len} bytes is larger than {MAX_ANSWER_BODY}")]
    BodyTooLarge {
        /// Its announced or received length.
        len: usize,
    },
    /// The connection closed before the announced end of the body.
    #[error("the connection closed after {received} of the {expected} bytes of the answer body")]
    ClosedInBody {
        /// The body bytes received.
        received: usize,
        /// The announced length.
        expected: usize,
    },
}

/// An answer from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    /// The body as text for logs: lossily decoded, trimmed, cut short.
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(ANSWER_EXCERPT_CHARS) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.to_string(),
        }
    }
}

/// A signed `POST` to host0, sent until it is accepted like the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPost<'a> {
    /// What is sent, for the logs and errors: `report`, `state`.
    pub what: &'static str,
    /// The path, e.g. [`REPORT_PATH`].
    pub path: String,
    /// The body's `Content-Type`.
    pub content_type: &'static str,
    /// More headers, name and value.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: &'a [u8],
    /// The `Authorization` header's value ([`wire::sign`] of what the route verifies).
    pub authorization: String,
}

/// Sends `post` to `server` (`http://HOST[:PORT]`) until it is accepted, the deadline
/// passes, or host0 says the request itself is wrong (a 4xx other than 401, 408 and 429).
/// Every failed attempt is logged with its reason.
pub fn post_signed(
    server: &str,
    post: &SignedPost<'_>,
    policy: &RetryPolicy,
) -> Result<Accepted, ClientError> {
    post_signed_observed(server, post, policy, &mut |_| {})
}

/// Sends `report`, signed with `secret`, to `server` (`http://HOST[:PORT]`, as
/// `pxen.server=` gives it) until it is accepted, the deadline passes, or host0 says the
/// report itself is wrong. Every failed attempt is logged with its reason.
pub fn post_report(
    server: &str,
    secret: &[u8],
    report: &HostReport,
    policy: &RetryPolicy,
) -> Result<Accepted, ClientError> {
    post_report_observed(server, secret, report, policy, &mut |_| {})
}

/// Fetches `path` from `server` once, within `timeout`: the answer's status and body (for
/// `pxen status`, which reads host0's status page).
pub fn get(server: &str, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>), ClientError> {
    let target = Server::parse(server)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n\r\n",
        target.host, target.port
    );
    attempt(&target, request.as_bytes(), timeout)
        .map(|answer| (answer.status, answer.body))
        .map_err(|source| ClientError::Fetch {
            server: server.to_string(),
            path: path.to_string(),
            source,
        })
}

/// [`post_report`], calling `observe` with each failed attempt's error before waiting for
/// the next (tests follow the attempts through it).
fn post_report_observed(
    server: &str,
    secret: &[u8],
    report: &HostReport,
    policy: &RetryPolicy,
    observe: &mut dyn FnMut(&AttemptError),
) -> Result<Accepted, ClientError> {
    report.validate()?;
    let body = wire::encode(report);
    let post = SignedPost {
        what: "report",
        path: REPORT_PATH.to_string(),
        content_type: "application/json",
        headers: Vec::new(),
        body: &body,
        authorization: wire::sign(secret, &body),
    };
    post_signed_observed(server, &post, policy, observe)
}

/// [`post_signed`], calling `observe` with each failed attempt's error.
fn post_signed_observed(
    server: &str,
    post: &SignedPost<'_>,
    policy: &RetryPolicy,
    observe: &mut dyn FnMut(&AttemptError),
) -> Result<Accepted, ClientError> {
    let target = Server::parse(server)?;
    let request = build_request(&target, post);
    let what = post.what;
    let started = Instant::now();
    let mut delays = Delays::new(policy, random_seed());
    let mut attempts: u32 = 0;
    loop {
        attempts = attempts.saturating_add(1);
        let error = match attempt(&target, &request, policy.attempt_timeout) {
            Ok(answer) if (200..300).contains(&answer.status) => {
                let answer = answer.text();
                log::info!("{what}: {server} accepted the {what} at attempt {attempts}: {answer}");
                return Ok(Accepted { attempts, answer });
            }
            Ok(answer) => AttemptError::Status {
                status: answer.status,
                answer: answer.text(),
            },
            Err(error) => error,
        };
        observe(&error);
        if let AttemptError::Status { status, answer } = &error {
            if error.is_final() {
                return Err(ClientError::Refused {
                    server: server.to_string(),
                    what,
                    attempts,
                    status: *status,
                    answer: answer.clone(),
                });
            }
        }
        let elapsed = started.elapsed();
        let left = policy.deadline.map(|d| d.saturating_sub(elapsed));
        if left == Some(Duration::ZERO) {
            return Err(ClientError::GaveUp {
                server: server.to_string(),
                what,
                attempts,
                elapsed,
                last: Box::new(error),
            });
        }
        let delay = delays.next_delay().min(left.unwrap_or(Duration::MAX));
        log_failure(what, server, attempts, &error, delay);
        // Waiting is the point here: the backoff between attempts.
        std::thread::sleep(delay);
    }
}

/// Logs a failed attempt: a 401 as an error (it needs an administrator), the rest as
/// warnings (they are expected while the cluster boots).
fn log_failure(what: &str, server: &str, attempts: u32, error: &AttemptError, delay: Duration) {
    let retry = delay.as_secs_f64();
    match error {
        AttemptError::Status { status: 401, .. } => {
            log::error!("{what}: attempt {attempts} to {server}: {error}; retrying in {retry:.1} s")
        }
        _ => log::warn!(
            "{what}: attempt {attempts} to {server} failed: {error}; retrying in {retry:.1} s"
        ),
    }
}

/// The waits between attempts: exponential backoff with jitter.
#[derive(Debug, Clone)]
struct Delays {
    next: Duration,
    factor: u32,
    max: Duration,
    jitter: f64,
    rng: XorShift,
}

impl Delays {
    fn new(policy: &RetryPolicy, seed: u64) -> Delays {
        Delays {
            next: policy.first_interval.min(policy.max_interval),
            // A factor of 0 would shrink the waits to nothing: a busy loop against host0.
            factor: policy.factor.max(1),
            max: policy.max_interval,
            // NaN (which clamp keeps) means no jitter.
            jitter: if policy.jitter.is_nan() {
                0.0
            } else {
                policy.jitter.clamp(0.0, 1.0)
            },
            rng: XorShift::new(seed),
        }
    }

    /// The wait before the next attempt.
    fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = nominal.saturating_mul(self.factor).min(self.max);
        let stretch = 1.0 + self.jitter * self.rng.signed_unit();
        // `Duration::mul_f64` panics past Duration::MAX (a policy may say "wait forever"):
        // such a wait is the longest there is.
        Duration::try_from_secs_f64(nominal.as_secs_f64() * stretch).unwrap_or(Duration::MAX)
    }
}

/// Where reports go: the host and port of an `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    host: String,
    port: u16,
}

impl Server {
    /// Parses `http://HOST[:PORT][/]`: HOST an IPv4 address or a host name, PORT 80 when
    /// left out.
    fn parse(text: &str) -> Result<Server, ClientError> {
        let bad = |why| ClientError::BadServer {
            text: text.to_string(),
            why,
        };
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(bad("only http:// is supported")),
            None => return Err(bad("it does not start with http://")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad(
                "it has a path; give the server only, the path is PXEN's",
            ));
        }
        if authority.contains('@') {
            return Err(bad("user names in the address are not supported"));
        }
        if authority.starts_with('[') {
            return Err(bad("IPv6 addresses are not supported"));
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (
                host,
                parse_port(port).ok_or_else(|| bad("its port is not a number from 1 to 65535"))?,
            ),
            None => (authority, 80),
        };
        let host_chars = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if host.is_empty() || !host.chars().all(host_chars) {
            return Err(bad("its host is not an IPv4 address or a host name"));
        }
        Ok(Server {
            host: host.to_string(),
            port,
        })
    }

    /// The IPv4 addresses of the server, resolved now (a name may resolve later when the
    /// name service is not up yet).
    fn resolve(&self) -> Result<Vec<SocketAddr>, AttemptError> {
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|source| AttemptError::Resolve {
                host: self.host.clone(),
                source,
            })?;
        let v4: Vec<SocketAddr> = addrs.filter(SocketAddr::is_ipv4).collect();
        if v4.is_empty() {
            return Err(AttemptError::NoAddress {
                host: self.host.clone(),
            });
        }
        Ok(v4)
    }
}

/// A port number from 1 to 65535, digits only.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|&port| port != 0)
}

/// The whole request: `POST` of the signed body. The connection is closed after the answer,
/// so the answer's end is certain even without a `Content-Length`.
fn build_request(server: &Server, post: &SignedPost<'_>) -> Vec<u8> {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: {}\r\nContent-Length: {}\r\nAuthorization: {}\r\n",
        post.path,
        server.host,
        server.port,
        post.content_type,
        post.body.len(),
        post.authorization,
    );
    for (name, value) in &post.headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "Connection: close\r\n\r\n";
    let mut request = head.into_bytes();
    request.extend_from_slice(post.body);
    request
}

/// One attempt: connects, sends `request` and reads the answer, all within `timeout`.
fn attempt(server: &Server, request: &[u8], timeout: Duration) -> Result<Answer, AttemptError> {
    let deadline = Instant::now() + timeout;
    let (mut stream, addr) = connect(server, deadline, timeout)?;
    let timed_out = |stage| AttemptError::Timeout {
        stage,
        addr,
        timeout,
    };
    let left = time_left(deadline).ok_or_else(|| timed_out("sending the request to"))?;
    stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.write_all(request))
        .map_err(|source| match source.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => timed_out("sending the request to"),
            _ => AttemptError::Send { addr, source },
        })?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = time_left(deadline).ok_or_else(|| timed_out("waiting for the answer of"))?;
        let read = stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.read(&mut buf));
        let closed = match read {
            Ok(0) => true,
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                false
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(timed_out("waiting for the answer of"))
            }
            Err(source) => return Err(AttemptError::Receive { addr, source }),
        };
        match parse_answer(&received, closed) {
            Ok(Some(answer)) => return Ok(answer),
            Ok(None) => {}
            Err(source) => return Err(AttemptError::Answer { addr, source }),
        }
    }
}

/// Resolves the server and connects to the first of its addresses that accepts; the error
/// is the last address's.
fn connect(
    server: &Server,
    deadline: Instant,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), AttemptError> {
    let mut last = None;
    for addr in server.resolve()? {
        let left = time_left(deadline).ok_or(AttemptError::Timeout {
            stage: "connecting to",
            addr,
            timeout,
        })?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => return Ok((stream, addr)),
            Err(error) => last = Some(connect_error(addr, error, timeout)),
        }
    }
    // `resolve` returns at least one address, so `last` is set; the fallback says the same.
    Err(last.unwrap_or(AttemptError::NoAddress {
        host: server.host.clone(),
    }))
}

fn connect_error(addr: SocketAddr, error: std::io::Error, timeout: Duration) -> AttemptError {
    match error.kind() {
        ErrorKind::ConnectionRefused => AttemptError::ConnectionRefused { addr },
        ErrorKind::TimedOut | ErrorKind::WouldBlock => AttemptError::Timeout {
            stage: "connecting to",
            addr,
            timeout,
        },
        _ => AttemptError::Connect {
            addr,
            source: error,
        },
    }
}

/// The time left before `deadline`, or `None` when it has passed.
fn time_left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
}

/// Reads an answer from the bytes `received` so far; `closed` says the server closed the
/// connection after them. `Ok(None)`: more bytes are needed.
fn parse_answer(received: &[u8], closed: bool) -> Result<Option<Answer>, MalformedAnswer> {
    let Some(head_len) = find(received, b"\r\n\r\n").map(|at| at + 4) else {
        return match (closed, received.len() > MAX_ANSWER_HEAD) {
            (_, true) => Err(MalformedAnswer::HeadTooLarge),
            (true, false) => Err(MalformedAnswer::ClosedInHead {
                received: received.len(),
            }),
            (false, false) => Ok(None),
        };
    };
    if head_len > MAX_ANSWER_HEAD {
        return Err(MalformedAnswer::HeadTooLarge);
    }
    let head = String::from_utf8_lossy(&received[..head_len - 4]);
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or(""))?;
    let content_length = parse_content_length(lines)?;
    let body = &received[head_len..];
    match content_length {
        Some(len) if len > MAX_ANSWER_BODY => Err(MalformedAnswer::BodyTooLarge { len }),
        Some(len) if body.len() >= len => Ok(Some(Answer {
            status,
            body: body[..len].to_vec(),
        })),
        Some(len) if closed => Err(MalformedAnswer::ClosedInBody {
            received: body.len(),
            expected: len,
        }),
        _ if body.len() > MAX_ANSWER_BODY => Err(MalformedAnswer::BodyTooLarge { len: body.len() }),
        // Without a Content-Length the body ends when the server closes the connection.
        None if closed => Ok(Some(Answer {
            status,
            body: body.to_vec(),
        })),
        _ => Ok(None),
    }
}

/// The status of `HTTP/1.x NNN reason`.
fn parse_status_line(line: &str) -> Result<u16, MalformedAnswer> {
    let bad = || MalformedAnswer::StatusLine {
        line: line.chars().take(80).collect(),
    };
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    code.parse().map_err(|_| bad())
}

/// The answer's `Content-Length`, if it has one; several must agree.
fn parse_content_length<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Option<usize>, MalformedAnswer> {
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("content-length") {
            continue;
        }
        let value = value.trim();
        let parsed = Some(value)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok());
        match (parsed, length) {
            (Some(parsed), None) => length = Some(parsed),
            (Some(parsed), Some(previous)) if parsed == previous => {}
            _ => {
                return Err(MalformedAnswer::ContentLength {
                    value: value.chars().take(40).collect(),
                })
            }
        }
    }
    Ok(length)
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests;
