//! The announcement datagram: what a boot server says about itself, how it is signed, and
//! what a receiver can trust of it.
//!
//! # Format
//!
//! One UDP datagram of at most [`MAX_DATAGRAM`] bytes: a header line, then a JSON body.
//!
//! ```text
//! PXEN-ANNOUNCE/1 PXEN-HMAC-SHA256 <64 hex digits>\n
//! {"cluster_id":"0f3a…","drive_id":"9c1e…","stamp_counter":7,"stamp_time":1795003600,
//!  "server_id":"5b7e01c2d3f4a596","address":"10.77.0.50","serving":true}
//! ```
//!
//! The signature is the HMAC-SHA256, keyed with the cluster secret, of `PXEN-ANNOUNCE/1\n`
//! followed by the body (the hosts' reports use the same scheme, [`crate::report::wire::sign`]); the
//! magic line in the signed bytes keeps a signed report from ever passing for an
//! announcement. Unknown body fields are ignored, so a newer PXEN may say more.
//!
//! # What a receiver trusts
//!
//! - A datagram whose signature verifies with our secret comes from a server of our
//!   cluster: every field is parsed, checked ([`Announcement::validate`]) and used.
//! - A datagram whose signature does not verify cannot be told apart from a forgery. If its
//!   body names another cluster ID, it is a server of another cluster (whose secret we do not
//!   have): only `cluster_id` is read from it, nothing else. If it names our cluster ID, it
//!   is refused as forged: the cluster ID is derived from the secret ([`cluster_id`]), so a
//!   server of our cluster signs with our secret.
//!
//! Decoding never panics, whatever the bytes (a fuzz target checks it).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::report::wire::{self as report_wire, cut, excerpt, AuthError};

/// The first word of the header line: protocol name and version.
pub const MAGIC: &str = "PXEN-ANNOUNCE/1";
/// The largest datagram accepted (an announcement is about 250 bytes).
pub const MAX_DATAGRAM: usize = 1024;
/// Hex digits of a cluster ID.
pub const CLUSTER_ID_LEN: usize = 32;
/// Hex digits of a drive ID.
pub const DRIVE_ID_LEN: usize = 32;
/// Hex digits of a server ID.
pub const SERVER_ID_LEN: usize = 16;

/// The protocol name before the version in the header line.
const PROTOCOL: &str = "PXEN-ANNOUNCE/";

/// What a boot server says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// Its cluster's ID ([`cluster_id`] of the secret): 32 lower-case hex digits.
    pub cluster_id: String,
    /// The ID of the drive it serves: 32 lower-case hex digits.
    pub drive_id: String,
    /// Its drive's stamp counter (0 without a stamp).
    pub stamp_counter: u64,
    /// When its drive's stamp was written, Unix seconds (0 without a stamp).
    pub stamp_time: u64,
    /// Random for every run of the service: 16 lower-case hex digits.
    pub server_id: String,
    /// The address its clients fetch boot files from.
    pub address: Ipv4Addr,
    /// True once it serves, false while it probes.
    pub serving: bool,
}

/// What was heard, as far as it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A server of our cluster (the signature verified).
    SameCluster(Announcement),
    /// A server of another cluster: its claimed cluster ID, all that is read of it.
    OtherCluster {
        /// The cluster ID it names (32 lower-case hex digits), unverified.
        cluster_id: String,
    },
}

/// A field of an announcement that is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {value}; it must be {expected} lower-case hexadecimal digits")]
pub struct InvalidAnnouncement {
    /// The field.
    pub field: &'static str,
    /// Its value (quoted, cut short).
    pub value: String,
    /// How many hex digits it must have.
    pub expected: usize,
}

