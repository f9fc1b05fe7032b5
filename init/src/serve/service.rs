//! The whole boot service: proxyDHCP, TFTP and HTTP serving one set of boot files.
//!
//! host0 runs it from its RAM copy of the drive; `pxen serve` runs it on any Linux machine
//! (and on loopback for tests and benchmarks).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

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
use crate::config::Cluster;
use crate::net::mac::MacAddr;
use crate::rand::random_seed;
use crate::report::client::REPORT_PATH;
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
}

/// The running boot service; dropping it stops every server.
pub struct BootService {
    /// The TFTP server.
    pub tftp: TftpHandle,
    /// The HTTP server.
    pub http: HttpHandle,
    /// The proxyDHCP server, if asked for.
    pub proxydhcp: Option<ProxyDhcpHandle>,
    /// What the status page shows.
    pub status: StatusBoard,
    /// The Wake-on-LAN sender, if there are hosts to wake.
    pub waker: Option<WakerHandle>,
}

/// Prepares the boot files and starts the servers.
pub fn start(config: &ServiceConfig) -> Result<BootService, ServiceError> {
    let files: Arc<dyn FileSource> = Arc::new(BootFiles::new(
        &config.root,
        &config.config_dir,
        config.address,
        config.http_port,
    )?);
    let status = StatusBoard::new(&config.cluster.name);
    status.expect_hosts(&config.cluster.hosts);

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
    let http =
        http::spawn(http_config, files, status.clone()).map_err(|source| ServiceError::Http {
            addr: http_addr,
            source,
        })?;

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
            Some(dhcp_server::spawn(
                dhcp_config,
                ProxyContext::new(config.address, config.http_port),
            )?)
        }
        None => None,
    };
    // Without Wake-on-LAN the cluster can still be powered on by hand: keep serving.
    let waker = wake_hosts(config, &status).unwrap_or_else(|e| {
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
    Ok(BootService {
        tftp,
        http,
        proxydhcp,
        status,
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
