//! A read-only TFTP server for network boot: RFC 1350 with options (RFC 2347), `blksize`
//! (RFC 2348), `tsize` and `timeout` (RFC 2349) and `windowsize` (RFC 7440).
//!
//! One listener thread receives requests on the TFTP port; each accepted read request is
//! served from its own ephemeral UDP socket (the server's transfer ID, as RFC 1350 says) in
//! its own thread, so a whole cluster can fetch its boot files at once. What is answered:
//!
//! | request | answer |
//! | --- | --- |
//! | read request, octet mode, safe path to a served file | the file (see [`transfer`]) |
//! | read request for a missing file | error 1 |
//! | read request for a path that could escape the boot directory, or a symbolic link leading out | error 2 |
//! | write request | error 2, "PXEN serves read-only" |
//! | `netascii` or `mail` mode | error 4: only octet is served, because converting line ends would corrupt binary boot files (PXE firmware always asks for octet) |
//! | unknown opcode, malformed packet, DATA/ACK/OACK on the TFTP port | error 4 |
//! | ERROR on the TFTP port | nothing (errors are never answered, to avoid loops) |
//! | read request while [`TftpConfig::max_transfers`] are running | error 0 saying the server is busy |
//! | the same read request again from the same client port while its transfer runs | nothing: it is the client retransmitting a request whose answer is on its way |
//!
//! Every transfer is reported through [`TftpConfig::on_event`] and the log: who fetched what,
//! how big, how long it took, and how it ended.

pub mod options;
pub mod transfer;
pub mod wire;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use self::options::Limits;
use self::transfer::{Backoff, Job, TransferError};
use self::wire::{ErrorCode, Repr};
use crate::serve::files::FileSource;

/// The callback that receives the server's events. It runs on the transfer's thread: keep it short.
pub type EventCallback = Arc<dyn Fn(&TftpEvent) + Send + Sync>;

/// How the TFTP server runs.
#[derive(Clone)]
pub struct TftpConfig {
    /// The address and port to listen on (`0.0.0.0:69` serves every interface, and keeps
    /// serving when interfaces are added or renamed, as when the Xen bridge is set up).
    pub listen: SocketAddr,
    /// The largest block size granted to a client asking for more (8..=65464).
    pub max_blksize: u16,
    /// The largest window granted to a client asking for more (RFC 7440; 1 = lock-step).
    pub max_windowsize: u16,
    /// The most bytes of data in one window: the granted window is lowered to fit (see
    /// [`options::Limits::max_window_bytes`]).
    pub max_window_bytes: u32,
    /// How many transfers may run at once; further requests get an error saying so.
    pub max_transfers: usize,
    /// How many times a window (or the OACK) is sent again without an answer before the
    /// transfer is given up.
    pub retries: u32,
    /// The first retransmission timeout, when the client asks for none (option `timeout`).
    pub initial_timeout: Duration,
    /// The ceiling of the timeout, which doubles at each retransmission.
    pub max_timeout: Duration,
    /// Receives every transfer's start, end and refusal (for the status page).
    pub on_event: Option<EventCallback>,
}

impl Default for TftpConfig {
    fn default() -> TftpConfig {
        TftpConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 69),
            max_blksize: options::MAX_BLKSIZE,
            max_windowsize: 64,
            max_window_bytes: 64 * 1024,
            max_transfers: 128,
            retries: 6,
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(8),
            on_event: None,
        }
    }
}

impl std::fmt::Debug for TftpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TftpConfig")
            .field("listen", &self.listen)
            .field("max_blksize", &self.max_blksize)
            .field("max_windowsize", &self.max_windowsize)
            .field("max_window_bytes", &self.max_window_bytes)
            .field("max_transfers", &self.max_transfers)
            .field("retries", &self.retries)
            .field("initial_timeout", &self.initial_timeout)
            .field("max_timeout", &self.max_timeout)
            .field("on_event", &self.on_event.as_ref().map(|_| "callback"))
            .finish()
    }
}

