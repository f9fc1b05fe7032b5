//! The whole boot service: proxyDHCP, TFTP and HTTP serving one set of boot files.
//!
//! host0 runs it from its RAM copy of the drive; `pxen serve` runs it on any Linux machine
//! (and on loopback for tests and benchmarks).
//!
//! Before serving, it probes the LAN for other PXEN boot servers ([`super::announce`]) for
//! the settle time (6 s by default): nothing is served meanwhile. While serving it keeps
//! announcing itself and listening, and obeys the announce protocol's orders:
//! - another cluster's server appears: proxyDHCP answers only the MACs of the configuration;
//! - it loses to another server of the cluster, or shares the LAN with another cluster
//!   without a MAC list: it stands down. Standing down stops everything it served: proxyDHCP,
//!   TFTP, HTTP (boot files, status page and reports alike, so no page of a stood-down
//!   server can be mistaken for the cluster's) and Wake-on-LAN. The reason is logged on the
//!   console, and the host carries on as an ordinary host. Standing down is final for this
//!   run of the service.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::announce::watch::{self, Order, WatchConfig, WatchError, WatchHandle};
use super::announce::wire::Announcement;
use super::announce::{random_server_id, ServerIdentity};
use super::bootfiles::{BootFiles, BootFilesError};
use super::files::FileSource;
use super::http::status::{HostState, StatusBoard};
use super::http::{self, HttpConfig, HttpHandle};
use super::proxydhcp::answer::{ProxyContext, PxeSighting};
use super::proxydhcp::server::{
    self as dhcp_server, ProxyDhcpConfig, ProxyDhcpHandle, ServerError,
};
use super::reports::ReportRoute;
use super::tftp::{self, TftpConfig, TftpEvent, TftpHandle};
use crate::config::{cluster_id, Cluster};
use crate::net::mac::MacAddr;
use crate::rand::random_seed;
use crate::report::client::REPORT_PATH;
use crate::state::store::{StateRoute, STATE_PATH_PREFIX};
use crate::wol::schedule::Backoff;
use crate::wol::send::{spawn_waker, SendError, Sender, SenderConfig, WakerHandle};

/// What to serve, where.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The drive's boot files (`syslinux.cfg`, `xen.gz`, `vmlinuz`, `initrd.img`, PXELINUX).
    pub root: PathBuf,
    /// The cluster configuration appended to the served initramfs.
    pub config_dir: PathBuf,
    /// The cluster configuration: its name and hosts for the status page, its secret for the
    /// hosts' reports.
    pub cluster: Cluster,
    /// Why the configuration served is not the drive's current one (see
    /// `config::Chosen::notice`), shown atop the status page; `None` when it is.
    pub config_notice: Option<Vec<String>>,
    /// The address clients reach this server at, written into the boot files.
    pub address: Ipv4Addr,
    /// The address TFTP and HTTP listen on: host0 listens on all (0.0.0.0), so it keeps
    /// serving when its address moves to the Xen bridge.
    pub listen: Ipv4Addr,
    /// The HTTP port.
    pub http_port: u16,
    /// The TFTP port (69 for PXE firmware).
    pub tftp_port: u16,
    /// The proxyDHCP ports (67 and 4011 for PXE firmware); `None` serves no proxyDHCP.
    pub proxydhcp_ports: Option<(u16, u16)>,
    /// Bind proxyDHCP to this interface only.
    pub interface: Option<String>,
    /// The hosts to power on with Wake-on-LAN, until each reports online or the deadline
    /// passes.
    pub wake: Vec<MacAddr>,
    /// The interface Wake-on-LAN frames (EtherType 0x0842) go out on, beside the UDP
    /// broadcasts.
    pub wake_interface: Option<String>,
    /// The drive served, as the announce protocol compares it with other servers': host0
    /// gives its drive's ID and stamp. `None` (`pxen serve` on a directory) announces a random
    /// drive ID without a stamp ([`ServerIdentity::without_drive`]).
    pub identity: Option<ServerIdentity>,
    /// The announce protocol: port, destination, settle time, interval.
    pub announce: WatchConfig,
}

