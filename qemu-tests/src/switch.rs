//! Our own Ethernet switch: the virtual LAN between QEMU machines.
//!
//! Each port is a pair of unix datagram sockets: the switch binds `<dir>/<port>.sw.sock`,
//! the machine (QEMU's `-netdev dgram`, see [`Switch::netdev_arg`]) binds
//! `<dir>/<port>.vm.sock`, and every datagram is one Ethernet frame. One thread per port
//! receives what its machine sends; the switch learns which port each source MAC is behind,
//! sends unicast frames to the learned port only and floods broadcast, multicast and unknown
//! destinations to every other port, as a real learning switch does.
//!
//! It also is the test's eye and hand on the LAN:
//! - every frame is logged in one line ([`FrameSummary`]) to the run's log file, and sent to
//!   every observer ([`Switch::observe`]) with where it went, and counted ([`Counters`]);
//! - a Wake-on-LAN magic packet calls the wake callback with its target MAC (the cluster's
//!   power button);
//! - faults can be injected per port ([`Faults`]): frames sent by that port's machine are
//!   dropped with a probability (from a PRNG seeded per port, so a run repeats) and delayed;
//!   a cut link ([`Switch::cut`]) passes nothing in either direction until restored.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, LineWriter, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;
use pxen::rand::XorShift;

use crate::frame::FrameSummary;

/// The largest frame a port accepts (a jumbo frame; QEMU's NICs send at most 1514 bytes
/// plus a VLAN tag, but a larger datagram must not be cut silently).
const MAX_FRAME: usize = 9216;

/// How often a port thread looks at the stop flag when nothing arrives.
const POLL: Duration = Duration::from_millis(50);

/// How long sending to a machine may block when its receive queue is full (QEMU paused or
/// slow) before the frame is counted undeliverable: one stuck machine must not stall the LAN.
const SEND_TIMEOUT: Duration = Duration::from_millis(20);

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

