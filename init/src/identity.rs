//! The machine's stable identity and its hostname.
//!
//! A host is named by the configuration when its DMI serial is listed there; otherwise its
//! name is derived from the first stable hardware ID that is not a firmware placeholder, in
//! this order: DMI system serial, board serial, product UUID, the MAC address of the first
//! network card. The derivation is a hash, so the same machine gets the same name at every
//! boot and the name is a valid DNS label whatever the serial contains.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::Cluster;

/// Where a machine ID was read from, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// The DMI system serial number (`product_serial`).
    ProductSerial,
    /// The DMI baseboard serial number (`board_serial`).
    BoardSerial,
    /// The DMI system UUID (`product_uuid`).
    ProductUuid,
    /// The permanent MAC address of the first network card.
    FirstMac,
}

impl IdSource {
    /// A stable tag, part of the hashed input so IDs of different kinds never collide.
    fn tag(self) -> &'static str {
        match self {
            IdSource::ProductSerial => "product-serial",
            IdSource::BoardSerial => "board-serial",
            IdSource::ProductUuid => "product-uuid",
            IdSource::FirstMac => "first-mac",
        }
    }
}

impl fmt::Display for IdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdSource::ProductSerial => "DMI system serial",
            IdSource::BoardSerial => "DMI board serial",
            IdSource::ProductUuid => "DMI product UUID",
            IdSource::FirstMac => "first network card's MAC",
        })
    }
}

/// The raw IDs read from the machine; `None` where the machine has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineIds {
    /// `/sys/class/dmi/id/product_serial`.
    pub product_serial: Option<String>,
    /// `/sys/class/dmi/id/board_serial`.
    pub board_serial: Option<String>,
    /// `/sys/class/dmi/id/product_uuid`.
    pub product_uuid: Option<String>,
    /// The MAC address of the first physical network card (by its bus address).
    pub first_mac: Option<String>,
}

/// The ID chosen to identify the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineId {
    /// Where it was read from.
    pub source: IdSource,
    /// The value, trimmed.
    pub value: String,
}

/// The hostname chosen for this boot, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// The hostname.
    pub hostname: String,
    /// One line for the console saying where the name came from.
    pub reason: String,
}

/// Why an ID value cannot identify one machine, or `None` if it can.
///
/// Firmware vendors ship boards with placeholder strings that are the same on thousands of
/// machines; naming hosts after them would give many hosts the same name.
pub fn bogus_reason(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if v.is_empty() {
        return Some("is empty");
    }
    let lower = v.to_ascii_lowercase();
    const PLACEHOLDERS: &[&str] = &[
        "to be filled by o.e.m.",
        "to be filled by oem",
        "default string",
        "system serial number",
        "chassis serial number",
        "base board serial number",
        "not specified",
        "not applicable",
        "not available",
        "none",
        "n/a",
        "na",
        "oem",
        "o.e.m.",
        "serial",
        "serialnumber",
        "invalid",
        "unknown",
        "empty",
        "0123456789",
        "123456789",
        "1234567890",
        "01234567-8901-2345-6789-012345678901",
        // A UUID that many AMI-based boards report.
        "03000200-0400-0500-0006-000700080009",
    ];
    if PLACEHOLDERS.contains(&lower.as_str()) {
        return Some("is a firmware placeholder");
    }
    let significant: Vec<char> = lower
        .chars()
        .filter(|c| !matches!(c, '-' | ':' | ' ' | '.'))
        .collect();
    if significant.is_empty() {
        return Some("has no letters or digits");
    }
    let all_same = significant.windows(2).all(|w| w[0] == w[1]);
    if all_same && matches!(significant.first(), Some('0' | 'f' | 'x' | '9' | '1' | '*')) {
        return Some("is a firmware placeholder (one repeated character)");
    }
    None
}

/// Picks the first ID that can identify the machine, in the order of [`IdSource`].
pub fn choose_id(ids: &MachineIds) -> Option<MachineId> {
    let candidates = [
        (IdSource::ProductSerial, &ids.product_serial),
        (IdSource::BoardSerial, &ids.board_serial),
        (IdSource::ProductUuid, &ids.product_uuid),
        (IdSource::FirstMac, &ids.first_mac),
    ];
    candidates.into_iter().find_map(|(source, value)| {
        let value = value.as_deref()?.trim();
        bogus_reason(value).is_none().then(|| MachineId {
            source,
            value: value.to_string(),
        })
    })
}

