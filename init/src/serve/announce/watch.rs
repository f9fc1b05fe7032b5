//! The running side of the announce protocol: one UDP socket, a probe before serving,
//! announcements while serving, and orders to the boot service.
//!
//! [`Watch`] is the state machine (pure: it is given the time and what was heard, and says
//! what to order); [`spawn`] runs it on a thread with the socket and sends its [`Order`]s on
//! a channel. Every decision about another server is logged with the server's address and
//! the reason: at info level the first time (or when it changes), at debug level after, so
//! a server announcing every 2 s does not fill the log.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::decide::{decide, Reason, Verdict};
use super::wire::{self, Announcement, DecodeError, Heard, InvalidAnnouncement, MAX_DATAGRAM};
use super::{ANNOUNCE_PORT, DEFAULT_INTERVAL, DEFAULT_SETTLE};
use crate::rand::{random_seed, XorShift};

/// How long a receive waits at most before the thread checks whether it should stop.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// The shortest receive timeout (a zero timeout would mean "block forever").
const MIN_WAIT: Duration = Duration::from_millis(1);
/// The shortest interval between announcements, whatever the configuration says.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// A pause after a failed receive, so a persistent error does not spin the CPU and the log.
const ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Log lines remembered to log them once at info level; past this many (spoofed senders),
/// the memory is reset rather than grown without bound.
const MAX_REMEMBERED_LINES: usize = 256;

/// Where and how often a server announces itself, and how long it probes.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// The UDP port announcements are sent to and received on ([`ANNOUNCE_PORT`]).
    pub port: u16,
    /// Where announcements are sent: 255.255.255.255, or 127.255.255.255 for tests on
    /// loopback.
    pub destination: Ipv4Addr,
    /// Bind the socket to this interface only (SO_BINDTODEVICE); without one, broadcasts
    /// leave by the default route's interface.
    pub interface: Option<String>,
    /// How long to listen before serving.
    pub settle: Duration,
    /// How often to announce (at least 10 ms).
    pub interval: Duration,
    /// The interval varies by up to this fraction either way (0.25: ±25 %).
    pub jitter: f64,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            port: ANNOUNCE_PORT,
            destination: Ipv4Addr::BROADCAST,
            interface: None,
            settle: DEFAULT_SETTLE,
            interval: DEFAULT_INTERVAL,
            jitter: 0.25,
        }
    }
}

/// What the watcher tells the boot service to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// The probe is over and no server won against us: start serving, only the
    /// configuration's MACs if another cluster was heard.
    Serve {
        /// Answer only the MACs of our configuration.
        only_own_macs: bool,
    },
    /// Another cluster's server appeared while we serve: answer only our MACs from now on.
    RestrictToOwnMacs {
        /// Where it was heard from.
        peer: SocketAddr,
        /// Its cluster ID (unverified).
        other_cluster: String,
    },
    /// Stop serving, for good (or never start): sent at most once, and last.
    StandDown {
        /// The server that made us stand down.
        peer: SocketAddr,
        /// Why ([`Verdict::StandDown`] or [`Verdict::RefuseToServe`]).
        verdict: Verdict,
    },
}

impl std::fmt::Display for Order {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Order::Serve {
                only_own_macs: false,
            } => write!(f, "no other PXEN boot server heard: serve"),
            Order::Serve {
                only_own_macs: true,
            } => write!(
                f,
                "no other PXEN boot server of this cluster heard, but another cluster's: serve \
                 only this cluster's MAC addresses"
            ),
            Order::RestrictToOwnMacs {
                peer,
                other_cluster,
            } => write!(
                f,
                "a boot server of another cluster ({other_cluster}) appeared at {peer}: serve \
                 only this cluster's MAC addresses from now on"
            ),
            Order::StandDown { peer, verdict } => {
                write!(f, "{verdict} (the boot server at {peer})")
            }
        }
    }
}

/// Where the watcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listening before serving.
    Probing,
    /// Serving, announcing and listening.
    Serving,
    /// Stood down (or refused to serve): silent, for good.
    StoodDown,
}

