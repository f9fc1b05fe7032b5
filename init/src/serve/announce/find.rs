//! Finding the cluster's boot server by its announcements: how a host that booted from a
//! drive which did not make it host0 (a clone, a corrupted drive) learns where host0 is, to
//! report to it. Only an announcement signed with the cluster secret, from a server that
//! serves, is believed.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::wire::{self, Heard, MAX_DATAGRAM};
use crate::config::cluster_id;

/// The announcements could not be listened to.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for PXEN boot server announcements on UDP port {port}: {source}")]
pub struct FindError {
    /// The port.
    pub port: u16,
    /// Why.
    pub source: std::io::Error,
}

/// Listens on UDP `port` for up to `timeout` and returns the address of the first server of
/// the cluster with `secret` that announces it serves; `None` if none did in that time.
pub fn find_server(
    port: u16,
    secret: &str,
    timeout: Duration,
) -> Result<Option<Ipv4Addr>, FindError> {
    let socket = listen(port).map_err(|source| FindError { port, source })?;
    await_server(&socket, port, secret, timeout)
}

/// [`find_server`] on a socket already listening on `port`.
fn await_server(
    socket: &UdpSocket,
    port: u16,
    secret: &str,
    timeout: Duration,
) -> Result<Option<Ipv4Addr>, FindError> {
    let error = |source| FindError { port, source };
    let ours = cluster_id(secret);
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; MAX_DATAGRAM + 1];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(error)?;
        let (len, from) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(error(e)),
        };
        match wire::decode(secret.as_bytes(), &ours, &buffer[..len]) {
            Ok(Heard::SameCluster(announcement)) if announcement.serving => {
                log::info!(
                    "announce: the boot server of this cluster is at {} (heard from {from})",
                    announcement.address
                );
                return Ok(Some(announcement.address));
            }
            Ok(_) => {}
            Err(e) => log::debug!("announce: ignoring a datagram from {from}: {e}"),
        }
    }
    Ok(None)
}

/// A socket on `port` of every address, sharing the port with a boot service on this host.
fn listen(port: u16) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::announce::wire::{encode, Announcement};

    const SECRET: &str = "find-me-secret-0123456789";

    fn announcement(secret: &str, serving: bool) -> Announcement {
        Announcement {
            cluster_id: cluster_id(secret),
            drive_id: "0".repeat(32),
            stamp_counter: 1,
            stamp_time: 1,
            server_id: "1".repeat(16),
            address: Ipv4Addr::new(10, 77, 0, 50),
            serving,
        }
    }

    #[test]
    fn only_a_signed_serving_announcement_names_the_server() {
        let socket = listen(0).unwrap();
        let port = socket.local_addr().unwrap().port();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let other = "another-cluster-secret-0123";
        // Queued in the listening socket before it is read: the ignored ones first.
        for datagram in [
            b"not an announcement".to_vec(),
            encode(other.as_bytes(), &announcement(other, true)),
            encode(SECRET.as_bytes(), &announcement(SECRET, false)),
            encode(SECRET.as_bytes(), &announcement(SECRET, true)),
        ] {
            sender.send_to(&datagram, to).unwrap();
        }
        let found = await_server(&socket, port, SECRET, Duration::from_secs(10)).unwrap();
        assert_eq!(found, Some(Ipv4Addr::new(10, 77, 0, 50)));
    }

    #[test]
    fn silence_is_none_at_the_deadline() {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        assert_eq!(
            find_server(port, SECRET, Duration::from_millis(300)).unwrap(),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
