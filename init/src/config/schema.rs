//! The types `cluster.ron` is read into. serde checks field names and value types; the checks
//! serde cannot express are in the `check` module. Every field added after the first release
//! has a default, so older files stay valid.

use serde::Deserialize;

use crate::net::mac::MacAddr;

/// The whole cluster, as described by `cluster.ron`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// A short name for the cluster, shown on consoles and status pages.
    pub name: String,
    /// The shared secret hosts sign their messages to host0 with (at least
    /// [`super::MIN_SECRET_LEN`] characters).
    pub secret: String,
    /// Hosts not listed in `hosts` are named `<hostname_prefix>-<10 hex digits>`.
    #[serde(default = "default_hostname_prefix")]
    pub hostname_prefix: String,
    /// The DNS domain of the hosts, if any: `/etc/hosts` then names them by their FQDN too.
    #[serde(default)]
    pub domain: Option<String>,
    /// Machines the administrator names.
    #[serde(default)]
    pub hosts: Vec<Host>,
    /// Groups of hosts, each with a primary (the members are the hosts naming the pool).
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Login accounts created on every host.
    #[serde(default)]
    pub users: Vec<User>,
    /// How root may log in (by default: neither by password nor by key).
    #[serde(default)]
    pub root: Root,
    /// The network every host gets, unless its own entry overrides the addressing.
    #[serde(default)]
    pub network: Network,
    /// Virtual machines: checked now, placed and started by a later release.
    #[serde(default)]
    pub vms: Vec<Vm>,
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
    /// The name of the pool this machine belongs to, if any.
    #[serde(default)]
    pub pool: Option<String>,
    /// This machine's addressing, instead of the cluster's `network.addressing`.
    #[serde(default)]
    pub network: Option<Addressing>,
}

/// A group of hosts managed together; its members are the hosts whose `pool` names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The pool's name: a DNS label.
    pub name: String,
    /// The hostname of the member that leads the pool.
    pub primary: String,
}

/// A login account created on every host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The login name: `[a-z_][a-z0-9_-]{0,31}`, not one of the system's own accounts.
    pub name: String,
    /// Supplementary groups, e.g. `sudo`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// OpenSSH public keys (`<type> <base64> [comment]`) that may log in as this user.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// A crypt(3) hash (`$y$`, `$6$` or `$5$`) of the password; `None`: no password login.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// How root may log in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// OpenSSH public keys that may log in as root.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// A crypt(3) hash of root's password; `None`: no password login for root.
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// The network of every host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The Xen bridge the host's network card is enslaved to and VMs are attached to.
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// How hosts get their address unless their own entry says otherwise. Only `Dhcp` here:
    /// a static address belongs to one host.
    #[serde(default)]
    pub addressing: Addressing,
    /// DNS servers (IPv4 addresses); empty: those DHCP gives.
    #[serde(default)]
    pub dns: Vec<String>,
    /// NTP servers (IPv4 addresses or DNS names); empty: systemd-timesyncd's defaults.
    #[serde(default)]
    pub ntp: Vec<String>,
    /// DNS search domains.
    #[serde(default)]
    pub search: Vec<String>,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            bridge: default_bridge(),
            addressing: Addressing::default(),
            dns: Vec::new(),
            ntp: Vec::new(),
            search: Vec::new(),
        }
    }
}

/// How a host gets its IPv4 address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Addressing {
    /// From a DHCP server on the LAN.
    #[default]
    Dhcp,
    /// A fixed address.
    Static {
        /// The address and prefix length, `a.b.c.d/len`.
        address: String,
        /// The default gateway, inside the address's subnet; `None`: no default route.
        #[serde(default)]
        gateway: Option<String>,
    },
}

/// A virtual machine (checked now; a later release places and starts it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// The VM's name: a DNS label.
    pub name: String,
    /// Virtual CPUs, 1 to [`super::MAX_VCPUS`].
    pub vcpus: u32,
    /// Memory in MiB, at least [`super::MIN_VM_MEMORY_MIB`].
    pub memory_mib: u64,
    /// Its disk, if it has one.
    #[serde(default)]
    pub disk: Option<Disk>,
    /// What the VM is for, if it has a role PXEN knows.
    #[serde(default)]
    pub role: Option<VmRole>,
    /// The hostname of the host it must run on; `None`: any host.
    #[serde(default)]
    pub host: Option<String>,
}

/// A VM's disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Where the disk lives (a path or storage URL, interpreted by the later release).
    pub location: String,
    /// Its size in GiB, at least 1.
    pub size_gib: u64,
    /// A limit on its bandwidth in MiB/s; `None`: no limit.
    #[serde(default)]
    pub bandwidth_mib_s: Option<u32>,
}

/// Roles a VM can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VmRole {
    /// The cluster's management console (e.g. Xen Orchestra); at most one VM has it.
    ManagementConsole,
}

fn default_hostname_prefix() -> String {
    "pxen".to_string()
}

fn default_bridge() -> String {
    "xenbr0".to_string()
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

    /// How `host` gets its address: its own `network`, else the cluster's.
    pub fn addressing_of<'a>(&'a self, host: &'a Host) -> &'a Addressing {
        host.network.as_ref().unwrap_or(&self.network.addressing)
    }
}
