//! OpenSSH public keys as they appear in `authorized_keys`: `<type> <base64> [comment]`.
//!
//! A key is accepted only when its base64 decodes and the blob inside names the same key type
//! as the text before it: that catches keys cut short by a copy and paste, and private keys or
//! fingerprints pasted by mistake, before they lock someone out of every host.

use std::fmt;

use base64::Engine;

/// The key types accepted (those of OpenSSH 9, Debian 12's, that are not deprecated), each
/// with the number of fields its blob holds (RFC 4253 6.6, RFC 5656 3.1, OpenSSH PROTOCOL.u2f):
/// the type itself, then the key's own fields.
const KEY_FORMATS: &[(&str, usize)] = &[
    ("ssh-ed25519", 2),
    ("ssh-rsa", 3),
    ("ecdsa-sha2-nistp256", 3),
    ("ecdsa-sha2-nistp384", 3),
    ("ecdsa-sha2-nistp521", 3),
    ("sk-ssh-ed25519@openssh.com", 3),
    ("sk-ecdsa-sha2-nistp256@openssh.com", 4),
];

/// The names of the key types accepted.
pub fn key_types() -> impl Iterator<Item = &'static str> {
    KEY_FORMATS.iter().map(|(name, _)| *name)
}

/// A public key that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// Its type, one of [`key_types`].
    pub key_type: &'static str,
    /// The key itself, base64 as given.
    pub base64: String,
    /// The comment after the key (usually `user@machine`), if any.
    pub comment: Option<String>,
}

impl fmt::Display for SshKey {
    /// The key as one `authorized_keys` line (without the newline), single-spaced.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key_type, self.base64)?;
        if let Some(comment) = &self.comment {
            write!(f, " {comment}")?;
        }
        Ok(())
    }
}

/// Why a text is no usable public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshKeyError {
    /// Nothing but whitespace.
    #[error("is empty")]
    Empty,
    /// The first word is no key type OpenSSH accepts.
    #[error("starts with `{found}`, which is no SSH public key type (expected one of {})", key_types().collect::<Vec<_>>().join(", "))]
    UnknownType {
        /// The first word, cut to 40 characters (it may be a whole private key).
        found: String,
    },
    /// The type is not followed by the key.
    #[error("has the type `{key_type}` but no key after it")]
    MissingKey {
        /// The key type given.
        key_type: &'static str,
    },
    /// The key is not valid base64 (cut short, or with characters that do not belong).
    #[error("has a `{key_type}` key that is not valid base64 ({why})")]
    NotBase64 {
        /// The key type given.
        key_type: &'static str,
        /// What the decoder found.
        why: String,
    },
    /// The decoded key is cut short: a field is longer than what is left, or fields are
    /// missing.
    #[error("has a `{key_type}` key that is cut short ({length} bytes)")]
    Truncated {
        /// The key type given.
        key_type: &'static str,
        /// The decoded length.
        length: usize,
    },
    /// Bytes follow the key's last field.
    #[error("has a `{key_type}` key with {extra} bytes too many at its end")]
    TrailingBytes {
        /// The key type given.
        key_type: &'static str,
        /// How many bytes follow the last field.
        extra: usize,
    },
    /// The decoded key names another type than the text before it.
    #[error("says `{key_type}` but the key itself is a `{inside}` key")]
    TypeMismatch {
        /// The key type given.
        key_type: &'static str,
        /// The type named inside the key.
        inside: String,
    },
}