/// Something that happened to a request.
#[derive(Debug)]
pub enum TftpEvent {
    /// A transfer began.
    Started {
        /// The client (address and transfer ID).
        client: SocketAddr,
        /// The file, relative to the boot directory.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The negotiated block size.
        blksize: u16,
        /// The negotiated window size.
        windowsize: u16,
    },
    /// A transfer ended, completed or not.
    Finished(TransferReport),
    /// A request was refused with an ERROR packet.
    Refused {
        /// The client.
        client: SocketAddr,
        /// The file asked for, as sent.
        request: String,
        /// The error code sent.
        code: ErrorCode,
        /// The message sent.
        reason: String,
    },
}

/// How a transfer went.
#[derive(Debug)]
pub struct TransferReport {
    /// The client.
    pub client: SocketAddr,
    /// The file, relative to the boot directory.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// The negotiated block size.
    pub blksize: u16,
    /// The negotiated window size.
    pub windowsize: u16,
    /// From the first packet sent to the last ACK (or the failure).
    pub elapsed: Duration,
    /// How many times a window or the OACK was sent again after a timeout.
    pub retransmissions: u64,
    /// Whether the whole file was acknowledged.
    pub result: Result<(), TransferError>,
}

/// A running TFTP server. Dropping it stops the server, like [`TftpHandle::stop`].
#[derive(Debug)]
pub struct TftpHandle {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    active: Arc<Mutex<HashSet<TransferKey>>>,
    listener: Option<JoinHandle<()>>,
}

impl TftpHandle {
    /// The address the server listens on (with the port the system chose if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many transfers are running.
    pub fn active_transfers(&self) -> usize {
        lock(&self.active).len()
    }

    /// Stops accepting requests and waits for the listener thread; running transfers send the
    /// client an error and end at their next wait (within a quarter of a second).
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        self.stop.store(true, Ordering::Relaxed);
        wake(self.local_addr);
        if listener.join().is_err() {
            log::error!("tftp: the listener thread panicked");
        }
    }
}

impl Drop for TftpHandle {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Binds `config.listen` and starts serving `source` on a listener thread.
pub fn spawn(config: TftpConfig, source: Arc<dyn FileSource>) -> std::io::Result<TftpHandle> {
    let socket = UdpSocket::bind(config.listen)?;
    let local_addr = socket.local_addr()?;
    // A bounded wait, so that a lost wake-up datagram cannot keep the listener from stopping.
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let active = Arc::new(Mutex::new(HashSet::new()));
    let listener = Listener {
        socket,
        local_addr,
        config,
        source,
        stop: stop.clone(),
        active: active.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("tftp-listener".into())
        .spawn(move || listener.run())?;
    log::info!("tftp: serving on {local_addr}");
    Ok(TftpHandle {
        local_addr,
        stop,
        active,
        listener: Some(thread),
    })
}

/// Sends an empty datagram to the listener so that it sees the stop flag at once.
fn wake(local_addr: SocketAddr) {
    let target = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local_addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), local_addr.port())
        }
        _ => local_addr,
    };
    let unspecified = match target {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    // If this fails the listener notices the flag at its next read timeout.
    let _ = UdpSocket::bind(unspecified).and_then(|socket| socket.send_to(&[], target));
}

/// A running transfer: the client's transfer ID and its request, to recognise a retransmitted request.
type TransferKey = (SocketAddr, Vec<u8>);

fn lock(active: &Mutex<HashSet<TransferKey>>) -> std::sync::MutexGuard<'_, HashSet<TransferKey>> {
    // A transfer thread cannot panic while holding the lock (it only inserts and removes), and
    // the set stays consistent even if one did: recover it rather than stop serving.
    active
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes a transfer from the running set when its thread ends, even by a panic.
struct ActiveGuard {
    active: Arc<Mutex<HashSet<TransferKey>>>,
    key: TransferKey,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        lock(&self.active).remove(&self.key);
    }
}

/// The listener thread's state.
struct Listener {
    socket: UdpSocket,
    local_addr: SocketAddr,
    config: TftpConfig,
    source: Arc<dyn FileSource>,
    stop: Arc<AtomicBool>,
    active: Arc<Mutex<HashSet<TransferKey>>>,
}

