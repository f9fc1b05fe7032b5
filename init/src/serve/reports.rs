//! host0's side of the hosts' reports: `POST /report` ([`crate::report::client::REPORT_PATH`])
//! on the boot service's HTTP server.
//!
//! A report is checked (signature first, then body: see [`crate::report::wire`]) and put on
//! the status board, which marks the host online; the Wake-on-LAN sender reads the board and
//! stops waking it. Every refusal is logged with the sender's address and the reason, and the
//! reason is the answer's body, so the host's own log says the same.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::http::status::{OnlineHost, StatusBoard};
use super::http::wire::{RequestRepr, Status};
use super::http::{PostRoute, Reply};
use crate::report::wire::{self, ReportError};

/// The `POST /report` handler.
pub struct ReportRoute {
    secret: Vec<u8>,
    board: StatusBoard,
    own_address: Ipv4Addr,
}

impl ReportRoute {
    /// Accepts reports signed with `secret` onto `board`; a report from this host itself
    /// (over loopback) is shown with `own_address`, the address the others reach it at.
    pub fn new(secret: &str, board: StatusBoard, own_address: Ipv4Addr) -> ReportRoute {
        ReportRoute {
            secret: secret.as_bytes().to_vec(),
            board,
            own_address,
        }
    }
}

impl PostRoute for ReportRoute {
    fn handle(&self, request: &RequestRepr, body: &[u8], peer: SocketAddr) -> Reply {
        match wire::decode(&self.secret, body, request.header("authorization")) {
            Ok(report) => {
                log::info!(
                    "report: {} ({}) is online, from {}",
                    report.hostname,
                    report.serial.as_deref().unwrap_or("no serial"),
                    peer.ip()
                );
                let hostname = report.hostname.clone();
                self.board.host_online(OnlineHost {
                    hostname: report.hostname,
                    serial: report.serial,
                    macs: report.macs.iter().map(ToString::to_string).collect(),
                    address: match peer.ip() {
                        IpAddr::V4(address) if address.is_loopback() => Some(self.own_address),
                        IpAddr::V4(address) => Some(address),
                        IpAddr::V6(_) => None,
                    },
                    boot_timeline: report
                        .timeline
                        .into_iter()
                        .map(|entry| (entry.phase, entry.seconds))
                        .collect(),
                });
                Reply::text(Status::Ok, &format!("accepted: {hostname} is online\n"))
            }
            Err(error) => {
                log::warn!("report: refused from {}: {error}", peer.ip());
                let status = match error {
                    ReportError::Auth(_) => Status::Unauthorized,
                    ReportError::Json { .. } | ReportError::Invalid(_) => Status::BadRequest,
                };
                Reply::text(status, &format!("{error}\n"))
            }
        }
    }
}
