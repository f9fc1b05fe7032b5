//! Who serves: the pure decision a boot server takes about every other server it hears.
//!
//! It depends only on what both servers announce (and on whether our own configuration
//! lists MACs), so two servers of one cluster applying it to each other reach opposite
//! verdicts: exactly one of them keeps serving. The module documentation of
//! [`super`] has the table.

use std::cmp::Ordering;
use std::fmt;

use super::wire::{Announcement, Heard};

/// A drive's stamp as announced: the newer one is the drive in use, the older one a copy.
/// Ordered by counter, then time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Boots as host0 so far.
    pub counter: u64,
    /// When it was written, Unix seconds.
    pub time: u64,
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} of {}", self.counter, self.time)
    }
}

/// What settled a contest between two servers of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// It was our own announcement, heard back.
    OwnAnnouncement,
    /// Both serve the same drive; the newer stamp serves.
    Stamp {
        /// The drive both serve.
        drive_id: String,
        /// Our drive's stamp.
        ours: Stamp,
        /// Theirs.
        theirs: Stamp,
    },
    /// Two drives of the cluster; the lower drive ID serves.
    DriveId {
        /// Our drive.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// The same drive with the same stamp (a byte-for-byte copy, or no stamp at all); the
    /// lower server ID serves.
    ServerId {
        /// Our server ID.
        ours: String,
        /// Theirs.
        theirs: String,
    },
}

/// What a server does about a server it heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve on (or go on probing): we win, or it was ourselves.
    KeepServing {
        /// Why.
        reason: Reason,
    },
    /// Stop serving for good (or never start): the other server wins.
    StandDown {
        /// Why.
        reason: Reason,
    },
    /// Another cluster serves on this LAN: answer only the MACs of our configuration.
    ServeOnlyOwnMacs {
        /// The other cluster's ID (unverified).
        other_cluster: String,
    },
    /// Another cluster serves on this LAN and our configuration lists no MAC, so our
    /// machines cannot be told from theirs: serve nothing.
    RefuseToServe {
        /// The other cluster's ID (unverified).
        other_cluster: String,
    },
}

/// Decides what the server announcing `me` does about `heard`. `knows_macs` tells whether
/// our configuration lists MAC addresses to restrict proxyDHCP to.
///
/// Between two servers of another cluster the verdict depends on our own MAC list only:
/// with one, our answers reach only our machines, whatever the other does; without one, we
/// would answer theirs. Nothing the other server claims is needed (nor could it be trusted).
pub fn decide(me: &Announcement, knows_macs: bool, heard: &Heard) -> Verdict {
    match heard {
        Heard::SameCluster(other) => same_cluster(me, other),
        Heard::OtherCluster { cluster_id } if knows_macs => Verdict::ServeOnlyOwnMacs {
            other_cluster: cluster_id.clone(),
        },
        Heard::OtherCluster { cluster_id } => Verdict::RefuseToServe {
            other_cluster: cluster_id.clone(),
        },
    }
}

fn same_cluster(me: &Announcement, other: &Announcement) -> Verdict {
    if me.server_id == other.server_id {
        return Verdict::KeepServing {
            reason: Reason::OwnAnnouncement,
        };
    }
    let (ours, theirs) = (stamp_of(me), stamp_of(other));
    let (order, reason) = if me.drive_id != other.drive_id {
        (
            // The lower drive ID wins, so "less" is "better".
            other.drive_id.cmp(&me.drive_id),
            Reason::DriveId {
                ours: me.drive_id.clone(),
                theirs: other.drive_id.clone(),
            },
        )
    } else if ours != theirs {
        (
            ours.cmp(&theirs),
            Reason::Stamp {
                drive_id: me.drive_id.clone(),
                ours,
                theirs,
            },
        )
    } else {
        (
            other.server_id.cmp(&me.server_id),
            Reason::ServerId {
                ours: me.server_id.clone(),
                theirs: other.server_id.clone(),
            },
        )
    };
    // `order` is how we compare to them: Greater means we rank higher. It is never Equal:
    // each branch compares values that differ.
    match order {
        Ordering::Greater | Ordering::Equal => Verdict::KeepServing { reason },
        Ordering::Less => Verdict::StandDown { reason },
    }
}

fn stamp_of(announcement: &Announcement) -> Stamp {
    Stamp {
        counter: announcement.stamp_counter,
        time: announcement.stamp_time,
    }
}

