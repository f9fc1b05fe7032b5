//! host0's own network interfaces: finding the physical cards, bringing a link up, waiting
//! for its carrier, and giving it an IPv4 address and a default route (and taking them away).
//!
//! Cards are found in sysfs (`/sys/class/net`); everything that changes the kernel's state
//! goes through rtnetlink ([`super::netlink`], which explains why not the ioctls).

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mac::MacAddr;
use super::netlink::{self, Request};

/// Where the kernel lists network interfaces.
pub const SYS_CLASS_NET: &str = "/sys/class/net";
/// How often [`wait_for_carrier`] looks at the carrier again.
const CARRIER_POLL: Duration = Duration::from_millis(20);

/// A physical network card: an interface backed by a device (PCI, USB, …), unlike `lo`,
/// bridges, veths or tunnels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The interface name, like `eth0` or `enp0s3`.
    pub name: String,
    /// Its hardware address.
    pub mac: MacAddr,
    /// The bus address of its device, like `0000:00:03.0`: a stable order across boots.
    pub bus_address: String,
    /// Whether a cable is plugged in and the link is up; `None` while the interface is down
    /// (the kernel then refuses to tell).
    pub carrier: Option<bool>,
}

/// A step of configuring a link that failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The directory of network interfaces could not be listed.
    #[error("cannot list network interfaces in {path}: {source}; is sysfs mounted?")]
    ListInterfaces {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An interface attribute could not be read.
    #[error("cannot read {path}: {source}; does the interface exist (`ip link`)?")]
    ReadAttribute {
        /// The sysfs file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An interface attribute does not hold what the kernel documents.
    #[error("{path} holds `{value}`, not {expected}")]
    BadAttribute {
        /// The sysfs file.
        path: PathBuf,
        /// Its content.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// The kernel refused a change.
    #[error("cannot {action} on interface `{interface}`: {source}")]
    Netlink {
        /// The interface.
        interface: String,
        /// What was asked, like "add address 10.0.2.15/24".
        action: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// The carrier did not come up in time.
    #[error("interface `{interface}` has no carrier after {waited:?} (operstate `{operstate}`): check the cable, the switch port, or the virtual network")]
    NoCarrier {
        /// The interface.
        interface: String,
        /// How long it was awaited.
        waited: Duration,
        /// Its last operational state.
        operstate: String,
    },
}

/// The physical cards listed in `sys_class_net` (normally [`SYS_CLASS_NET`]), ordered by bus
/// address so that "the first card" means the same one on every boot.
pub fn physical_nics(sys_class_net: &Path) -> Result<Vec<Nic>, LinkError> {
    let entries = std::fs::read_dir(sys_class_net).map_err(|source| LinkError::ListInterfaces {
        path: sys_class_net.to_owned(),
        source,
    })?;
    let mut nics = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| LinkError::ListInterfaces {
            path: sys_class_net.to_owned(),
            source,
        })?;
        let dir = entry.path();
        // Virtual interfaces have no `device` link: they are not cards to boot from.
        let Ok(device) = std::fs::read_link(dir.join("device")) else {
            continue;
        };
        let mac_path = dir.join("address");
        let mac_text = read_attribute(&mac_path)?;
        let mac = mac_text.parse().map_err(|_| LinkError::BadAttribute {
            path: mac_path,
            value: mac_text,
            expected: "a MAC address",
        })?;
        nics.push(Nic {
            name: entry.file_name().to_string_lossy().into_owned(),
            mac,
            bus_address: device
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            carrier: carrier_in(&dir),
        });
    }
    nics.sort_by(|a, b| (&a.bus_address, &a.name).cmp(&(&b.bus_address, &b.name)));
    Ok(nics)
}

/// A sysfs attribute, without its trailing newline.
fn read_attribute(path: &Path) -> Result<String, LinkError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end().to_owned())
        .map_err(|source| LinkError::ReadAttribute {
            path: path.to_owned(),
            source,
        })
}