impl Listener {
    fn run(self) {
        // The largest UDP payload: requests are small, but what arrives is not up to us.
        let mut buffer = vec![0u8; 65536];
        while !self.stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buffer) {
                Ok((len, client)) if !self.stop.load(Ordering::Relaxed) => {
                    self.handle(&buffer[..len], client)
                }
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // Transient receive errors (an ICMP error for an earlier reply, an interrupt)
                // must not stop the boot service.
                Err(error) => log::warn!("tftp: receiving on {}: {error}", self.local_addr),
            }
        }
        log::info!("tftp: stopped serving on {}", self.local_addr);
    }

    fn handle(&self, packet: &[u8], client: SocketAddr) {
        let refuse = |code: ErrorCode, reason: String, request: &str| {
            log::info!("tftp: {client}: refused {request:?}: {reason}");
            transfer::send_error_to(&self.socket, Some(client), code, &reason);
            self.emit(&TftpEvent::Refused {
                client,
                request: request.to_string(),
                code,
                reason,
            });
        };
        match Repr::parse_bytes(packet) {
            Ok(Repr::ReadRequest(request)) => self.start(packet, client, request.filename),
            Ok(Repr::WriteRequest(request)) => refuse(
                ErrorCode::AccessViolation,
                "PXEN serves read-only: write requests are refused".to_string(),
                request.filename,
            ),
            Ok(Repr::Error { .. }) => {}
            Ok(other) => refuse(
                ErrorCode::IllegalOperation,
                format!(
                    "the TFTP port takes read requests only, not {}",
                    kind(&other)
                ),
                "",
            ),
            // A malformed ERROR is still an error: never answered.
            Err(_) if packet.starts_with(&[0, 5]) => {}
            Err(error) => refuse(
                ErrorCode::IllegalOperation,
                format!("malformed request: {error}"),
                "",
            ),
        }
    }

    /// Starts a transfer thread for a read request, unless it is a duplicate or too many run.
    fn start(&self, packet: &[u8], client: SocketAddr, filename: &str) {
        let key: TransferKey = (client, packet.to_vec());
        {
            let mut active = lock(&self.active);
            if active.contains(&key) {
                log::debug!("tftp: {client} repeated its request for {filename:?}, whose transfer is running");
                return;
            }
            if active.len() >= self.config.max_transfers {
                let reason = format!(
                    "the TFTP server is busy: {} transfers are running, the most it serves at once; retry shortly",
                    active.len()
                );
                drop(active);
                log::warn!("tftp: {client}: refused {filename:?}: {reason}");
                transfer::send_error_to(&self.socket, Some(client), ErrorCode::NotDefined, &reason);
                self.emit(&TftpEvent::Refused {
                    client,
                    request: filename.to_string(),
                    code: ErrorCode::NotDefined,
                    reason,
                });
                return;
            }
            active.insert(key.clone());
        }
        let guard = ActiveGuard {
            active: self.active.clone(),
            key,
        };
        let job = Job {
            client,
            request: packet.to_vec(),
            listen: self.local_addr,
            limits: Limits {
                max_blksize: self.config.max_blksize,
                max_windowsize: self.config.max_windowsize,
                max_window_bytes: self.config.max_window_bytes,
            },
            retries: self.config.retries,
            backoff: Backoff {
                initial: self.config.initial_timeout,
                ceiling: self.config.max_timeout,
            },
            source: self.source.clone(),
            stop: self.stop.clone(),
            events: self.config.on_event.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("tftp-{client}"))
            .spawn(move || {
                let _guard = guard;
                transfer::run(job);
            });
        if let Err(error) = spawned {
            let reason = format!("the TFTP server cannot start a transfer thread: {error}");
            log::error!("tftp: {client}: {reason}");
            transfer::send_error_to(&self.socket, Some(client), ErrorCode::NotDefined, &reason);
        }
    }

    fn emit(&self, event: &TftpEvent) {
        if let Some(callback) = &self.config.on_event {
            callback(event);
        }
    }
}

/// The name of a packet's kind, for messages.
fn kind(repr: &Repr<'_>) -> &'static str {
    match repr {
        Repr::ReadRequest(_) => "RRQ",
        Repr::WriteRequest(_) => "WRQ",
        Repr::Data { .. } => "DATA",
        Repr::Ack { .. } => "ACK",
        Repr::Error { .. } => "ERROR",
        Repr::OptionAck { .. } => "OACK",
    }
}
