//! Option negotiation: what a read request asks for, and what the server grants.
//!
//! Options (RFC 2347) are name/value strings; names are case-insensitive. The server answers
//! the options it accepts in an OACK, with the values it will use, and ignores the others, as
//! RFC 2347 allows. If it accepts none, it sends no OACK and the transfer starts with DATA
//! block 1, exactly as in RFC 1350. The options understood:
//!
//! | option | RFC | rule |
//! | --- | --- | --- |
//! | `blksize` | 2348 | 8..=65464, lowered to the configured maximum; below 8 or not a number: ignored |
//! | `tsize` | 2349 | answered with the file's size |
//! | `timeout` | 2349 | 1..=255 seconds, accepted as sent, used as the first retransmission timeout; otherwise ignored |
//! | `windowsize` | 7440 | 1..=65535, lowered to the configured maximum and so that a window holds at most [`Limits::max_window_bytes`]; 0 or not a number: ignored |
//!
//! When an option is sent twice, the first one counts.

use std::time::Duration;

/// RFC 1350's block size, used when the client does not ask for another.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// The smallest block size RFC 2348 allows.
pub const MIN_BLKSIZE: u16 = 8;
/// The largest block size RFC 2348 allows (a 65535-byte IP datagram minus the IP, UDP and TFTP headers).
pub const MAX_BLKSIZE: u16 = 65464;

/// The limits the server puts on what clients ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest block size granted (clamped to [`MIN_BLKSIZE`]..=[`MAX_BLKSIZE`]).
    pub max_blksize: u16,
    /// The largest window granted (RFC 7440), at least 1.
    pub max_windowsize: u16,
    /// The most bytes of data a window may hold (at least one block is always granted). A
    /// window arrives at the client in one burst: if it does not fit the client's socket
    /// receive buffer (Linux: 208 KiB by default, each datagram counting for more than its
    /// size), its tail is dropped and every window costs a retransmission timeout.
    pub max_window_bytes: u32,
}

/// What a transfer will use, and the OACK that tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Bytes per DATA block.
    pub blksize: u16,
    /// Blocks sent before waiting for an ACK.
    pub windowsize: u16,
    /// The retransmission timeout the client asked for, if any.
    pub timeout: Option<Duration>,
    /// The accepted options with their final values, in the client's order; empty means no
    /// OACK is sent.
    pub oack: Vec<(&'static str, String)>,
}

/// Decides the transfer's parameters from the request's options for a file of `file_len` bytes.
pub fn negotiate(requested: &[(&str, &str)], limits: Limits, file_len: u64) -> Negotiated {
    let max_blksize = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE);
    let max_windowsize = limits.max_windowsize.max(1);
    let mut negotiated = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: None,
        oack: Vec::new(),
    };
    for (name, value) in requested {
        let name = name.to_ascii_lowercase();
        let canonical: &'static str = match name.as_str() {
            "blksize" => "blksize",
            "tsize" => "tsize",
            "timeout" => "timeout",
            "windowsize" => "windowsize",
            // Unknown options are ignored (RFC 2347): they are simply not acknowledged.
            _ => continue,
        };
        if negotiated
            .oack
            .iter()
            .any(|(granted, _)| *granted == canonical)
        {
            continue;
        }
        let granted = match canonical {
            "blksize" => grant_blksize(value, max_blksize).map(|size| {
                negotiated.blksize = size;
                size.to_string()
            }),
            "windowsize" => grant_windowsize(value, max_windowsize).map(|size| {
                negotiated.windowsize = size;
                size.to_string()
            }),
            "timeout" => grant_timeout(value).map(|seconds| {
                negotiated.timeout = Some(Duration::from_secs(u64::from(seconds)));
                seconds.to_string()
            }),
            // "tsize": a client reading a file sends 0 and gets the size back (RFC 2349).
            _ => value.parse::<u64>().ok().map(|_| file_len.to_string()),
        };
        if let Some(value) = granted {
            negotiated.oack.push((canonical, value));
        }
    }
    fit_window_in_bytes(&mut negotiated, limits.max_window_bytes);
    negotiated
}

/// Lowers the window so that it holds at most `max_bytes` of data, now that the block size is known.
fn fit_window_in_bytes(negotiated: &mut Negotiated, max_bytes: u32) {
    let fitting = (max_bytes / u32::from(negotiated.blksize)).clamp(1, u32::from(u16::MAX)) as u16;
    if negotiated.windowsize <= fitting {
        return;
    }
    negotiated.windowsize = fitting;
    for (name, value) in &mut negotiated.oack {
        if *name == "windowsize" {
            *value = fitting.to_string();
        }
    }
}

