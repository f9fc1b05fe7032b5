//! Never two boot servers: the announce protocol between PXEN boot servers on one LAN.
//!
//! Two boot servers of one cluster on a LAN would both answer the PXE clients, and the
//! clients would boot from whichever answered first: a clone of the drive that slipped
//! through, an old stick plugged into a spare machine, or two genuine drives of the cluster
//! would each serve their own files. So a boot server announces itself and listens to the
//! others, and of two servers of the same cluster exactly one keeps serving.
//!
//! # The protocol
//!
//! Every server has a UDP socket on port [`ANNOUNCE_PORT`] (7911) and broadcasts an
//! [`wire::Announcement`] to 255.255.255.255 on it:
//!
//! 1. **Probe** for the settle time ([`DEFAULT_SETTLE`], 6 s): it announces itself (marked
//!    not serving yet) every [`DEFAULT_INTERVAL`] (2 s, jittered by ±25 % so servers started
//!    together do not stay in step) and listens. Nothing is served yet. Hearing a server it
//!    loses to ends the probe at once: it never serves.
//! 2. **Serve** once the settle time has passed without losing: it keeps announcing (marked
//!    serving) and keeps listening, and stands down as soon as it hears a server it loses to.
//!
//! The settle time spans three announcements of every other server, so one lost datagram
//! does not let a second server start. If all of them are lost, both serve for a while, and
//! the loser stands down at the first announcement of the winner it hears.
//!
//! # Who serves ([`decide`])
//!
//! Every server applies the same pure function to what it announces and what it hears, so
//! two servers reach opposite conclusions about each other:
//!
//! | heard | same drive ID | verdict |
//! | --- | --- | --- |
//! | our own announcement (same server ID) | - | keep serving |
//! | same cluster | yes | the newer stamp (higher counter, then later time) serves; equal stamps: the lower server ID |
//! | same cluster | no | the lower drive ID serves |
//! | another cluster, and our configuration lists MACs | - | serve only the configuration's MACs |
//! | another cluster, and our configuration lists no MAC | - | refuse to serve |
//!
//! Standing down and refusing are final for this run of the service, and so is answering
//! only our MACs: a server that lost does not come back when the winner disappears.
//!
//! # Takeover (not automatic)
//!
//! A host0 that disappears is not replaced automatically. Takeover would be: a server that
//! stood down keeps listening; once it has heard nothing from the winner for a takeover time
//! (several settle times), it probes again exactly as at start and serves if nothing with
//! precedence answers. That stays safe because every start of serving is a probe followed by
//! watching: two servers that take over at once converge to one by the same decision as
//! above, and a LAN cut in two gets one server per side, reduced to one when the sides meet
//! again. It is left out because the server that would take over is by construction the
//! one the decision ranked lower (an outdated copy of the drive, or a drive the
//! administrator may mean to retire): serving its files automatically is a choice for the
//! administrator, who can reboot a machine with the right drive, or restart the service.
//!
//! # Trust
//!
//! An announcement of our cluster is signed with the cluster secret (HMAC-SHA256, as the
//! hosts' reports are), so only a machine holding the secret can make a server stand down.
//! A server of another cluster cannot be verified: only its cluster ID (in clear) is read
//! from it, and the only thing it can cause is that this server answers only its own
//! machines, or, with no MAC list, none. Anyone on the LAN can forge that, as anyone on a
//! LAN can also answer DHCP; the log names the sender's address. An announcement of our
//! cluster can also be replayed (it carries no clock: a host's clock may be unset at boot);
//! a replayed announcement of a drive that ranks higher makes a starting server stand down.
//! Both are denials of service by someone already on the LAN, never a second boot server.

pub mod decide;
pub mod find;
pub mod watch;
pub mod wire;

use std::time::Duration;

use crate::rand::random_seed;

/// The UDP port of the announce protocol.
pub const ANNOUNCE_PORT: u16 = 7911;
/// How long a server listens before it serves.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(6);
/// How often a server announces itself (before jitter).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// What a server says about its drive: which drive it serves, and that drive's stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// The drive's ID from its identity file: 32 lower-case hex digits.
    pub drive_id: String,
    /// How many times this drive has booted a host0 (its stamp's counter).
    pub stamp_counter: u64,
    /// When the drive's stamp was written, in Unix seconds.
    pub stamp_time: u64,
}

impl ServerIdentity {
    /// The identity of a server without a drive identity (`pxen serve` on a directory): a
    /// random drive ID, new at every start, and no stamp (counter and time 0), so it loses to
    /// any stamped copy of its drive and ranks by the random ID against other drives.
    pub fn without_drive() -> ServerIdentity {
        ServerIdentity {
            drive_id: format!("{:016x}{:016x}", random_seed(), random_seed()),
            stamp_counter: 0,
            stamp_time: 0,
        }
    }
}

/// A new random server ID (16 lower-case hex digits), telling apart two runs of the service
/// and a server's own announcements from the others'.
pub fn random_server_id() -> String {
    format!("{:016x}", random_seed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::announce::wire::is_lower_hex;

    #[test]
    fn random_ids_have_the_announced_form_and_differ() {
        let (a, b) = (
            ServerIdentity::without_drive(),
            ServerIdentity::without_drive(),
        );
        assert!(is_lower_hex(&a.drive_id, wire::DRIVE_ID_LEN), "{a:?}");
        assert_ne!(a.drive_id, b.drive_id);
        assert_eq!((a.stamp_counter, a.stamp_time), (0, 0));
        let id = random_server_id();
        assert!(is_lower_hex(&id, wire::SERVER_ID_LEN), "{id}");
        assert_ne!(id, random_server_id());
    }
}
