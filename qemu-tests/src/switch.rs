//! Our own Ethernet switch: the virtual LAN between QEMU machines.
//!
//! Each port is a pair of unix datagram sockets: the switch binds `<dir>/<port>.sw.sock`,
//! the machine (QEMU's `-netdev dgram`, see [`Switch::netdev_arg`]) binds
//! `<dir>/<port>.vm.sock`, and every datagram is one Ethernet frame. The switch learns which
//! port each source MAC is behind, sends unicast frames to the learned port only and floods
//! broadcast, multicast and unknown destinations to every other port, as a real learning
//! switch does.
//!
//! It is a store-and-forward switch with a buffer per output port, as real ones are. Each
//! port has two threads:
//! - its ingress thread receives what the machine sends, applies the port's faults, learns,
//!   logs, and appends the frame to the egress queue of every destination port. It never
//!   waits for another machine, so one slow machine cannot hold up the frames to the others;
//! - its egress thread takes the frames of its queue in order and sends them to the machine,
//!   waiting as long as the machine is slow to read (up to [`SEND_TIMEOUT`]).
//!
//! A machine stops reading its socket when its guest's receive ring is full: a TCG guest
//! sharing two cores with others often falls behind a burst (a boot server sending a 141 MB
//! initrd). The egress queue absorbs such bursts instead of losing frames: it holds up to
//! [`QueueLimits::default`] (4 MiB, a few thousand full-size frames, the buffer of a port of
//! a real switch). A frame arriving at a full queue is dropped (tail drop, as real switches
//! do), counted ([`PortCounters::queue_full`]) and logged. Frames keep their order from each
//! ingress port to each egress port.
//!
//! It also is the test's eye and hand on the LAN:
//! - every frame is logged in one line ([`FrameSummary`]) to the run's log file, and sent to
//!   every observer ([`Switch::observe`]) with where it went, and counted ([`Counters`]);
//!   frames lost at an egress port are logged as `DROPPED at <port> (<reason>)`, the first of
//!   a second in full and the others of that second in one summary line, so a flood does not
//!   bloat the log; frames for a machine that is not running are only counted, as that is
//!   normal on this LAN (a machine not powered on yet);
//! - a Wake-on-LAN magic packet calls the wake callback with its target MAC (the cluster's
//!   power button);
//! - faults can be injected per port ([`Faults`]): frames sent by that port's machine are
//!   dropped with a probability (from a PRNG seeded per port, so a run repeats) and delayed;
//!   a cut link ([`Switch::cut`]) passes nothing in either direction until restored, and
//!   the frames waiting in its egress queue are dropped.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, LineWriter, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;
use pxen::rand::XorShift;

use crate::frame::FrameSummary;

/// The largest frame a port accepts (a jumbo frame; QEMU's NICs send at most 1514 bytes
/// plus a VLAN tag, but a larger datagram must not be cut silently).
const MAX_FRAME: usize = 9216;

/// How often a port's threads look at the stop flag when nothing happens, and so the most a
/// blocked send waits before looking again: shutting down takes about this long.
const POLL: Duration = Duration::from_millis(50);

/// How long an egress thread waits for its machine to take one frame before dropping it.
///
/// A machine reads its socket only when its guest NIC has room; under TCG with more machines
/// than cores a guest can go unscheduled for hundreds of milliseconds, and waiting is what
/// keeps its frames (the egress queue holds the following ones meanwhile). The limit only
/// keeps a wedged machine (paused, or its guest driver stopped) from holding its port
/// forever: after two seconds without a read its frames are dropped and counted one by one.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long after logging a dropped frame in full the other drops at the same port, for the
/// same reason, are only counted, then summarised in one line.
const DROP_LOG_WINDOW: Duration = Duration::from_secs(1);

/// A port of the switch: its index in the order ports were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub usize);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// The two socket paths of a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPaths {
    /// The port's name (a machine's name, `lan`, ...).
    pub name: String,
    /// The socket the machine binds, which the switch sends to.
    pub machine: PathBuf,
    /// The socket the switch binds, which the machine sends to.
    pub switch: PathBuf,
}

/// Faults injected on the frames a port's machine sends.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// The probability, from 0.0 to 1.0, that a frame is dropped.
    pub drop_probability: f64,
    /// How long every frame is held before it is switched (order is kept).
    pub delay: Duration,
}

/// How much each port's egress queue holds; a frame arriving when either limit would be
/// exceeded is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// The most frames waiting.
    pub frames: usize,
    /// The most bytes of frames waiting.
    pub bytes: usize,
}

impl Default for QueueLimits {
    /// 4 MiB, the buffer of a port of a real switch: 2,770 full-size frames, enough for the
    /// TCP windows of the boot servers towards one slow guest, and at most 4 MiB of memory
    /// per port. The frame limit (8,192) only bounds the bookkeeping of small frames.
    fn default() -> QueueLimits {
        QueueLimits {
            frames: 8192,
            bytes: 4 * 1024 * 1024,
        }
    }
}

/// What the switch did with a frame when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Queued to these ports (several when flooded; none when the destination is behind the
    /// port it came from). It may still be lost at one of them: its queue was full, its
    /// machine is not running or did not read it in time ([`PortCounters`] count those).
    Forwarded(Vec<PortId>),
    /// Dropped by an injected fault.
    DroppedByFault,
    /// Dropped because the port's link is cut.
    LinkCut,
}

/// One frame seen by the switch, for observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// When it arrived, since the switch started.
    pub at: Duration,
    /// The port it came in on.
    pub ingress: PortId,
    /// What it is.
    pub summary: FrameSummary,
    /// What happened to it.
    pub fate: Fate,
}

/// Frame counts of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Frames received from the port's machine (including those then dropped).
    pub received: u64,
    /// Frames from the machine dropped by an injected fault or a cut link.
    pub dropped: u64,
    /// Frames sent to the port's machine.
    pub sent: u64,
    /// Frames for the machine dropped because its egress queue was full.
    pub queue_full: u64,
    /// Frames for the machine dropped because it did not read them within [`SEND_TIMEOUT`],
    /// or sending failed otherwise.
    pub send_failed: u64,
    /// Frames for the machine lost because it is not running (its socket does not exist or
    /// nobody reads it): normal for a machine not powered on yet.
    pub not_listening: u64,
    /// Frames for the machine dropped because its link was cut, when they arrived or while
    /// they waited in its queue.
    pub link_cut: u64,
    /// The most bytes its egress queue held at once.
    pub queue_peak_bytes: u64,
}

impl PortCounters {
    /// Frames for the machine that did not reach it, for any reason.
    pub fn undeliverable(&self) -> u64 {
        self.queue_full + self.send_failed + self.not_listening + self.link_cut
    }
}

/// The switch's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    /// Per port, in [`PortId`] order.
    pub ports: Vec<PortCounters>,
    /// Frames shorter than an Ethernet header, which cannot be switched.
    pub runts: u64,
    /// Wake-on-LAN magic packets seen.
    pub wake_packets: u64,
}

/// Called with the target MAC of every Wake-on-LAN magic packet, on a port's thread.
pub type WakeCallback = Arc<dyn Fn(MacAddr) + Send + Sync>;