/// The derived hostname for an ID: `<prefix>-<10 hex digits of SHA-256(tag, value)>`.
pub fn derive_hostname(prefix: &str, id: &MachineId) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"pxen-hostname-v1\0");
    hasher.update(id.source.tag().as_bytes());
    hasher.update(b"\0");
    hasher.update(id.value.as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// The derived hostname of a machine whose DMI system serial is `serial`.
pub fn hostname_for_serial(prefix: &str, serial: &str) -> String {
    derive_hostname(
        prefix,
        &MachineId {
            source: IdSource::ProductSerial,
            value: serial.trim().to_string(),
        },
    )
}

/// The hostname of this machine: from the configuration if it lists the serial, else derived.
/// `None` when the machine has no usable ID at all.
pub fn name_machine(cluster: &Cluster, ids: &MachineIds) -> Option<Naming> {
    if let Some(serial) = ids.product_serial.as_deref().map(str::trim) {
        if let Some(hostname) = cluster.hostname_for_serial(serial) {
            return Some(Naming {
                hostname: hostname.to_string(),
                reason: format!("listed in the configuration for serial {serial:?}"),
            });
        }
    }
    let id = choose_id(ids)?;
    let skipped = skipped_ids(ids, id.source);
    Some(Naming {
        hostname: derive_hostname(&cluster.hostname_prefix, &id),
        reason: format!("derived from the {} {:?}{skipped}", id.source, id.value),
    })
}

/// A note on the better IDs that were passed over, and why.
fn skipped_ids(ids: &MachineIds, chosen: IdSource) -> String {
    let before = [
        (IdSource::ProductSerial, &ids.product_serial),
        (IdSource::BoardSerial, &ids.board_serial),
        (IdSource::ProductUuid, &ids.product_uuid),
    ];
    let notes: Vec<String> = before
        .iter()
        .take_while(|(source, _)| *source != chosen)
        .map(|(source, value)| {
            let value = value.as_deref().unwrap_or("");
            let why = bogus_reason(value).unwrap_or("is missing");
            format!("{source} {value:?} {why}")
        })
        .collect();
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

/// Checks a hostname: a DNS label of 1 to 63 lower-case letters, digits and '-'.
pub fn check_hostname(name: &str) -> Result<(), &'static str> {
    check_label(name, 63)
}

/// Checks a hostname prefix: it must leave room for `-` and 10 hex digits in 63 characters.
pub fn check_hostname_prefix(prefix: &str) -> Result<(), &'static str> {
    check_label(prefix, 52)
}

fn check_label(name: &str, max: usize) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > max {
        return Err("is too long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may only hold a-z, 0-9 and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not start or end with '-'");
    }
    Ok(())
}

/// Reads the machine's IDs from sysfs mounted at `sys` (normally `/sys`).
pub fn read_machine_ids(sys: &Path) -> MachineIds {
    let dmi = |name: &str| {
        std::fs::read_to_string(sys.join("class/dmi/id").join(name))
            .ok()
            .map(|v| v.trim().to_string())
    };
    MachineIds {
        product_serial: dmi("product_serial"),
        board_serial: dmi("board_serial"),
        product_uuid: dmi("product_uuid"),
        first_mac: first_nic_mac(sys),
    }
}

