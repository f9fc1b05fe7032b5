//! The report a host sends to host0 once its dom0 is up: what it says, how it is written, and
//! how host0 knows it comes from a host of the cluster.
//!
//! # Format
//!
//! The body of `POST /report` is one JSON object, [`HostReport`]:
//!
//! ```json
//! {"hostname":"node1","serial":"CZ123","macs":["52:54:00:12:34:56"],
//!  "boot_id":"6f0f5d3c-...","boot_source":"net",
//!  "timeline":[{"phase":"init","seconds":4.2},{"phase":"dom0-up","seconds":31.7}]}
//! ```
//!
//! Unknown fields are ignored, so a host running a newer PXEN may send more than this version
//! knows. Known fields must have their type (a number is not accepted for a string), and the
//! values are then checked against bounds ([`HostReport::validate`]): host0 keeps and shows
//! what hosts send, so a host (or anything else on the LAN) cannot make it hold or print
//! unbounded data. Each violation is its own [`InvalidReport`] variant naming the field and
//! the value (quoted, escaped and cut short), so host0's log tells the administrator exactly
//! what a bad host sent.
//!
//! # Authentication
//!
//! The request carries `Authorization: PXEN-HMAC-SHA256 <64 hex digits>`: the HMAC-SHA256 of
//! the exact body bytes, keyed with the cluster secret from the configuration ([`sign`]).
//! host0 recomputes it and compares in constant time ([`verify`]) before it parses anything
//! ([`decode`]): bytes from a sender without the secret never reach the JSON parser.
//!
//! # Replay
//!
//! A report carries no timestamp or nonce (a host's clock may be unset at boot, so a time
//! could not be checked), so anyone who captured a report on the LAN can send it again, and
//! host0 accepts it. That is harmless by design: a report is a statement of fact, "the host
//! with this hostname, serial and MACs was online in the boot identified by `boot_id`"
//! (the kernel's random boot ID, new at every boot). Replaying it repeats a true statement
//! about that boot; it cannot announce a new boot, a different host or a changed MAC list,
//! because changing any byte of the body breaks the signature. The most a replay can do is
//! repeat that a host was online after it died; a report never says a host is still up
//! (one that dies after reporting goes unnoticed by the reports alone, replayed or not).
//! The secret itself is never sent, and the signature does not reveal it.

use std::fmt::Write as _;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::identity;
use crate::net::mac::MacAddr;

/// The authentication scheme of the `Authorization` header.
pub const AUTH_SCHEME: &str = "PXEN-HMAC-SHA256";
/// The most MAC addresses a report may list.
pub const MAX_MACS: usize = 16;
/// The most timeline entries a report may hold.
pub const MAX_TIMELINE: usize = 64;
/// The longest phase name, in characters.
pub const MAX_PHASE_LEN: usize = 32;
/// The longest serial, in characters.
pub const MAX_SERIAL_LEN: usize = 128;
/// The longest boot ID, in characters.
pub const MAX_BOOT_ID_LEN: usize = 64;
/// The values [`HostReport::boot_source`] may take: booted from a flash drive, or over the
/// network (as `pxen.boot=` on the kernel command line).
pub const BOOT_SOURCES: [&str; 2] = ["usb", "net"];

/// Characters of a bad value quoted in an error; the rest is left out.
const EXCERPT_CHARS: usize = 40;

/// HMAC-SHA256, the signature of a report.
type HmacSha256 = hmac::Hmac<Sha256>;

/// What a host says about itself when its dom0 is up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// The host's hostname (a DNS label, as [`identity::check_hostname`] requires).
    pub hostname: String,
    /// The DMI system serial the hostname was derived from, when the machine has a usable one.
    #[serde(default)]
    pub serial: Option<String>,
    /// The MAC addresses of the host's network cards.
    pub macs: Vec<MacAddr>,
    /// The kernel's boot ID (`/proc/sys/kernel/random/boot_id`): which boot this report is
    /// about.
    pub boot_id: String,
    /// How the host booted: `"usb"` or `"net"` (see [`BOOT_SOURCES`]).
    pub boot_source: String,
    /// When the host reached each phase of its boot, in order.
    pub timeline: Vec<TimelineEntry>,
}