/// The announce protocol's state machine for one server.
#[derive(Debug, Clone)]
pub struct Watch {
    me: Announcement,
    knows_macs: bool,
    settle: Duration,
    phase: Phase,
    only_own_macs: bool,
}

impl Watch {
    /// A server about to probe, announcing `me` (its `serving` flag is managed here);
    /// `knows_macs` tells whether its configuration lists MACs.
    pub fn new(me: Announcement, knows_macs: bool, settle: Duration) -> Watch {
        Watch {
            me: Announcement {
                serving: false,
                ..me
            },
            knows_macs,
            settle,
            phase: Phase::Probing,
            only_own_macs: false,
        }
    }

    /// Where it is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// What to announce now; nothing once stood down.
    pub fn announcement(&self) -> Option<&Announcement> {
        (self.phase != Phase::StoodDown).then_some(&self.me)
    }

    /// How long the probe still lasts at `elapsed` since the start (`None` once it is over).
    pub fn settle_left(&self, elapsed: Duration) -> Option<Duration> {
        (self.phase == Phase::Probing).then(|| self.settle.saturating_sub(elapsed))
    }

    /// Moves on with time: at the end of the settle time, orders to serve.
    pub fn tick(&mut self, elapsed: Duration) -> Option<Order> {
        if self.phase != Phase::Probing || elapsed < self.settle {
            return None;
        }
        self.phase = Phase::Serving;
        self.me.serving = true;
        Some(Order::Serve {
            only_own_macs: self.only_own_macs,
        })
    }

    /// Decides about a server heard from `peer`; returns the verdict (to log) and the order
    /// it leads to, if any.
    pub fn hear(&mut self, heard: &Heard, peer: SocketAddr) -> (Verdict, Option<Order>) {
        let verdict = decide(&self.me, self.knows_macs, heard);
        if self.phase == Phase::StoodDown {
            return (verdict, None);
        }
        let order = match &verdict {
            Verdict::KeepServing { .. } => None,
            Verdict::StandDown { .. } | Verdict::RefuseToServe { .. } => {
                self.phase = Phase::StoodDown;
                Some(Order::StandDown {
                    peer,
                    verdict: verdict.clone(),
                })
            }
            // Restricting is remembered: a probing server starts restricted.
            Verdict::ServeOnlyOwnMacs { other_cluster } if !self.only_own_macs => {
                self.only_own_macs = true;
                (self.phase == Phase::Serving).then(|| Order::RestrictToOwnMacs {
                    peer,
                    other_cluster: other_cluster.clone(),
                })
            }
            Verdict::ServeOnlyOwnMacs { .. } => None,
        };
        (verdict, order)
    }
}

/// A step of starting the watcher that failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Our own announcement would be refused by every other server.
    #[error("announce: this server's own announcement is invalid: {0}; the drive's identity file is malformed, rewrite the drive with ./mkimage")]
    OwnAnnouncement(#[from] InvalidAnnouncement),
    /// The socket could not be made or bound.
    #[error("announce: cannot listen on UDP {addr}{on}: {source} (SO_BINDTODEVICE needs CAP_NET_RAW; is the interface there?)")]
    Bind {
        /// The address.
        addr: SocketAddrV4,
        /// " on `IFACE`" when bound to an interface.
        on: String,
        /// The system's error.
        source: io::Error,
    },
    /// The thread could not be started.
    #[error("announce: cannot start the announce thread: {0}")]
    Thread(io::Error),
}

/// The running watcher; dropping it stops the thread (without waiting for it).
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// Stops the watcher and waits for its thread (at most about 200 ms).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            // A thread that panicked has nothing more to clean up.
            let _ = thread.join();
        }
    }

    /// True once the watcher is silent: it stood down, was stopped, or its orders have no
    /// receiver left.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts probing and announcing `me`, signed with `secret`; its orders come on the
