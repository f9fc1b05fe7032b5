//! The HTTP/1.1 server of the boot service: the large boot files (Xen, the kernel, the
//! initramfs) for `lpxelinux.0` and iPXE, and the cluster's status page.
//!
//! Written by hand because it is small and on the boot path of every host: `GET` and `HEAD`
//! of files from a [`FileSource`] with single byte ranges, keep-alive, and nothing else
//! (no chunked requests, no compression, no validators). One thread per connection, up to
//! [`HttpConfig::max_connections`]; a slow or stalled client only holds its own thread until
//! a timeout drops it. The server never panics on a client's input and keeps accepting after
//! any error: each is logged with the peer and the request.
//!
//! Routes:
//! - `GET`/`HEAD /` the status page (HTML), `/status.json` the same as JSON, `/status.txt` as
//!   a plain text table (`pxen status`);
//! - `POST` to the paths in [`HttpConfig::post_routes`] (for example the hosts' reports);
//! - `GET`/`HEAD` of anything else: a file, its path percent-decoded and checked by
//!   [`SafePath`] (403 when unsafe, 404 when missing).

pub mod status;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::serve::files::{FileSource, OpenError, SafePath};
use status::StatusBoard;
use wire::{
    BodyFraming, ConnectionHeader, Head, Limits, ParseError, RangeAnswer, RequestRepr,
    ResponseHead, Status,
};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where to listen (port 0: any free port, see [`HttpHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Connections served at once; the next ones get 503 and are closed.
    pub max_connections: usize,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long a request head (or a POST body) may take to arrive once it has started,
    /// so a client sending a byte at a time cannot hold a connection forever.
    pub request_timeout: Duration,
    /// How long a write may make no progress before the client is dropped (it stopped
    /// reading).
    pub write_timeout: Duration,
    /// The size limits of request heads.
    pub limits: Limits,
    /// The largest request body accepted (413 beyond) where the route sets no larger one;
    /// bodies only go to POST routes.
    pub max_body: usize,
    /// The POST routes, by exact path or by prefix.
    pub post_routes: PostRoutes,
}

impl HttpConfig {
    /// Defaults for the boot service: 64 connections (a rack of hosts fetching at once, and
    /// a few status page readers), 30 s idle, 10 s per request head, 30 s without progress.
    pub fn new(listen: SocketAddr) -> HttpConfig {
        HttpConfig {
            listen,
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            max_body: 64 * 1024,
            post_routes: PostRoutes::default(),
        }
    }
}

/// A handler for `POST` requests to one path (the extension point for the hosts' reports).
pub trait PostRoute: Send + Sync {
    /// Answers a request whose whole body has been read (at most [`PostRoute::max_body`]).
    fn handle(&self, request: &RequestRepr, body: &[u8], peer: SocketAddr) -> Reply;

    /// The largest body this route takes; `None`: [`HttpConfig::max_body`].
    fn max_body(&self) -> Option<usize> {
        None
    }
}

/// What a [`PostRoute`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: Status,
    /// The `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A `text/plain` answer.
    pub fn text(status: Status, text: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: text.as_bytes().to_vec(),
        }
    }
}

/// The POST routes, by exact path (`/report`), or by prefix for a path ending in `/`
/// (`/state/` takes `/state/NAME`).
#[derive(Clone, Default)]
pub struct PostRoutes(BTreeMap<String, Arc<dyn PostRoute>>);

impl PostRoutes {
    /// Routes `POST path` to `route`, replacing any route there was for that path.
    pub fn insert(&mut self, path: &str, route: Arc<dyn PostRoute>) {
        self.0.insert(path.to_string(), route);
    }

    /// The route for `path`: its exact one, else the one of a prefix ending in `/` below
    /// which it lies.
    fn find(&self, path: &str) -> Option<Arc<dyn PostRoute>> {
        self.0.get(path).cloned().or_else(|| {
            self.0
                .iter()
                .find(|(prefix, _)| {
                    prefix.ends_with('/') && path.len() > prefix.len() && path.starts_with(*prefix)
                })
                .map(|(_, route)| route.clone())
        })
    }
}