/// One phase of a host's boot and when it was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The phase, as `/init` logs it: `init`, `config`, `rootfs-in-ram`, `handoff`, `dom0-up`…
    pub phase: String,
    /// Seconds since the host's power-on (the kernel's monotonic clock).
    pub seconds: f64,
}

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request has no `Authorization` header.
    #[error("the request has no Authorization header; a host signs its reports and saved state with the cluster secret (`Authorization: {AUTH_SCHEME} <signature>`): is the sender a PXEN host?")]
    Missing,
    /// The header names another scheme than [`AUTH_SCHEME`].
    #[error("the Authorization header's scheme is {scheme}, not {AUTH_SCHEME}: the sender is not a PXEN host, or a much older one")]
    WrongScheme {
        /// The scheme given (quoted, cut short).
        scheme: String,
    },
    /// The signature is not 64 hexadecimal digits.
    #[error("the Authorization header's signature {value} is not 64 hexadecimal digits (an HMAC-SHA256)")]
    MalformedSignature {
        /// The signature given (quoted, cut short).
        value: String,
    },
    /// The signature is well formed but does not match the body.
    #[error("the request's signature does not match: wrong cluster secret or altered body (does the host run with the same configuration as host0?)")]
    Mismatch,
}

/// Why the values of a well-typed report are not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidReport {
    /// The hostname is not a DNS label.
    #[error("hostname {value} {why}: a hostname is 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")]
    Hostname {
        /// The hostname (quoted, cut short).
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The serial is longer than [`MAX_SERIAL_LEN`].
    #[error("serial {value} has {len} characters, more than the {MAX_SERIAL_LEN} accepted")]
    SerialTooLong {
        /// The serial (quoted, cut short).
        value: String,
        /// Its length in characters.
        len: usize,
    },
    /// More MAC addresses than [`MAX_MACS`].
    #[error("macs lists {count} MAC addresses, more than the {MAX_MACS} accepted")]
    TooManyMacs {
        /// How many there are.
        count: usize,
    },
    /// The boot ID is empty or longer than [`MAX_BOOT_ID_LEN`].
    #[error("boot_id {value} has {len} characters; it must have 1 to {MAX_BOOT_ID_LEN} (the kernel's /proc/sys/kernel/random/boot_id)")]
    BootId {
        /// The boot ID (quoted, cut short).
        value: String,
        /// Its length in characters.
        len: usize,
    },
    /// The boot source is not one of [`BOOT_SOURCES`].
    #[error("boot_source {value} is neither \"usb\" nor \"net\"")]
    BootSource {
        /// The boot source (quoted, cut short).
        value: String,
    },
    /// More timeline entries than [`MAX_TIMELINE`].
    #[error("timeline has {count} entries, more than the {MAX_TIMELINE} accepted")]
    TooManyPhases {
        /// How many there are.
        count: usize,
    },
    /// A phase name is empty or longer than [`MAX_PHASE_LEN`].
    #[error(
        "timeline[{index}].phase {value} has {len} characters; it must have 1 to {MAX_PHASE_LEN}"
    )]
    Phase {
        /// The entry's position in the timeline, from 0.
        index: usize,
        /// The phase name (quoted, cut short).
        value: String,
        /// Its length in characters.
        len: usize,
    },
    /// A time is negative, infinite or not a number.
    #[error("timeline[{index}].seconds of phase {phase} is {seconds}; it must be a finite number of seconds since power-on, 0 or more")]
    Seconds {
        /// The entry's position in the timeline, from 0.
        index: usize,
        /// The phase name (quoted, cut short).
        phase: String,
        /// The time given.
        seconds: f64,
    },
}

