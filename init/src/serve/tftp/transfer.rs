//! One read transfer, on its own socket (the server's transfer ID, RFC 1350) and thread.
//!
//! The sender keeps three numbers, as 64-bit block indices (1 = the first block) so that
//! files of more than 65535 blocks need no special case: the last block acknowledged, the
//! last block sent, and the last block of the file. Block numbers on the wire are these
//! indices modulo 65536: after 65535 comes 0, as tftp-hpa does.
//!
//! Each round sends a window of blocks (RFC 7440; a window of 1 is RFC 1350's lock-step)
//! starting after the last acknowledged block, then waits for an ACK:
//! - an ACK that acknowledges a block sent but not yet acknowledged moves the window on (an
//!   ACK of a block inside the window means the client missed the next one: the new window
//!   starts there, as RFC 7440 says);
//! - any other ACK (a duplicate, or a delayed one) is ignored and does not restart the wait:
//!   answering duplicate ACKs with data is the Sorcerer's Apprentice bug (RFC 1123 4.2.3.1),
//!   where every block ends up sent twice, then four times...;
//! - no progress before the timeout: the window is sent again and the timeout doubles, up to
//!   a ceiling, until the retry limit.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::options::{self, Limits};
use super::wire::{self, ErrorCode, Opcode, Packet, Repr};
use super::{TftpEvent, TransferReport};
use crate::serve::files::{Content, FileSource, OpenError, SafePath};

/// The longest message put in an ERROR packet (a whole error fits any client's buffer).
const MAX_ERROR_MESSAGE: usize = 400;
/// The longest a single wait on the socket lasts, so that a stop request is noticed soon.
const STOP_POLL: Duration = Duration::from_millis(250);

/// Why a transfer that had started did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The transfer's socket could not be used.
    #[error("socket error while serving {path} to {client}: {source}")]
    Socket {
        /// The file.
        path: String,
        /// The client.
        client: SocketAddr,
        /// The system's answer.
        source: std::io::Error,
    },
    /// Reading the file failed, or it ended early (it shrank while being served).
    #[error("cannot read {path} at byte {offset}: {why}; check the boot directory's storage")]
    Read {
        /// The file.
        path: String,
        /// Where the read started.
        offset: u64,
        /// What went wrong.
        why: String,
    },
    /// The client stopped answering.
    #[error("{client} stopped acknowledging {path} at block {block} (after {retries} retransmissions with backoff); the client went away or the network drops packets")]
    TimedOut {
        /// The file.
        path: String,
        /// The client.
        client: SocketAddr,
        /// The first block not acknowledged (64-bit index, 0 = the OACK).
        block: u64,
        /// How many times the window was sent again.
        retries: u32,
    },
    /// The client sent an ERROR packet (code 8 after an OACK means it refused the options).
    #[error("{client} aborted the transfer of {path} with TFTP error {code}: {message:?}")]
    ClientAborted {
        /// The file.
        path: String,
        /// The client.
        client: SocketAddr,
        /// The client's error code.
        code: u16,
        /// The client's message.
        message: String,
    },
    /// The client's port is closed (ICMP port unreachable): it has gone.
    #[error("{client} is no longer listening (port unreachable) while receiving {path}")]
    ClientGone {
        /// The file.
        path: String,
        /// The client.
        client: SocketAddr,
    },
    /// The server is stopping.
    #[error(
        "the transfer of {path} to {client} was cut short because the TFTP server is stopping"
    )]
    Stopped {
        /// The file.
        path: String,
        /// The client.
        client: SocketAddr,
    },
}

/// Where the transfer stands, in 64-bit block indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The highest block acknowledged (0: none yet).
    pub acked: u64,
    /// The highest block sent.
    pub sent: u64,
    /// The file's last block: the first one shorter than the block size (maybe empty).
    pub last: u64,
}

/// What an ACK meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// New blocks are acknowledged: send the next window.
    Advanced,
    /// The last block is acknowledged: the transfer is complete.
    Complete,
    /// A duplicate or stale ACK: ignore it.
    Ignored,
}

impl Progress {
    /// A transfer of `len` bytes in blocks of `blksize`.
    pub fn new(len: u64, blksize: u16) -> Progress {
        Progress {
            acked: 0,
            sent: 0,
            last: len / u64::from(blksize.max(1)) + 1,
        }
    }