/// Why a datagram on the announce port was not taken as an announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_DATAGRAM`].
    #[error(
        "a datagram of {len} bytes is longer than any announcement ({MAX_DATAGRAM} bytes at most)"
    )]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// It does not start with the header line.
    #[error("not a PXEN announcement (no `{MAGIC} <signature>` line first)")]
    NotAnnouncement,
    /// Another version of the protocol.
    #[error("a PXEN announcement of version {version}, which this PXEN does not know (it speaks {MAGIC}); run the same PXEN on every boot server")]
    UnsupportedVersion {
        /// The version given (quoted, cut short).
        version: String,
    },
    /// The signature is not `PXEN-HMAC-SHA256 <64 hex digits>`.
    #[error(
        "the announcement's signature {value} is not `{} <64 hex digits>`",
        report_wire::AUTH_SCHEME
    )]
    MalformedSignature {
        /// The signature given (quoted, cut short).
        value: String,
    },
    /// Signed with our secret, but the body is not an announcement.
    #[error("a signed announcement of this cluster is not valid JSON of an announcement: {message}; run the same PXEN on every boot server")]
    Json {
        /// The parser's message (cut short).
        message: String,
    },
    /// Signed with our secret, but a field is out of bounds.
    #[error("a signed announcement of this cluster is invalid: {0}")]
    Invalid(#[from] InvalidAnnouncement),
    /// Signed with our secret, but naming another cluster ID.
    #[error("an announcement signed with this cluster's secret names cluster {claimed}, not this cluster's {ours}; the sender's PXEN is broken or altered")]
    ClusterMismatch {
        /// The cluster ID it names (quoted, cut short).
        claimed: String,
        /// Ours.
        ours: String,
    },
    /// Not signed with our secret, and its cluster ID cannot be read.
    #[error("an announcement not signed with this cluster's secret, whose cluster_id cannot be read: {message}")]
    UnreadableCluster {
        /// What is wrong with it.
        message: String,
    },
    /// Naming our cluster without our secret's signature.
    #[error("an announcement names this cluster ({cluster_id}) but is not signed with its secret: forged, or altered on the way; ignored")]
    Forged {
        /// Our cluster ID, which it names.
        cluster_id: String,
    },
}

/// Just the cluster ID of an announcement we cannot verify; serde ignores the other fields.
#[derive(Deserialize)]
struct ClusterOnly {
    cluster_id: String,
}

impl Announcement {
    /// Checks the IDs' form: the decision compares them as strings, which orders them as
    /// numbers only when they have a fixed length and one case.
    pub fn validate(&self) -> Result<(), InvalidAnnouncement> {
        check_hex("cluster_id", &self.cluster_id, CLUSTER_ID_LEN)?;
        check_hex("drive_id", &self.drive_id, DRIVE_ID_LEN)?;
        check_hex("server_id", &self.server_id, SERVER_ID_LEN)
    }
}

/// The datagram announcing `announcement`, signed with `secret`.
pub fn encode(secret: &[u8], announcement: &Announcement) -> Vec<u8> {
    // Cannot fail: serde_json fails only on maps with non-string keys and on Serialize
    // implementations that return errors; an announcement holds strings, numbers, a bool
    // and an Ipv4Addr (written as its text).
    let body = serde_json::to_vec(announcement).expect("an Announcement always serializes");
    let mut datagram = format!(
        "{MAGIC} {}\n",
        report_wire::sign(secret, &signed_bytes(&body))
    )
    .into_bytes();
    datagram.extend_from_slice(&body);
    datagram
}

/// What the datagram says, as far as `secret` (our cluster's, whose ID is `our_cluster`)
/// lets us trust it (see the module documentation).
pub fn decode(secret: &[u8], our_cluster: &str, datagram: &[u8]) -> Result<Heard, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong {
            len: datagram.len(),
        });
    }
    let (authorization, body) = split_header(datagram)?;
    match report_wire::verify(secret, &signed_bytes(body), Some(authorization)) {
        Ok(()) => same_cluster(our_cluster, body),
        Err(AuthError::Mismatch) => other_cluster(our_cluster, body),
        Err(AuthError::MalformedSignature { value }) => {
            Err(DecodeError::MalformedSignature { value })
        }
        Err(AuthError::WrongScheme { scheme }) => {
            Err(DecodeError::MalformedSignature { value: scheme })
        }
        // `verify` is given the header's signature, so it is never missing.
        Err(AuthError::Missing) => Err(DecodeError::NotAnnouncement),
    }
}

/// Splits the datagram into the header's signature and the body.
fn split_header(datagram: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let newline = datagram
        .iter()
        .position(|&byte| byte == b'\n')
        .ok_or(DecodeError::NotAnnouncement)?;
    let header =
        std::str::from_utf8(&datagram[..newline]).map_err(|_| DecodeError::NotAnnouncement)?;
    let (name, authorization) = header.split_once(' ').ok_or(DecodeError::NotAnnouncement)?;
    let version = name
        .strip_prefix(PROTOCOL)
        .ok_or(DecodeError::NotAnnouncement)?;
    if name != MAGIC {
        return Err(DecodeError::UnsupportedVersion {
            version: excerpt(version),
        });
    }
    Ok((authorization, &datagram[newline + 1..]))
}