/// Why a report was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// The signature is missing or wrong; the body was not looked at.
    #[error("report not authenticated: {0}")]
    Auth(#[from] AuthError),
    /// The body is not JSON, or a field has the wrong type or is missing.
    #[error("the report is not a valid report body (JSON): {message}")]
    Json {
        /// The parser's message (cut short), with the line and column.
        message: String,
    },
    /// The report's values are out of bounds.
    #[error("the report is invalid: {0}")]
    Invalid(#[from] InvalidReport),
}

impl HostReport {
    /// Checks the values against the bounds host0 accepts (the module documentation lists
    /// them). A host checks its own report with this before sending it, since host0 will
    /// refuse it for the same reasons.
    pub fn validate(&self) -> Result<(), InvalidReport> {
        identity::check_hostname(&self.hostname).map_err(|why| InvalidReport::Hostname {
            value: excerpt(&self.hostname),
            why,
        })?;
        if let Some(serial) = &self.serial {
            let len = serial.chars().count();
            if len > MAX_SERIAL_LEN {
                return Err(InvalidReport::SerialTooLong {
                    value: excerpt(serial),
                    len,
                });
            }
        }
        if self.macs.len() > MAX_MACS {
            return Err(InvalidReport::TooManyMacs {
                count: self.macs.len(),
            });
        }
        let len = self.boot_id.chars().count();
        if !(1..=MAX_BOOT_ID_LEN).contains(&len) {
            return Err(InvalidReport::BootId {
                value: excerpt(&self.boot_id),
                len,
            });
        }
        if !BOOT_SOURCES.contains(&self.boot_source.as_str()) {
            return Err(InvalidReport::BootSource {
                value: excerpt(&self.boot_source),
            });
        }
        self.validate_timeline()
    }

    fn validate_timeline(&self) -> Result<(), InvalidReport> {
        if self.timeline.len() > MAX_TIMELINE {
            return Err(InvalidReport::TooManyPhases {
                count: self.timeline.len(),
            });
        }
        for (index, entry) in self.timeline.iter().enumerate() {
            let len = entry.phase.chars().count();
            if !(1..=MAX_PHASE_LEN).contains(&len) {
                return Err(InvalidReport::Phase {
                    index,
                    value: excerpt(&entry.phase),
                    len,
                });
            }
            // JSON has no NaN or infinity, but a report built in memory may hold them.
            if !entry.seconds.is_finite() || entry.seconds < 0.0 {
                return Err(InvalidReport::Seconds {
                    index,
                    phase: excerpt(&entry.phase),
                    seconds: entry.seconds,
                });
            }
        }
        Ok(())
    }
}

/// The JSON body of `report`.
pub fn encode(report: &HostReport) -> Vec<u8> {
    // Cannot fail: serde_json fails only on maps with non-string keys and on Serialize
    // implementations that return errors; a report holds strings, numbers, lists and
    // MacAddr, which serializes through its Display. (A NaN or infinite time is written as
    // `null`, which `decode` then refuses as a type error: `validate` first to avoid it.)
    serde_json::to_vec(report).expect("a HostReport always serializes to JSON")
}

/// The `Authorization` header value for `body` signed with `secret`:
/// `PXEN-HMAC-SHA256 <64 lower-case hex digits>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let tag = mac_of(secret, body).finalize().into_bytes();
    let mut value = String::with_capacity(AUTH_SCHEME.len() + 1 + 2 * tag.len());
    value.push_str(AUTH_SCHEME);
    value.push(' ');
    for byte in tag {
        // Writing to a String cannot fail.
        let _ = write!(value, "{byte:02x}");
    }
    value
}

/// Checks that `authorization` (the `Authorization` header, if any) is the signature of
/// `body` with `secret`. The comparison takes the same time whatever the signature, so
/// timing does not reveal how much of a forged signature was right. The scheme is matched
/// case-insensitively (as HTTP schemes are) and the hex digits may be of either case.
pub fn verify(secret: &[u8], body: &[u8], authorization: Option<&str>) -> Result<(), AuthError> {
    let value = authorization.ok_or(AuthError::Missing)?.trim();
    let (scheme, signature) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case(AUTH_SCHEME) {
        return Err(AuthError::WrongScheme {
            scheme: excerpt(scheme),
        });
    }
    let signature = signature.trim();
    let tag = decode_hex_32(signature).ok_or_else(|| AuthError::MalformedSignature {
        value: excerpt(signature),
    })?;
    mac_of(secret, body)
        .verify_slice(&tag)
        .map_err(|_| AuthError::Mismatch)
}

/// Verifies the signature of `body`, then parses and validates it. Nothing of the body is
/// parsed unless the signature matches.
pub fn decode(
    secret: &[u8],
    body: &[u8],
    authorization: Option<&str>,
) -> Result<HostReport, ReportError> {
    verify(secret, body, authorization)?;
    let report: HostReport = serde_json::from_slice(body).map_err(|error| ReportError::Json {
        message: cut(&error.to_string(), 200),
    })?;
    report.validate()?;
    Ok(report)
}

/// The HMAC-SHA256 keyed with `secret`, fed with `body`.
fn mac_of(secret: &[u8], body: &[u8]) -> HmacSha256 {
    // Cannot fail: HMAC takes keys of any length (a long key is hashed, a short one padded);
    // `new_from_slice` only fails for MACs with a fixed key size.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac
}

