//! crypt(3) password hashes as `/etc/shadow` holds them: `$y$` (yescrypt, Debian 12's
//! default), `$6$` (SHA-512) and `$5$` (SHA-256).
//!
//! The configuration travels to every host, so it must never hold a password in clear: a text
//! that is no such hash is refused, and the error never repeats the text itself.

/// The characters of crypt's base64 (salts and hashes).
const CRYPT_ALPHABET: &str = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The longest salt SHA-crypt uses (longer salts are silently cut by crypt(3)).
const MAX_SHA_SALT: usize = 16;

/// Why a text is no usable password hash. No variant carries the text: it may be a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    /// Not `$`-separated at all: most likely the password itself.
    #[error("is not a password hash; it looks like a password in clear, which must never be in the configuration")]
    PlainText,
    /// A `$id$` PXEN does not accept.
    #[error("uses the hash method `${id}$`; only $y$ (yescrypt), $6$ (SHA-512) and $5$ (SHA-256) are accepted")]
    UnsupportedMethod {
        /// The method's id (e.g. `1` for MD5); empty when there is none.
        id: String,
    },
    /// The number of `$`-separated fields does not fit the method.
    #[error(
        "is a cut or damaged `${id}$` hash: it has {found} `$`-separated fields, not {expected}"
    )]
    WrongFieldCount {
        /// The method's id.
        id: &'static str,
        /// The fields the method has.
        expected: &'static str,
        /// The fields found.
        found: usize,
    },
    /// A SHA-crypt `rounds=` field that is no number in 1000..=999999999.
    #[error("has a `rounds=` field that is not a number from 1000 to 999999999")]
    BadRounds,
    /// A field with a character outside crypt's alphabet, or of the wrong length.
    #[error("is a damaged `${id}$` hash: its {field} must be {rule}")]
    BadField {
        /// The method's id.
        id: &'static str,
        /// Which field (`salt`, `hash`, `parameters`).
        field: &'static str,
        /// What it must be.
        rule: &'static str,
    },
}

/// Checks a password hash.
pub fn check(text: &str) -> Result<(), CryptError> {
    let Some(rest) = text.strip_prefix('$') else {
        return Err(CryptError::PlainText);
    };
    let fields: Vec<&str> = rest.split('$').collect();
    match fields[0] {
        "y" => check_yescrypt(&fields[1..]),
        "6" => check_sha("6", &fields[1..], 86),
        "5" => check_sha("5", &fields[1..], 43),
        id if fields.len() == 1 => Err(if id.is_empty() {
            CryptError::UnsupportedMethod { id: String::new() }
        } else {
            CryptError::PlainText
        }),
        id => Err(CryptError::UnsupportedMethod {
            id: id.chars().take(8).collect(),
        }),
    }
}

/// `$y$<parameters>$<salt>$<hash>`, the hash 43 characters.
fn check_yescrypt(fields: &[&str]) -> Result<(), CryptError> {
    let [parameters, salt, hash] = fields else {
        return Err(CryptError::WrongFieldCount {
            id: "y",
            expected: "4 ($y$parameters$salt$hash)",
            found: fields.len() + 1,
        });
    };
    check_field("y", "parameters", parameters, 1..=usize::MAX)?;
    check_field("y", "salt", salt, 1..=usize::MAX)?;
    check_field("y", "hash", hash, 43..=43)
}

/// `$<id>$[rounds=N$]<salt>$<hash>`, the hash `hash_len` characters.
fn check_sha(id: &'static str, fields: &[&str], hash_len: usize) -> Result<(), CryptError> {
    let (salt, hash) = match fields {
        [salt, hash] => (salt, hash),
        [rounds, salt, hash] => {
            check_rounds(rounds)?;
            (salt, hash)
        }
        _ => {
            return Err(CryptError::WrongFieldCount {
                id,
                expected: "3 or 4 ($id$[rounds=N$]salt$hash)",
                found: fields.len() + 1,
            })
        }
    };
    check_field(id, "salt", salt, 1..=MAX_SHA_SALT)?;
    check_field(id, "hash", hash, hash_len..=hash_len)
}

fn check_rounds(field: &str) -> Result<(), CryptError> {
    let rounds: u64 = field
        .strip_prefix("rounds=")
        .and_then(|n| n.parse().ok())
        .ok_or(CryptError::BadRounds)?;
    if (1000..=999_999_999).contains(&rounds) {
        Ok(())
    } else {
        Err(CryptError::BadRounds)
    }
}

fn check_field(
    id: &'static str,
    field: &'static str,
    value: &str,
    length: std::ops::RangeInclusive<usize>,
) -> Result<(), CryptError> {
    let in_alphabet = value.chars().all(|c| CRYPT_ALPHABET.contains(c));
    if in_alphabet && length.contains(&value.len()) {
        return Ok(());
    }
    let rule = match (field, id) {
        ("hash", "6") => "86 characters of a-z, A-Z, 0-9, '.' and '/'",
        ("hash", _) => "43 characters of a-z, A-Z, 0-9, '.' and '/'",
        ("salt", "y") | ("parameters", _) => "1 or more characters of a-z, A-Z, 0-9, '.' and '/'",
        _ => "1 to 16 characters of a-z, A-Z, 0-9, '.' and '/'",
    };
    Err(CryptError::BadField { id, field, rule })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with crypt(3) (password "pw").
    const YESCRYPT: &str =
        "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$U4SOHmDd8SvW5vCUKSMR6N835VPwFAtgYNhQ9mFFeL5";
    const SHA512: &str = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";
    const SHA512_ROUNDS: &str = "$6$rounds=5000$abc$MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJqOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5.";
    const SHA256: &str = "$5$saltsalt$0rl.MZtoLLPP3X0Rdl8riRnphIcAXJY27/aOAyK2hB5";

    #[test]
    fn real_hashes_are_accepted() {
        for hash in [YESCRYPT, SHA512, SHA512_ROUNDS, SHA256] {
            assert_eq!(check(hash), Ok(()), "{hash}");
        }
    }

    #[test]
    fn plain_passwords_are_refused_without_repeating_them() {
        for password in ["hunter2", "correct horse battery staple", "$ecret", ""] {
            let error = check(password).unwrap_err();
            assert_eq!(error, CryptError::PlainText, "{password:?}");
            assert!(password.is_empty() || !error.to_string().contains(password));
        }
    }

    #[test]
    fn other_methods_are_refused() {
        assert_eq!(
            check("$1$salt$qJH7.N4xYta3aEG/dfqo/0"),
            Err(CryptError::UnsupportedMethod { id: "1".into() })
        );
        assert_eq!(
            check("$$x"),
            Err(CryptError::UnsupportedMethod { id: String::new() })
        );
    }

    #[test]
    fn damaged_hashes_are_refused() {
        let cut = &SHA512[..SHA512.len() - 1];
        assert_eq!(
            check(cut).unwrap_err().to_string(),
            "is a damaged `$6$` hash: its hash must be 86 characters of a-z, A-Z, 0-9, '.' and '/'"
        );
        assert!(matches!(
            check("$y$j9T$salt"),
            Err(CryptError::WrongFieldCount {
                id: "y",
                found: 3,
                ..
            })
        ));
        assert_eq!(
            check(&SHA256.replace("saltsalt", "salt:alt")),
            Err(CryptError::BadField {
                id: "5",
                field: "salt",
                rule: "1 to 16 characters of a-z, A-Z, 0-9, '.' and '/'"
            })
        );
        assert_eq!(
            check(&SHA512_ROUNDS.replace("5000", "10")),
            Err(CryptError::BadRounds)
        );
    }
}