/// returned channel (the channel closes when the watcher ends). `knows_macs` tells whether
/// the configuration lists MACs.
pub fn spawn(
    config: &WatchConfig,
    secret: &[u8],
    me: Announcement,
    knows_macs: bool,
) -> Result<(WatchHandle, mpsc::Receiver<Order>), WatchError> {
    me.validate()?;
    let socket = bind(config)?;
    let (orders, received) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let running = Running {
        socket,
        secret: secret.to_vec(),
        destination: SocketAddrV4::new(config.destination, config.port),
        interval: config.interval.max(MIN_INTERVAL),
        jitter: config.jitter,
        orders,
        stop: stop.clone(),
        remembered: HashSet::new(),
        send_failing: false,
    };
    let watch = Watch::new(me, knows_macs, config.settle);
    log::info!(
        "announce: listening on UDP port {} for {:.1}s for other PXEN boot servers before serving",
        config.port,
        config.settle.as_secs_f64()
    );
    let thread = std::thread::Builder::new()
        .name("pxen-announce".into())
        .spawn(move || running.run(watch))
        .map_err(WatchError::Thread)?;
    Ok((
        WatchHandle {
            stop,
            thread: Some(thread),
        },
        received,
    ))
}

fn bind(config: &WatchConfig) -> Result<UdpSocket, WatchError> {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port);
    let error = |source| WatchError::Bind {
        addr,
        on: config
            .interface
            .as_ref()
            .map(|i| format!(" on `{i}`"))
            .unwrap_or_default(),
        source,
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(error)?;
    // Several servers on one machine (tests, a `pxen serve` beside host0) each get a copy of
    // every broadcast.
    socket.set_reuse_address(true).map_err(error)?;
    socket.set_broadcast(true).map_err(error)?;
    if let Some(interface) = &config.interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(error)?;
    }
    socket.bind(&addr.into()).map_err(error)?;
    socket
        .set_read_timeout(Some(STOP_CHECK_INTERVAL))
        .map_err(error)?;
    Ok(socket.into())
}

/// What the watcher's thread owns.
struct Running {
    socket: UdpSocket,
    secret: Vec<u8>,
    destination: SocketAddrV4,
    interval: Duration,
    jitter: f64,
    orders: mpsc::Sender<Order>,
    stop: Arc<AtomicBool>,
    /// Log lines already logged at info level.
    remembered: HashSet<String>,
    /// Whether the last announcement could not be sent (its failure was logged).
    send_failing: bool,
}

impl Running {
    /// Probes, serves and listens until it stands down, is stopped, or the service is gone.
    fn run(mut self, mut watch: Watch) {
        let start = Instant::now();
        let mut rng = XorShift::new(random_seed());
        let mut next_announcement = Duration::ZERO;
        let mut buffer = [0u8; MAX_DATAGRAM + 1];
        let our_cluster = watch.me.cluster_id.clone();
        while !self.stop.load(Ordering::SeqCst) {
            let elapsed = start.elapsed();
            if let Some(order) = watch.tick(elapsed) {
                // Say at once that we serve now.
                next_announcement = elapsed;
                if !self.order(order) {
                    return;
                }
            }
            let Some(announcement) = watch.announcement() else {
                log::info!("announce: stood down; no longer announcing");
                return;
            };
            if elapsed >= next_announcement {
                self.announce(announcement);
                next_announcement = elapsed + jittered(self.interval, self.jitter, &mut rng);
            }
            let wake = watch
                .settle_left(elapsed)
                .map_or(next_announcement, |left| {
                    next_announcement.min(elapsed + left)
                });
            let wait = wake
                .saturating_sub(start.elapsed())
                .clamp(MIN_WAIT, STOP_CHECK_INTERVAL);
            // Cannot fail: the timeout is not zero, the only value the system refuses.
            let _ = self.socket.set_read_timeout(Some(wait));
            if let Some((len, peer)) = self.receive(&mut buffer) {
                match wire::decode(&self.secret, &our_cluster, &buffer[..len]) {
                    Ok(heard) => {
                        let (verdict, order) = watch.hear(&heard, peer);
                        self.log_verdict(&heard, peer, &verdict);
                        if let Some(order) = order {
                            if !self.order(order) {
                                return;
                            }
                        }
                    }
                    Err(error) => self.log_refused(peer, &error),
                }
            }
        }
        log::info!("announce: stopped");
    }

