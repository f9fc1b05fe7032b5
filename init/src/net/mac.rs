//! Ethernet MAC addresses: parsing what administrators write, printing one canonical form.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet MAC address.
///
/// Parsed from `52:54:00:12:34:56` or `52-54-00-12-34-56` (either case); always displayed in
/// the lower-case colon form, so logs and the configuration agree on one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr([u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacParseError {
    /// The string does not have six groups separated by `:` or `-`.
    #[error("`{input}` is not a MAC address: expected six groups of two hex digits separated by `:` or `-`, like 52:54:00:12:34:56")]
    WrongShape {
        /// The string given.
        input: String,
    },
    /// The string mixes `:` and `-` separators.
    #[error("`{input}` is not a MAC address: it mixes `:` and `-`; use one separator, like 52:54:00:12:34:56")]
    MixedSeparators {
        /// The string given.
        input: String,
    },
    /// A group is not two hexadecimal digits.
    #[error("`{input}` is not a MAC address: group {group} (`{text}`) is not two hex digits")]
    BadGroup {
        /// The string given.
        input: String,
        /// The 1-based position of the bad group.
        group: usize,
        /// The bad group's text.
        text: String,
    },
}

impl MacAddr {
    /// The Ethernet broadcast address, ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address made of these six bytes.
    pub const fn new(octets: [u8; 6]) -> MacAddr {
        MacAddr(octets)
    }

    /// The address held in the first six bytes of `bytes`, or `None` when there are fewer.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        let octets: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(octets))
    }

    /// The six bytes of the address, in transmission order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True for group addresses (multicast and broadcast): the I/G bit of the first byte.
    /// No network card has one, so they never name a machine to wake or boot.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(input: &str) -> Result<MacAddr, MacParseError> {
        let separator = match (input.contains(':'), input.contains('-')) {
            (true, true) => {
                return Err(MacParseError::MixedSeparators {
                    input: input.to_owned(),
                });
            }
            (_, true) => '-',
            _ => ':',
        };
        let groups: Vec<&str> = input.split(separator).collect();
        if groups.len() != 6 {
            return Err(MacParseError::WrongShape {
                input: input.to_owned(),
            });
        }
        let mut octets = [0u8; 6];
        for (index, (octet, text)) in octets.iter_mut().zip(&groups).enumerate() {
            // from_str_radix alone would accept "+f" or "f": insist on exactly two hex digits.
            let two_hex_digits = text.len() == 2 && text.bytes().all(|b| b.is_ascii_hexdigit());
            *octet = match u8::from_str_radix(text, 16) {
                Ok(value) if two_hex_digits => value,
                _ => {
                    return Err(MacParseError::BadGroup {
                        input: input.to_owned(),
                        group: index + 1,
                        text: (*text).to_owned(),
                    })
                }
            };
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<MacAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators_and_cases() {
        let expected = MacAddr::new([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        for text in [
            "52:54:00:ab:cd:ef",
            "52-54-00-AB-CD-EF",
            "52:54:00:Ab:cD:eF",
        ] {
            assert_eq!(text.parse::<MacAddr>(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn displays_lower_case_colon_form() {
        let mac: MacAddr = "52-54-00-AB-CD-EF".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:ef");
    }

    #[test]
    fn rejects_malformed_addresses_naming_the_input() {
        let cases: [(&str, MacParseError); 7] = [
            ("", MacParseError::WrongShape { input: "".into() }),
            (
                "52:54:00:ab:cd",
                MacParseError::WrongShape {
                    input: "52:54:00:ab:cd".into(),
                },
            ),
            (
                "52:54:00:ab:cd:ef:01",
                MacParseError::WrongShape {
                    input: "52:54:00:ab:cd:ef:01".into(),
                },
            ),
            (
                "52:54-00:ab:cd:ef",
                MacParseError::MixedSeparators {
                    input: "52:54-00:ab:cd:ef".into(),
                },
            ),
            (
                "52:54:0:ab:cd:ef",
                MacParseError::BadGroup {
                    input: "52:54:0:ab:cd:ef".into(),
                    group: 3,
                    text: "0".into(),
                },
            ),
            (
                "52:54:00:ab:cd:+f",
                MacParseError::BadGroup {
                    input: "52:54:00:ab:cd:+f".into(),
                    group: 6,
                    text: "+f".into(),
                },
            ),
            (
                "52:54:00:zz:cd:ef",
                MacParseError::BadGroup {
                    input: "52:54:00:zz:cd:ef".into(),
                    group: 4,
                    text: "zz".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            let error = text.parse::<MacAddr>().unwrap_err();
            assert!(error.to_string().contains(&format!("`{text}`")), "{error}");
            assert_eq!(error, expected);
        }
    }

    #[test]
    fn group_bit_marks_multicast() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::new([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr::new([0x52, 0x54, 0, 0, 0, 1]).is_multicast());
    }

    #[test]
    fn from_slice_needs_six_bytes() {
        assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr::new([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn serde_uses_the_text_form() {
        let mac: MacAddr = ron::from_str("\"52-54-00-00-00-01\"").unwrap();
        assert_eq!(mac, MacAddr::new([0x52, 0x54, 0, 0, 0, 1]));
        assert_eq!(ron::to_string(&mac).unwrap(), "\"52:54:00:00:00:01\"");
        let error = ron::from_str::<MacAddr>("\"nope\"").unwrap_err();
        assert!(error.to_string().contains("`nope`"), "{error}");
    }
}