/// The 32 bytes written as 64 hex digits in `text`, or `None` when it is anything else.
fn decode_hex_32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let high = hex_digit(pair[0])?;
        let low = hex_digit(pair[1])?;
        *byte = high << 4 | low;
    }
    Some(bytes)
}

fn hex_digit(digit: u8) -> Option<u8> {
    (digit as char)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// `text` quoted and escaped (so control characters cannot forge log lines), cut to
/// [`EXCERPT_CHARS`] characters with the full length noted (also for the boot servers'
/// announcements).
pub(crate) fn excerpt(text: &str) -> String {
    let len = text.chars().count();
    if len <= EXCERPT_CHARS {
        return format!("{text:?}");
    }
    let start: String = text.chars().take(EXCERPT_CHARS).collect();
    format!("{start:?}… ({len} characters)")
}

/// `text` cut to `max` characters, marked when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::XorShift;

    const SECRET: &[u8] = b"correct horse battery staple";

    fn report() -> HostReport {
        HostReport {
            hostname: "node1".into(),
            serial: Some("CZ123".into()),
            macs: vec![
                "52:54:00:12:34:56".parse().unwrap(),
                "52:54:00:12:34:57".parse().unwrap(),
            ],
            boot_id: "6f0f5d3c-2b1e-4c8e-9a55-3a1f0e3b7c11".into(),
            boot_source: "net".into(),
            timeline: vec![
                TimelineEntry {
                    phase: "init".into(),
                    seconds: 4.25,
                },
                TimelineEntry {
                    phase: "dom0-up".into(),
                    seconds: 31.5,
                },
            ],
        }
    }

    fn signed_decode(body: &[u8]) -> Result<HostReport, ReportError> {
        decode(SECRET, body, Some(&sign(SECRET, body)))
    }

    fn invalid(body: &str) -> InvalidReport {
        match signed_decode(body.as_bytes()) {
            Err(ReportError::Invalid(error)) => error,
            other => panic!("{body}: expected an invalid report, got {other:?}"),
        }
    }

    fn json_error(body: &str) -> String {
        match signed_decode(body.as_bytes()) {
            Err(ReportError::Json { message }) => message,
            other => panic!("{body}: expected a JSON error, got {other:?}"),
        }
    }

    /// The report's JSON with `field` replaced by `value` (raw JSON).
    fn with_field(field: &str, value: &str) -> String {
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&encode(&report())).unwrap();
        object.insert(field.into(), serde_json::from_str(value).unwrap());
        serde_json::to_string(&object).unwrap()
    }

    #[test]
    fn sign_matches_the_rfc_4231_test_vector() {
        // RFC 4231 test case 2: key "Jefe".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "PXEN-HMAC-SHA256 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_the_signature_and_says_what_is_wrong_otherwise() {
        let body = b"{}";
        let good = sign(SECRET, body);
        assert_eq!(verify(SECRET, body, Some(&good)), Ok(()));
        let upper =
            format!("pxen-hmac-sha256  {} ", &good[AUTH_SCHEME.len() + 1..]).to_ascii_uppercase();
        assert_eq!(verify(SECRET, body, Some(&upper)), Ok(()));

        assert_eq!(verify(SECRET, body, None), Err(AuthError::Missing));
        assert_eq!(
            verify(SECRET, body, Some("Basic cm9vdDpyb290")),
            Err(AuthError::WrongScheme {
                scheme: "\"Basic\"".into()
            })
        );
        assert_eq!(
            verify(SECRET, body, Some("PXEN-HMAC-SHA256")),
            Err(AuthError::MalformedSignature {
                value: "\"\"".into()
            })
        );
        let short = &good[..good.len() - 2];
        assert!(matches!(
            verify(SECRET, body, Some(short)),
            Err(AuthError::MalformedSignature { .. })
        ));
        let not_hex = format!("{}zz", &good[..good.len() - 2]);
        assert!(matches!(
            verify(SECRET, body, Some(&not_hex)),
            Err(AuthError::MalformedSignature { .. })
        ));
        assert_eq!(
            verify(b"another secret", body, Some(&good)),
            Err(AuthError::Mismatch)
        );
        assert!(AuthError::Mismatch
            .to_string()
            .contains("wrong cluster secret or altered body"));
    }

    #[test]
    fn a_tampered_body_fails_verification() {
        let body = encode(&report());
        let authorization = sign(SECRET, &body);
        let tampered = String::from_utf8(body.clone())
            .unwrap()
            .replace("node1", "node2");
        assert_eq!(
            decode(SECRET, tampered.as_bytes(), Some(&authorization)),
            Err(ReportError::Auth(AuthError::Mismatch))
        );
        let mut truncated = body.clone();
        truncated.pop();
        assert_eq!(
            verify(SECRET, &truncated, Some(&authorization)),
            Err(AuthError::Mismatch)
        );
    }

    #[test]
    fn unauthenticated_bytes_are_not_parsed() {
        // Not JSON, but the answer is about the signature, the only thing looked at.
        assert_eq!(
            decode(SECRET, b"not json", None),
            Err(ReportError::Auth(AuthError::Missing))
        );
        assert_eq!(
            decode(SECRET, b"not json", Some(&sign(b"other", b"not json"))),
            Err(ReportError::Auth(AuthError::Mismatch))
        );
    }

    #[test]
    fn a_good_report_decodes_and_unknown_fields_are_ignored() {
        assert_eq!(signed_decode(&encode(&report())), Ok(report()));
        let newer = with_field("vms", r#"[{"name": "console", "memory": 2048}]"#);
        assert_eq!(signed_decode(newer.as_bytes()), Ok(report()));
        let mut no_serial = report();
        no_serial.serial = None;
        let body = with_field("serial", "null");
        assert_eq!(signed_decode(body.as_bytes()), Ok(no_serial.clone()));
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&encode(&report())).unwrap();
        object.remove("serial");
        let body = serde_json::to_vec(&object).unwrap();
        assert_eq!(signed_decode(&body), Ok(no_serial));
    }

    #[test]
    fn types_are_strict() {
        for (field, value, expected) in [
            (
                "hostname",
                "7",
                "invalid type: integer `7`, expected a string",
            ),
            ("macs", "[1]", "expected a string"),
            ("macs", r#"["52:54:00"]"#, "is not a MAC address"),
            (
                "timeline",
                r#"[{"phase": "init", "seconds": "4"}]"#,
                "expected f64",
            ),
            (
                "timeline",
                r#"[{"phase": "init"}]"#,
                "missing field `seconds`",
            ),
            ("boot_id", "null", "expected a string"),
        ] {
            let message = json_error(&with_field(field, value));
            assert!(message.contains(expected), "{field}={value}: {message}");
            assert!(message.contains("line 1 column"), "{message}");
        }
        assert!(json_error("{").contains("EOF"));
        assert!(json_error("[]").contains("expected struct HostReport"));
        assert!(json_error(r#"{"hostname": "node1"}"#).contains("missing field"));
    }

    #[test]
    fn each_bound_has_its_own_error_naming_the_field_and_value() {
        let long = "x".repeat(100);
        assert_eq!(
            invalid(&with_field("hostname", r#""Node_1""#)),
            InvalidReport::Hostname {
                value: "\"Node_1\"".into(),
                why: "may only hold a-z, 0-9 and '-'"
            }
        );
        assert!(matches!(
            invalid(&with_field("hostname", &format!("\"{long}\""))),
            InvalidReport::Hostname {
                why: "is too long",
                ..
            }
        ));
        let error = invalid(&with_field("serial", &format!("\"{}\"", "s".repeat(129))));
        assert_eq!(
            error,
            InvalidReport::SerialTooLong {
                value: format!("{:?}… (129 characters)", "s".repeat(40)),
                len: 129
            }
        );
        assert!(error.to_string().starts_with("serial \"ssss"), "{error}");
        let macs: Vec<String> = (0..17)
            .map(|i| format!("\"52:54:00:00:00:{i:02x}\""))
            .collect();
        assert_eq!(
            invalid(&with_field("macs", &format!("[{}]", macs.join(",")))),
            InvalidReport::TooManyMacs { count: 17 }
        );
        assert_eq!(
            invalid(&with_field("boot_id", r#""""#)),
            InvalidReport::BootId {
                value: "\"\"".into(),
                len: 0
            }
        );
        assert!(matches!(
            invalid(&with_field("boot_id", &format!("\"{}\"", "b".repeat(65)))),
            InvalidReport::BootId { len: 65, .. }
        ));
        assert_eq!(
            invalid(&with_field("boot_source", r#""pxe\n""#)),
            InvalidReport::BootSource {
                value: "\"pxe\\n\"".into()
            }
        );
        let entries: Vec<&str> = (0..65).map(|_| r#"{"phase": "p", "seconds": 1}"#).collect();
        assert_eq!(
            invalid(&with_field("timeline", &format!("[{}]", entries.join(",")))),
            InvalidReport::TooManyPhases { count: 65 }
        );
        assert!(matches!(
            invalid(&with_field(
                "timeline",
                &format!(r#"[{{"phase": "{}", "seconds": 1}}]"#, "p".repeat(33))
            )),
            InvalidReport::Phase {
                index: 0,
                len: 33,
                ..
            }
        ));
        assert!(matches!(
            invalid(&with_field("timeline", r#"[{"phase": "", "seconds": 1}]"#)),
            InvalidReport::Phase {
                index: 0,
                len: 0,
                ..
            }
        ));
        let error = invalid(&with_field(
            "timeline",
            r#"[{"phase": "init", "seconds": 1}, {"phase": "late", "seconds": -2.5}]"#,
        ));
        assert_eq!(
            error.to_string(),
            "timeline[1].seconds of phase \"late\" is -2.5; it must be a finite number of seconds since power-on, 0 or more"
        );
    }

    #[test]
    fn validate_refuses_times_json_cannot_carry() {
        let mut bad = report();
        bad.timeline[1].seconds = f64::NAN;
        assert!(matches!(
            bad.validate(),
            Err(InvalidReport::Seconds { index: 1, .. })
        ));
        bad.timeline[1].seconds = f64::INFINITY;
        assert!(matches!(
            bad.validate(),
            Err(InvalidReport::Seconds { index: 1, .. })
        ));
        assert_eq!(report().validate(), Ok(()));
    }

    #[test]
    fn long_parser_messages_are_cut() {
        let body = with_field("hostname", &format!("[\"{}\"]", "h".repeat(1000)));
        let message = json_error(&body);
        assert!(message.chars().count() <= 201, "{message}");
    }

    /// A random string of `min..=max` characters from `alphabet`.
    fn random_text(rng: &mut XorShift, alphabet: &[char], min: usize, max: usize) -> String {
        let len = min + rng.below(max - min + 1);
        (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect()
    }

    /// A random report within every bound.
    fn random_report(rng: &mut XorShift) -> HostReport {
        let label: Vec<char> = ('a'..='z').chain('0'..='9').collect();
        let any: Vec<char> = label
            .iter()
            .copied()
            .chain([' ', '"', '\\', '\n', 'é', '€', '\u{1F600}', '\0'])
            .collect();
        let hostname = random_text(rng, &label, 1, 63);
        let serial = (rng.below(2) == 0).then(|| random_text(rng, &any, 0, MAX_SERIAL_LEN));
        let macs = (0..rng.below(MAX_MACS + 1))
            .map(|_| MacAddr::from_slice(&rng.bytes(6)).unwrap())
            .collect();
        let boot_id = random_text(rng, &any, 1, MAX_BOOT_ID_LEN);
        let boot_source = BOOT_SOURCES[rng.below(2)].to_string();
        let timeline = (0..rng.below(MAX_TIMELINE + 1))
            .map(|_| TimelineEntry {
                phase: random_text(rng, &any, 1, MAX_PHASE_LEN),
                seconds: match rng.below(3) {
                    0 => 0.0,
                    1 => rng.unit() * 1e6,
                    // Any bit pattern with the sign and top exponent bits clear: positive,
                    // finite, below 2, subnormals included.
                    _ => f64::from_bits(rng.next_u64() >> 2),
                },
            })
            .collect();
        HostReport {
            hostname,
            serial,
            macs,
            boot_id,
            boot_source,
            timeline,
        }
    }

    #[test]
    fn random_reports_survive_encode_and_decode() {
        let mut rng = XorShift::new(0x5eed);
        for _ in 0..2000 {
            let report = random_report(&mut rng);
            assert_eq!(report.validate(), Ok(()), "{report:?}");
            let body = encode(&report);
            assert_eq!(signed_decode(&body), Ok(report));
        }
    }

    #[test]
    fn random_bytes_signed_never_panic() {
        let mut rng = XorShift::new(99);
        let good = encode(&report());
        for _ in 0..5000 {
            let mut body = good.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(body.len());
                body[at] = rng.next_u64() as u8;
            }
            // Either it still decodes to a valid report, or an error is returned.
            if let Ok(decoded) = signed_decode(&body) {
                assert_eq!(decoded.validate(), Ok(()));
            }
        }
    }
}