    /// Sends `order` to the service; false when the service is gone (nothing left to do).
    fn order(&self, order: Order) -> bool {
        match &order {
            // The verdict was just logged, and the service says what standing down stops.
            Order::StandDown { .. } => log::debug!("announce: {order}"),
            _ => log::info!("announce: {order}"),
        }
        self.orders.send(order).is_ok()
    }

    fn announce(&mut self, announcement: &Announcement) {
        let datagram = wire::encode(&self.secret, announcement);
        match self.socket.send_to(&datagram, self.destination) {
            Ok(_) if self.send_failing => {
                self.send_failing = false;
                log::info!("announce: announcing to {} again", self.destination);
            }
            Ok(_) => {}
            // Keep going: the LAN may come back (a cable plugged in, a route added). Logged
            // once until it works again, not every interval.
            Err(e) if !self.send_failing => {
                self.send_failing = true;
                log::warn!(
                    "announce: cannot send the announcement to {}: {e}; other PXEN boot servers \
                     cannot see this one until it can (is there a route for broadcasts, or an \
                     interface up?)",
                    self.destination
                );
            }
            Err(e) => log::debug!("announce: sending to {} still fails: {e}", self.destination),
        }
    }

    /// One datagram, or `None` when the wait ended without one.
    fn receive(&self, buffer: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match self.socket.recv_from(buffer) {
            Ok(received) => Some(received),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => {
                log::warn!("announce: receiving failed: {e}; still listening");
                std::thread::sleep(ERROR_PAUSE);
                None
            }
        }
    }

    fn log_verdict(&mut self, heard: &Heard, peer: SocketAddr, verdict: &Verdict) {
        let line = match heard {
            Heard::SameCluster(other) => format!(
                "heard {} boot server {} of this cluster at {peer} (serving from {}): {verdict}",
                if other.serving { "the" } else { "a starting" },
                other.server_id,
                other.address
            ),
            Heard::OtherCluster { .. } => {
                format!("heard a boot server of another cluster at {peer}: {verdict}")
            }
        };
        if matches!(
            verdict,
            Verdict::KeepServing {
                reason: Reason::OwnAnnouncement
            }
        ) {
            log::debug!("announce: {line}");
        } else {
            self.log_once(log::Level::Info, line);
        }
    }

    fn log_refused(&mut self, peer: SocketAddr, error: &DecodeError) {
        match error {
            // Anything may arrive on a UDP port; only a PXEN server's mistakes are worth a
            // warning.
            DecodeError::TooLong { .. } | DecodeError::NotAnnouncement => {
                log::debug!("announce: ignoring a datagram from {peer}: {error}")
            }
            _ => self.log_once(
                log::Level::Warn,
                format!("ignoring a datagram from {peer}: {error}"),
            ),
        }
    }

    /// Logs `line` at `level` the first time, at debug level after.
    fn log_once(&mut self, level: log::Level, line: String) {
        if self.remembered.contains(&line) {
            log::debug!("announce: {line}");
            return;
        }
        log::log!(level, "announce: {line}");
        if self.remembered.len() >= MAX_REMEMBERED_LINES {
            self.remembered.clear();
        }
        self.remembered.insert(line);
    }
}