    /// The blocks of the next window of `windowsize` blocks (which also marks them sent).
    pub fn next_window(&mut self, windowsize: u16) -> std::ops::RangeInclusive<u64> {
        let first = self.acked + 1;
        self.sent = (self.acked + u64::from(windowsize.max(1))).min(self.last);
        first..=self.sent
    }

    /// Takes an ACK with block number `block` from the wire.
    pub fn on_ack(&mut self, block: u16) -> AckOutcome {
        // Distance from the last acknowledged block, modulo 65536: windows are at most
        // 65535 blocks, so a block sent and not yet acknowledged is 1..=sent-acked ahead.
        let ahead = u64::from(block.wrapping_sub(self.acked as u16));
        if ahead == 0 || ahead > self.sent - self.acked {
            return AckOutcome::Ignored;
        }
        self.acked += ahead;
        if self.acked == self.last {
            AckOutcome::Complete
        } else {
            AckOutcome::Advanced
        }
    }
}

/// The block number on the wire of a 64-bit block index.
pub fn wire_block(index: u64) -> u16 {
    index as u16
}

/// Retransmission timeouts: doubling from the first, up to a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first timeout.
    pub initial: Duration,
    /// The ceiling (never below `initial`).
    pub ceiling: Duration,
}

impl Backoff {
    /// The timeout after `retries` retransmissions.
    pub fn timeout(&self, retries: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32.checked_shl(retries).unwrap_or(u32::MAX));
        doubled.min(self.ceiling.max(self.initial))
    }
}

/// What a transfer needs from the server.
pub(super) struct Job {
    /// The client's address and port (its transfer ID).
    pub client: SocketAddr,
    /// The request as received (parsed again here, to own nothing borrowed).
    pub request: Vec<u8>,
    /// The address the server listens on; the transfer's socket takes its IP.
    pub listen: SocketAddr,
    /// Option limits.
    pub limits: Limits,
    /// Retransmissions before giving up.
    pub retries: u32,
    /// Retransmission timeouts when the client does not ask for one.
    pub backoff: Backoff,
    /// The files.
    pub source: Arc<dyn FileSource>,
    /// Set when the server stops.
    pub stop: Arc<AtomicBool>,
    /// Where events go.
    pub events: Option<super::EventCallback>,
}

impl Job {
    fn emit(&self, event: &TftpEvent) {
        if let Some(callback) = &self.events {
            callback(event);
        }
    }
}

/// Serves one read request to the end, reporting it through the job's events and the log.
pub(super) fn run(job: Job) {
    let socket = match bind_to_client(&job) {
        Ok(socket) => socket,
        Err(error) => {
            log::warn!(
                "tftp: cannot open a transfer socket for {}: {error}",
                job.client
            );
            return;
        }
    };
    let Ok(Repr::ReadRequest(request)) = Repr::parse_bytes(&job.request) else {
        // The listener only hands over read requests it has parsed.
        return;
    };
    let content = match accept(&job, request.filename, request.mode) {
        Ok(accepted) => accepted,
        Err((code, reason)) => {
            log::info!(
                "tftp: {} asked for {:?}: refused: {reason}",
                job.client,
                request.filename
            );
            send_error(&socket, code, &reason);
            job.emit(&TftpEvent::Refused {
                client: job.client,
                request: request.filename.to_string(),
                code,
                reason,
            });
            return;
        }
    };
    let (path, content) = content;
    let negotiated = options::negotiate(&request.options, job.limits, content.len());
    let backoff = match negotiated.timeout {
        Some(asked) => Backoff {
            initial: asked,
            ceiling: asked.max(job.backoff.ceiling),
        },
        None => job.backoff,
    };
    job.emit(&TftpEvent::Started {
        client: job.client,
        path: path.to_string(),
        size: content.len(),
        blksize: negotiated.blksize,
        windowsize: negotiated.windowsize,
    });
    let started = Instant::now();
    let mut sender = Sender {
        socket: &socket,
        job: &job,
        path: path.as_str(),
        content: &*content,
        blksize: negotiated.blksize,
        backoff,
        retransmissions: 0,
        buffer: vec![0; wire::HEADER_LEN + usize::from(negotiated.blksize)],
    };
    let result = sender
        .send_oack(&negotiated.oack)
        .and_then(|()| sender.send_file(negotiated.windowsize));
    let report = TransferReport {
        client: job.client,
        path: path.to_string(),
        size: content.len(),
        blksize: negotiated.blksize,
        windowsize: negotiated.windowsize,
        elapsed: started.elapsed(),
        retransmissions: sender.retransmissions,
        result,
    };
    log_report(&report);
    job.emit(&TftpEvent::Finished(report));
}

