//! The cluster configuration: RON files in the `config/` directory of the flash drive.
//!
//! `cluster.ron` holds the cluster's name and the hosts the administrator names. The files are
//! checked when they are loaded, by `pxen config check DIR`, and by `mkimage` before it builds
//! an image. Every problem is reported at once, each with its file, line and column, what is
//! wrong and how to fix it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity;
use crate::net::mac::MacAddr;

/// The file that describes the cluster.
pub const CLUSTER_FILE: &str = "cluster.ron";

/// The files PXEN reads in a configuration directory.
pub const KNOWN_FILES: &[&str] = &[CLUSTER_FILE];

/// The annotated default `cluster.ron`, with [`SECRET_PLACEHOLDER`] where each drive's own
/// secret goes (see [`default_files`]).
const DEFAULT_CLUSTER_TEMPLATE: &str = include_str!("../config-default/cluster.ron");

/// Stands for the generated secret in the default configuration's template.
const SECRET_PLACEHOLDER: &str = "@SECRET@";

/// The shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// The whole cluster, as described by `cluster.ron`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// A short name for the cluster, shown on consoles and status pages.
    pub name: String,
    /// The shared secret hosts sign their messages to host0 with (at least
    /// [`MIN_SECRET_LEN`] characters).
    pub secret: String,
    /// Hosts not listed in `hosts` are named `<hostname_prefix>-<10 hex digits>`.
    #[serde(default = "default_hostname_prefix")]
    pub hostname_prefix: String,
    /// Machines the administrator names.
    #[serde(default)]
    pub hosts: Vec<Host>,
}

/// A machine the administrator names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// The DMI system serial number (`/sys/class/dmi/id/product_serial`).
    pub serial: String,
    /// The hostname this machine gets: a DNS label.
    pub hostname: String,
    /// Its network cards' MAC addresses: host0 wakes it with Wake-on-LAN on each.
    #[serde(default)]
    pub macs: Vec<MacAddr>,
}

fn default_hostname_prefix() -> String {
    "pxen".to_string()
}

impl Cluster {
    /// The hostname the configuration gives the machine with this serial, if it lists it.
    pub fn hostname_for_serial(&self, serial: &str) -> Option<&str> {
        self.hosts
            .iter()
            .find(|h| h.serial == serial)
            .map(|h| h.hostname.as_str())
    }

    /// Every MAC address host0 wakes with Wake-on-LAN: those of all listed hosts.
    pub fn wake_macs(&self) -> Vec<MacAddr> {
        self.hosts
            .iter()
            .flat_map(|h| h.macs.iter().copied())
            .collect()
    }

    /// The built-in default configuration (the one `mkimage` writes to a new drive), with a
    /// secret of its own: a host that falls back to it shares no secret with anyone.
    pub fn builtin_default() -> Cluster {
        let (_, text) = default_cluster_file(&generate_secret());
        // The default text is part of this crate and is checked by a unit test.
        parse_cluster(Path::new(CLUSTER_FILE), &text)
            .unwrap_or_else(|e| unreachable!("the built-in configuration is invalid: {e}"))
    }
}

/// The annotated default configuration for a new drive, `(file name, text)`, with `secret`
/// as the cluster secret (see [`generate_secret`]).
pub fn default_files(secret: &str) -> Vec<(&'static str, String)> {
    vec![default_cluster_file(secret)]
}

fn default_cluster_file(secret: &str) -> (&'static str, String) {
    (
        CLUSTER_FILE,
        DEFAULT_CLUSTER_TEMPLATE.replace(SECRET_PLACEHOLDER, secret),
    )
}

/// Prefixes the secret when its hash makes the cluster ID, so the ID is no hash of the secret
/// usable elsewhere.
const CLUSTER_ID_TAG: &[u8] = b"pxen cluster id\0";

/// The cluster ID of the cluster with this secret: the first 16 bytes of
/// SHA-256(`"pxen cluster id\0"` + secret), as 32 lowercase hex digits. Stable for a cluster,
/// the same on every host, and it reveals nothing of the secret. Drive identities and boot
/// server announcements carry it.
pub fn cluster_id(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(CLUSTER_ID_TAG)
        .chain_update(secret.as_bytes())
        .finalize();
    digest[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A fresh cluster secret: 32 random bytes from the kernel, as 64 hex digits.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    let from_kernel = std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| std::io::Read::read_exact(&mut urandom, &mut bytes));
    if from_kernel.is_err() {
        // Only without /dev (a broken chroot): std's hasher keys come from the kernel's
        // getrandom() too, so the secret is still unpredictable, if less directly so.
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&crate::rand::random_seed().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given to the loader.
    pub file: PathBuf,
    /// Line and column (1-based) of the problem, when it has a place in the file.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}; {}", self.message, self.fix)
    }
}