/// `interval` varied by up to `jitter` either way, so servers started together drift apart.
fn jittered(interval: Duration, jitter: f64, rng: &mut XorShift) -> Duration {
    let factor = 1.0 + jitter.clamp(0.0, 0.9) * rng.signed_unit();
    // A NaN jitter (clamp keeps NaN) gives no valid duration: no jitter then.
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor)
        .unwrap_or(interval)
        .max(MIN_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster_id;
    use crate::serve::announce::wire::tests::SECRET;

    const LOW_DRIVE: &str = "10000000000000000000000000000000";
    const HIGH_DRIVE: &str = "20000000000000000000000000000000";
    const OTHER_SECRET: &str = "another-cluster-secret-4567";
    /// How long a test waits for an order that must come.
    const DEADLINE: Duration = Duration::from_secs(10);
    /// A settle time no test waits for: the only order before it can be a stand-down.
    const LONG_SETTLE: Duration = Duration::from_secs(60);

    fn server(secret: &str, drive: &str, counter: u64, server_id: &str) -> Announcement {
        Announcement {
            cluster_id: cluster_id(secret),
            drive_id: drive.into(),
            stamp_counter: counter,
            stamp_time: 1_795_000_000 + counter,
            server_id: server_id.into(),
            address: Ipv4Addr::LOCALHOST,
            serving: false,
        }
    }

    fn peer() -> SocketAddr {
        "10.77.0.9:7911".parse().unwrap()
    }

    // The state machine alone.

    #[test]
    fn a_lone_probe_serves_once_the_settle_time_is_over() {
        let me = server(SECRET, LOW_DRIVE, 1, "0000000000000001");
        let mut watch = Watch::new(me.clone(), false, Duration::from_secs(6));
        assert!(!watch.announcement().unwrap().serving);
        assert_eq!(
            watch.settle_left(Duration::from_secs(2)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(watch.tick(Duration::from_millis(5999)), None);
        let (verdict, order) = watch.hear(&Heard::SameCluster(me), peer());
        assert_eq!((verdict.keeps_serving(), order), (true, None), "own echo");
        assert_eq!(
            watch.tick(Duration::from_secs(6)),
            Some(Order::Serve {
                only_own_macs: false
            })
        );
        assert_eq!(watch.phase(), Phase::Serving);
        assert!(watch.announcement().unwrap().serving);
        assert_eq!(watch.settle_left(Duration::from_secs(7)), None);
        assert_eq!(
            watch.tick(Duration::from_secs(8)),
            None,
            "serve is ordered once"
        );
    }

    #[test]
    fn a_probe_that_hears_a_winner_never_serves() {
        let mut watch = Watch::new(
            server(SECRET, HIGH_DRIVE, 1, "0000000000000002"),
            true,
            Duration::from_secs(6),
        );
        let winner = Heard::SameCluster(server(SECRET, LOW_DRIVE, 1, "0000000000000001"));
        let (verdict, order) = watch.hear(&winner, peer());
        assert!(matches!(verdict, Verdict::StandDown { .. }), "{verdict}");
        assert_eq!(
            order,
            Some(Order::StandDown {
                peer: peer(),
                verdict
            })
        );
        assert_eq!(watch.phase(), Phase::StoodDown);
        assert_eq!(watch.announcement(), None);
        assert_eq!(watch.tick(Duration::from_secs(60)), None);
        assert_eq!(watch.hear(&winner, peer()).1, None, "stand down once");
    }

    #[test]
    fn another_cluster_restricts_a_probe_from_the_start_and_a_server_once() {
        let other = Heard::OtherCluster {
            cluster_id: cluster_id(OTHER_SECRET),
        };
        let me = server(SECRET, LOW_DRIVE, 1, "0000000000000001");
        let mut probing = Watch::new(me.clone(), true, Duration::ZERO);
        assert_eq!(probing.hear(&other, peer()).1, None);
        assert_eq!(
            probing.tick(Duration::ZERO),
            Some(Order::Serve {
                only_own_macs: true
            })
        );

        let mut serving = Watch::new(me.clone(), true, Duration::ZERO);
        assert!(serving.tick(Duration::ZERO).is_some());
        assert_eq!(
            serving.hear(&other, peer()).1,
            Some(Order::RestrictToOwnMacs {
                peer: peer(),
                other_cluster: cluster_id(OTHER_SECRET)
            })
        );
        assert_eq!(serving.hear(&other, peer()).1, None, "restricted once");
        assert_eq!(serving.phase(), Phase::Serving);

        let mut without_macs = Watch::new(me, false, Duration::ZERO);
        assert!(without_macs.tick(Duration::ZERO).is_some());
        let (verdict, order) = without_macs.hear(&other, peer());
        assert!(
            matches!(verdict, Verdict::RefuseToServe { .. }),
            "{verdict}"
        );
        assert!(matches!(order, Some(Order::StandDown { .. })), "{order:?}");
        assert_eq!(without_macs.phase(), Phase::StoodDown);
    }

    #[test]
    fn jitter_stays_within_its_bounds_whatever_it_is_given() {
        let mut rng = XorShift::new(3);
        let interval = Duration::from_secs(2);
        for _ in 0..1000 {
            let wait = jittered(interval, 0.25, &mut rng);
            assert!(
                (Duration::from_millis(1500)..=Duration::from_millis(2500)).contains(&wait),
                "{wait:?}"
            );
        }
        assert_eq!(jittered(interval, f64::NAN, &mut rng), interval);
        assert!(jittered(interval, 50.0, &mut rng) >= MIN_INTERVAL);
        assert_eq!(jittered(Duration::ZERO, 0.0, &mut rng), MIN_INTERVAL);
    }

    // Watchers on loopback: announcements broadcast to 127.255.255.255 on a port of the test's
    // own, which every watcher of the test binds.

    /// A free UDP port: bound by the system, then released for the watchers to share.
    fn free_port() -> u16 {
        UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn loopback(port: u16, settle: Duration) -> WatchConfig {
        WatchConfig {
            port,
            destination: Ipv4Addr::new(127, 255, 255, 255),
            interface: None,
            settle,
            interval: Duration::from_millis(50),
            jitter: 0.25,
        }
    }

    struct Watcher {
        handle: WatchHandle,
        orders: mpsc::Receiver<Order>,
    }

    fn start(config: &WatchConfig, secret: &str, me: Announcement, knows_macs: bool) -> Watcher {
        let (handle, orders) = spawn(config, secret.as_bytes(), me, knows_macs).unwrap();
        Watcher { handle, orders }
    }

    impl Watcher {
        fn expect(&self, awaited: &str) -> Order {
            self.orders
                .recv_timeout(DEADLINE)
                .unwrap_or_else(|e| panic!("{awaited}: no order within {DEADLINE:?} ({e})"))
        }

        /// After a stand-down the watcher ends: its channel closes, with no other order.
        fn expect_silence_for_good(&self, who: &str) {
            match self.orders.recv_timeout(DEADLINE) {
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
                other => {
                    panic!("{who}: expected the watcher to end after standing down, got {other:?}")
                }
            }
        }
    }

    fn expect_stand_down(order: Order) -> Reason {
        match order {
            Order::StandDown {
                verdict: Verdict::StandDown { reason },
                ..
            } => reason,
            other => panic!("expected a stand-down, got {other:?}"),
        }
    }

    #[test]
    fn a_server_heard_during_the_settle_time_keeps_the_newcomer_from_serving() {
        let port = free_port();
        let first = start(
            &loopback(port, Duration::ZERO),
            SECRET,
            server(SECRET, LOW_DRIVE, 1, "0000000000000001"),
            false,
        );
        assert_eq!(
            first.expect("the first server's order to serve"),
            Order::Serve {
                only_own_macs: false
            }
        );
        let newcomer = start(
            &loopback(port, LONG_SETTLE),
            SECRET,
            server(SECRET, HIGH_DRIVE, 1, "0000000000000002"),
            false,
        );
        let reason = expect_stand_down(newcomer.expect("the newcomer's stand-down"));
        assert_eq!(
            reason,
            Reason::DriveId {
                ours: HIGH_DRIVE.into(),
                theirs: LOW_DRIVE.into()
            }
        );
        newcomer.expect_silence_for_good("the newcomer");
        assert_eq!(
            first.orders.try_recv(),
            Err(mpsc::TryRecvError::Empty),
            "the first server goes on serving"
        );
        assert!(!first.handle.is_finished());
        first.handle.stop();
    }

    #[test]
    fn two_servers_starting_together_exactly_one_serves() {
        let port = free_port();
        let settle = Duration::from_millis(800);
        let high = start(
            &loopback(port, settle),
            SECRET,
            server(SECRET, HIGH_DRIVE, 1, "0000000000000002"),
            false,
        );
        let low = start(
            &loopback(port, settle),
            SECRET,
            server(SECRET, LOW_DRIVE, 1, "0000000000000001"),
            false,
        );
        expect_stand_down(high.expect("the higher drive's stand-down"));
        assert_eq!(
            low.expect("the lower drive's order to serve"),
            Order::Serve {
                only_own_macs: false
            }
        );
        high.expect_silence_for_good("the higher drive");
        assert_eq!(low.orders.try_recv(), Err(mpsc::TryRecvError::Empty));
        low.handle.stop();
    }

    #[test]
    fn a_second_server_appearing_makes_the_right_one_stand_down() {
        // (serving first, appearing second, the reason the first stands down)
        let cases = [
            (
                "another drive with a lower ID",
                server(SECRET, HIGH_DRIVE, 9, "0000000000000001"),
                server(SECRET, LOW_DRIVE, 1, "0000000000000002"),
                Reason::DriveId {
                    ours: HIGH_DRIVE.into(),
                    theirs: LOW_DRIVE.into(),
                },
            ),
            (
                "the same drive with a newer stamp: the first is a clone",
                server(SECRET, LOW_DRIVE, 5, "0000000000000001"),
                server(SECRET, LOW_DRIVE, 6, "0000000000000002"),
                Reason::Stamp {
                    drive_id: LOW_DRIVE.into(),
                    ours: crate::serve::announce::decide::Stamp {
                        counter: 5,
                        time: 1_795_000_005,
                    },
                    theirs: crate::serve::announce::decide::Stamp {
                        counter: 6,
                        time: 1_795_000_006,
                    },
                },
            ),
        ];
        for (case, first_me, second_me, reason) in cases {
            let port = free_port();
            let first = start(&loopback(port, Duration::ZERO), SECRET, first_me, true);
            assert!(
                matches!(first.expect(case), Order::Serve { .. }),
                "{case}: the first serves"
            );
            let second = start(
                &loopback(port, Duration::from_millis(300)),
                SECRET,
                second_me,
                true,
            );
            assert_eq!(
                second.expect(case),
                Order::Serve {
                    only_own_macs: false
                },
                "{case}: the second serves"
            );
            assert_eq!(expect_stand_down(first.expect(case)), reason, "{case}");
            first.expect_silence_for_good(case);
            second.handle.stop();
        }
    }

    #[test]
    fn two_clusters_on_one_lan_restrict_or_refuse() {
        let port = free_port();
        let with_macs = start(
            &loopback(port, Duration::ZERO),
            SECRET,
            server(SECRET, LOW_DRIVE, 1, "0000000000000001"),
            true,
        );
        assert!(matches!(
            with_macs.expect("the first cluster's order to serve"),
            Order::Serve { .. }
        ));
        let without_macs = start(
            &loopback(port, LONG_SETTLE),
            OTHER_SECRET,
            server(OTHER_SECRET, HIGH_DRIVE, 1, "0000000000000002"),
            false,
        );
        match without_macs.expect("the refusal of the cluster without MACs") {
            Order::StandDown {
                verdict: Verdict::RefuseToServe { other_cluster },
                ..
            } => assert_eq!(other_cluster, cluster_id(SECRET)),
            other => panic!("expected a refusal, got {other:?}"),
        }
        match with_macs.expect("the restriction of the cluster with MACs") {
            Order::RestrictToOwnMacs { other_cluster, .. } => {
                assert_eq!(other_cluster, cluster_id(OTHER_SECRET))
            }
            other => panic!("expected a restriction, got {other:?}"),
        }
        with_macs.handle.stop();
    }
}