/// A socket on an ephemeral port of the server's address, connected to the client: the
/// kernel then drops datagrams from any other port, and reports the client's port closing.
fn bind_to_client(job: &Job) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(job.listen.ip(), 0))?;
    socket.connect(job.client)?;
    Ok(socket)
}

/// Checks the request and opens the file, or says which error to answer.
fn accept(
    job: &Job,
    filename: &str,
    mode: &str,
) -> Result<(SafePath, Arc<dyn Content>), (ErrorCode, String)> {
    // netascii would rewrite line ends in binary boot files; PXE clients always ask for octet.
    if !mode.eq_ignore_ascii_case("octet") {
        return Err((
            ErrorCode::IllegalOperation,
            format!("transfer mode {mode:?} is not served: PXEN serves files in octet (binary) mode only; ask for octet (tftp: 'binary' or -m octet)"),
        ));
    }
    let path = SafePath::parse(filename)
        .map_err(|error| (ErrorCode::AccessViolation, error.to_string()))?;
    let content = job.source.open(&path).map_err(|error| {
        let code = match &error {
            OpenError::NotFound { .. } => ErrorCode::FileNotFound,
            OpenError::Forbidden { .. } => ErrorCode::AccessViolation,
            OpenError::Io { .. } => ErrorCode::NotDefined,
        };
        (code, error.to_string())
    })?;
    Ok((path, content))
}

/// Sends an ERROR packet; a failure only costs the client a timeout, so it is logged.
pub(super) fn send_error(socket: &UdpSocket, code: ErrorCode, message: &str) {
    send_error_to(socket, None, code, message);
}

/// Sends an ERROR packet to `to`, or to the connected peer.
pub(super) fn send_error_to(
    socket: &UdpSocket,
    to: Option<SocketAddr>,
    code: ErrorCode,
    message: &str,
) {
    let mut end = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let packet = Repr::Error {
        code,
        message: &message[..end],
    }
    .to_bytes();
    let sent = match to {
        Some(client) => socket.send_to(&packet, client),
        None => socket.send(&packet),
    };
    if let Err(error) = sent {
        log::warn!(
            "tftp: cannot send error {} to {to:?}: {error}",
            code.to_u16()
        );
    }
}

fn log_report(report: &TransferReport) {
    let seconds = report.elapsed.as_secs_f64();
    match &report.result {
        Ok(()) => log::info!(
            "tftp: sent {} ({} bytes) to {} in {seconds:.3} s ({:.1} MB/s, blksize {}, windowsize {}, {} retransmissions)",
            report.path,
            report.size,
            report.client,
            report.size as f64 / seconds.max(1e-9) / 1e6,
            report.blksize,
            report.windowsize,
            report.retransmissions,
        ),
        Err(error) => log::warn!("tftp: {error} (after {seconds:.3} s)"),
    }
}

/// What a wait for an ACK produced.
enum Wait {
    /// An ACK.
    Ack(u16),
    /// Nothing useful before the deadline.
    TimedOut,
}

/// The sending side of one transfer.
struct Sender<'a> {
    socket: &'a UdpSocket,
    job: &'a Job,
    path: &'a str,
    content: &'a dyn Content,
    blksize: u16,
    backoff: Backoff,
    retransmissions: u64,
    /// One DATA packet: header and block.
    buffer: Vec<u8>,
}