/// Parses one public key line.
pub fn parse(text: &str) -> Result<SshKey, SshKeyError> {
    let mut words = text.split_whitespace();
    let first = words.next().ok_or(SshKeyError::Empty)?;
    let (key_type, field_count) = KEY_FORMATS
        .iter()
        .copied()
        .find(|(known, _)| *known == first)
        .ok_or_else(|| SshKeyError::UnknownType {
            found: first.chars().take(40).collect(),
        })?;
    let base64 = words.next().ok_or(SshKeyError::MissingKey { key_type })?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|e| SshKeyError::NotBase64 {
            key_type,
            why: e.to_string(),
        })?;
    check_blob(key_type, field_count, &blob)?;
    let comment = words.collect::<Vec<_>>().join(" ");
    Ok(SshKey {
        key_type,
        base64: base64.to_string(),
        comment: (!comment.is_empty()).then_some(comment),
    })
}

/// Checks that `blob` is `field_count` fields, the first naming `key_type`.
fn check_blob(key_type: &'static str, field_count: usize, blob: &[u8]) -> Result<(), SshKeyError> {
    let truncated = SshKeyError::Truncated {
        key_type,
        length: blob.len(),
    };
    let (inside, mut rest) = split_field(blob).ok_or_else(|| truncated.clone())?;
    if inside != key_type.as_bytes() {
        return Err(SshKeyError::TypeMismatch {
            key_type,
            inside: String::from_utf8_lossy(inside).chars().take(40).collect(),
        });
    }
    for _ in 1..field_count {
        let (_, after) = split_field(rest).ok_or_else(|| truncated.clone())?;
        rest = after;
    }
    if !rest.is_empty() {
        return Err(SshKeyError::TrailingBytes {
            key_type,
            extra: rest.len(),
        });
    }
    Ok(())
}