/// A part of the boot service that could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The boot files could not be prepared.
    #[error(transparent)]
    BootFiles(#[from] BootFilesError),
    /// The TFTP server could not bind.
    #[error("cannot start the TFTP server on {addr}: {source}; is another TFTP server running?")]
    Tftp {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server could not bind.
    #[error("cannot start the HTTP server on {addr}: {source}; is another web server running?")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The proxyDHCP server could not bind.
    #[error(transparent)]
    ProxyDhcp(#[from] ServerError),
    /// The Wake-on-LAN sockets could not be opened.
    #[error(transparent)]
    WakeSender(#[from] SendError),
    /// The Wake-on-LAN thread could not start.
    #[error("cannot start the Wake-on-LAN thread: {0}")]
    Wake(std::io::Error),
    /// The announce protocol could not start.
    #[error(transparent)]
    Announce(#[from] WatchError),
    /// The announce thread ended before the probe was over (it panicked).
    #[error("announce: the announce thread ended before the probe was over; the boot service does not serve without it (the supervisor restarts it)")]
    AnnounceEnded,
    /// The thread applying the announce protocol's orders could not start.
    #[error("cannot start the thread that applies the announce protocol's orders: {0}")]
    OrdersThread(std::io::Error),
}

/// The running boot service; dropping it stops every server and the announcements.
pub struct BootService {
    /// What the status page shows.
    pub status: StatusBoard,
    shared: Arc<Shared>,
    /// Dropping it stops the announcements; the orders thread then ends with the channel.
    _watcher: WatchHandle,
}

/// Whether the service serves; shared with the thread applying the orders.
struct Shared {
    state: Mutex<State>,
    /// Notified when the service stands down.
    changed: Condvar,
}

enum State {
    /// Boxed: the servers' handles are large, and the state is made once or twice.
    Serving(Box<Servers>),
    StoodDown {
        /// Why, as logged.
        why: String,
    },
}

/// The servers of a serving service.
struct Servers {
    tftp: TftpHandle,
    http: HttpHandle,
    proxydhcp: Option<ProxyDhcpHandle>,
    /// What proxyDHCP answers with, unrestricted.
    context: ProxyContext,
    waker: Option<WakerHandle>,
}

impl BootService {
    /// True while it serves (false once it stood down).
    pub fn is_serving(&self) -> bool {
        matches!(*self.shared.lock(), State::Serving(_))
    }

    /// Why it stood down, if it did.
    pub fn stood_down(&self) -> Option<String> {
        match &*self.shared.lock() {
            State::Serving(_) => None,
            State::StoodDown { why } => Some(why.clone()),
        }
    }

    /// Waits up to `timeout` for the service to stand down; returns why, or `None` if it
    /// still serves at the deadline.
    pub fn wait_stood_down(&self, timeout: Duration) -> Option<String> {
        // A timeout too long for the clock is as good as a day: the caller asks again.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600));
        let mut state = self.shared.lock();
        loop {
            if let State::StoodDown { why } = &*state {
                return Some(why.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for BootService {
    fn drop(&mut self) {
        // At once, rather than when the orders thread sees the watcher end.
        self.shared
            .stop_serving("the boot service was stopped".to_string());
    }
}

impl Shared {
    // A panic in another thread while it held the lock leaves a consistent state: every
    // change is one assignment.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops every server, for good, and says so.
    fn stand_down(&self, why: String) {
        self.stop_serving(why.clone());
        log::warn!(
            "boot service: STOOD DOWN: no more proxyDHCP, TFTP, HTTP or Wake-on-LAN from this \
             host; it carries on as an ordinary host; {why}"
        );
    }

    /// Stops every server (if serving) and records why.
    fn stop_serving(&self, why: String) {
        let mut state = self.lock();
        if let State::Serving(servers) = std::mem::replace(&mut *state, State::StoodDown { why }) {
            // Stopped with the lock held, so "stood down" is only seen once nothing serves.
            servers.stop();
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Makes proxyDHCP answer only `macs`.
    fn restrict(&self, macs: &HashSet<MacAddr>) {
        if let State::Serving(servers) = &*self.lock() {
            servers.restrict(macs);
        }
    }
}

impl Servers {
    fn restrict(&self, macs: &HashSet<MacAddr>) {
        if let Some(proxydhcp) = &self.proxydhcp {
            proxydhcp.set_context(ProxyContext {
                mac_filter: Some(macs.clone()),
                ..self.context.clone()
            });
            log::warn!(
                "proxyDHCP: answering only the {} MAC address(es) of this cluster's configuration",
                macs.len()
            );
        }
    }

    fn stop(self) {
        if let Some(proxydhcp) = self.proxydhcp {
            proxydhcp.stop();
        }
        if let Some(waker) = self.waker {
            waker.stop();
        }
        self.tftp.stop();
        self.http.stop();
    }
}

/// Prepares the boot files, probes the LAN for other boot servers for the settle time
/// (blocking), then starts the servers, unless the probe heard a server that wins. The
/// announce protocol goes on in the background and may restrict or stop the servers later.
pub fn start(config: &ServiceConfig) -> Result<BootService, ServiceError> {
    let files: Arc<dyn FileSource> = Arc::new(BootFiles::new(
        &config.root,
        &config.config_dir,
        config.address,
        config.http_port,
    )?);
    let status = StatusBoard::new(&config.cluster.name);
    if let Some(notice) = &config.config_notice {
        status.set_notice(notice.clone());
    }
    status.expect_hosts(&config.cluster.hosts);
    let own_macs: HashSet<MacAddr> = config.cluster.wake_macs().into_iter().collect();
    let me = announcement(config);
    log::info!(
        "announce: this server: cluster {}, drive {}, stamp #{} of {}, server {}",
        me.cluster_id,
        me.drive_id,
        me.stamp_counter,
        me.stamp_time,
        me.server_id
    );
    let (watcher, orders) = watch::spawn(
        &config.announce,
        config.cluster.secret.as_bytes(),
        me,
        !own_macs.is_empty(),
    )?;
    // Nothing is served before the probe is over. The watcher orders something when the
    // settle time has passed at the latest, or its channel closes if its thread died.
    let state = match orders.recv().map_err(|_| ServiceError::AnnounceEnded)? {
        Order::Serve {
            only_own_macs: false,
        } => State::Serving(Box::new(start_servers(config, files, &status)?)),
        // Only sent while serving, after the order to serve; obeying it means serving
        // restricted all the same.
        Order::Serve {
            only_own_macs: true,
        }
        | Order::RestrictToOwnMacs { .. } => {
            let servers = start_servers(config, files, &status)?;
            servers.restrict(&own_macs);
            State::Serving(Box::new(servers))
        }
        order @ Order::StandDown { .. } => {
            let why = order.to_string();
            log::warn!(
                "boot service: NOT SERVING: this host carries on as an ordinary host; {why}"
            );
            State::StoodDown { why }
        }
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        changed: Condvar::new(),
    });
    let applier = shared.clone();
    std::thread::Builder::new()
        .name("pxen-orders".into())
        .spawn(move || apply_orders(&orders, &applier, &own_macs))
        .map_err(ServiceError::OrdersThread)?;
    Ok(BootService {
        status,
        shared,
        _watcher: watcher,
    })
}

/// What this server announces: the drive's identity (or a random one), a new server ID.
fn announcement(config: &ServiceConfig) -> Announcement {
    let identity = config
        .identity
        .clone()
        .unwrap_or_else(ServerIdentity::without_drive);
    Announcement {
        cluster_id: cluster_id(&config.cluster.secret),
        drive_id: identity.drive_id,
        stamp_counter: identity.stamp_counter,
        stamp_time: identity.stamp_time,
        server_id: random_server_id(),
        address: config.address,
        serving: false,
    }
}

/// Applies the announce protocol's orders after the first, until the watcher ends.
fn apply_orders(orders: &mpsc::Receiver<Order>, shared: &Shared, own_macs: &HashSet<MacAddr>) {
    for order in orders {
        match order {
            // The watcher orders to serve once, and that order was taken by `start`.
            Order::Serve {
                only_own_macs: false,
            } => {}
            Order::Serve {
                only_own_macs: true,
            }
            | Order::RestrictToOwnMacs { .. } => shared.restrict(own_macs),
            order @ Order::StandDown { .. } => shared.stand_down(order.to_string()),
        }
    }
}

/// Starts TFTP, HTTP, proxyDHCP and Wake-on-LAN.
fn start_servers(
    config: &ServiceConfig,
    files: Arc<dyn FileSource>,
    status: &StatusBoard,
) -> Result<Servers, ServiceError> {
    let tftp_addr = SocketAddr::new(IpAddr::V4(config.listen), config.tftp_port);
    let tftp_status = status.clone();
    let tftp_config = TftpConfig {
        listen: tftp_addr,
        on_event: Some(Arc::new(move |event: &TftpEvent| {
            log_tftp_event(event);
            if let TftpEvent::Finished(report) = event {
                if report.result.is_ok() {
                    tftp_status.file_fetched(report.client.ip());
                }
            }
        })),
        ..TftpConfig::default()
    };
    let tftp = tftp::spawn(tftp_config, files.clone()).map_err(|source| ServiceError::Tftp {
        addr: tftp_addr,
        source,
    })?;

    let http_addr = SocketAddr::new(IpAddr::V4(config.listen), config.http_port);
    let mut http_config = HttpConfig::new(http_addr);
    http_config.post_routes.insert(
        REPORT_PATH,
        Arc::new(ReportRoute::new(
            &config.cluster.secret,
            status.clone(),
            config.address,
        )),
    );
    http_config.post_routes.insert(
        STATE_PATH_PREFIX,
        Arc::new(StateRoute::new(&config.cluster.secret, &config.root)),
    );
    let http =
        http::spawn(http_config, files, status.clone()).map_err(|source| ServiceError::Http {
            addr: http_addr,
            source,
        })?;

    let context = ProxyContext::new(config.address, config.http_port);
    let proxydhcp = match config.proxydhcp_ports {
        Some((dhcp_port, pxe_port)) => {
            let board = status.clone();
            let dhcp_config = ProxyDhcpConfig {
                dhcp_port,
                pxe_port,
                interface: config.interface.clone(),
                on_sighting: Some(Arc::new(move |seen: &PxeSighting| {
                    board.pxe_request(&seen.mac.to_string(), seen.address)
                })),
                ..ProxyDhcpConfig::default()
            };
            Some(dhcp_server::spawn(dhcp_config, context.clone())?)
        }
        None => None,
    };
    // Without Wake-on-LAN the cluster can still be powered on by hand: keep serving.
    let waker = wake_hosts(config, status).unwrap_or_else(|e| {
        log::error!("{e}; power the other hosts on by hand");
        None
    });
    log::info!(
        "boot service: TFTP on {}, HTTP on {}, proxyDHCP {}",
        tftp.local_addr(),
        http.local_addr(),
        proxydhcp.as_ref().map_or("off".to_string(), |p| format!(
            "on {} and {}",
            p.dhcp_addr(),
            p.pxe_addr()
        ))
    );
    Ok(Servers {
        tftp,
        http,
        proxydhcp,
        context,
        waker,
    })
}

/// Starts waking the configured hosts; each shows as waking on the status page until it
/// reports online.
fn wake_hosts(
    config: &ServiceConfig,
    status: &StatusBoard,
) -> Result<Option<WakerHandle>, ServiceError> {
    if config.wake.is_empty() {
        return Ok(None);
    }
    for mac in &config.wake {
        status.waking(&mac.to_string());
    }
    let sender_config = SenderConfig {
        interface: config.wake_interface.clone(),
        ..SenderConfig::default()
    };
    let sender = Sender::open(sender_config)?;
    let board = status.clone();
    let is_online = move |mac: MacAddr| {
        let mac = mac.to_string();
        board.snapshot().iter().any(|host| {
            host.state == HostState::Online
                && host.macs.iter().any(|m| m.eq_ignore_ascii_case(&mac))
        })
    };
    let waker = spawn_waker(
        config.wake.clone(),
        Backoff::default(),
        random_seed(),
        sender,
        is_online,
    )
    .map_err(ServiceError::Wake)?;
    Ok(Some(waker))
}

/// One log line per transfer: who fetched what, and how it went.
fn log_tftp_event(event: &TftpEvent) {
    match event {
        TftpEvent::Started { .. } => {}
        TftpEvent::Finished(report) => match &report.result {
            Ok(()) => log::info!(
                "tftp: {} fetched {} ({} bytes) in {:.2}s",
                report.client.ip(),
                report.path,
                report.size,
                report.elapsed.as_secs_f64()
            ),
            Err(e) => log::warn!(
                "tftp: {} did not get {}: {e}",
                report.client.ip(),
                report.path
            ),
        },
        TftpEvent::Refused {
            client,
            request,
            reason,
            ..
        } => {
            log::info!("tftp: refused {request:?} to {}: {reason}", client.ip())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Network, Root};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::path::Path;

    const SECRET: &str = "service-test-secret-0123";
    const LOW_DRIVE: &str = "10000000000000000000000000000000";
    const HIGH_DRIVE: &str = "20000000000000000000000000000000";
    /// How long a test waits for what must happen.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn free_tcp_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn free_udp_port() -> u16 {
        UdpSocket::bind("0.0.0.0:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A drive directory with the files the boot service needs.
    fn drive() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("syslinux.cfg"),
            "DEFAULT pxen\nLABEL pxen\n  KERNEL mboot.c32\n  \
             APPEND xen.gz --- vmlinuz pxen.boot=usb --- initrd.img\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("initrd.img"), b"initrd").unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        dir
    }

    /// A server of the test cluster serving `root` on loopback with ports of its own,
    /// announcing `drive_id` on `announce_port` (broadcast on loopback).
    fn config(root: &Path, drive_id: &str, announce_port: u16, settle: Duration) -> ServiceConfig {
        ServiceConfig {
            root: root.to_path_buf(),
            config_dir: root.join("config"),
            cluster: Cluster {
                name: "announce-lab".into(),
                secret: SECRET.into(),
                hostname_prefix: "pxen".into(),
                domain: None,
                hosts: Vec::new(),
                pools: Vec::new(),
                users: Vec::new(),
                root: Root::default(),
                network: Network::default(),
                vms: Vec::new(),
            },
            config_notice: None,
            address: Ipv4Addr::LOCALHOST,
            listen: Ipv4Addr::LOCALHOST,
            http_port: free_tcp_port(),
            tftp_port: free_udp_port(),
            proxydhcp_ports: Some((free_udp_port(), free_udp_port())),
            interface: None,
            wake: Vec::new(),
            wake_interface: None,
            identity: Some(ServerIdentity {
                drive_id: drive_id.into(),
                stamp_counter: 1,
                stamp_time: 1_795_000_000,
            }),
            announce: WatchConfig {
                port: announce_port,
                destination: Ipv4Addr::new(127, 255, 255, 255),
                settle,
                interval: Duration::from_millis(50),
                ..WatchConfig::default()
            },
        }
    }

    fn http_answers(config: &ServiceConfig) -> bool {
        TcpStream::connect((config.listen, config.http_port)).is_ok()
    }

    #[test]
    fn a_server_appearing_with_precedence_makes_the_serving_one_stop_everything() {
        let (first_drive, second_drive) = (drive(), drive());
        let port = free_udp_port();
        let first_config = config(first_drive.path(), HIGH_DRIVE, port, Duration::ZERO);
        let first = start(&first_config).unwrap();
        assert!(first.is_serving());
        assert!(http_answers(&first_config));

        let second_config = config(
            second_drive.path(),
            LOW_DRIVE,
            port,
            Duration::from_millis(300),
        );
        let second = start(&second_config).unwrap();
        assert!(second.is_serving(), "{:?}", second.stood_down());
        let why = first
            .wait_stood_down(DEADLINE)
            .unwrap_or_else(|| panic!("the first server to stand down within {DEADLINE:?}"));
        assert!(why.contains("the lower drive ID serves"), "{why}");
        assert!(!first.is_serving());
        assert!(!http_answers(&first_config), "HTTP stopped with the rest");
        assert!(http_answers(&second_config));
        assert_eq!(second.stood_down(), None);
    }

    #[test]
    fn a_server_heard_during_the_probe_means_never_serving() {
        let (first_drive, second_drive) = (drive(), drive());
        let port = free_udp_port();
        let serving = start(&config(first_drive.path(), LOW_DRIVE, port, Duration::ZERO)).unwrap();
        assert!(serving.is_serving());
        // A probe longer than the test's deadline: only hearing the other ends it.
        let newcomer_config = config(
            second_drive.path(),
            HIGH_DRIVE,
            port,
            Duration::from_secs(60),
        );
        let started = Instant::now();
        let newcomer = start(&newcomer_config).unwrap();
        assert!(started.elapsed() < DEADLINE, "{:?}", started.elapsed());
        let why = newcomer.stood_down().expect("the newcomer never serves");
        assert!(why.contains("stand down"), "{why}");
        assert!(!http_answers(&newcomer_config), "nothing was started");
        assert!(serving.is_serving());
    }
}