/// The bytes the signature covers.
fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(MAGIC.len() + 1 + body.len());
    signed.extend_from_slice(MAGIC.as_bytes());
    signed.push(b'\n');
    signed.extend_from_slice(body);
    signed
}

fn same_cluster(our_cluster: &str, body: &[u8]) -> Result<Heard, DecodeError> {
    let announcement: Announcement =
        serde_json::from_slice(body).map_err(|error| DecodeError::Json {
            message: cut(&error.to_string(), 200),
        })?;
    announcement.validate()?;
    if announcement.cluster_id != our_cluster {
        return Err(DecodeError::ClusterMismatch {
            claimed: excerpt(&announcement.cluster_id),
            ours: our_cluster.to_owned(),
        });
    }
    Ok(Heard::SameCluster(announcement))
}

fn other_cluster(our_cluster: &str, body: &[u8]) -> Result<Heard, DecodeError> {
    let claimed: ClusterOnly =
        serde_json::from_slice(body).map_err(|error| DecodeError::UnreadableCluster {
            message: cut(&error.to_string(), 200),
        })?;
    check_hex("cluster_id", &claimed.cluster_id, CLUSTER_ID_LEN).map_err(|error| {
        DecodeError::UnreadableCluster {
            message: error.to_string(),
        }
    })?;
    if claimed.cluster_id == our_cluster {
        return Err(DecodeError::Forged {
            cluster_id: claimed.cluster_id,
        });
    }
    Ok(Heard::OtherCluster {
        cluster_id: claimed.cluster_id,
    })
}

fn check_hex(field: &'static str, value: &str, len: usize) -> Result<(), InvalidAnnouncement> {
    if is_lower_hex(value, len) {
        Ok(())
    } else {
        Err(InvalidAnnouncement {
            field,
            value: excerpt(value),
            expected: len,
        })
    }
}