/// A step of running the switch failed.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The socket directory could not be created.
    #[error("cannot create the switch's socket directory {path}: {source}; check that its parent is writable")]
    SocketDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Two ports were given the same name.
    #[error("two switch ports are named {name:?}: port names make the socket file names, give each a distinct name")]
    DuplicatePort {
        /// The name.
        name: String,
    },
    /// A socket could not be bound or set up.
    #[error("cannot set up the switch socket {path}: {source}; is another switch using this directory? (unix socket paths are limited to 107 bytes)")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The frame log could not be created.
    #[error(
        "cannot create the switch's frame log {path}: {source}; check free space and permissions"
    )]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A port thread could not be started.
    #[error(
        "cannot start the switch thread {thread}: {source}; the system is out of threads or memory"
    )]
    Thread {
        /// The thread's name (`switch-<port>` or `switch-<port>-out`).
        thread: String,
        /// Why.
        source: io::Error,
    },
    /// A frame could not be sent into the switch from a test port.
    #[error("cannot send a frame into the switch through test port {port}: {source}")]
    TestSend {
        /// The port's name.
        port: String,
        /// Why.
        source: io::Error,
    },
}

/// The fault state of one port's link: its faults, whether it is up, and its PRNG.
#[derive(Debug, Clone)]
pub struct Link {
    faults: Faults,
    up: bool,
    rng: XorShift,
}

impl Link {
    /// An intact link whose drop decisions come from `seed`.
    pub fn new(seed: u64) -> Link {
        Link {
            faults: Faults::default(),
            up: true,
            rng: XorShift::new(seed),
        }
    }

    /// Whether the next frame is dropped: draws from the PRNG only when a drop probability
    /// is set, so setting faults on one port does not change another's decisions.
    pub fn should_drop(&mut self) -> bool {
        let p = self.faults.drop_probability;
        if p <= 0.0 {
            return false;
        }
        self.rng.unit() < p
    }
}

/// Where frames go: the MAC address table of a learning switch.
#[derive(Debug, Clone, Default)]
pub struct MacTable {
    learned: HashMap<MacAddr, PortId>,
}

impl MacTable {
    /// Records that `src` is behind `port` (a moved machine moves its entry). Group
    /// addresses are never a source on a sane LAN and are not learned.
    pub fn learn(&mut self, src: MacAddr, port: PortId) {
        if !src.is_multicast() {
            self.learned.insert(src, port);
        }
    }

    /// The port `mac` was learned on.
    pub fn lookup(&self, mac: MacAddr) -> Option<PortId> {
        self.learned.get(&mac).copied()
    }

    /// The ports a frame to `dst` that came in on `ingress` goes out of, among `port_count`
    /// ports: the learned port, nothing if that is the ingress port itself, else (group or
    /// unknown address) every port but the ingress one.
    pub fn destinations(&self, ingress: PortId, dst: MacAddr, port_count: usize) -> Vec<PortId> {
        match self.lookup(dst).filter(|_| !dst.is_multicast()) {
            Some(port) if port == ingress => Vec::new(),
            Some(port) => vec![port],
            None => (0..port_count)
                .map(PortId)
                .filter(|&port| port != ingress)
                .collect(),
        }
    }
}

/// A frame waiting in an egress queue, with the port it came in on (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Queued {
    ingress: PortId,
    frame: Vec<u8>,
}

/// The frames waiting to go out of one port, first in first out, bounded by [`QueueLimits`].
#[derive(Debug)]
struct EgressQueue {
    limits: QueueLimits,
    frames: VecDeque<Queued>,
    bytes: usize,
}

impl EgressQueue {
    fn new(limits: QueueLimits) -> EgressQueue {
        EgressQueue {
            limits,
            frames: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Appends `item`; false, leaving the queue as it was, when it does not fit (tail drop).
    #[must_use]
    fn push(&mut self, item: Queued) -> bool {
        let fits = self.frames.len() < self.limits.frames
            && self.bytes + item.frame.len() <= self.limits.bytes;
        if fits {
            self.bytes += item.frame.len();
            self.frames.push_back(item);
        }
        fits
    }

    /// The oldest frame.
    fn pop(&mut self) -> Option<Queued> {
        let item = self.frames.pop_front()?;
        self.bytes -= item.frame.len();
        Some(item)
    }

    /// Drops every frame waiting and returns how many there were.
    fn purge(&mut self) -> u64 {
        let count = self.frames.len() as u64;
        self.frames.clear();
        self.bytes = 0;
        count
    }
}

/// Why a frame was lost at an egress port, in the frame log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropReason {
    QueueFull,
    SendFailed,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::QueueFull => "queue full",
            DropReason::SendFailed => "send failed",
        })
    }
}

/// What the frame log says about a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropNote {
    /// Log this drop in full (after the summary of the previous window, if it had drops).
    Log {
        /// The drops only counted in the previous window, which ended.
        summarised: u64,
    },
    /// Only count it: a drop for the same reason was logged less than a window ago.
    Count,
}

/// The rate limit of the frame log's lines about drops at one port for one reason: the first
/// drop is logged in full and opens a window of [`DROP_LOG_WINDOW`]; the drops within it are
/// counted, and summarised in one line when it ends.
#[derive(Debug, Default)]
struct DropLog {
    /// When the open window started, and the drops counted in it.
    window: Option<(Instant, u64)>,
}

impl DropLog {
    /// Records a drop at `now`.
    fn record(&mut self, now: Instant) -> DropNote {
        match &mut self.window {
            Some((start, counted)) if now.duration_since(*start) < DROP_LOG_WINDOW => {
                *counted += 1;
                DropNote::Count
            }
            _ => {
                let summarised = self.window.map_or(0, |(_, counted)| counted);
                self.window = Some((now, 0));
                DropNote::Log { summarised }
            }
        }
    }

    /// Closes the window if it ended by `now` (or in any case when `last`, at shutdown), and
    /// returns how many drops it counted when there were any to summarise.
    fn close(&mut self, now: Instant, last: bool) -> Option<u64> {
        let (start, counted) = self.window?;
        if !last && now.duration_since(start) < DROP_LOG_WINDOW {
            return None;
        }
        self.window = None;
        Some(counted).filter(|&counted| counted > 0)
    }
}

/// The drop logs of one port, one per reason.
#[derive(Debug, Default)]
struct PortDropLogs {
    queue_full: DropLog,
    send_failed: DropLog,
}

impl PortDropLogs {
    fn get(&mut self, reason: DropReason) -> &mut DropLog {
        match reason {
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::SendFailed => &mut self.send_failed,
        }
    }
}

/// What became of a frame given to an egress queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enqueued {
    /// Queued; the queue now holds this many bytes.
    Queued { bytes: usize },
    /// Not queued: the port's link is cut.
    LinkCut,
    /// Not queued: the queue is full.
    QueueFull,
}

/// How one attempt to send to a machine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Nobody has the machine's socket: it is not running.
    NotListening,
    /// Its receive queue stayed full for the attempt's timeout: try again.
    Busy,
    /// Anything else: the frame cannot be sent.
    Failed,
}

/// What a failed `send_to` to a machine's socket means.
fn classify_send_error(error: &io::Error) -> Attempt {
    match error.kind() {
        // ENOENT: the machine has not bound its socket yet (not powered on); ECONNREFUSED:
        // the file is left but its QEMU has exited.
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Attempt::NotListening,
        // EAGAIN after the socket's send timeout (the machine's queue stayed full), or a
        // signal interrupted the wait.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            Attempt::Busy
        }
        _ => Attempt::Failed,
    }
}

/// How sending one frame to a machine ended.
#[derive(Debug)]
enum Delivery {
    Sent,
    NotListening,
    Failed(String),
    /// The link was cut before the machine took the frame.
    Cut,
    /// The switch is stopping.
    Stopped,
}