fn grant_blksize(value: &str, max: u16) -> Option<u16> {
    let asked = value.parse::<u64>().ok()?;
    // A value above the maximum is lowered (RFC 2348 lets the server answer a smaller size).
    (asked >= u64::from(MIN_BLKSIZE)).then(|| asked.min(u64::from(max)) as u16)
}

fn grant_windowsize(value: &str, max: u16) -> Option<u16> {
    let asked = value.parse::<u64>().ok()?;
    (asked >= 1).then(|| asked.min(u64::from(max)) as u16)
}

fn grant_timeout(value: &str) -> Option<u8> {
    value.parse::<u8>().ok().filter(|&seconds| seconds >= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_blksize: 8192,
        max_windowsize: 16,
        max_window_bytes: 65536,
    };

    fn oack(negotiated: &Negotiated) -> Vec<(&str, &str)> {
        negotiated
            .oack
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect()
    }

    #[test]
    fn no_options_means_rfc_1350_and_no_oack() {
        let negotiated = negotiate(&[], LIMITS, 100);
        assert_eq!(
            negotiated,
            Negotiated {
                blksize: 512,
                windowsize: 1,
                timeout: None,
                oack: vec![]
            }
        );
    }

    #[test]
    fn known_options_are_granted_in_the_clients_order() {
        let negotiated = negotiate(
            &[
                ("TSIZE", "0"),
                ("blksize", "1468"),
                ("windowsize", "4"),
                ("timeout", "3"),
                ("multicast", ""),
            ],
            LIMITS,
            123_456,
        );
        assert_eq!(negotiated.blksize, 1468);
        assert_eq!(negotiated.windowsize, 4);
        assert_eq!(negotiated.timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            oack(&negotiated),
            [
                ("tsize", "123456"),
                ("blksize", "1468"),
                ("windowsize", "4"),
                ("timeout", "3")
            ]
        );
    }

    #[test]
    fn values_over_the_limits_are_lowered_and_invalid_ones_ignored() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("blksize", "65464", Some("8192")),
            ("blksize", "99999999999999999999", None),
            ("blksize", "100000", Some("8192")),
            ("blksize", "8", Some("8")),
            ("blksize", "7", None),
            ("blksize", "-1", None),
            ("blksize", "", None),
            ("windowsize", "64", Some("16")),
            ("windowsize", "0", None),
            ("windowsize", "x", None),
            ("timeout", "0", None),
            ("timeout", "255", Some("255")),
            ("timeout", "256", None),
            ("tsize", "abc", None),
        ];
        for (name, value, expected) in cases {
            let negotiated = negotiate(&[(name, value)], LIMITS, 5);
            let granted = oack(&negotiated).first().map(|(_, value)| *value);
            assert_eq!(granted, *expected, "{name}={value}");
        }
        assert_eq!(
            negotiate(&[("blksize", "7")], LIMITS, 5).blksize,
            DEFAULT_BLKSIZE
        );
    }

    #[test]
    fn a_window_is_lowered_to_fit_the_byte_budget_whatever_the_option_order() {
        let negotiated = negotiate(&[("windowsize", "16"), ("blksize", "8192")], LIMITS, 5);
        assert_eq!(negotiated.windowsize, 8);
        assert_eq!(
            oack(&negotiated),
            [("windowsize", "8"), ("blksize", "8192")]
        );
        let huge = Limits {
            max_blksize: 65464,
            ..LIMITS
        };
        let negotiated = negotiate(&[("blksize", "65464"), ("windowsize", "4")], huge, 5);
        assert_eq!(
            (negotiated.windowsize, oack(&negotiated)[1]),
            (1, ("windowsize", "1"))
        );
        let negotiated = negotiate(&[("blksize", "1468"), ("windowsize", "8")], LIMITS, 5);
        assert_eq!(
            negotiated.windowsize, 8,
            "8 blocks of 1468 bytes fit in 64 KiB"
        );
    }

    #[test]
    fn the_first_of_a_repeated_option_counts_and_limits_are_sane() {
        let negotiated = negotiate(&[("blksize", "1024"), ("BLKSIZE", "2048")], LIMITS, 5);
        assert_eq!(
            (negotiated.blksize, oack(&negotiated)),
            (1024, vec![("blksize", "1024")])
        );
        let odd = Limits {
            max_blksize: 0,
            max_windowsize: 0,
            max_window_bytes: 0,
        };
        let negotiated = negotiate(&[("blksize", "4096"), ("windowsize", "8")], odd, 5);
        assert_eq!(
            (negotiated.blksize, negotiated.windowsize),
            (MIN_BLKSIZE, 1)
        );
    }
}