impl Verdict {
    /// True when the server keeps serving everyone it served before.
    pub fn keeps_serving(&self) -> bool {
        matches!(self, Verdict::KeepServing { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::KeepServing { reason } => write!(f, "keep serving: {}", won(reason)),
            Verdict::StandDown { reason } => write!(f, "stand down: {}", lost(reason)),
            Verdict::ServeOnlyOwnMacs { other_cluster } => write!(
                f,
                "another cluster ({other_cluster}) serves on this LAN: answering only the MAC \
                 addresses of this cluster's configuration (hosts not listed are not booted)"
            ),
            Verdict::RefuseToServe { other_cluster } => write!(
                f,
                "refuse to serve: another cluster ({other_cluster}) serves on this LAN, and this \
                 cluster's configuration lists no MAC address, so its machines cannot be told \
                 apart from the other cluster's; list every host's MACs in cluster.ron \
                 (Host(..., macs: [\"..\"])) to share the LAN"
            ),
        }
    }
}

/// Why we keep serving.
fn won(reason: &Reason) -> String {
    match reason {
        Reason::OwnAnnouncement => "our own announcement".to_string(),
        Reason::Stamp {
            drive_id,
            ours,
            theirs,
        } => format!(
            "drive {drive_id} is served twice, and our stamp ({ours}) is newer than the \
             other's ({theirs}): the other is an outdated copy"
        ),
        Reason::DriveId { ours, theirs } => format!(
            "another drive of this cluster ({theirs}) is served too; the lower drive ID serves, \
             and ours ({ours}) is lower"
        ),
        Reason::ServerId { ours, theirs } => format!(
            "the same drive with the same stamp is served twice (a byte-for-byte copy); the \
             lower server ID serves, and ours ({ours}) is lower than {theirs}"
        ),
    }
}

/// Why we stand down.
fn lost(reason: &Reason) -> String {
    match reason {
        Reason::OwnAnnouncement => "our own announcement".to_string(),
        Reason::Stamp {
            drive_id,
            ours,
            theirs,
        } => format!(
            "drive {drive_id} is served twice, and the other's stamp ({theirs}) is newer than \
             ours ({ours}): this drive is an outdated copy; rewrite it with ./mkimage, or run \
             'pxen drive adopt' on it if it replaces the other"
        ),
        Reason::DriveId { ours, theirs } => format!(
            "another drive of this cluster ({theirs}) is served too; the lower drive ID serves, \
             and ours ({ours}) is higher; remove one of the drives"
        ),
        Reason::ServerId { ours, theirs } => format!(
            "the same drive with the same stamp is served twice (a byte-for-byte copy); the \
             lower server ID serves, and ours ({ours}) is higher than {theirs}; remove the copy"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::cluster_id;
    use crate::rand::XorShift;
    use crate::serve::announce::wire::tests::SECRET;
    use std::net::Ipv4Addr;

    const LOW_DRIVE: &str = "10000000000000000000000000000000";
    const HIGH_DRIVE: &str = "20000000000000000000000000000000";
    const OTHER_CLUSTER: &str = "ffff0000ffff0000ffff0000ffff0000";

    fn server(drive: &str, counter: u64, time: u64, server_id: &str) -> Announcement {
        Announcement {
            cluster_id: cluster_id(SECRET),
            drive_id: drive.into(),
            stamp_counter: counter,
            stamp_time: time,
            server_id: server_id.into(),
            address: Ipv4Addr::new(10, 77, 0, 50),
            serving: true,
        }
    }

    fn heard(other: &Announcement) -> Heard {
        Heard::SameCluster(other.clone())
    }

    fn stamp(counter: u64, time: u64) -> Stamp {
        Stamp { counter, time }
    }

    /// Every row of the table: (what we announce, what we know, what we hear, the verdict).
    #[test]
    fn the_decision_table() {
        let me = server(LOW_DRIVE, 7, 700, "0000000000000002");
        let stamp_reason = |ours, theirs| Reason::Stamp {
            drive_id: LOW_DRIVE.into(),
            ours,
            theirs,
        };
        let other_cluster = Heard::OtherCluster {
            cluster_id: OTHER_CLUSTER.into(),
        };
        let rows = [
            (
                "our own announcement",
                heard(&me),
                true,
                Verdict::KeepServing {
                    reason: Reason::OwnAnnouncement,
                },
            ),
            (
                "same drive, their counter is lower",
                heard(&server(LOW_DRIVE, 6, 900, "0000000000000001")),
                true,
                Verdict::KeepServing {
                    reason: stamp_reason(stamp(7, 700), stamp(6, 900)),
                },
            ),
            (
                "same drive, their counter is higher",
                heard(&server(LOW_DRIVE, 8, 100, "0000000000000003")),
                true,
                Verdict::StandDown {
                    reason: stamp_reason(stamp(7, 700), stamp(8, 100)),
                },
            ),
            (
                "same drive and counter, their stamp is older",
                heard(&server(LOW_DRIVE, 7, 699, "0000000000000001")),
                true,
                Verdict::KeepServing {
                    reason: stamp_reason(stamp(7, 700), stamp(7, 699)),
                },
            ),
            (
                "same drive and counter, their stamp is newer",
                heard(&server(LOW_DRIVE, 7, 701, "0000000000000001")),
                true,
                Verdict::StandDown {
                    reason: stamp_reason(stamp(7, 700), stamp(7, 701)),
                },
            ),
            (
                "same drive and stamp, their server ID is higher",
                heard(&server(LOW_DRIVE, 7, 700, "0000000000000003")),
                true,
                Verdict::KeepServing {
                    reason: Reason::ServerId {
                        ours: "0000000000000002".into(),
                        theirs: "0000000000000003".into(),
                    },
                },
            ),
            (
                "same drive and stamp, their server ID is lower",
                heard(&server(LOW_DRIVE, 7, 700, "0000000000000001")),
                true,
                Verdict::StandDown {
                    reason: Reason::ServerId {
                        ours: "0000000000000002".into(),
                        theirs: "0000000000000001".into(),
                    },
                },
            ),
            (
                "another drive with a higher ID (and a newer stamp, which does not count)",
                heard(&server(HIGH_DRIVE, 99, 9999, "0000000000000001")),
                true,
                Verdict::KeepServing {
                    reason: Reason::DriveId {
                        ours: LOW_DRIVE.into(),
                        theirs: HIGH_DRIVE.into(),
                    },
                },
            ),
            (
                "another cluster, we know our MACs",
                other_cluster.clone(),
                true,
                Verdict::ServeOnlyOwnMacs {
                    other_cluster: OTHER_CLUSTER.into(),
                },
            ),
            (
                "another cluster, we know no MAC",
                other_cluster,
                false,
                Verdict::RefuseToServe {
                    other_cluster: OTHER_CLUSTER.into(),
                },
            ),
        ];
        for (case, heard, knows_macs, expected) in rows {
            assert_eq!(decide(&me, knows_macs, &heard), expected, "{case}");
        }
        let higher = server(HIGH_DRIVE, 1, 1, "0000000000000009");
        assert_eq!(
            decide(&higher, true, &heard(&me)),
            Verdict::StandDown {
                reason: Reason::DriveId {
                    ours: HIGH_DRIVE.into(),
                    theirs: LOW_DRIVE.into(),
                },
            },
            "another drive with a lower ID"
        );
    }

    #[test]
    fn every_verdict_says_what_happens_and_why() {
        let me = server(LOW_DRIVE, 7, 700, "0000000000000002");
        let lost = decide(
            &me,
            true,
            &heard(&server(LOW_DRIVE, 8, 800, "0000000000000001")),
        );
        let text = lost.to_string();
        assert!(text.starts_with("stand down:"), "{text}");
        assert!(
            text.contains("#8 of 800") && text.contains("#7 of 700"),
            "{text}"
        );
        assert!(text.contains("pxen drive adopt"), "{text}");
        let refused = decide(
            &me,
            false,
            &Heard::OtherCluster {
                cluster_id: OTHER_CLUSTER.into(),
            },
        );
        assert!(refused.to_string().contains(OTHER_CLUSTER), "{refused}");
        assert!(refused.to_string().contains("macs:"), "{refused}");
        assert!(!refused.keeps_serving());
    }

    /// A random server of the cluster, drawn from few values so that equal drives, equal
    /// stamps and equal server IDs all happen.
    fn random_server(rng: &mut XorShift) -> Announcement {
        let drive = format!("{:032x}", rng.below(3));
        let server_id = format!("{:016x}", rng.below(4));
        server(&drive, rng.below(3) as u64, rng.below(3) as u64, &server_id)
    }

    #[test]
    fn two_servers_of_one_cluster_never_both_keep_serving() {
        let mut rng = XorShift::new(0xdec1de);
        for _ in 0..20_000 {
            let (a, b) = (random_server(&mut rng), random_server(&mut rng));
            let (a_sees, b_sees) = (decide(&a, true, &heard(&b)), decide(&b, true, &heard(&a)));
            if a.server_id == b.server_id {
                // One server hearing itself; two runs never draw the same 64 random bits.
                continue;
            }
            assert_ne!(
                a_sees.keeps_serving(),
                b_sees.keeps_serving(),
                "exactly one keeps serving:\n{a:?} -> {a_sees}\n{b:?} -> {b_sees}"
            );
            assert_eq!(decide(&a, true, &heard(&b)), a_sees, "deterministic");
        }
    }

    #[test]
    fn two_servers_of_different_clusters_never_both_serve_everyone() {
        let mut rng = XorShift::new(0xc1a5);
        for _ in 0..1000 {
            let a = random_server(&mut rng);
            let b_cluster = Heard::OtherCluster {
                cluster_id: OTHER_CLUSTER.into(),
            };
            let knows_macs = rng.below(2) == 0;
            let verdict = decide(&a, knows_macs, &b_cluster);
            assert!(!verdict.keeps_serving(), "{verdict}");
            assert_eq!(
                matches!(verdict, Verdict::ServeOnlyOwnMacs { .. }),
                knows_macs
            );
        }
    }
}