/// What the switch did with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Sent to these ports (several when flooded; none when the destination is behind the
    /// port it came from).
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
    /// Frames sent to the port's machine.
    pub sent: u64,
    /// Frames from the machine dropped by an injected fault or a cut link.
    pub dropped: u64,
    /// Frames for the machine that could not be delivered: it is not running (its socket
    /// does not exist) or did not read its socket in time, or the link is cut.
    pub undeliverable: u64,
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
    #[error("cannot start the switch thread of port {port}: {source}")]
    Thread {
        /// The port's name.
        port: String,
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

/// Builds a [`Switch`]: name its ports, then start it.
pub struct SwitchBuilder {
    socket_dir: PathBuf,
    log_path: PathBuf,
    seed: u64,
    ports: Vec<String>,
    on_wake: Option<WakeCallback>,
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
        let shared = Arc::new(Shared {
            started: Instant::now(),
            stop: AtomicBool::new(false),
            sockets,
            paths,
            table: Mutex::new(MacTable::default()),
            links,
            counters: Mutex::new(Counters {
                ports: vec![PortCounters::default(); self.ports.len()],
                ..Counters::default()
            }),
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
            let port_shared = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name(format!("switch-{}", shared.paths[index].name))
                .spawn(move || run_port(&port_shared, PortId(index)))
                .map_err(|source| SwitchError::Thread {
                    port: shared.paths[index].name.clone(),
                    source,
                })?;
            // On an error above, dropping `switch` stops the threads already started.
            switch.threads.push(thread);
        }
        log::info!(
            "switch: {} ports in {}, frame log {}",
            shared.paths.len(),
            self.socket_dir.display(),
            switch.log_path.display()
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
    socket
        .set_write_timeout(Some(SEND_TIMEOUT))
        .map_err(socket_error)?;
    Ok(socket)
}

struct Shared {
    started: Instant,
    stop: AtomicBool,
    sockets: Vec<UnixDatagram>,
    paths: Vec<PortPaths>,
    table: Mutex<MacTable>,
    links: Vec<Mutex<Link>>,
    counters: Mutex<Counters>,
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

/// The thread of one port: receives its machine's frames, applies its faults, switches them.
fn run_port(shared: &Shared, port: PortId) {
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

impl Shared {
    fn at(&self) -> Duration {
        self.started.elapsed()
    }

    /// A frame from `port`'s machine: drop it, hold it, or switch it, as the link says.
    fn admit(&self, port: PortId, frame: &[u8], held: &mut VecDeque<(Instant, Vec<u8>)>) {
        lock(&self.counters).ports[port.0].received += 1;
        let (up, dropped, delay) = {
            let mut link = lock(&self.links[port.0]);
            (link.up, link.up && link.should_drop(), link.faults.delay)
        };
        if !up || dropped {
            lock(&self.counters).ports[port.0].dropped += 1;
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

    /// Learns the source, sends the frame where it goes, and reports it.
    fn switch_frame(&self, ingress: PortId, frame: &[u8]) {
        let Some(summary) = FrameSummary::parse(frame) else {
            lock(&self.counters).runts += 1;
            self.log_line(&format!(
                "{} a {}-byte runt, dropped",
                self.paths[ingress.0].name,
                frame.len()
            ));
            return;
        };
        let destinations = {
            let mut table = lock(&self.table);
            table.learn(summary.src, ingress);
            table.destinations(ingress, summary.dst, self.paths.len())
        };
        let delivered: Vec<PortId> = destinations
            .into_iter()
            .filter(|&to| self.deliver(to, frame))
            .collect();
        self.report(ingress, summary, Fate::Forwarded(delivered));
        if let Some(target) = summary.wake {
            lock(&self.counters).wake_packets += 1;
            if let Some(on_wake) = &self.on_wake {
                on_wake(target);
            }
        }
    }

    /// Sends `frame` to the machine on `port`; false if it could not be delivered.
    fn deliver(&self, port: PortId, frame: &[u8]) -> bool {
        let up = lock(&self.links[port.0]).up;
        // No machine listening (not powered on yet, or off) is normal on this LAN: the frame
        // is lost as on a real cable with nothing plugged in.
        let sent = up
            && self.sockets[port.0]
                .send_to(frame, &self.paths[port.0].machine)
                .is_ok();
        let mut counters = lock(&self.counters);
        if sent {
            counters.ports[port.0].sent += 1;
        } else {
            counters.ports[port.0].undeliverable += 1;
        }
        sent
    }

    /// Logs the frame in one line and hands it to every observer still listening.
    fn report(&self, ingress: PortId, summary: FrameSummary, fate: Fate) {
        let at = self.at();
        let fate_text = match &fate {
            Fate::Forwarded(to) if to.is_empty() => "-> nobody".to_string(),
            Fate::Forwarded(to) => {
                let names: Vec<&str> = to.iter().map(|p| self.paths[p.0].name.as_str()).collect();
                format!("-> {}", names.join(","))
            }
            Fate::DroppedByFault => "DROPPED (fault)".to_string(),
            Fate::LinkCut => "DROPPED (link cut)".to_string(),
        };
        self.log_line(&format!(
            "{:>10.6} {} {fate_text}: {summary}",
            at.as_secs_f64(),
            self.paths[ingress.0].name
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

    /// The port `mac` was learned on, if it sent anything yet.
    pub fn port_of(&self, mac: MacAddr) -> Option<PortId> {
        lock(&self.shared.table).lookup(mac)
    }

    /// Sets the faults on the frames `port`'s machine sends.
    pub fn set_faults(&self, port: PortId, faults: Faults) {
        lock(&self.shared.links[port.0]).faults = faults;
    }

    /// Cuts `port`'s link: nothing passes either way until [`Switch::restore`].
    pub fn cut(&self, port: PortId) {
        lock(&self.shared.links[port.0]).up = false;
        log::info!("switch: link of {} cut", self.port(port).name);
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
        let counters = switch.counters();
        assert_eq!(counters.ports[0].received, 1);
        assert_eq!(counters.ports[0].sent, 1);
        assert_eq!(counters.ports[2].sent, 1);
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
        assert_eq!(counters.ports[1].undeliverable, 1);
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
}