/// Every problem found in a configuration directory (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the cluster configuration has {} problem(s):",
            self.0.len()
        )?;
        for error in &self.0 {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

/// Loads and checks the configuration directory `dir`.
pub fn load_dir(dir: &Path) -> Result<Cluster, ConfigErrors> {
    let mut errors = unknown_files(dir);
    let file = dir.join(CLUSTER_FILE);
    let cluster = match std::fs::read_to_string(&file) {
        Ok(text) => match parse_cluster(&file, &text) {
            Ok(cluster) => Some(cluster),
            Err(ConfigErrors(mut found)) => {
                errors.append(&mut found);
                None
            }
        },
        Err(e) => {
            errors.push(ConfigError {
                file: file.clone(),
                position: None,
                message: format!("cannot be read: {e}"),
                fix: format!(
                    "the configuration directory must contain {CLUSTER_FILE}; \
                     copy the default with `pxen config default {}`",
                    dir.display()
                ),
            });
            None
        }
    };
    match cluster {
        Some(cluster) if errors.is_empty() => Ok(cluster),
        _ => Err(ConfigErrors(errors)),
    }
}

/// Checks the configuration directory `dir`, as `pxen config check` and `mkimage` do.
pub fn check_dir(dir: &Path) -> Result<(), ConfigErrors> {
    load_dir(dir).map(|_| ())
}

/// `.ron` files that PXEN does not read are most likely misspelt: report them.
fn unknown_files(dir: &Path) -> Vec<ConfigError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        // A missing directory is reported through the missing cluster.ron.
        return Vec::new();
    };
    let known = KNOWN_FILES;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".ron") && !known.contains(&name.as_str()))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| ConfigError {
            file: dir.join(&name),
            position: None,
            message: "is not a file PXEN reads".to_string(),
            fix: format!(
                "PXEN reads {}: rename or remove this file",
                known.join(", ")
            ),
        })
        .collect()
}

/// Parses and checks the text of `cluster.ron`.
pub fn parse_cluster(file: &Path, text: &str) -> Result<Cluster, ConfigErrors> {
    let cluster: Cluster = ron::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            position: Some((e.span.start.line, e.span.start.col)),
            message: e.code.to_string(),
            fix: "see the annotated default in `pxen config default` and the README's \
                  configuration section"
                .to_string(),
        }])
    })?;
    let errors = check_cluster(&cluster, file, text);
    if errors.is_empty() {
        Ok(cluster)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The checks that serde's types cannot express.
fn check_cluster(cluster: &Cluster, file: &Path, text: &str) -> Vec<ConfigError> {
    let locator = Locator { file, text };
    let mut errors = Vec::new();
    if cluster.name.trim().is_empty() {
        errors.push(locator.error(
            "name",
            0,
            "the cluster name is empty",
            "give the cluster a short name, e.g. name: \"lab\"",
        ));
    }
    if cluster.secret.chars().count() < MIN_SECRET_LEN {
        errors.push(locator.error(
            &cluster.secret,
            0,
            &format!(
                "the secret has {} characters, fewer than {MIN_SECRET_LEN}",
                cluster.secret.chars().count()
            ),
            "use a long random secret, e.g. one printed by `pxen config secret`",
        ));
    }
    if let Err(why) = identity::check_hostname_prefix(&cluster.hostname_prefix) {
        errors.push(locator.error(
            &cluster.hostname_prefix,
            0,
            &format!("hostname_prefix `{}` {why}", cluster.hostname_prefix),
            "use 1 to 52 of a-z, 0-9 and '-', not starting or ending with '-'",
        ));
    }
    let mut seen_serials: HashMap<&str, usize> = HashMap::new();
    let mut seen_hostnames: HashMap<String, usize> = HashMap::new();
    let mut seen_macs: HashMap<MacAddr, usize> = HashMap::new();
    for host in &cluster.hosts {
        for mac in &host.macs {
            let mac_seen = seen_macs.entry(*mac).or_insert(0);
            *mac_seen += 1;
            if *mac_seen == 2 {
                errors.push(locator.error(
                    &mac.to_string(),
                    1,
                    &format!("MAC address {mac} is listed twice"),
                    "a network card belongs to one machine: remove or correct the second one",
                ));
            }
            if mac.is_multicast() {
                errors.push(locator.error(
                    &mac.to_string(),
                    0,
                    &format!("MAC address {mac} is a multicast address"),
                    "a network card's own address has the lowest bit of its first byte clear; copy it from `ip link`",
                ));
            }
        }
        check_host(host, &locator, &mut errors);
        let serial_seen = seen_serials.entry(&host.serial).or_insert(0);
        *serial_seen += 1;
        if *serial_seen == 2 {
            errors.push(locator.error(
                &host.serial,
                1,
                &format!("serial `{}` is listed twice", host.serial),
                "each machine has one entry: remove or correct the second one",
            ));
        }
        let hostname_seen = seen_hostnames
            .entry(host.hostname.to_ascii_lowercase())
            .or_insert(0);
        *hostname_seen += 1;
        if *hostname_seen == 2 {
            errors.push(locator.error(
                &host.hostname,
                1,
                &format!("hostname `{}` is given to two machines", host.hostname),
                "give every machine its own hostname",
            ));
        }
    }
    errors
}

fn check_host(host: &Host, locator: &Locator, errors: &mut Vec<ConfigError>) {
    if let Err(why) = identity::check_hostname(&host.hostname) {
        errors.push(locator.error(
            &host.hostname,
            0,
            &format!("hostname `{}` {why}", host.hostname),
            "use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'",
        ));
    }
    if let Some(why) = identity::bogus_reason(&host.serial) {
        errors.push(locator.error(&host.serial, 0, &format!("serial `{}` {why}", host.serial), "firmware placeholders are shared by many machines: remove this entry; the machine is then named from its board serial, UUID or MAC"));
    }
}

/// Finds where a value stands in the file, to point errors at it.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    /// An error placed at the `nth` (0-based) occurrence of `value` as a string literal or,
    /// failing that, as a bare word (field names).
    fn error(&self, value: &str, nth: usize, message: &str, fix: &str) -> ConfigError {
        let quoted = format!("{value:?}");
        let position = self
            .find(&quoted, nth)
            .or_else(|| self.find(value, nth))
            .map(|offset| line_col(self.text, offset));
        ConfigError {
            file: self.file.to_path_buf(),
            position,
            message: message.to_string(),
            fix: fix.to_string(),
        }
    }

    fn find(&self, needle: &str, nth: usize) -> Option<usize> {
        if needle.is_empty() {
            return None;
        }
        self.text
            .match_indices(needle)
            .map(|(offset, _)| offset)
            .nth(nth)
    }
}