/// Splits the first field off `bytes`: a big-endian u32 length, then that many bytes.
fn split_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let length: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let end = usize::try_from(u32::from_be_bytes(length))
        .ok()?
        .checked_add(4)?;
    Some((bytes.get(4..end)?, bytes.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAfdBKQ6nVbTMx2h+wNG8DUcUE/qHP35oorz1Ohn7DiK admin@laptop";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCxbEgLmI9KN7XMt37A3YhlfTV5QkCIaesBZyxkLfzwKPD2PiPY1QqRsvfXMS70v4tC/ugQe1bGIQ+f8cCi6Ugul13SLGxYLZrDNtVj9q3xf5MSsbldvJMzSTYA5w+lU/QqU0xOd6sId/lvOpu+zmmkH9f61hcXK9dBSXhYYPfbzm1oiFUo5hn1IfuI5WtUXon0mlet2yuniogltU/h3iSGksRN2K4AHA9VYhAwKjVGqnqPs5DPkL7nuu9hHO36ukzM44M3fh69ix/kGAkOdFvak9p5otPHtn3C+yfAEMnzZNqv1S/MAQsZa8mTWJHVrmJ9EwlhU2PMhoOYDuP2BtCYYiA6BLkHhmusa366D/tCufSc5Xtjx/YSu+5uKaEEOh7VW35SGWMvJMYfloM/ddrcWZ5ARPBZws/JZfmuuRsKBTww14K7xseg6261MzNYps0bYIHFnIMURf5F9mmFHZuYJ1zMi9sUTzmbuuVJTwknCBn/yub2s82mbVNHax0aBEU= admin@laptop";
    const ECDSA_256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDvZxsmjMHQ4/9aKq8TgV1Q7BzvSr9KT8uhKUXbqiobEqYJJ2LCrmGXSu5Mklbgq21H+gWdmVHtuvwesXPYhyBA=";
    const ECDSA_384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBJw35YAbgSJ1ZhsU+Ki1ozb9m4n1eaParFJuud8dSaYAjSyUbVZ3WeqS7QUXlIvgqtMvVssPNJvVZzZb27/JRzHRs09TgpP0REKxczS0mRBPvboG6yQT2B+bsW6KAOVpjQ== x y";

    #[test]
    fn real_keys_are_accepted() {
        let ed = parse(ED25519).unwrap();
        assert_eq!(ed.key_type, "ssh-ed25519");
        assert_eq!(ed.comment.as_deref(), Some("admin@laptop"));
        assert_eq!(parse(RSA).unwrap().key_type, "ssh-rsa");
        assert_eq!(parse(ECDSA_256).unwrap().comment, None);
        let ecdsa = parse(ECDSA_384).unwrap();
        assert_eq!(ecdsa.comment.as_deref(), Some("x y"));
        assert_eq!(ecdsa.to_string(), ECDSA_384);
    }

    #[test]
    fn other_key_types_are_accepted() {
        let ecdsa_521 = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBACVtNozIghq5l5m6czxmE/E3/uCQHUuN/1ac8oN3jDTQgH3tfFU3HxhapYMmJYtnMb6Jpj00xsbr9rdzbKjFqnaEQHbdwG8e6/AFSYRIyGcbOznFI/C354e1ECopaLKGx4np/3AJDIczWgMhiHnvTdubTRDRRLxWa8jh/slftYPDUnvPw==";
        assert_eq!(parse(ecdsa_521).unwrap().key_type, "ecdsa-sha2-nistp521");
        // A security-key ed25519 key (type, the 32-byte key 0..=31, application "ssh:"), built
        // by hand: the field after the key is what sets it apart from a plain ed25519 key.
        let sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fAAAABHNzaDo= yubikey";
        assert_eq!(parse(sk).unwrap().comment.as_deref(), Some("yubikey"));
        let without_application = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";
        assert_eq!(
            parse(without_application),
            Err(SshKeyError::Truncated {
                key_type: "sk-ssh-ed25519@openssh.com",
                length: 66
            })
        );
    }

    #[test]
    fn extra_whitespace_is_normalised() {
        let spaced = ED25519.replace(' ', "  \t");
        assert_eq!(parse(&format!(" {spaced}\n")).unwrap().to_string(), ED25519);
    }

    #[test]
    fn a_truncated_key_is_refused() {
        // Cut mid-key: the base64 length is no longer a multiple of 4.
        let cut = &ED25519[..61];
        assert!(
            matches!(parse(cut), Err(SshKeyError::NotBase64 { .. })),
            "{:?}",
            parse(cut)
        );
        // Cut on a 4-character boundary: valid base64, but shorter than its fields say.
        assert_eq!(
            parse(&ED25519[..60]),
            Err(SshKeyError::Truncated {
                key_type: "ssh-ed25519",
                length: 36
            })
        );
        // Cut right after the type: the key's own field is missing.
        assert_eq!(
            parse("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"),
            Err(SshKeyError::Truncated {
                key_type: "ssh-ed25519",
                length: 15
            })
        );
        // Two keys run together: bytes after the last field.
        let ed_blob = ED25519.split(' ').nth(1).unwrap();
        assert!(matches!(
            parse(&format!("ssh-ed25519 {ed_blob}{ed_blob}")),
            Err(SshKeyError::NotBase64 { .. } | SshKeyError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn a_key_of_another_type_is_refused() {
        let ed_blob = ED25519.split(' ').nth(1).unwrap();
        let lied = format!("ssh-rsa {ed_blob}");
        assert_eq!(
            parse(&lied).unwrap_err().to_string(),
            "says `ssh-rsa` but the key itself is a `ssh-ed25519` key"
        );
    }

    #[test]
    fn other_texts_are_refused() {
        assert_eq!(parse("  "), Err(SshKeyError::Empty));
        assert_eq!(
            parse("ssh-ed25519"),
            Err(SshKeyError::MissingKey {
                key_type: "ssh-ed25519"
            })
        );
        assert!(matches!(
            parse("ssh-dss AAAAB3NzaC1kc3M="),
            Err(SshKeyError::UnknownType { found }) if found == "ssh-dss"
        ));
        assert!(matches!(
            parse("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Err(SshKeyError::UnknownType { .. })
        ));
        assert!(matches!(
            parse("ssh-ed25519 not*base64"),
            Err(SshKeyError::NotBase64 { .. })
        ));
    }
}