/// What an egress thread does next.
#[derive(Debug)]
enum Next {
    /// Send this frame.
    Frame(Queued),
    /// Nothing came for a poll interval.
    Idle,
    /// The switch is stopping.
    Stop,
}

/// Builds a [`Switch`]: name its ports, then start it.
pub struct SwitchBuilder {
    socket_dir: PathBuf,
    log_path: PathBuf,
    seed: u64,
    ports: Vec<String>,
    on_wake: Option<WakeCallback>,
    queue_limits: QueueLimits,
}

impl SwitchBuilder {
    /// A switch whose sockets go in `socket_dir` and whose frame log is `log_path`.
    pub fn new(socket_dir: &Path, log_path: &Path) -> SwitchBuilder {
        SwitchBuilder {
            socket_dir: socket_dir.to_path_buf(),
            log_path: log_path.to_path_buf(),
            seed: 1,
            ports: Vec::new(),
            on_wake: None,
            queue_limits: QueueLimits::default(),
        }
    }

    /// Seeds the fault injection PRNGs (each port's is derived from it).
    pub fn seed(mut self, seed: u64) -> SwitchBuilder {
        self.seed = seed;
        self
    }

    /// Adds a port named `name` (the socket file names) and returns its id.
    pub fn add_port(&mut self, name: &str) -> PortId {
        self.ports.push(name.to_string());
        PortId(self.ports.len() - 1)
    }

    /// Calls `callback` with the target of every Wake-on-LAN magic packet.
    pub fn on_wake(mut self, callback: WakeCallback) -> SwitchBuilder {
        self.on_wake = Some(callback);
        self
    }

    /// Sizes every port's egress queue (the default is [`QueueLimits::default`]).
    pub fn queue_limits(mut self, limits: QueueLimits) -> SwitchBuilder {
        self.queue_limits = limits;
        self
    }

    /// Binds every port's socket and starts the port threads.
    pub fn start(self) -> Result<Switch, SwitchError> {
        fs::create_dir_all(&self.socket_dir).map_err(|source| SwitchError::SocketDir {
            path: self.socket_dir.clone(),
            source,
        })?;
        let mut paths: Vec<PortPaths> = Vec::new();
        let mut sockets = Vec::new();
        for name in &self.ports {
            if paths.iter().any(|p| &p.name == name) {
                return Err(SwitchError::DuplicatePort { name: name.clone() });
            }
            let port = PortPaths {
                name: name.clone(),
                machine: self.socket_dir.join(format!("{name}.vm.sock")),
                switch: self.socket_dir.join(format!("{name}.sw.sock")),
            };
            sockets.push(bind_switch_side(&port.switch)?);
            paths.push(port);
        }
        let log = File::create(&self.log_path).map_err(|source| SwitchError::Log {
            path: self.log_path.clone(),
            source,
        })?;
        let links = (0..paths.len())
            .map(|i| {
                Mutex::new(Link::new(
                    self.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ))
            })
            .collect();
        let egress = (0..paths.len())
            .map(|_| Egress {
                queue: Mutex::new(EgressQueue::new(self.queue_limits)),
                ready: Condvar::new(),
                drop_logs: Mutex::new(PortDropLogs::default()),
            })
            .collect();
        let shared = Arc::new(Shared {
            started: Instant::now(),
            stop: AtomicBool::new(false),
            sockets,
            paths,
            table: Mutex::new(MacTable::default()),
            links,
            egress,
            counters: Mutex::new(Counters {
                ports: vec![PortCounters::default(); self.ports.len()],
                ..Counters::default()
            }),
            counted: Condvar::new(),
            observers: Mutex::new(Vec::new()),
            log: Mutex::new(LineWriter::new(log)),
            on_wake: self.on_wake,
        });
        let mut switch = Switch {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            log_path: self.log_path,
        };
        for index in 0..shared.paths.len() {
            let name = &shared.paths[index].name;
            // On an error, dropping `switch` stops the threads already started.
            switch.spawn(format!("switch-{name}"), move |shared| {
                run_ingress(shared, PortId(index));
            })?;
            switch.spawn(format!("switch-{name}-out"), move |shared| {
                run_egress(shared, PortId(index));
            })?;
        }
        log::info!(
            "switch: {} ports in {}, frame log {}, egress queues of {} frames or {} bytes",
            shared.paths.len(),
            self.socket_dir.display(),
            switch.log_path.display(),
            self.queue_limits.frames,
            self.queue_limits.bytes
        );
        Ok(switch)
    }
}

/// Binds the switch side of a port, removing a socket file a previous run left behind.
fn bind_switch_side(path: &Path) -> Result<UnixDatagram, SwitchError> {
    let socket_error = |source| SwitchError::Socket {
        path: path.to_path_buf(),
        source,
    };
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(socket_error(error)),
        _ => {}
    }
    let socket = UnixDatagram::bind(path).map_err(socket_error)?;
    // A send waits for a slow machine in slices of POLL, looking at the stop flag and the
    // link between them (see `Shared::send_to_machine`).
    socket.set_write_timeout(Some(POLL)).map_err(socket_error)?;
    Ok(socket)
}

/// The egress side of one port.
struct Egress {
    queue: Mutex<EgressQueue>,
    /// Signalled when a frame is queued, and when the switch stops.
    ready: Condvar,
    drop_logs: Mutex<PortDropLogs>,
}

struct Shared {
    started: Instant,
    stop: AtomicBool,
    sockets: Vec<UnixDatagram>,
    paths: Vec<PortPaths>,
    table: Mutex<MacTable>,
    /// Lock order: a port's egress queue, then any link (see `Shared::enqueue`).
    links: Vec<Mutex<Link>>,
    egress: Vec<Egress>,
    counters: Mutex<Counters>,
    /// Signalled whenever a counter changes.
    counted: Condvar,
    observers: Mutex<Vec<Sender<Observed>>>,
    log: Mutex<LineWriter<File>>,
    on_wake: Option<WakeCallback>,
}

/// Locks `mutex`, going on with the data if another thread panicked holding it: every
/// structure here stays consistent between statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The ingress thread of one port: receives its machine's frames, applies its faults,
/// switches them.
fn run_ingress(shared: &Shared, port: PortId) {
    let socket = &shared.sockets[port.0];
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buffer = vec![0u8; MAX_FRAME];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = held
            .front()
            .map_or(POLL, |(due, _)| {
                due.saturating_duration_since(now).min(POLL)
            })
            .max(Duration::from_millis(1));
        if let Err(error) = socket.set_read_timeout(Some(wait)) {
            log::warn!("switch {port}: cannot set the receive timeout: {error}");
        }
        match socket.recv(&mut buffer) {
            Ok(len) => shared.admit(port, &buffer[..len], &mut held),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => {
                // Receiving on a bound datagram socket has no peer to fail; an error here is
                // the system's. Say so, and wait a poll interval instead of spinning on it.
                log::warn!("switch {port}: receive failed: {error}");
                std::thread::sleep(POLL);
            }
        }
        while held.front().is_some_and(|(due, _)| *due <= Instant::now()) {
            if let Some((_, frame)) = held.pop_front() {
                shared.switch_frame(port, &frame);
            }
        }
    }
}

/// The egress thread of one port: sends the frames of its queue to its machine, in order.
fn run_egress(shared: &Shared, port: PortId) {
    // Whether the machine was running at the last send: logged when it changes.
    let mut listening = None;
    loop {
        match shared.next_queued(port) {
            Next::Frame(item) => shared.transmit(port, item, &mut listening),
            Next::Idle => {}
            Next::Stop => break,
        }
        shared.summarise_drops(port, false);
    }
    shared.summarise_drops(port, true);
}

