//! The cluster configuration: RON files in the `config/` directory of the flash drive.
//!
//! `cluster.ron` describes the whole cluster: its name and secret, the hosts the administrator
//! names, pools, users, the network and VMs (the types are in `schema`). The files are
//! checked when they are loaded, by `pxen config check DIR`, and by `mkimage` before it builds
//! an image. Every problem is reported at once, each with its file, line and column, what is
//! wrong and how to fix it (`check`, which `locate` helps to place errors). When the files do
//! not validate, `last_good` chooses what a host boots with instead.

mod check;
pub mod crypt;
pub mod ipv4;
pub mod last_good;
mod locate;
mod schema;
pub mod ssh_key;

use std::fmt;
use std::path::{Path, PathBuf};

pub use check::{check_account_name, check_dns_name, SYSTEM_USERS};
pub use last_good::{choose, Chosen};
pub use schema::{Addressing, Cluster, Disk, Host, Network, Pool, Root, User, Vm, VmRole};

/// The file that describes the cluster.
pub const CLUSTER_FILE: &str = "cluster.ron";

/// The files PXEN reads in a configuration directory.
pub const KNOWN_FILES: &[&str] = &[CLUSTER_FILE];

/// The annotated default `cluster.ron`, with [`SECRET_PLACEHOLDER`] where each drive's own
/// secret goes (see [`default_files`]).
const DEFAULT_CLUSTER_TEMPLATE: &str = include_str!("../../config-default/cluster.ron");

/// Stands for the generated secret in the default configuration's template.
const SECRET_PLACEHOLDER: &str = "@SECRET@";

/// The shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// The most vCPUs a VM may have: a bound that catches typos (the release that starts VMs
/// must also respect the hypervisor's own, lower limit for some guest types).
pub const MAX_VCPUS: u32 = 512;

/// The least memory a VM may have, in MiB.
pub const MIN_VM_MEMORY_MIB: u64 = 64;

impl Cluster {
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
    let errors = check::check_cluster(&cluster, locate::Locator::new(file, text));
    if errors.is_empty() {
        Ok(cluster)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::mac::MacAddr;

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

    /// The errors of `text` (with a secret added) as `file:line:col: what`, each checked to
    /// say how to fix it.
    fn located_errors_of(text: &str) -> Vec<String> {
        let Err(ConfigErrors(errors)) = parse_cluster(Path::new("cluster.ron"), &with_secret(text))
        else {
            return vec![];
        };
        errors
            .iter()
            .map(|e| {
                assert!(!e.fix.is_empty(), "every error says how to fix it: {e}");
                let full = e.to_string();
                let located = full.strip_suffix(&format!("; {}", e.fix));
                located.unwrap_or_else(|| panic!("{full}")).to_string()
            })
            .collect()
    }

    #[test]
    fn the_default_configuration_is_valid_and_lists_no_host() {
        let cluster = Cluster::builtin_default();
        assert_eq!(cluster.name, "pxen");
        assert_eq!(cluster.hostname_prefix, "pxen");
        assert!(cluster.hosts.is_empty());
        assert!(cluster.pools.is_empty() && cluster.users.is_empty() && cluster.vms.is_empty());
        assert_eq!(cluster.root, Root::default());
        assert_eq!(cluster.network, Network::default());
        assert_eq!(cluster.network.bridge, "xenbr0");
        assert_eq!(cluster.domain, None);
        assert_eq!(cluster.secret.len(), 64);
        assert_ne!(
            cluster.secret,
            Cluster::builtin_default().secret,
            "every default gets its own secret"
        );
    }

    /// A configuration using every field, all valid.
    const COMPLETE: &str = r#"Cluster(
        name: "lab",
        secret: "0123456789abcdef",
        hostname_prefix: "node",
        domain: Some("lab.example.org"),
        hosts: [
            Host(serial: "CZ1", hostname: "rack1-node1", macs: ["52:54:00:12:34:56"], pool: Some("pool-a"),
                 network: Some(Static(address: "192.168.1.11/24", gateway: Some("192.168.1.1")))),
            Host(serial: "CZ2", hostname: "rack1-node2", pool: Some("pool-a")),
        ],
        pools: [Pool(name: "pool-a", primary: "rack1-node1")],
        users: [
            User(
                name: "admin",
                groups: ["sudo"],
                ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAfdBKQ6nVbTMx2h+wNG8DUcUE/qHP35oorz1Ohn7DiK admin@laptop"],
                password_hash: Some("$y$j9T$F5Jx5fExrKuPp53xLKQ..1$U4SOHmDd8SvW5vCUKSMR6N835VPwFAtgYNhQ9mFFeL5"),
            ),
            User(name: "ops"),
        ],
        root: Root(ssh_keys: ["ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBDvZxsmjMHQ4/9aKq8TgV1Q7BzvSr9KT8uhKUXbqiobEqYJJ2LCrmGXSu5Mklbgq21H+gWdmVHtuvwesXPYhyBA= root@desk"]),
        network: Network(
            bridge: "xenbr0",
            addressing: Dhcp,
            dns: ["192.168.1.1"],
            ntp: ["pool.ntp.org", "192.168.1.1"],
            search: ["lab.example.org"],
        ),
        vms: [
            Vm(name: "xo", vcpus: 2, memory_mib: 2048, role: Some(ManagementConsole),
               disk: Some(Disk(location: "local:xo", size_gib: 20, bandwidth_mib_s: Some(100)))),
            Vm(name: "web", vcpus: 1, memory_mib: 512, host: Some("rack1-node2")),
        ],
    )"#;