/// The carrier of the interface whose sysfs directory is `dir`; reading it fails with
/// EINVAL while the interface is down, which is `None`.
fn carrier_in(dir: &Path) -> Option<bool> {
    match std::fs::read_to_string(dir.join("carrier"))
        .ok()?
        .trim_end()
    {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

fn interface_dir(interface: &str) -> PathBuf {
    Path::new(SYS_CLASS_NET).join(interface)
}

/// The kernel's index of `interface`, which netlink requests name it by.
pub fn index(interface: &str) -> Result<u32, LinkError> {
    let path = interface_dir(interface).join("ifindex");
    let text = read_attribute(&path)?;
    text.parse().map_err(|_| LinkError::BadAttribute {
        path,
        value: text,
        expected: "an interface index",
    })
}

/// Runs a netlink request about `interface`, naming `action` if the kernel refuses it.
fn change(
    interface: &str,
    action: String,
    request: impl FnOnce(u32) -> Request,
) -> Result<(), LinkError> {
    let index = index(interface)?;
    log::debug!("net: {action} on {interface}");
    netlink::execute(&request(index)).map_err(|source| LinkError::Netlink {
        interface: interface.to_owned(),
        action,
        source,
    })
}

/// Brings `interface` up (administratively: `ip link set IFACE up`). Harmless if it is up.
pub fn set_up(interface: &str) -> Result<(), LinkError> {
    change(interface, "bring the link up".into(), Request::link_up)
}

/// Waits until `interface` has a carrier, polling sysfs, for at most `timeout`; returns how
/// long that took.
pub fn wait_for_carrier(interface: &str, timeout: Duration) -> Result<Duration, LinkError> {
    let dir = interface_dir(interface);
    let start = Instant::now();
    loop {
        if carrier_in(&dir) == Some(true) {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(LinkError::NoCarrier {
                interface: interface.to_owned(),
                waited: start.elapsed(),
                operstate: read_attribute(&dir.join("operstate")).unwrap_or_else(|e| e.to_string()),
            });
        }
        std::thread::sleep(CARRIER_POLL);
    }
}

/// Gives `interface` the address `address/prefix_len` (the kernel adds the route to that
/// subnet). Fails if the interface has that address already.
pub fn add_address(interface: &str, address: Ipv4Addr, prefix_len: u8) -> Result<(), LinkError> {
    change(
        interface,
        format!("add address {address}/{prefix_len}"),
        |index| Request::add_address(index, address, prefix_len),
    )
}

/// Removes `address/prefix_len` from `interface`, with the routes that depended on it.
pub fn remove_address(interface: &str, address: Ipv4Addr, prefix_len: u8) -> Result<(), LinkError> {
    change(
        interface,
        format!("remove address {address}/{prefix_len}"),
        |index| Request::delete_address(index, address, prefix_len),
    )
}

/// Adds the default route through `gateway` on `interface`. The gateway must be reachable
/// (inside a subnet of the interface), and no default route may exist yet.
pub fn add_default_route(interface: &str, gateway: Ipv4Addr) -> Result<(), LinkError> {
    change(
        interface,
        format!("add a default route via {gateway}"),
        |index| Request::add_default_route(index, gateway),
    )
}

/// Removes the default route through `gateway` on `interface`.
pub fn remove_default_route(interface: &str, gateway: Ipv4Addr) -> Result<(), LinkError> {
    change(
        interface,
        format!("remove the default route via {gateway}"),
        |index| Request::delete_default_route(index, gateway),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake `/sys/class/net` entry; `device` is the bus address its device link points to.
    fn fake_interface(
        root: &Path,
        name: &str,
        mac: &str,
        device: Option<&str>,
        carrier: Option<&str>,
    ) {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
        if let Some(bus) = device {
            std::os::unix::fs::symlink(format!("../../../{bus}"), dir.join("device")).unwrap();
        }
        if let Some(carrier) = carrier {
            std::fs::write(dir.join("carrier"), carrier).unwrap();
        }
    }

    #[test]
    fn lists_only_cards_in_bus_order_with_mac_and_carrier() {
        let root = tempfile::tempdir().unwrap();
        fake_interface(root.path(), "lo", "00:00:00:00:00:00", None, Some("1\n"));
        fake_interface(
            root.path(),
            "xenbr0",
            "52:54:00:00:00:09",
            None,
            Some("1\n"),
        );
        fake_interface(
            root.path(),
            "enp0s4",
            "52:54:00:00:00:02",
            Some("0000:00:04.0"),
            None,
        );
        fake_interface(
            root.path(),
            "enp0s3",
            "52:54:00:00:00:01",
            Some("0000:00:03.0"),
            Some("1\n"),
        );
        fake_interface(
            root.path(),
            "usb0",
            "52:54:00:00:00:03",
            Some("1-1:1.0"),
            Some("0\n"),
        );
        let nics = physical_nics(root.path()).unwrap();
        let summary: Vec<(&str, String, &str, Option<bool>)> = nics
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.mac.to_string(),
                    n.bus_address.as_str(),
                    n.carrier,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "enp0s3",
                    "52:54:00:00:00:01".into(),
                    "0000:00:03.0",
                    Some(true)
                ),
                ("enp0s4", "52:54:00:00:00:02".into(), "0000:00:04.0", None),
                ("usb0", "52:54:00:00:00:03".into(), "1-1:1.0", Some(false)),
            ]
        );
    }

    #[test]
    fn a_card_with_a_bad_mac_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        fake_interface(root.path(), "eth0", "not-a-mac", Some("0000:00:03.0"), None);
        let error = physical_nics(root.path()).unwrap_err();
        assert!(
            matches!(&error, LinkError::BadAttribute { value, .. } if value == "not-a-mac"),
            "{error:?}"
        );
        assert!(error.to_string().contains("eth0/address"), "{error}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let error = physical_nics(Path::new("/nonexistent/class/net")).unwrap_err();
        assert!(
            matches!(error, LinkError::ListInterfaces { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("/nonexistent/class/net"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_interface_fails_naming_it() {
        let error = set_up("pxen-no-such0").unwrap_err();
        assert!(
            error.to_string().contains("pxen-no-such0/ifindex"),
            "{error}"
        );
        let error = wait_for_carrier("pxen-no-such0", Duration::ZERO).unwrap_err();
        assert!(
            matches!(&error, LinkError::NoCarrier { interface, .. } if interface == "pxen-no-such0"),
            "{error:?}"
        );
    }
}