impl Shared {
    fn at(&self) -> Duration {
        self.started.elapsed()
    }

    /// Updates the counters with `update` and wakes whoever waits for them.
    fn count<T>(&self, update: impl FnOnce(&mut Counters) -> T) -> T {
        let result = update(&mut lock(&self.counters));
        self.counted.notify_all();
        result
    }

    fn name(&self, port: PortId) -> &str {
        &self.paths[port.0].name
    }

    /// A frame from `port`'s machine: drop it, hold it, or switch it, as the link says.
    fn admit(&self, port: PortId, frame: &[u8], held: &mut VecDeque<(Instant, Vec<u8>)>) {
        self.count(|c| c.ports[port.0].received += 1);
        let (up, dropped, delay) = {
            let mut link = lock(&self.links[port.0]);
            (link.up, link.up && link.should_drop(), link.faults.delay)
        };
        if !up || dropped {
            self.count(|c| c.ports[port.0].dropped += 1);
            let fate = if up {
                Fate::DroppedByFault
            } else {
                Fate::LinkCut
            };
            if let Some(summary) = FrameSummary::parse(frame) {
                self.report(port, summary, fate);
            }
        } else if delay.is_zero() && held.is_empty() {
            self.switch_frame(port, frame);
        } else {
            held.push_back((Instant::now() + delay, frame.to_vec()));
        }
    }

    /// Learns the source, queues the frame where it goes, and reports it.
    fn switch_frame(&self, ingress: PortId, frame: &[u8]) {
        let Some(summary) = FrameSummary::parse(frame) else {
            self.count(|c| c.runts += 1);
            self.log_line(&format!(
                "{} a {}-byte runt, dropped",
                self.name(ingress),
                frame.len()
            ));
            return;
        };
        let destinations = {
            let mut table = lock(&self.table);
            table.learn(summary.src, ingress);
            table.destinations(ingress, summary.dst, self.paths.len())
        };
        let queued: Vec<PortId> = destinations
            .into_iter()
            .filter(|&to| self.enqueue(ingress, to, frame, &summary))
            .collect();
        self.report(ingress, summary, Fate::Forwarded(queued));
        if let Some(target) = summary.wake {
            self.count(|c| c.wake_packets += 1);
            if let Some(on_wake) = &self.on_wake {
                on_wake(target);
            }
        }
    }

    /// Appends `frame` to `to`'s egress queue; false if its link is cut or its queue full.
    fn enqueue(&self, ingress: PortId, to: PortId, frame: &[u8], summary: &FrameSummary) -> bool {
        let egress = &self.egress[to.0];
        let outcome = {
            let mut queue = lock(&egress.queue);
            // The link is read with the queue locked: `Switch::cut` purges the queue after
            // marking the link down, so a frame queued by a thread that saw the link up is
            // purged, and one that sees it down is not queued.
            if !lock(&self.links[to.0]).up {
                Enqueued::LinkCut
            } else if queue.push(Queued {
                ingress,
                frame: frame.to_vec(),
            }) {
                egress.ready.notify_one();
                Enqueued::Queued { bytes: queue.bytes }
            } else {
                Enqueued::QueueFull
            }
        };
        self.count(|counters| {
            let port = &mut counters.ports[to.0];
            match outcome {
                Enqueued::Queued { bytes } => {
                    port.queue_peak_bytes = port.queue_peak_bytes.max(bytes as u64);
                }
                Enqueued::LinkCut => port.link_cut += 1,
                Enqueued::QueueFull => port.queue_full += 1,
            }
        });
        if outcome == Enqueued::QueueFull {
            self.log_drop(to, DropReason::QueueFull, ingress, summary, None);
        }
        matches!(outcome, Enqueued::Queued { .. })
    }

    /// The next frame of `port`'s queue, waiting up to a poll interval for one.
    fn next_queued(&self, port: PortId) -> Next {
        let egress = &self.egress[port.0];
        let mut queue = lock(&egress.queue);
        if self.stop.load(Ordering::Relaxed) {
            return Next::Stop;
        }
        if let Some(item) = queue.pop() {
            return Next::Frame(item);
        }
        // `Switch::drop` sets the stop flag and then notifies with the queue locked, so the
        // wake-up cannot fall between the check above and this wait.
        queue = egress
            .ready
            .wait_timeout(queue, POLL)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
        if self.stop.load(Ordering::Relaxed) {
            return Next::Stop;
        }
        queue.pop().map_or(Next::Idle, Next::Frame)
    }

    /// Sends a queued frame to `port`'s machine, and counts and logs what became of it.
    fn transmit(&self, port: PortId, item: Queued, listening: &mut Option<bool>) {
        let delivery = if lock(&self.links[port.0]).up {
            self.send_to_machine(port, &item.frame)
        } else {
            // Cut after this frame left the queue, so the purge of `Switch::cut` missed it.
            Delivery::Cut
        };
        let now_listening = match &delivery {
            Delivery::Sent => Some(true),
            Delivery::NotListening => Some(false),
            _ => None,
        };
        if let Some(now_listening) = now_listening.filter(|&l| *listening != Some(l)) {
            *listening = Some(now_listening);
            self.log_listening(port, now_listening);
        }
        self.count(|counters| {
            let counts = &mut counters.ports[port.0];
            match &delivery {
                Delivery::Sent => counts.sent += 1,
                Delivery::NotListening => counts.not_listening += 1,
                Delivery::Failed(_) => counts.send_failed += 1,
                Delivery::Cut => counts.link_cut += 1,
                // The frame is lost with the switch; nobody reads the counters any more.
                Delivery::Stopped => {}
            }
        });
        if let Delivery::Failed(why) = delivery {
            if let Some(summary) = FrameSummary::parse(&item.frame) {
                self.log_drop(
                    port,
                    DropReason::SendFailed,
                    item.ingress,
                    &summary,
                    Some(&why),
                );
            }
        }
    }

    /// Sends `frame` to `port`'s machine, waiting up to [`SEND_TIMEOUT`] for it to read.
    fn send_to_machine(&self, port: PortId, frame: &[u8]) -> Delivery {
        let deadline = Instant::now() + SEND_TIMEOUT;
        loop {
            // Blocks up to POLL (the socket's send timeout) while the machine's queue is full.
            let error = match self.sockets[port.0].send_to(frame, &self.paths[port.0].machine) {
                Ok(_) => return Delivery::Sent,
                Err(error) => error,
            };
            match classify_send_error(&error) {
                Attempt::NotListening => return Delivery::NotListening,
                Attempt::Failed => return Delivery::Failed(error.to_string()),
                Attempt::Busy if self.stop.load(Ordering::Relaxed) => return Delivery::Stopped,
                Attempt::Busy if !lock(&self.links[port.0]).up => return Delivery::Cut,
                Attempt::Busy if Instant::now() >= deadline => {
                    return Delivery::Failed(format!(
                        "the machine read nothing for {} s",
                        SEND_TIMEOUT.as_secs_f64()
                    ))
                }
                Attempt::Busy => {}
            }
        }
    }