impl Sender<'_> {
    /// Sends the OACK, if there is one, until the client acknowledges it with ACK 0.
    fn send_oack(&mut self, oack: &[(&'static str, String)]) -> Result<(), TransferError> {
        if oack.is_empty() {
            return Ok(());
        }
        let options: Vec<(&str, &str)> = oack
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let packet = Repr::OptionAck { options }.to_bytes();
        for retry in 0..=self.job.retries {
            self.socket
                .send(&packet)
                .map_err(|source| self.io_error(source))?;
            let deadline = Instant::now() + self.backoff.timeout(retry);
            loop {
                match self.wait(deadline)? {
                    Wait::Ack(0) => return Ok(()),
                    Wait::Ack(_) => continue,
                    Wait::TimedOut => break,
                }
            }
            self.retransmissions += 1;
        }
        Err(self.timed_out(0))
    }

    /// Sends the file in windows until its last block is acknowledged.
    fn send_file(&mut self, windowsize: u16) -> Result<(), TransferError> {
        let mut progress = Progress::new(self.content.len(), self.blksize);
        let mut retries = 0;
        loop {
            for index in progress.next_window(windowsize) {
                self.send_block(index)?;
            }
            let deadline = Instant::now() + self.backoff.timeout(retries);
            let advanced = loop {
                match self.wait(deadline)? {
                    Wait::Ack(block) => match progress.on_ack(block) {
                        AckOutcome::Complete => return Ok(()),
                        AckOutcome::Advanced => break true,
                        AckOutcome::Ignored => continue,
                    },
                    Wait::TimedOut => break false,
                }
            };
            if advanced {
                retries = 0;
            } else if retries == self.job.retries {
                return Err(self.timed_out(progress.acked + 1));
            } else {
                retries += 1;
                self.retransmissions += 1;
            }
        }
    }

    /// Reads block `index` (1-based) of the file and sends it.
    fn send_block(&mut self, index: u64) -> Result<(), TransferError> {
        let blksize = u64::from(self.blksize);
        let offset = (index - 1) * blksize;
        let len = self.content.len().saturating_sub(offset).min(blksize) as usize;
        let mut packet = Packet::new_unchecked(&mut self.buffer[..wire::HEADER_LEN + len]);
        packet.set_opcode(Opcode::Data);
        packet.set_block_number(wire_block(index));
        read_exact_at(self.content, offset, packet.data_mut()).map_err(|why| {
            let error = TransferError::Read {
                path: self.path.to_string(),
                offset,
                why,
            };
            send_error(self.socket, ErrorCode::NotDefined, &error.to_string());
            error
        })?;
        let packet = &self.buffer[..wire::HEADER_LEN + len];
        self.socket
            .send(packet)
            .map_err(|source| self.io_error(source))?;
        Ok(())
    }

    /// Waits for an ACK until `deadline`; an ERROR from the client ends the transfer, anything
    /// else is ignored.
    fn wait(&self, deadline: Instant) -> Result<Wait, TransferError> {
        let mut packet = [0u8; 1024];
        loop {
            if self.job.stop.load(Ordering::Relaxed) {
                send_error(
                    self.socket,
                    ErrorCode::NotDefined,
                    "the PXEN boot service is stopping",
                );
                return Err(TransferError::Stopped {
                    path: self.path.to_string(),
                    client: self.job.client,
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Wait::TimedOut);
            }
            let timeout = (deadline - now).min(STOP_POLL);
            self.socket
                .set_read_timeout(Some(timeout))
                .map_err(|source| self.io_error(source))?;
            let len = match self.socket.recv(&mut packet) {
                Ok(len) => len,
                Err(error) if is_timeout(&error) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(TransferError::ClientGone {
                        path: self.path.to_string(),
                        client: self.job.client,
                    });
                }
                Err(source) => return Err(self.io_error(source)),
            };
            match Repr::parse_bytes(&packet[..len]) {
                Ok(Repr::Ack { block }) => return Ok(Wait::Ack(block)),
                Ok(Repr::Error { code, message }) => {
                    return Err(TransferError::ClientAborted {
                        path: self.path.to_string(),
                        client: self.job.client,
                        code: code.to_u16(),
                        message: message.to_string(),
                    });
                }
                // Anything else from the client is noise for a sender: only the timeout counts.
                Ok(other) => log::debug!(
                    "tftp: {} sent an unexpected {other:?} during a transfer",
                    self.job.client
                ),
                Err(error) => {
                    log::debug!(
                        "tftp: {} sent a malformed packet during a transfer: {error}",
                        self.job.client
                    )
                }
            }
        }
    }

    fn io_error(&self, source: std::io::Error) -> TransferError {
        if source.kind() == std::io::ErrorKind::ConnectionRefused {
            return TransferError::ClientGone {
                path: self.path.to_string(),
                client: self.job.client,
            };
        }
        TransferError::Socket {
            path: self.path.to_string(),
            client: self.job.client,
            source,
        }
    }

    fn timed_out(&self, block: u64) -> TransferError {
        send_error(
            self.socket,
            ErrorCode::NotDefined,
            "timed out waiting for an acknowledgement",
        );
        TransferError::TimedOut {
            path: self.path.to_string(),
            client: self.job.client,
            block,
            retries: self.job.retries,
        }
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Fills `buf` from `offset`; a short file is an error (it shrank since it was opened).
fn read_exact_at(content: &dyn Content, offset: u64, buf: &mut [u8]) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        match content.read_at(offset + filled as u64, &mut buf[filled..]) {
            Ok(0) => {
                return Err(format!(
                    "the file ended {} bytes early (it changed while being served)",
                    buf.len() - filled
                ))
            }
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_has_one_more_block_than_full_blocks() {
        assert_eq!(Progress::new(0, 512).last, 1);
        assert_eq!(Progress::new(511, 512).last, 1);
        assert_eq!(
            Progress::new(512, 512).last,
            2,
            "a multiple of the block size ends with an empty block"
        );
        assert_eq!(Progress::new(1025, 512).last, 3);
    }

    #[test]
    fn lock_step_ignores_duplicate_acks() {
        let mut progress = Progress::new(2000, 512);
        assert_eq!(progress.next_window(1), 1..=1);
        assert_eq!(
            progress.on_ack(0),
            AckOutcome::Ignored,
            "a duplicate of the OACK's ACK"
        );
        assert_eq!(
            progress.on_ack(2),
            AckOutcome::Ignored,
            "a block not sent yet"
        );
        assert_eq!(progress.on_ack(1), AckOutcome::Advanced);
        assert_eq!(progress.next_window(1), 2..=2);
        assert_eq!(
            progress.on_ack(1),
            AckOutcome::Ignored,
            "the Sorcerer's Apprentice duplicate"
        );
        assert_eq!(progress.on_ack(2), AckOutcome::Advanced);
        assert_eq!(progress.next_window(1), 3..=3);
        assert_eq!(progress.on_ack(3), AckOutcome::Advanced);
        assert_eq!(progress.next_window(1), 4..=4);
        assert_eq!(progress.on_ack(4), AckOutcome::Complete);
    }

    #[test]
    fn a_window_restarts_after_the_last_block_the_client_has() {
        let mut progress = Progress::new(10 * 512 + 3, 512);
        assert_eq!(progress.next_window(4), 1..=4);
        assert_eq!(
            progress.on_ack(2),
            AckOutcome::Advanced,
            "the client missed block 3"
        );
        assert_eq!(progress.next_window(4), 3..=6);
        assert_eq!(progress.on_ack(2), AckOutcome::Ignored);
        assert_eq!(progress.on_ack(6), AckOutcome::Advanced);
        assert_eq!(progress.next_window(4), 7..=10);
        assert_eq!(progress.on_ack(10), AckOutcome::Advanced);
        assert_eq!(
            progress.next_window(4),
            11..=11,
            "the window stops at the last block"
        );
        assert_eq!(progress.on_ack(11), AckOutcome::Complete);
    }

    #[test]
    fn block_numbers_wrap_to_zero_after_65535() {
        let mut progress = Progress::new(70_000 * 8, 8);
        progress.acked = 65_534;
        assert_eq!(progress.next_window(4), 65_535..=65_538);
        let wire: Vec<u16> = (65_535..=65_538).map(wire_block).collect();
        assert_eq!(wire, [65_535, 0, 1, 2]);
        assert_eq!(progress.on_ack(65_534), AckOutcome::Ignored);
        assert_eq!(progress.on_ack(0), AckOutcome::Advanced);
        assert_eq!(progress.acked, 65_536);
        assert_eq!(progress.next_window(4), 65_537..=65_540);
        assert_eq!(progress.on_ack(4), AckOutcome::Advanced);
        assert_eq!(progress.acked, 65_540);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let backoff = Backoff {
            initial: Duration::from_millis(500),
            ceiling: Duration::from_secs(3),
        };
        let timeouts: Vec<u128> = (0..5).map(|n| backoff.timeout(n).as_millis()).collect();
        assert_eq!(timeouts, [500, 1000, 2000, 3000, 3000]);
        assert_eq!(backoff.timeout(200), Duration::from_secs(3), "no overflow");
        let low_ceiling = Backoff {
            initial: Duration::from_secs(5),
            ceiling: Duration::from_secs(1),
        };
        assert_eq!(
            low_ceiling.timeout(3),
            Duration::from_secs(5),
            "the ceiling never undercuts the first timeout"
        );
    }

    #[test]
    fn a_short_content_is_a_read_error() {
        let content = vec![7u8; 10];
        let mut buf = [0u8; 8];
        assert_eq!(read_exact_at(&content, 2, &mut buf), Ok(()));
        assert_eq!(buf, [7; 8]);
        let error = read_exact_at(&content, 4, &mut buf).expect_err("only 6 bytes are left");
        assert!(error.contains("2 bytes early"), "{error}");
    }
}