/// Line and column (1-based, columns in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid secret, for texts that are about something else.
    const SECRET: &str = "secret: \"0123456789abcdef\"";

    /// `text` (a `Cluster(...)`) with [`SECRET`] added as its last field.
    fn with_secret(text: &str) -> String {
        let body = text.strip_suffix(')').expect("a Cluster(...) text");
        format!("{body}, {SECRET})")
    }

    fn errors_of(text: &str) -> Vec<String> {
        match parse_cluster(Path::new("cluster.ron"), &with_secret(text)) {
            Ok(_) => vec![],
            Err(ConfigErrors(errors)) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_default_configuration_is_valid_and_lists_no_host() {
        let cluster = Cluster::builtin_default();
        assert_eq!(cluster.name, "pxen");
        assert_eq!(cluster.hostname_prefix, "pxen");
        assert!(cluster.hosts.is_empty());
        assert_eq!(cluster.secret.len(), 64);
        assert_ne!(
            cluster.secret,
            Cluster::builtin_default().secret,
            "every default gets its own secret"
        );
    }

    #[test]
    fn the_cluster_id_is_a_stable_tagged_hash_of_the_secret() {
        assert_eq!(cluster_id("abc"), "41d8665740cfa7140f8206c8fdd98891");
        assert_eq!(cluster_id("abc"), cluster_id("abc"));
        assert_ne!(cluster_id("abc"), cluster_id("abd"));
        // The tag makes it differ from a plain SHA-256 of the secret.
        use sha2::{Digest, Sha256};
        let plain: String = Sha256::digest(b"abc")[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(cluster_id("abc"), plain);
    }

    #[test]
    fn default_files_carry_the_secret_given() {
        let files = default_files("fedcba9876543210");
        assert_eq!(files.len(), KNOWN_FILES.len());
        let (name, text) = &files[0];
        let cluster = parse_cluster(Path::new(name), text).unwrap();
        assert_eq!(cluster.secret, "fedcba9876543210");
        assert!(!text.contains(SECRET_PLACEHOLDER));
    }

    #[test]
    fn a_short_or_missing_secret_is_refused() {
        let short = parse_cluster(
            Path::new("cluster.ron"),
            "Cluster(name: \"lab\",\n secret: \"abc\")",
        )
        .unwrap_err()
        .to_string();
        assert!(
            short.contains("cluster.ron:2:10: the secret has 3 characters, fewer than 16"),
            "{short}"
        );
        let missing = parse_cluster(Path::new("cluster.ron"), "Cluster(name: \"lab\")")
            .unwrap_err()
            .to_string();
        assert!(missing.contains("secret"), "{missing}");
    }

    #[test]
    fn a_listed_serial_gets_its_hostname() {
        let text = r#"Cluster(name: "lab", hosts: [Host(serial: "CZ123", hostname: "node1"), Host(serial: "CZ9", hostname: "n9", macs: ["52:54:00:00:00:09"])])"#;
        let cluster = parse_cluster(Path::new("cluster.ron"), &with_secret(text)).unwrap();
        assert_eq!(cluster.hostname_for_serial("CZ123"), Some("node1"));
        assert_eq!(
            cluster.wake_macs(),
            ["52:54:00:00:00:09".parse::<MacAddr>().unwrap()]
        );
        assert_eq!(cluster.hostname_for_serial("CZ124"), None);
    }

    #[test]
    fn broken_configs_give_exact_errors() {
        let table: &[(&str, &[&str])] = &[
            (
                "Cluster(name: \"lab\",\n  hostnme_prefix: \"x\")",
                &["cluster.ron:2:3: Unexpected field named `hostnme_prefix` in `Cluster`, expected one of `name`, `secret`, `hostname_prefix`, or `hosts` instead"],
            ),
            (
                "Cluster(name: 7)",
                &["cluster.ron:1:14: Expected string"],
            ),
            (
                "Cluster(name: \"lab\", hosts: [\n Host(serial: \"A1\", hostname: \"n1\"),\n Host(serial: \"A1\", hostname: \"n1\"),\n])",
                &[
                    "cluster.ron:3:15: serial `A1` is listed twice",
                    "cluster.ron:3:31: hostname `n1` is given to two machines",
                ],
            ),
            (
                "Cluster(name: \"lab\", hosts: [Host(serial: \"To be filled by O.E.M.\", hostname: \"-bad\")])",
                &[
                    "cluster.ron:1:79: hostname `-bad` must not start or end with '-'",
                    "cluster.ron:1:43: serial `To be filled by O.E.M.` is a firmware placeholder",
                ],
            ),
            (
                "Cluster(name: \" \", hostname_prefix: \"Big_Prefix\")",
                &[
                    "cluster.ron:1:9: the cluster name is empty",
                    "cluster.ron:1:37: hostname_prefix `Big_Prefix` may only hold a-z, 0-9 and '-'",
                ],
            ),
        ];
        for (text, expected) in table {
            let got = errors_of(text);
            assert_eq!(got.len(), expected.len(), "for {text:?}: {got:#?}");
            for (got, expected) in got.iter().zip(expected.iter()) {
                assert!(
                    got.starts_with(expected),
                    "for {text:?}:\n got {got}\nwant {expected}"
                );
                assert!(got.contains("; "), "every error says how to fix it: {got}");
            }
        }
    }

    #[test]
    fn macs_are_parsed_and_checked() {
        let text = "Cluster(name: \"lab\", hosts: [\n Host(serial: \"A1\", hostname: \"n1\", macs: [\"52:54:00:00:00:01\"]),\n Host(serial: \"A2\", hostname: \"n2\", macs: [\"52:54:00:00:00:01\", \"01:00:5e:00:00:01\"]),\n])";
        let errors = errors_of(text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0]
                .starts_with("cluster.ron:3:44: MAC address 52:54:00:00:00:01 is listed twice"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with(
                "cluster.ron:3:65: MAC address 01:00:5e:00:00:01 is a multicast address"
            ),
            "{}",
            errors[1]
        );
        let bad = errors_of("Cluster(name: \"lab\", hosts: [Host(serial: \"A1\", hostname: \"n1\", macs: [\"52:54:00\"])])");
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("cluster.ron:1:"), "{}", bad[0]);
        assert!(
            bad[0].contains("52:54:00"),
            "the error names the bad MAC: {}",
            bad[0]
        );
    }

    #[test]
    fn a_directory_reports_missing_and_unknown_files_together() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluser.ron"), "()").unwrap();
        std::fs::write(dir.path().join("README.txt"), "notes").unwrap();
        let ConfigErrors(errors) = load_dir(dir.path()).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(text[0].contains("cluser.ron: is not a file PXEN reads"));
        assert!(text[1].contains("cluster.ron: cannot be read"));
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncé x", 7), (2, 4));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}