    /// Logs a frame lost at `port` (rate-limited by its drop log).
    fn log_drop(
        &self,
        port: PortId,
        reason: DropReason,
        ingress: PortId,
        summary: &FrameSummary,
        detail: Option<&str>,
    ) {
        let note = lock(&self.egress[port.0].drop_logs)
            .get(reason)
            .record(Instant::now());
        let DropNote::Log { summarised } = note else {
            return;
        };
        if summarised > 0 {
            self.log_drop_summary(port, reason, summarised);
        }
        let why = match detail {
            Some(detail) => format!("{reason}: {detail}"),
            None => reason.to_string(),
        };
        self.log_line(&format!(
            "{:>10.6} {} DROPPED at {} ({why}): {summary}",
            self.at().as_secs_f64(),
            self.name(ingress),
            self.name(port),
        ));
    }

    /// Logs the drops at `port` only counted in windows that ended (all of them when `last`).
    fn summarise_drops(&self, port: PortId, last: bool) {
        let now = Instant::now();
        for reason in [DropReason::QueueFull, DropReason::SendFailed] {
            let counted = lock(&self.egress[port.0].drop_logs)
                .get(reason)
                .close(now, last);
            if let Some(counted) = counted {
                self.log_drop_summary(port, reason, counted);
            }
        }
    }

    fn log_drop_summary(&self, port: PortId, reason: DropReason, count: u64) {
        self.log_line(&format!(
            "{:>10.6} DROPPED at {} ({reason}): {count} more frames within {} s of the one logged",
            self.at().as_secs_f64(),
            self.name(port),
            DROP_LOG_WINDOW.as_secs_f64()
        ));
    }

    /// Logs that `port`'s machine started or stopped reading its socket.
    fn log_listening(&self, port: PortId, listening: bool) {
        let what = if listening {
            "its machine is listening"
        } else {
            "no machine is listening: frames to it are lost until one is"
        };
        self.log_line(&format!(
            "{:>10.6} {}: {what}",
            self.at().as_secs_f64(),
            self.name(port)
        ));
    }

    /// Logs the frame in one line and hands it to every observer still listening.
    fn report(&self, ingress: PortId, summary: FrameSummary, fate: Fate) {
        let at = self.at();
        let fate_text = match &fate {
            Fate::Forwarded(to) if to.is_empty() => "-> nobody".to_string(),
            Fate::Forwarded(to) => {
                let names: Vec<&str> = to.iter().map(|&p| self.name(p)).collect();
                format!("-> {}", names.join(","))
            }
            Fate::DroppedByFault => "DROPPED (fault)".to_string(),
            Fate::LinkCut => "DROPPED (link cut)".to_string(),
        };
        self.log_line(&format!(
            "{:>10.6} {} {fate_text}: {summary}",
            at.as_secs_f64(),
            self.name(ingress)
        ));
        let observed = Observed {
            at,
            ingress,
            summary,
            fate,
        };
        lock(&self.observers).retain(|observer| observer.send(observed.clone()).is_ok());
    }

    fn log_line(&self, line: &str) {
        // A full disk must not stop the LAN: the frame is still switched, only not logged.
        if let Err(error) = writeln!(lock(&self.log), "{line}") {
            log::debug!("switch: cannot write the frame log: {error}");
        }
    }
}

/// A running switch. Dropping it stops its threads and removes its sockets.
pub struct Switch {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    log_path: PathBuf,
}

impl fmt::Debug for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Switch")
            .field("ports", &self.shared.paths)
            .field("log", &self.log_path)
            .finish_non_exhaustive()
    }
}

impl Switch {
    /// Starts a thread named `name` running `body` on the shared state.
    fn spawn(
        &mut self,
        name: String,
        body: impl FnOnce(&Shared) + Send + 'static,
    ) -> Result<(), SwitchError> {
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || body(&shared))
            .map_err(|source| SwitchError::Thread {
                thread: name,
                source,
            })?;
        self.threads.push(thread);
        Ok(())
    }

    /// The socket paths of `port`.
    pub fn port(&self, port: PortId) -> &PortPaths {
        &self.shared.paths[port.0]
    }

    /// When the switch started: [`Observed::at`] counts from here.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// The frame log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// QEMU's `-netdev` value connecting netdev `id` to `port`.
    pub fn netdev_arg(&self, port: PortId, id: &str) -> String {
        netdev_arg(self.port(port), id)
    }

    /// A channel of every frame the switch sees from now on.
    pub fn observe(&self) -> Receiver<Observed> {
        let (sender, receiver) = mpsc::channel();
        lock(&self.shared.observers).push(sender);
        receiver
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        lock(&self.shared.counters).clone()
    }

    /// Waits up to `timeout` for the counters to satisfy `condition`: `Ok` with them when they
    /// do, `Err` with the last ones seen when the time is up (for the test's failure message).
    pub fn wait_counters(
        &self,
        timeout: Duration,
        condition: impl Fn(&Counters) -> bool,
    ) -> Result<Counters, Counters> {
        let deadline = Instant::now() + timeout;
        let mut counters = lock(&self.shared.counters);
        loop {
            if condition(&counters) {
                return Ok(counters.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(counters.clone());
            }
            counters = self
                .shared
                .counted
                .wait_timeout(counters, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The port `mac` was learned on, if it sent anything yet.
    pub fn port_of(&self, mac: MacAddr) -> Option<PortId> {
        lock(&self.shared.table).lookup(mac)
    }

    /// Sets the faults on the frames `port`'s machine sends.
    pub fn set_faults(&self, port: PortId, faults: Faults) {
        lock(&self.shared.links[port.0]).faults = faults;
    }

    /// Cuts `port`'s link: nothing passes either way until [`Switch::restore`], and the
    /// frames waiting to go out of it are dropped.
    pub fn cut(&self, port: PortId) {
        lock(&self.shared.links[port.0]).up = false;
        // After the link is marked down (see `Shared::enqueue`).
        let purged = lock(&self.shared.egress[port.0].queue).purge();
        self.shared
            .count(|counters| counters.ports[port.0].link_cut += purged);
        log::info!(
            "switch: link of {} cut, {purged} frames waiting for it dropped",
            self.port(port).name
        );
    }

    /// Restores `port`'s link.
    pub fn restore(&self, port: PortId) {
        lock(&self.shared.links[port.0]).up = true;
        log::info!("switch: link of {} restored", self.port(port).name);
    }

    /// Plugs the test itself into `port`, in place of a machine.
    pub fn test_port(&self, port: PortId) -> Result<TestPort, SwitchError> {
        let paths = self.port(port).clone();
        let socket_error = |source| SwitchError::Socket {
            path: paths.machine.clone(),
            source,
        };
        match fs::remove_file(&paths.machine) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(socket_error(error))
            }
            _ => {}
        }
        let socket = UnixDatagram::bind(&paths.machine).map_err(socket_error)?;
        Ok(TestPort { paths, socket })
    }
}

/// QEMU's `-netdev` value connecting netdev `id` to the port with these paths.
pub fn netdev_arg(port: &PortPaths, id: &str) -> String {
    format!(
        "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
        crate::machine::escape_option(&port.machine.to_string_lossy()),
        crate::machine::escape_option(&port.switch.to_string_lossy())
    )
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for egress in &self.shared.egress {
            // With the queue locked: see `Shared::next_queued`.
            let _queue = lock(&egress.queue);
            egress.ready.notify_all();
        }
        for thread in self.threads.drain(..) {
            // A port thread that panicked has printed why; nothing else to clean up.
            let _ = thread.join();
        }
        for port in &self.shared.paths {
            // Best effort: the directory is usually a temporary one removed anyway.
            let _ = fs::remove_file(&port.switch);
        }
    }
}