/// The MAC of the physical network card that comes first by bus address. Only cards with a
/// `device` link (real hardware, not bridges or tunnels) and a permanent address count.
fn first_nic_mac(sys: &Path) -> Option<String> {
    let net = sys.join("class/net");
    let mut cards: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(&net)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let dir = entry.path();
            let device = std::fs::canonicalize(dir.join("device")).ok()?;
            // 0 = permanent address; others were set by software and change across boots.
            let assign = std::fs::read_to_string(dir.join("addr_assign_type")).unwrap_or_default();
            if assign.trim() != "0" {
                return None;
            }
            let mac = std::fs::read_to_string(dir.join("address"))
                .ok()?
                .trim()
                .to_string();
            Some((device, mac))
        })
        .collect();
    cards.sort();
    cards.into_iter().map(|(_, mac)| mac).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_world_placeholders_are_bogus() {
        for value in [
            "",
            "   ",
            "To be filled by O.E.M.",
            "To Be Filled By O.E.M.",
            "Default string",
            "System Serial Number",
            "Not Specified",
            "None",
            "N/A",
            "0123456789",
            "0",
            "00000000",
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "03000200-0400-0500-0006-000700080009",
            "Chassis Serial Number",
            "OEM",
            "XXXXXXXXXX",
            "00:00:00:00:00:00",
            "123456789",
            "..........",
            "Base Board Serial Number",
        ] {
            assert!(bogus_reason(value).is_some(), "{value:?} should be bogus");
        }
    }

    #[test]
    fn real_serials_are_not_bogus() {
        for value in [
            "CZ1234ABCD",
            "PF0ABCDE",
            "VMware-56 4d 12",
            "52:54:00:12:34:56",
            "0A1B",
            "11112",
        ] {
            assert_eq!(bogus_reason(value), None, "{value:?} should be usable");
        }
    }

    #[test]
    fn derived_hostnames_are_stable_labels() {
        let a = hostname_for_serial("pxen", "CZ1234ABCD");
        assert_eq!(a, hostname_for_serial("pxen", "CZ1234ABCD"));
        assert_eq!(a, hostname_for_serial("pxen", " CZ1234ABCD\n"));
        assert_ne!(a, hostname_for_serial("pxen", "CZ1234ABCE"));
        assert_eq!(a.len(), "pxen-".len() + 10);
        assert!(check_hostname(&a).is_ok());
        // Pinned: changing the derivation renames every host of every cluster.
        assert_eq!(a, "pxen-84a988be1a");
    }

    #[test]
    fn the_source_is_part_of_the_hash() {
        let serial = MachineId {
            source: IdSource::ProductSerial,
            value: "X1".into(),
        };
        let board = MachineId {
            source: IdSource::BoardSerial,
            value: "X1".into(),
        };
        assert_ne!(derive_hostname("h", &serial), derive_hostname("h", &board));
    }

    #[test]
    fn bogus_ids_fall_back_in_order() {
        let mut ids = MachineIds {
            product_serial: Some("To be filled by O.E.M.".into()),
            board_serial: Some("Default string".into()),
            product_uuid: Some("00000000-0000-0000-0000-000000000000".into()),
            first_mac: Some("52:54:00:12:34:56".into()),
        };
        assert_eq!(choose_id(&ids).unwrap().source, IdSource::FirstMac);
        ids.product_uuid = Some("4c4c4544-0042-3510-8052-b4c04f4e4b31".into());
        assert_eq!(choose_id(&ids).unwrap().source, IdSource::ProductUuid);
        ids.board_serial = Some("BSN123".into());
        assert_eq!(choose_id(&ids).unwrap().source, IdSource::BoardSerial);
        ids.product_serial = Some("PSN9".into());
        assert_eq!(
            choose_id(&ids).unwrap(),
            MachineId {
                source: IdSource::ProductSerial,
                value: "PSN9".into()
            }
        );
        assert_eq!(choose_id(&MachineIds::default()), None);
    }

    #[test]
    fn configuration_names_win_and_reasons_explain() {
        let cluster: Cluster = ron::from_str(
            r#"Cluster(name: "lab", secret: "0123456789abcdef", hostname_prefix: "lab", hosts: [Host(serial: "S1", hostname: "alpha")])"#,
        )
        .unwrap();
        let listed = MachineIds {
            product_serial: Some("S1".into()),
            ..Default::default()
        };
        let naming = name_machine(&cluster, &listed).unwrap();
        assert_eq!(naming.hostname, "alpha");
        assert!(naming.reason.contains("listed in the configuration"));

        let fallback = MachineIds {
            product_serial: Some("Default string".into()),
            board_serial: Some("B7".into()),
            ..Default::default()
        };
        let naming = name_machine(&cluster, &fallback).unwrap();
        assert!(naming.hostname.starts_with("lab-"));
        assert_eq!(
            naming.reason,
            "derived from the DMI board serial \"B7\" (DMI system serial \"Default string\" is a firmware placeholder)"
        );
    }

    #[test]
    fn hostname_rules() {
        assert!(check_hostname("node-1").is_ok());
        assert_eq!(check_hostname(""), Err("is empty"));
        assert_eq!(
            check_hostname("Node"),
            Err("may only hold a-z, 0-9 and '-'")
        );
        assert_eq!(
            check_hostname("node-"),
            Err("must not start or end with '-'")
        );
        assert_eq!(check_hostname(&"a".repeat(64)), Err("is too long"));
        assert_eq!(check_hostname_prefix(&"a".repeat(53)), Err("is too long"));
    }

    #[test]
    fn reads_ids_from_a_sysfs_tree() {
        let sys = tempfile::tempdir().unwrap();
        let dmi = sys.path().join("class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(dmi.join("product_serial"), "SER-1  \n").unwrap();
        std::fs::write(dmi.join("product_uuid"), "abc\n").unwrap();
        let devices = sys.path().join("devices");
        for (name, bus, mac, assign) in [
            ("eth1", "0000:00:04.0", "52:54:00:00:00:04", "0"),
            ("eth0", "0000:00:03.0", "52:54:00:00:00:03", "0"),
            ("xenbr0", "", "52:54:00:00:00:03", "3"),
        ] {
            let dir = sys.path().join("class/net").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
            std::fs::write(dir.join("addr_assign_type"), format!("{assign}\n")).unwrap();
            if !bus.is_empty() {
                std::fs::create_dir_all(devices.join(bus)).unwrap();
                std::os::unix::fs::symlink(devices.join(bus), dir.join("device")).unwrap();
            }
        }
        let ids = read_machine_ids(sys.path());
        assert_eq!(ids.product_serial.as_deref(), Some("SER-1"));
        assert_eq!(ids.board_serial, None);
        assert_eq!(ids.product_uuid.as_deref(), Some("abc"));
        assert_eq!(ids.first_mac.as_deref(), Some("52:54:00:00:00:03"));
    }
}