impl fmt::Debug for PostRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// A running server; dropping it stops it like [`HttpHandle::stop`].
#[derive(Debug)]
pub struct HttpHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Writing to (or closing) this pipe wakes the accept loop to stop.
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl HttpHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections being served now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Stops accepting and waits for the accept loop to end. Connections in progress finish
    /// their current request and close (an idle one closes at its idle timeout).
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Closing the pipe's write end makes its read end readable (end of file): that is
        // the wake-up the accept loop polls for.
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("http: the accept loop of {} panicked", self.local_addr);
            }
        }
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// What every connection thread shares.
struct Shared {
    config: HttpConfig,
    source: Arc<dyn FileSource>,
    status: StatusBoard,
    active: AtomicUsize,
    refusing: AtomicUsize,
    stopping: AtomicBool,
}

impl Shared {
    fn counter(&self, counter: Counter) -> &AtomicUsize {
        match counter {
            Counter::Active => &self.active,
            Counter::Refusing => &self.refusing,
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Binds `config.listen` and serves in background threads until the handle is stopped.
pub fn spawn(
    config: HttpConfig,
    source: Arc<dyn FileSource>,
    status: StatusBoard,
) -> std::io::Result<HttpHandle> {
    let listener = TcpListener::bind(config.listen)?;
    // Non-blocking, so an accept after poll said "ready" cannot hang when the client has
    // already gone (the connection is then dropped from the queue).
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;
    let (wake_read, wake_write) = nix::unistd::pipe().map_err(std::io::Error::from)?;
    let shared = Arc::new(Shared {
        config,
        source,
        status,
        active: AtomicUsize::new(0),
        refusing: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
    });
    let loop_shared = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(format!("http {local_addr}"))
        .spawn(move || accept_loop(&listener, &wake_read, &loop_shared))?;
    log::info!("http: serving on {local_addr}");
    Ok(HttpHandle {
        local_addr,
        shared,
        wake: Some(wake_write),
        thread: Some(thread),
    })
}

fn accept_loop(listener: &TcpListener, wake: &OwnedFd, shared: &Arc<Shared>) {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        if let Err(error) = nix::poll::poll(&mut fds, PollTimeout::NONE) {
            // EINTR: a signal arrived; anything else is transient too, poll again.
            log::debug!("http: poll: {error}");
            continue;
        }
        if fds[1].any().unwrap_or(true) || shared.stopping.load(Ordering::SeqCst) {
            log::info!(
                "http: stopped listening on {}",
                listener.local_addr().map_or("?".into(), |a| a.to_string())
            );
            return;
        }
        match listener.accept() {
            Ok((stream, peer)) => admit(stream, peer, shared),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => {
                // Out of file descriptors or memory: the connection waits in the queue; give
                // the running transfers time to finish instead of spinning on the error.
                log::warn!("http: accept failed: {error}; retrying in 100 ms");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Starts a thread for the connection, or answers 503 when there are too many.
fn admit(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let max = shared.config.max_connections;
    let active = CountGuard::new(shared, Counter::Active);
    if active.count < max {
        let thread_shared = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name(format!("http {peer}"))
            .spawn(move || {
                let _active = active;
                let mut connection = Connection::new(stream, peer, thread_shared);
                if let Err(error) = connection.serve() {
                    log::info!("http: {error}");
                }
            });
        if let Err(error) = spawned {
            log::warn!("http: {peer}: cannot start a thread for the connection: {error}; dropped");
        }
        return;
    }
    drop(active);
    // The 503 is sent from a thread of its own too, because closing properly means waiting
    // for the client's request (see `linger_close`). Those threads are capped as well; past
    // that, under a flood, connections are simply closed.
    let refusing = CountGuard::new(shared, Counter::Refusing);
    if refusing.count >= max {
        log::warn!(
            "http: {peer}: dropped, {max} connections served and {max} being refused already"
        );
        return;
    }
    log::warn!("http: {peer}: refused with 503, {max} connections already (max_connections)");
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name(format!("http 503 {peer}"))
        .spawn(move || {
            let _refusing = refusing;
            let mut connection = Connection::new(stream, peer, thread_shared);
            if connection
                .send_error(
                    Status::ServiceUnavailable,
                    "too many connections; retry shortly",
                    false,
                )
                .is_ok()
            {
                connection.linger_close();
            }
        });
    if let Err(error) = spawned {
        log::warn!(
            "http: {peer}: cannot start a thread to refuse the connection: {error}; dropped"
        );
    }
}

/// Which count of connections a [`CountGuard`] holds.
#[derive(Clone, Copy)]
enum Counter {
    Active,
    Refusing,
}

/// Counts a connection for as long as it lives.
struct CountGuard {
    shared: Arc<Shared>,
    counter: Counter,
    /// The count before this connection was added.
    count: usize,
}

impl CountGuard {
    fn new(shared: &Arc<Shared>, counter: Counter) -> CountGuard {
        let count = shared.counter(counter).fetch_add(1, Ordering::SeqCst);
        CountGuard {
            shared: Arc::clone(shared),
            counter,
            count,
        }
    }
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.shared
            .counter(self.counter)
            .fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a connection ended early. Logged; the server goes on.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("{peer}: reading the request: {source}")]
    Read {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("{peer}: sending the answer: {source} (the client closed the connection or stopped reading)")]
    Write {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("{peer}: GET {path}: reading the file at byte {offset}: {source}; the connection is closed mid-body")]
    ReadFile {
        peer: SocketAddr,
        path: String,
        offset: u64,
        source: std::io::Error,
    },
    #[error("{peer}: GET {path}: the file ended at byte {offset}, before its announced end {end}; it changed while being served, the connection is closed mid-body")]
    FileShrank {
        peer: SocketAddr,
        path: String,
        offset: u64,
        end: u64,
    },
}

/// What reading a request head gave.
enum Incoming {
    Request(Box<RequestRepr>),
    /// The client closed the connection, or stayed idle past the idle timeout.
    Gone,
    /// A bad request, already answered; the connection must close.
    Refused,
}

/// Bytes written to the socket per `write`: large enough that the system calls cost little,
/// small enough to keep one connection's memory low.
const CHUNK: usize = 256 * 1024;

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// Bytes received and not yet consumed (the start of the next pipelined request).
    received: Vec<u8>,
    /// Whether the request being answered is HTTP/1.0 (whose keep-alive must be explicit).
    http10: bool,
}

impl Connection {
    fn new(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) -> Connection {
        Connection {
            stream,
            peer,
            shared,
            received: Vec::new(),
            http10: false,
        }
    }

    fn serve(&mut self) -> Result<(), ConnectionError> {
        let peer = self.peer;
        // Answers go out in one or a few large writes; waiting for more (Nagle) only adds
        // delay to the small ones (HEAD, errors, the end of a file).
        let setup = self
            .stream
            .set_nodelay(true)
            .and_then(|()| self.stream.set_nonblocking(false))
            .and_then(|()| {
                self.stream
                    .set_write_timeout(Some(self.shared.config.write_timeout))
            });
        setup.map_err(|source| ConnectionError::Write { peer, source })?;
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let request = match self.read_request()? {
                Incoming::Request(request) => request,
                Incoming::Gone => return Ok(()),
                Incoming::Refused => break,
            };
            if !self.answer(&request)? {
                break;
            }
        }
        self.linger_close();
        Ok(())
    }

    /// Closes the sending side, then reads and drops what the client still sends for a
    /// moment before the socket is closed: closing a socket with unread input makes the
    /// kernel send a reset, which can destroy the answer before the client has read it
    /// (RFC 9112 §9.6), typically a 4xx sent before the request's body was read.
    fn linger_close(&mut self) {
        const LINGER: Duration = Duration::from_secs(2);
        const MAX_DRAINED: usize = 1024 * 1024;
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_DRAINED {
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return;
            };
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }

    /// Reads until a whole head is received, within the limits and timeouts.
    fn read_request(&mut self) -> Result<Incoming, ConnectionError> {
        let config = &self.shared.config;
        let (idle_timeout, request_timeout, limits) =
            (config.idle_timeout, config.request_timeout, config.limits);
        let waiting_since = Instant::now();
        let mut started: Option<Instant> = (!self.received.is_empty()).then(Instant::now);
        loop {
            match Head::new_checked(&self.received[..], &limits) {
                Ok(head) => {
                    let parsed = RequestRepr::parse(&head);
                    let len = head.len();
                    self.received.drain(..len);
                    return match parsed {
                        Ok(request) => Ok(Incoming::Request(Box::new(request))),
                        Err(error) => self.refuse(&error),
                    };
                }
                Err(ParseError::Truncated { .. }) => {}
                Err(error) => return self.refuse(&error),
            }
            let deadline = match started {
                Some(started) => started + request_timeout,
                None => waiting_since + idle_timeout,
            };
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return self.timed_out(started.is_some());
            };
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|source| ConnectionError::Read {
                    peer: self.peer,
                    source,
                })?;
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    if !self.received.is_empty() {
                        log::info!(
                            "http: {}: closed the connection in the middle of a request head",
                            self.peer
                        );
                    }
                    return Ok(Incoming::Gone);
                }
                Ok(n) => {
                    started.get_or_insert_with(Instant::now);
                    self.received.extend_from_slice(&buf[..n]);
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return self.timed_out(started.is_some());
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    return Ok(Incoming::Gone)
                }
                Err(source) => {
                    return Err(ConnectionError::Read {
                        peer: self.peer,
                        source,
                    })
                }
            }
        }
    }

    fn refuse(&mut self, error: &ParseError) -> Result<Incoming, ConnectionError> {
        log::info!("http: {}: bad request head: {error}", self.peer);
        self.send_error(error.status(), &error.to_string(), false)?;
        Ok(Incoming::Refused)
    }

    /// An idle keep-alive connection is closed quietly; a request that stalled half-way
    /// gets 408.
    fn timed_out(&mut self, mid_request: bool) -> Result<Incoming, ConnectionError> {
        if !mid_request {
            log::debug!("http: {}: idle connection closed", self.peer);
            return Ok(Incoming::Gone);
        }
        log::info!(
            "http: {}: request head not complete within the request timeout",
            self.peer
        );
        self.send_error(
            Status::RequestTimeout,
            "the request did not arrive in time",
            false,
        )?;
        Ok(Incoming::Refused)
    }

    /// Answers one request; returns whether the connection stays open.
    fn answer(&mut self, request: &RequestRepr) -> Result<bool, ConnectionError> {
        let keep_alive = request.keep_alive();
        self.http10 = request.version == wire::Version::Http10;
        let length = match request.body_framing() {
            Ok(BodyFraming::Length(length)) => length,
            Ok(BodyFraming::TransferEncoding) => {
                // The end of a chunked body cannot be found without decoding it: close.
                self.send_error(
                    Status::NotImplemented,
                    "Transfer-Encoding in requests is not supported; send Content-Length",
                    false,
                )?;
                return Ok(false);
            }
            Err(error) => {
                self.send_error(error.status(), &error.to_string(), false)?;
                return Ok(false);
            }
        };
        let max_body = request
            .path()
            .ok()
            .and_then(|path| self.shared.config.post_routes.find(&path))
            .and_then(|route| route.max_body())
            .unwrap_or(self.shared.config.max_body);
        let Some(body) = self.read_body(length, max_body)? else {
            return Ok(false);
        };
        let path = match request.path() {
            Ok(path) => path,
            Err(error) => {
                log::info!("http: {}: {} refused: {error}", self.peer, request.target);
                self.send_error(error.status(), &error.to_string(), keep_alive)?;
                return Ok(keep_alive);
            }
        };
        let method = request.method.as_str();
        let head_only = method == "HEAD";
        let post_route = self.shared.config.post_routes.find(&path);
        match (method, path.as_str(), post_route) {
            ("POST", _, Some(route)) => {
                let reply = route.handle(request, &body, self.peer);
                self.send(
                    reply.status,
                    reply.content_type,
                    &reply.body,
                    false,
                    keep_alive,
                )?;
            }
            (_, _, Some(_)) => self.send_not_allowed("POST", keep_alive)?,
            ("GET" | "HEAD", "/", None) => {
                let page = self.shared.status.render_html(SystemTime::now());
                self.send(
                    Status::Ok,
                    "text/html; charset=utf-8",
                    page.as_bytes(),
                    head_only,
                    keep_alive,
                )?;
            }
            ("GET" | "HEAD", "/status.json", None) => {
                let json = self.shared.status.render_json();
                self.send(
                    Status::Ok,
                    "application/json",
                    json.as_bytes(),
                    head_only,
                    keep_alive,
                )?;
            }
            ("GET" | "HEAD", "/status.txt", None) => {
                let text = self.shared.status.render_text(SystemTime::now());
                self.send(
                    Status::Ok,
                    "text/plain; charset=utf-8",
                    text.as_bytes(),
                    head_only,
                    keep_alive,
                )?;
            }
            ("GET" | "HEAD", _, None) => {
                return self.send_file(request, &path, head_only, keep_alive)
            }
            _ => self.send_not_allowed("GET, HEAD", keep_alive)?,
        }
        Ok(keep_alive)
    }

    /// Reads a body of `length` bytes (the start may already be in `received`). `None` when
    /// it is larger than `max`: answered with 413, and the connection must close.
    fn read_body(&mut self, length: u64, max: usize) -> Result<Option<Vec<u8>>, ConnectionError> {
        let Some(length) = usize::try_from(length).ok().filter(|&l| l <= max) else {
            let message =
                format!("a request body of {length} bytes is larger than the limit of {max}");
            log::info!("http: {}: {message}", self.peer);
            self.send_error(Status::ContentTooLarge, &message, false)?;
            return Ok(None);
        };
        let deadline = Instant::now() + self.shared.config.request_timeout;
        while self.received.len() < length {
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                self.send_error(
                    Status::RequestTimeout,
                    "the request body did not arrive in time",
                    false,
                )?;
                return Ok(None);
            };
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|source| ConnectionError::Read {
                    peer: self.peer,
                    source,
                })?;
            let mut buf = vec![0u8; (length - self.received.len()).min(CHUNK)];
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    self.send_error(
                        Status::RequestTimeout,
                        "the request body did not arrive in time",
                        false,
                    )?;
                    return Ok(None);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ConnectionError::Read {
                        peer: self.peer,
                        source,
                    })
                }
            }
        }
        Ok(Some(self.received.drain(..length).collect()))
    }

    fn send_file(
        &mut self,
        request: &RequestRepr,
        path: &str,
        head_only: bool,
        keep_alive: bool,
    ) -> Result<bool, ConnectionError> {
        let safe = match SafePath::parse(path) {
            Ok(safe) => safe,
            Err(error) => {
                log::info!(
                    "http: {}: {} {} refused: {error}",
                    self.peer,
                    request.method,
                    request.target
                );
                self.send_error(Status::Forbidden, &error.to_string(), keep_alive)?;
                return Ok(keep_alive);
            }
        };
        let content = match self.shared.source.open(&safe) {
            Ok(content) => content,
            Err(error) => {
                let status = match error {
                    OpenError::NotFound { .. } => Status::NotFound,
                    OpenError::Forbidden { .. } => Status::Forbidden,
                    OpenError::Io { .. } => Status::InternalServerError,
                };
                log::info!(
                    "http: {}: {} {}: {status}: {error}",
                    self.peer,
                    request.method,
                    request.target
                );
                self.send_error(status, &error.to_string(), keep_alive)?;
                return Ok(keep_alive);
            }
        };
        let len = content.len();
        let if_range = request.header("if-range").is_some();
        let (status, first, end, mut headers) =
            match wire::resolve_range(request.header("range"), if_range, len) {
                RangeAnswer::Whole => (Status::Ok, 0, len, vec![]),
                RangeAnswer::Part { first, last } => (
                    Status::PartialContent,
                    first,
                    last + 1,
                    vec![("Content-Range", format!("bytes {first}-{last}/{len}"))],
                ),
                RangeAnswer::Unsatisfiable => {
                    let head = ResponseHead {
                        status: Status::RangeNotSatisfiable,
                        body_len: 0,
                        connection: connection_header(self.http10, keep_alive),
                        headers: vec![
                            ("Content-Range", format!("bytes */{len}")),
                            ("Accept-Ranges", "bytes".into()),
                        ],
                    };
                    log::info!(
                        "http: {}: {} {}: 416, file has {len} bytes",
                        self.peer,
                        request.method,
                        request.target
                    );
                    self.write_head(&head)?;
                    return Ok(keep_alive);
                }
            };
        headers.push(("Accept-Ranges", "bytes".into()));
        headers.push(("Content-Type", "application/octet-stream".into()));
        let head = ResponseHead {
            status,
            body_len: end - first,
            connection: connection_header(self.http10, keep_alive),
            headers,
        };
        let started = Instant::now();
        let mut out = Vec::with_capacity(CHUNK);
        head.emit(&mut out);
        if head_only {
            self.write_all(&out)?;
            return Ok(keep_alive);
        }
        let mut offset = first;
        while offset < end || !out.is_empty() {
            let room = CHUNK
                .saturating_sub(out.len())
                .min(usize::try_from(end - offset).unwrap_or(usize::MAX));
            if room > 0 {
                let filled = out.len();
                out.resize(filled + room, 0);
                let read = content
                    .read_at(offset, &mut out[filled..])
                    .map_err(|source| ConnectionError::ReadFile {
                        peer: self.peer,
                        path: path.to_string(),
                        offset,
                        source,
                    })?;
                out.truncate(filled + read);
                if read == 0 {
                    return Err(ConnectionError::FileShrank {
                        peer: self.peer,
                        path: path.to_string(),
                        offset,
                        end,
                    });
                }
                offset += read as u64;
            }
            self.write_all(&out)?;
            out.clear();
        }
        log::info!(
            "http: {}: {} {} {} {} bytes in {:.3} s",
            self.peer,
            request.method,
            request.target,
            status.code(),
            end - first,
            started.elapsed().as_secs_f64()
        );
        if status == Status::Ok {
            self.shared.status.file_fetched(self.peer.ip());
        }
        Ok(keep_alive)
    }

    fn send_not_allowed(
        &mut self,
        allow: &'static str,
        keep_alive: bool,
    ) -> Result<(), ConnectionError> {
        let head = ResponseHead {
            status: Status::MethodNotAllowed,
            body_len: 0,
            connection: connection_header(self.http10, keep_alive),
            headers: vec![("Allow", allow.into())],
        };
        self.write_head(&head)
    }

    fn send_error(
        &mut self,
        status: Status,
        message: &str,
        keep_alive: bool,
    ) -> Result<(), ConnectionError> {
        let body = format!("{status}: {message}\n");
        self.send(
            status,
            "text/plain; charset=utf-8",
            body.as_bytes(),
            false,
            keep_alive,
        )
    }

    /// Sends a whole small answer (the body of a HEAD is left out, its length is kept).
    fn send(
        &mut self,
        status: Status,
        content_type: &'static str,
        body: &[u8],
        head_only: bool,
        keep_alive: bool,
    ) -> Result<(), ConnectionError> {
        let head = ResponseHead {
            status,
            body_len: body.len() as u64,
            connection: connection_header(self.http10, keep_alive),
            headers: vec![("Content-Type", content_type.into())],
        };
        let mut out = Vec::with_capacity(256 + body.len());
        head.emit(&mut out);
        if !head_only {
            out.extend_from_slice(body);
        }
        self.write_all(&out)
    }

    fn write_head(&mut self, head: &ResponseHead) -> Result<(), ConnectionError> {
        let mut out = Vec::with_capacity(256);
        head.emit(&mut out);
        self.write_all(&out)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ConnectionError> {
        self.stream
            .write_all(bytes)
            .map_err(|source| ConnectionError::Write {
                peer: self.peer,
                source,
            })
    }
}

/// HTTP/1.1 keeps connections open by default; HTTP/1.0 only when asked, and then the answer
/// must say so.
fn connection_header(http10: bool, keep_alive: bool) -> ConnectionHeader {
    match (keep_alive, http10) {
        (false, _) => ConnectionHeader::Close,
        (true, true) => ConnectionHeader::KeepAlive,
        (true, false) => ConnectionHeader::Omitted,
    }
}