/// The test's own connection to a switch port: sends and receives raw frames.
#[derive(Debug)]
pub struct TestPort {
    paths: PortPaths,
    socket: UnixDatagram,
}

impl TestPort {
    /// Sends one Ethernet frame into the switch.
    pub fn send(&self, frame: &[u8]) -> Result<(), SwitchError> {
        self.socket
            .send_to(frame, &self.paths.switch)
            .map(drop)
            .map_err(|source| SwitchError::TestSend {
                port: self.paths.name.clone(),
                source,
            })
    }

    /// The next frame the switch sends to this port, waiting up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut buffer = vec![0u8; MAX_FRAME];
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .ok()?;
        let len = self.socket.recv(&mut buffer).ok()?;
        buffer.truncate(len);
        Some(buffer)
    }
}

impl Drop for TestPort {
    fn drop(&mut self) {
        // Best effort, as for the switch's sockets.
        let _ = fs::remove_file(&self.paths.machine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::build;
    use pxen::wol::wire::{MagicPacket, ETHERTYPE_WOL};

    fn mac(last: u8) -> MacAddr {
        MacAddr::new([0x52, 0x54, 0, 0, 0, last])
    }

    #[test]
    fn unknown_and_group_destinations_flood_learned_ones_go_to_their_port() {
        let mut table = MacTable::default();
        assert_eq!(
            table.destinations(PortId(1), mac(2), 3),
            [PortId(0), PortId(2)]
        );
        table.learn(mac(2), PortId(2));
        assert_eq!(table.destinations(PortId(1), mac(2), 3), [PortId(2)]);
        // Behind the port it came from: filtered.
        assert_eq!(table.destinations(PortId(2), mac(2), 3), []);
        assert_eq!(
            table.destinations(PortId(0), MacAddr::BROADCAST, 3),
            [PortId(1), PortId(2)]
        );
        // A moved machine is learned again.
        table.learn(mac(2), PortId(0));
        assert_eq!(table.lookup(mac(2)), Some(PortId(0)));
        // Group addresses are not learned as sources.
        let multicast = MacAddr::new([0x01, 0, 0x5e, 0, 0, 1]);
        table.learn(multicast, PortId(1));
        assert_eq!(table.lookup(multicast), None);
    }

    #[test]
    fn drop_decisions_repeat_with_the_seed_and_follow_the_probability() {
        let draw = |seed| {
            let mut link = Link::new(seed);
            link.faults.drop_probability = 0.3;
            (0..10_000).map(|_| link.should_drop()).collect::<Vec<_>>()
        };
        let first = draw(42);
        assert_eq!(first, draw(42));
        assert_ne!(first, draw(43));
        let dropped = first.iter().filter(|&&d| d).count();
        assert!(
            (2700..3300).contains(&dropped),
            "dropped {dropped} of 10000 at p=0.3"
        );
        let mut never = Link::new(0);
        assert!((0..1000).all(|_| !never.should_drop()));
        never.faults.drop_probability = 1.0;
        assert!((0..1000).all(|_| never.should_drop()));
    }

    #[test]
    fn the_netdev_argument_names_both_sockets() {
        let port = PortPaths {
            name: "host1".into(),
            machine: "/s/host1.vm.sock".into(),
            switch: "/s/host1.sw.sock".into(),
        };
        assert_eq!(
            netdev_arg(&port, "n0"),
            "dgram,id=n0,local.type=unix,local.path=/s/host1.vm.sock,remote.type=unix,remote.path=/s/host1.sw.sock"
        );
    }

    /// A switch with three test ports, and its observer.
    fn three_ports(
        dir: &Path,
        on_wake: Option<WakeCallback>,
    ) -> (Switch, Vec<TestPort>, Receiver<Observed>) {
        let mut builder = SwitchBuilder::new(dir, &dir.join("frames.log")).seed(7);
        let ids: Vec<PortId> = ["a", "b", "c"]
            .iter()
            .map(|n| builder.add_port(n))
            .collect();
        if let Some(on_wake) = on_wake {
            builder = builder.on_wake(on_wake);
        }
        let switch = builder.start().expect("the switch starts");
        let observer = switch.observe();
        let ports = ids
            .iter()
            .map(|&id| switch.test_port(id).expect("a test port binds"))
            .collect();
        (switch, ports, observer)
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn frames_are_flooded_then_switched_and_logged() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (switch, ports, observer) = three_ports(dir.path(), None);
        let hello = build::ethernet(MacAddr::BROADCAST, mac(1), 0x88b5, b"hello");
        ports[0].send(&hello).expect("sent");
        assert_eq!(
            ports[1].recv(WAIT).as_deref(),
            Some(&hello[..]),
            "flooded to b"
        );
        assert_eq!(
            ports[2].recv(WAIT).as_deref(),
            Some(&hello[..]),
            "flooded to c"
        );
        let seen = observer.recv_timeout(WAIT).expect("the flood observed");
        assert_eq!(seen.fate, Fate::Forwarded(vec![PortId(1), PortId(2)]));
        // b answers a's learned MAC: only a gets it.
        let answer = build::ethernet(mac(1), mac(2), 0x88b5, b"answer");
        ports[1].send(&answer).expect("sent");
        assert_eq!(ports[0].recv(WAIT).as_deref(), Some(&answer[..]));
        let seen = observer.recv_timeout(WAIT).expect("the answer observed");
        assert_eq!(seen.fate, Fate::Forwarded(vec![PortId(0)]));
        assert_eq!(
            ports[2].recv(Duration::from_millis(100)),
            None,
            "c gets no unicast for a"
        );
        // The egress threads count a frame after the receiver may already have it.
        let counters = switch
            .wait_counters(WAIT, |c| c.ports[0].sent == 1 && c.ports[2].sent == 1)
            .expect("a and c were sent one frame each");
        assert_eq!(counters.ports[0].received, 1);
        let log = fs::read_to_string(switch.log_path()).expect("the frame log");
        assert!(
            log.contains("a -> b,c: 52:54:00:00:00:01 > ff:ff:ff:ff:ff:ff type 0x88b5"),
            "{log}"
        );
        assert!(
            log.contains("b -> a: 52:54:00:00:00:02 > 52:54:00:00:00:01"),
            "{log}"
        );
    }

    #[test]
    fn a_magic_packet_calls_the_wake_callback_with_its_target() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (woken_tx, woken) = mpsc::channel();
        let woken_tx = Mutex::new(woken_tx);
        let callback: WakeCallback = Arc::new(move |target| {
            let _ = lock(&woken_tx).send(target);
        });
        let (switch, ports, _observer) = three_ports(dir.path(), Some(callback));
        let magic = MagicPacket::new(mac(9)).to_bytes();
        let frame = build::ethernet(MacAddr::BROADCAST, mac(1), ETHERTYPE_WOL, &magic);
        ports[0].send(&frame).expect("sent");
        assert_eq!(woken.recv_timeout(WAIT), Ok(mac(9)));
        assert_eq!(switch.counters().wake_packets, 1);
    }

    #[test]
    fn a_cut_link_passes_nothing_until_restored_and_drops_are_counted() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (switch, ports, observer) = three_ports(dir.path(), None);
        let frame = build::ethernet(MacAddr::BROADCAST, mac(1), 0x88b5, b"x");
        switch.cut(PortId(1));
        ports[0].send(&frame).expect("sent");
        assert_eq!(
            observer.recv_timeout(WAIT).map(|o| o.fate),
            Ok(Fate::Forwarded(vec![PortId(2)])),
            "b's cut link takes nothing"
        );
        ports[1].send(&frame).expect("sent");
        assert_eq!(
            observer.recv_timeout(WAIT).map(|o| o.fate),
            Ok(Fate::LinkCut)
        );
        switch.restore(PortId(1));
        switch.set_faults(
            PortId(2),
            Faults {
                drop_probability: 1.0,
                delay: Duration::ZERO,
            },
        );
        ports[2].send(&frame).expect("sent");
        assert_eq!(
            observer.recv_timeout(WAIT).map(|o| o.fate),
            Ok(Fate::DroppedByFault)
        );
        let counters = switch.counters();
        assert_eq!(counters.ports[1].dropped, 1);
        assert_eq!(counters.ports[2].dropped, 1);
        assert_eq!(counters.ports[1].link_cut, 1);
        assert_eq!(counters.ports[1].undeliverable(), 1);
    }