/// True when `text` is exactly `len` digits of 0-9 and a-f.
pub fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::cluster_id;
    use crate::rand::XorShift;

    pub(crate) const SECRET: &str = "announce-test-secret-0123";
    const OTHER_SECRET: &str = "another-cluster-secret-4567";

    pub(crate) fn announcement(secret: &str) -> Announcement {
        Announcement {
            cluster_id: cluster_id(secret),
            drive_id: "9c1e0000000000000000000000000001".into(),
            stamp_counter: 7,
            stamp_time: 1_795_003_600,
            server_id: "5b7e01c2d3f4a596".into(),
            address: Ipv4Addr::new(10, 77, 0, 50),
            serving: true,
        }
    }

    fn ours(datagram: &[u8]) -> Result<Heard, DecodeError> {
        decode(SECRET.as_bytes(), &cluster_id(SECRET), datagram)
    }

    /// A datagram with `body` signed correctly with `secret`.
    fn signed(secret: &str, body: &str) -> Vec<u8> {
        let signature = report_wire::sign(secret.as_bytes(), &signed_bytes(body.as_bytes()));
        format!("{MAGIC} {signature}\n{body}").into_bytes()
    }

    #[test]
    fn the_cluster_id_is_fixed_for_a_secret_and_differs_between_secrets() {
        let id = cluster_id(SECRET);
        assert!(is_lower_hex(&id, CLUSTER_ID_LEN), "{id}");
        assert_eq!(id, cluster_id(SECRET));
        assert_ne!(id, cluster_id(OTHER_SECRET));
        // SHA-256("pxen cluster id\0" "abc"), first 16 bytes, computed with sha256sum.
        assert_eq!(cluster_id("abc"), "41d8665740cfa7140f8206c8fdd98891");
    }

    #[test]
    fn an_announcement_of_our_cluster_round_trips() {
        let sent = announcement(SECRET);
        let datagram = encode(SECRET.as_bytes(), &sent);
        assert!(datagram.starts_with(b"PXEN-ANNOUNCE/1 PXEN-HMAC-SHA256 "));
        assert!(datagram.len() < MAX_DATAGRAM / 2, "{}", datagram.len());
        assert_eq!(ours(&datagram), Ok(Heard::SameCluster(sent)));
    }

    #[test]
    fn another_cluster_is_known_by_its_cluster_id_only() {
        let mut theirs = announcement(OTHER_SECRET);
        theirs.drive_id = "not even hex".into();
        let datagram = encode(OTHER_SECRET.as_bytes(), &theirs);
        assert_eq!(
            ours(&datagram),
            Ok(Heard::OtherCluster {
                cluster_id: cluster_id(OTHER_SECRET)
            })
        );
    }

    #[test]
    fn our_cluster_id_without_our_signature_is_forged() {
        let datagram = encode(OTHER_SECRET.as_bytes(), &announcement(SECRET));
        assert_eq!(
            ours(&datagram),
            Err(DecodeError::Forged {
                cluster_id: cluster_id(SECRET)
            })
        );
        let datagram = encode(SECRET.as_bytes(), &announcement(SECRET));
        let altered = String::from_utf8(datagram)
            .unwrap()
            .replace("10.77.0.50", "10.77.0.51")
            .into_bytes();
        assert!(matches!(ours(&altered), Err(DecodeError::Forged { .. })));
    }

    #[test]
    fn every_malformed_datagram_gets_its_own_error() {
        let long = vec![b'x'; MAX_DATAGRAM + 1];
        assert_eq!(ours(&long), Err(DecodeError::TooLong { len: long.len() }));
        for junk in [
            &b""[..],
            b"hello",
            b"GET / HTTP/1.1\r\n",
            b"PXEN-ANNOUNCE/1\n{}",
        ] {
            assert_eq!(ours(junk), Err(DecodeError::NotAnnouncement), "{junk:?}");
        }
        assert_eq!(
            ours(b"PXEN-ANNOUNCE/2 PXEN-HMAC-SHA256 00\n{}"),
            Err(DecodeError::UnsupportedVersion {
                version: "\"2\"".into()
            })
        );
        assert!(matches!(
            ours(b"PXEN-ANNOUNCE/1 PXEN-HMAC-SHA256 xyz\n{}"),
            Err(DecodeError::MalformedSignature { .. })
        ));
        assert!(matches!(
            ours(b"PXEN-ANNOUNCE/1 BASIC abc\n{}"),
            Err(DecodeError::MalformedSignature { .. })
        ));
        assert!(matches!(
            ours(&signed(SECRET, "{\"cluster_id\": 5}")),
            Err(DecodeError::Json { .. })
        ));
        let mut bad_drive = announcement(SECRET);
        bad_drive.drive_id = "9C1E0000000000000000000000000001".into();
        assert_eq!(
            ours(&encode(SECRET.as_bytes(), &bad_drive)),
            Err(DecodeError::Invalid(InvalidAnnouncement {
                field: "drive_id",
                value: "\"9C1E0000000000000000000000000001\"".into(),
                expected: DRIVE_ID_LEN,
            }))
        );
        let mut misnamed = announcement(SECRET);
        misnamed.cluster_id = cluster_id(OTHER_SECRET);
        assert!(matches!(
            ours(&encode(SECRET.as_bytes(), &misnamed)),
            Err(DecodeError::ClusterMismatch { .. })
        ));
        assert!(matches!(
            ours(&signed(OTHER_SECRET, "{\"cluster_id\": \"short\"}")),
            Err(DecodeError::UnreadableCluster { .. })
        ));
        assert!(matches!(
            ours(&signed(OTHER_SECRET, "[1, 2]")),
            Err(DecodeError::UnreadableCluster { .. })
        ));
    }

    #[test]
    fn unknown_fields_of_a_newer_pxen_are_ignored() {
        let sent = announcement(SECRET);
        let mut body = serde_json::to_value(&sent).unwrap();
        body["uptime"] = serde_json::json!(12);
        let datagram = signed(SECRET, &body.to_string());
        assert_eq!(ours(&datagram), Ok(Heard::SameCluster(sent)));
    }

    #[test]
    fn random_corruptions_never_panic_and_never_pass_as_ours() {
        let mut rng = XorShift::new(0x7911);
        let good = encode(SECRET.as_bytes(), &announcement(SECRET));
        for _ in 0..5000 {
            let mut datagram = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(datagram.len());
                datagram[at] = rng.next_u64() as u8;
            }
            match ours(&datagram) {
                // Only a change that left every byte as it was (or the signature's hex digits'
                // case) still verifies.
                Ok(Heard::SameCluster(heard)) => assert_eq!(heard, announcement(SECRET)),
                Ok(Heard::OtherCluster { cluster_id: id }) => {
                    assert!(is_lower_hex(&id, CLUSTER_ID_LEN) && id != cluster_id(SECRET))
                }
                Err(_) => {}
            }
        }
        for len in 0..200 {
            let _ = ours(&rng.bytes(len));
        }
    }
}