    #[test]
    fn a_configuration_using_every_field_is_valid() {
        let cluster = parse_cluster(Path::new("cluster.ron"), COMPLETE).unwrap();
        assert_eq!(cluster.domain.as_deref(), Some("lab.example.org"));
        let node1 = &cluster.hosts[0];
        assert_eq!(
            cluster.addressing_of(node1),
            &Addressing::Static {
                address: "192.168.1.11/24".into(),
                gateway: Some("192.168.1.1".into())
            }
        );
        assert_eq!(cluster.addressing_of(&cluster.hosts[1]), &Addressing::Dhcp);
        assert_eq!(cluster.pools[0].primary, "rack1-node1");
        assert_eq!(cluster.users[1].groups, Vec::<String>::new());
        assert_eq!(cluster.users[1].password_hash, None);
        assert_eq!(cluster.root.password_hash, None);
        assert_eq!(cluster.network.ntp, ["pool.ntp.org", "192.168.1.1"]);
        assert_eq!(cluster.vms[0].role, Some(VmRole::ManagementConsole));
        assert_eq!(cluster.vms[1].disk, None);
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
                &[
                    "cluster.ron:2:3: Unexpected field named `hostnme_prefix` in `Cluster`, expected one of `name`, `secret`, `hostname_prefix`, `domain`, `hosts`, `pools`, `users`, `root`, `network`, or `vms` instead",
                ],
            ),
            (
                "Cluster(name: 7)",
                &[
                    "cluster.ron:1:14: Expected string",
                ],
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
                    "cluster.ron:1:43: serial `To be filled by O.E.M.` is a firmware placeholder",
                    "cluster.ron:1:79: hostname `-bad` must not start or end with '-'",
                ],
            ),
            (
                "Cluster(name: \" \", hostname_prefix: \"Big_Prefix\")",
                &[
                    "cluster.ron:1:15: the cluster name is empty",
                    "cluster.ron:1:37: hostname_prefix `Big_Prefix` may only hold a-z, 0-9 and '-'",
                ],
            ),
            (
                "Cluster(name: \"lab\", hosts: [\n Host(serial: \"A1\", hostname: \"n1\", mac: []),\n])",
                &[
                    "cluster.ron:2:37: Unexpected field named `mac` in `Host`, expected one of `serial`, `hostname`, `macs`, `pool`, or `network` instead",
                ],
            ),
            (
                "Cluster(name: \"lab\", hosts: [\n Host(serial: \"A1\", hostname: \"n1\", network: Some(Static(address: \"10.0.0.5\"))),\n Host(serial: \"A2\", hostname: \"n2\", network: Some(Static(address: \"10.0.0.6/24\", gateway: Some(\"10.0.1.1\")))),\n Host(serial: \"A3\", hostname: \"n3\", network: Some(Static(address: \"10.0.0.6/24\", gateway: Some(\"10.0.0.6\")))),\n],\nnetwork: Network(\n bridge: \"a-very-long-bridge\",\n addressing: Static(address: \"10.0.0.9/24\"),\n dns: [\"dns.example\"],\n ntp: [\"pool.ntp.org\", \"10.0.0.1\", \"bad_name\"],\n search: [\"Lab\"],\n))",
                &[
                    "cluster.ron:2:67: static address `10.0.0.5` has no prefix length after the address",
                    "cluster.ron:3:96: gateway 10.0.1.1 is outside the subnet of 10.0.0.6/24",
                    "cluster.ron:4:67: static address 10.0.0.6 is given to two machines",
                    "cluster.ron:4:96: gateway 10.0.0.6 is the host's own address",
                    "cluster.ron:7:10: bridge name `a-very-long-bridge` is longer than 15 characters",
                    "cluster.ron:8:14: the cluster's addressing is Static, but one address cannot serve every host",
                    "cluster.ron:9:8: DNS server `dns.example` is not an IPv4 address",
                    "cluster.ron:10:36: NTP server `bad_name` is neither an IPv4 address nor a DNS name: it has a label `bad_name` that may only hold a-z, 0-9 and '-'",
                    "cluster.ron:11:11: search domain `Lab` has a label `Lab` that may only hold a-z, 0-9 and '-'",
                ],
            ),
            (
                "Cluster(name: \"lab\", hosts: [\n Host(serial: \"A1\", hostname: \"n1\", pool: Some(\"a\")),\n Host(serial: \"A2\", hostname: \"n2\", pool: Some(\"zz\")),\n], pools: [\n Pool(name: \"a\", primary: \"n2\"),\n Pool(name: \"b\", primary: \"n9\"),\n Pool(name: \"a\", primary: \"n1\"),\n])",
                &[
                    "cluster.ron:3:48: host `n2` names the pool `zz`, which `pools` does not list",
                    "cluster.ron:5:27: pool `a` has the primary `n2`, which is not a member",
                    "cluster.ron:6:27: pool `b` has the primary `n9`, which `hosts` does not list",
                    "cluster.ron:7:13: pool `a` is listed twice",
                ],
            ),
            (
                "Cluster(name: \"lab\", users: [\n User(name: \"admin\", groups: [\"sudo\", \"Wheel\"], ssh_keys: [\"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAfdBKQ6nVbTMx2h+wNG8DUcUE/qHP35oorz1Ohn7DiK me\"], password_hash: Some(\"hunter2\")),\n User(name: \"daemon\"),\n User(name: \"admin\", ssh_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAfdBKQ6\"]),\n User(name: \"9lives\"),\n],\nroot: Root(password_hash: Some(\"$1$salt$qJH7.N4xYta3aEG/dfqo/0\")))",
                &[
                    "cluster.ron:2:39: group name `Wheel` must start with a-z or '_'",
                    "cluster.ron:2:60: SSH key 1 says `ssh-rsa` but the key itself is a `ssh-ed25519` key",
                    "cluster.ron:2:164: password_hash is not a password hash; it looks like a password in clear, which must never be in the configuration",
                    "cluster.ron:3:13: user name `daemon` is a system account of the root filesystem",
                    "cluster.ron:4:13: user `admin` is listed twice",
                    "cluster.ron:4:33: SSH key 1 has a `ssh-ed25519` key that is cut short (24 bytes)",
                    "cluster.ron:5:13: user name `9lives` must start with a-z or '_'",
                    "cluster.ron:7:32: password_hash uses the hash method `$1$`; only $y$ (yescrypt), $6$ (SHA-512) and $5$ (SHA-256) are accepted",
                ],
            ),
            (
                "Cluster(name: \"lab\", hosts: [Host(serial: \"A1\", hostname: \"n1\")], vms: [\n Vm(name: \"xo\", vcpus: 0, memory_mib: 32, role: Some(ManagementConsole), host: Some(\"n2\")),\n Vm(name: \"xo\", vcpus: 2, memory_mib: 2048, disk: Some(Disk(location: \"\", size_gib: 0, bandwidth_mib_s: Some(0))), role: Some(ManagementConsole)),\n Vm(name: \"Web_1\", vcpus: 513, memory_mib: 64),\n])",
                &[
                    "cluster.ron:2:24: VM `xo` has 0 vCPUs",
                    "cluster.ron:2:39: VM `xo` has 32 MiB of memory",
                    "cluster.ron:2:85: VM `xo` must run on `n2`, which `hosts` does not list",
                    "cluster.ron:3:11: VM `xo` is listed twice",
                    "cluster.ron:3:71: VM `xo` has a disk with an empty location",
                    "cluster.ron:3:85: VM `xo` has a disk of 0 GiB",
                    "cluster.ron:3:110: VM `xo` has a disk limited to 0 MiB/s",
                    "cluster.ron:3:122: VM `xo` is a second ManagementConsole",
                    "cluster.ron:4:11: VM name `Web_1` may only hold a-z, 0-9 and '-'",
                    "cluster.ron:4:27: VM `Web_1` has 513 vCPUs",
                ],
            ),
            (
                "Cluster(name: \"lab\",\n domain: Some(\"lab..example\"))",
                &[
                    "cluster.ron:2:15: domain `lab..example` has a label `` that is empty",
                ],
            ),
            (
                "Cluster(name: \"lab\",\n network: Network(addressing: Dchp))",
                &[
                    "cluster.ron:2:31: Unexpected variant named `Dchp` in enum `Addressing`, expected either `Dhcp` or `Static` instead",
                ],
            ),
        ];
        for (text, expected) in table {
            assert_eq!(located_errors_of(text), *expected, "the errors of\n{text}");
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
}