    #[test]
    fn a_delayed_port_holds_its_frames_in_order() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (switch, ports, _observer) = three_ports(dir.path(), None);
        let delay = Duration::from_millis(300);
        switch.set_faults(
            PortId(0),
            Faults {
                drop_probability: 0.0,
                delay,
            },
        );
        let sent_at = Instant::now();
        for byte in 0..3u8 {
            let frame = build::ethernet(mac(2), mac(1), 0x88b5, &[byte]);
            ports[0].send(&frame).expect("sent");
        }
        for byte in 0..3u8 {
            let frame = ports[1].recv(WAIT).expect("the delayed frame arrives");
            assert_eq!(frame[14], byte, "frames keep their order");
        }
        assert!(
            sent_at.elapsed() >= delay,
            "arrived after {:?}",
            sent_at.elapsed()
        );
    }

    fn queued(byte: u8, len: usize) -> Queued {
        Queued {
            ingress: PortId(0),
            frame: vec![byte; len],
        }
    }

    #[test]
    fn an_egress_queue_keeps_order_and_drops_what_exceeds_its_frames_or_bytes() {
        let mut by_frames = EgressQueue::new(QueueLimits {
            frames: 2,
            bytes: 1000,
        });
        assert!(by_frames.push(queued(1, 10)));
        assert!(by_frames.push(queued(2, 10)));
        assert!(!by_frames.push(queued(3, 10)), "a third frame exceeds 2");
        assert_eq!(by_frames.pop(), Some(queued(1, 10)));
        assert!(by_frames.push(queued(4, 10)), "room again after a pop");
        assert_eq!(by_frames.pop(), Some(queued(2, 10)));
        assert_eq!(by_frames.pop(), Some(queued(4, 10)));
        assert_eq!(by_frames.pop(), None);
        assert_eq!(by_frames.bytes, 0);

        let mut by_bytes = EgressQueue::new(QueueLimits {
            frames: 100,
            bytes: 1000,
        });
        assert!(by_bytes.push(queued(1, 600)));
        assert!(!by_bytes.push(queued(2, 401)), "1001 bytes exceed 1000");
        assert!(by_bytes.push(queued(3, 400)), "exactly 1000 bytes fit");
        assert_eq!(by_bytes.bytes, 1000);
        assert_eq!(by_bytes.purge(), 2);
        assert_eq!(by_bytes.bytes, 0);
        assert_eq!(by_bytes.pop(), None);
    }

    #[test]
    fn the_default_queue_holds_4_mib() {
        let limits = QueueLimits::default();
        assert_eq!(limits.bytes, 4 << 20);
        assert!(
            limits.frames >= limits.bytes / 1514,
            "the frame limit must not cut the byte limit short for full-size frames"
        );
    }

    #[test]
    fn drops_are_logged_once_per_window_and_the_rest_summarised() {
        let start = Instant::now();
        let mut log = DropLog::default();
        assert_eq!(log.close(start, true), None, "nothing to summarise yet");
        assert_eq!(log.record(start), DropNote::Log { summarised: 0 });
        assert_eq!(
            log.record(start + Duration::from_millis(10)),
            DropNote::Count
        );
        assert_eq!(
            log.record(start + Duration::from_millis(900)),
            DropNote::Count
        );
        assert_eq!(
            log.close(start + Duration::from_millis(950), false),
            None,
            "the window is still open"
        );
        // A drop after the window logs in full and carries the window's summary.
        let later = start + DROP_LOG_WINDOW + Duration::from_millis(1);
        assert_eq!(log.record(later), DropNote::Log { summarised: 2 });
        assert_eq!(log.record(later), DropNote::Count);
        assert_eq!(log.close(later + DROP_LOG_WINDOW, false), Some(1));
        assert_eq!(log.close(later + DROP_LOG_WINDOW, false), None, "closed");
        // A lone drop has nothing to summarise, even at shutdown.
        assert_eq!(log.record(later), DropNote::Log { summarised: 0 });
        assert_eq!(log.close(later, true), None);
    }

    #[test]
    fn send_errors_tell_an_absent_machine_from_a_slow_one() {
        let kind = |kind| classify_send_error(&io::Error::from(kind));
        assert_eq!(kind(io::ErrorKind::NotFound), Attempt::NotListening);
        assert_eq!(
            kind(io::ErrorKind::ConnectionRefused),
            Attempt::NotListening
        );
        assert_eq!(kind(io::ErrorKind::WouldBlock), Attempt::Busy);
        assert_eq!(kind(io::ErrorKind::Interrupted), Attempt::Busy);
        assert_eq!(kind(io::ErrorKind::InvalidInput), Attempt::Failed);
        let eagain = io::Error::from_raw_os_error(libc::EAGAIN);
        assert_eq!(classify_send_error(&eagain), Attempt::Busy);
    }

    /// How many frames the tests below send to a port that does not read: 1.4 MB, more than
    /// the kernel queues for a unix datagram socket (at most the sender's 208 KiB send
    /// buffer), less than an egress queue.
    const FLOOD: u16 = 1000;

    /// A 1400-byte frame from a (mac 1) to `dst`, carrying `number`.
    fn numbered(dst: MacAddr, number: u16) -> Vec<u8> {
        let mut payload = vec![0u8; 1386];
        payload[..2].copy_from_slice(&number.to_be_bytes());
        build::ethernet(dst, mac(1), 0x88b5, &payload)
    }

    fn number_of(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[14], frame[15]])
    }

    /// Makes the switch learn that mac 2 is behind b and mac 3 behind c, and takes the
    /// flooded announcements off the test ports.
    fn learn_b_and_c(ports: &[TestPort], observer: &Receiver<Observed>) {
        for (from, last) in [(1, 2), (2, 3)] {
            let hello = build::ethernet(MacAddr::BROADCAST, mac(last), 0x88b5, b"hello");
            ports[from].send(&hello).expect("sent");
            observer
                .recv_timeout(WAIT)
                .expect("the announcement observed");
        }
        for (port, count) in [(0, 2), (1, 1), (2, 1)] {
            for _ in 0..count {
                ports[port].recv(WAIT).expect("the flooded announcement");
            }
        }
    }

    /// Waits until `count` frames have been observed (so switched: queued or dropped).
    fn await_observed(observer: &Receiver<Observed>, count: u16) {
        for seen in 0..count {
            if observer.recv_timeout(WAIT).is_err() {
                panic!("only {seen} of {count} frames switched within {WAIT:?} each");
            }
        }
    }

    #[test]
    fn a_slow_machine_does_not_delay_the_frames_to_another() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (switch, ports, observer) = three_ports(dir.path(), None);
        learn_b_and_c(&ports, &observer);
        // b does not read until c has all its frames.
        let started = Instant::now();
        for number in 0..FLOOD {
            ports[0].send(&numbered(mac(2), number)).expect("sent to b");
            ports[0].send(&numbered(mac(3), number)).expect("sent to c");
        }
        for number in 0..FLOOD {
            let frame = ports[2].recv(WAIT).expect("c's frame arrives");
            assert_eq!(number_of(&frame), number, "c's frames keep their order");
        }
        let fast = started.elapsed();
        // Blocking on b for even a millisecond per frame would take longer; the old switch
        // took 20 ms per frame.
        assert!(
            fast < Duration::from_secs(1),
            "c got its {FLOOD} frames in {fast:?} while b was not reading"
        );
        let counters = switch.counters();
        assert!(
            counters.ports[1].sent < u64::from(FLOOD),
            "b's socket cannot hold all its frames, so some waited in the switch: {counters:?}"
        );
        assert!(counters.ports[1].queue_peak_bytes > 0, "{counters:?}");
        for number in 0..FLOOD {
            let frame = ports[1].recv(WAIT).expect("b's frame arrives once b reads");
            assert_eq!(number_of(&frame), number, "b's frames keep their order");
        }
        let counters = switch
            .wait_counters(WAIT, |c| c.ports[1].sent == u64::from(FLOOD) + 1)
            .expect("every frame to b counted as sent (and c's announcement)");
        assert_eq!(counters.ports[1].undeliverable(), 0, "{counters:?}");
        assert_eq!(counters.ports[2].undeliverable(), 0, "{counters:?}");
    }

    /// The number in a summary line `... DROPPED at b (queue full): N more frames ...`.
    fn summarised_drops(line: &str) -> Option<u64> {
        let (_, rest) = line.split_once("DROPPED at b (queue full): ")?;
        rest.strip_suffix(" more frames within 1 s of the one logged")?
            .parse()
            .ok()
    }

    #[test]
    fn a_full_queue_drops_the_newest_frames_and_counts_and_logs_them() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut builder = SwitchBuilder::new(dir.path(), &dir.path().join("frames.log"))
            .queue_limits(QueueLimits {
                frames: 8,
                bytes: 1 << 20,
            });
        let ids: Vec<PortId> = ["a", "b", "c"].map(|n| builder.add_port(n)).into();
        let switch = builder.start().expect("the switch starts");
        let observer = switch.observe();
        let ports: Vec<TestPort> = ids
            .iter()
            .map(|&id| switch.test_port(id).expect("a test port binds"))
            .collect();
        learn_b_and_c(&ports, &observer);
        for number in 0..FLOOD {
            ports[0].send(&numbered(mac(2), number)).expect("sent to b");
        }
        await_observed(&observer, FLOOD);
        let dropped = switch.counters().ports[1].queue_full;
        assert!(dropped > 0, "8 frames of queue overflow");
        // The frames that fit arrive in order; which ones fit depends on how fast b's egress
        // thread filled b's socket meanwhile.
        let kept = u64::from(FLOOD) - dropped;
        let mut previous = None;
        for _ in 0..kept {
            let number = number_of(&ports[1].recv(WAIT).expect("a frame that fit arrives"));
            assert!(previous < Some(number), "{number} after {previous:?}");
            previous = Some(number);
        }
        assert_eq!(ports[1].recv(Duration::from_millis(100)), None, "no more");
        switch
            .wait_counters(WAIT, |c| c.ports[1].sent == kept + 1)
            .expect("every kept frame counted as sent (and c's announcement)");
        let log_path = switch.log_path().to_path_buf();
        // Stopping writes the summary of the last window.
        drop(switch);
        let log = fs::read_to_string(log_path).expect("the frame log");
        let in_full = log
            .lines()
            .filter(|l| l.contains(" a DROPPED at b (queue full): 52:54:00:00:00:01 >"))
            .count();
        let summarised: u64 = log.lines().filter_map(summarised_drops).sum();
        assert!(
            (1..=3).contains(&in_full),
            "{in_full} drops logged in full:\n{log}"
        );
        assert_eq!(in_full as u64 + summarised, dropped, "{log}");
    }

    #[test]
    fn cutting_a_link_drops_the_frames_waiting_for_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (switch, ports, observer) = three_ports(dir.path(), None);
        learn_b_and_c(&ports, &observer);
        for number in 0..FLOOD {
            ports[0].send(&numbered(mac(2), number)).expect("sent to b");
        }
        await_observed(&observer, FLOOD);
        switch.cut(PortId(1));
        switch.restore(PortId(1));
        ports[0].send(&numbered(mac(2), FLOOD)).expect("sent to b");
        // b gets what its socket held before the cut (and maybe the frame being sent at
        // the cut), then the frame sent after the restore.
        let mut before_cut = 0;
        loop {
            let frame = ports[1].recv(WAIT).expect("b's frames arrive");
            if number_of(&frame) == FLOOD {
                break;
            }
            assert_eq!(number_of(&frame), before_cut, "in order");
            before_cut += 1;
        }
        assert!(before_cut < FLOOD, "the queued frames were not delivered");
        let counters = switch
            .wait_counters(WAIT, |c| {
                c.ports[1].sent + c.ports[1].link_cut == u64::from(FLOOD) + 2
            })
            .expect("every frame to b sent or dropped for the cut");
        assert_eq!(counters.ports[1].sent, u64::from(before_cut) + 2);
        assert_eq!(
            counters.ports[1].undeliverable(),
            counters.ports[1].link_cut
        );
    }

    #[test]
    fn stopping_does_not_wait_for_a_machine_that_does_not_read() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (switch, ports, observer) = three_ports(dir.path(), None);
        learn_b_and_c(&ports, &observer);
        for number in 0..FLOOD {
            ports[0].send(&numbered(mac(2), number)).expect("sent to b");
        }
        await_observed(&observer, FLOOD);
        let counters = switch.counters();
        assert!(
            counters.ports[1].sent < u64::from(FLOOD),
            "b's egress thread is blocked on b: {counters:?}"
        );
        let stopping = Instant::now();
        drop(switch);
        let stopped = stopping.elapsed();
        assert!(
            stopped < SEND_TIMEOUT / 2,
            "stopping took {stopped:?} with frames waiting for b"
        );
    }

    #[test]
    fn a_port_without_a_machine_counts_its_frames_and_logs_it_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut builder = SwitchBuilder::new(dir.path(), &dir.path().join("frames.log"));
        let a = builder.add_port("a");
        let b = builder.add_port("b");
        builder.add_port("off");
        let switch = builder.start().expect("the switch starts");
        let ports = [a, b].map(|id| switch.test_port(id).expect("a test port binds"));
        for number in 0..100 {
            ports[0]
                .send(&numbered(MacAddr::BROADCAST, number))
                .expect("sent");
        }
        for number in 0..100 {
            let frame = ports[1].recv(WAIT).expect("b gets the broadcast");
            assert_eq!(number_of(&frame), number);
        }
        let counters = switch
            .wait_counters(WAIT, |c| c.ports[2].not_listening == 100)
            .expect("every frame to the port without a machine counted");
        assert_eq!(counters.ports[2].sent, 0);
        assert_eq!(counters.ports[2].undeliverable(), 100);
        let log = fs::read_to_string(switch.log_path()).expect("the frame log");
        assert_eq!(
            log.matches("off: no machine is listening").count(),
            1,
            "{log}"
        );
        assert!(!log.contains("DROPPED at off"), "{log}");
    }
}
