//! The checks of `cluster.ron` that serde's types cannot express: names, addresses, keys,
//! hashes, and the references between hosts, pools, users and VMs. Every check runs, so the
//! administrator sees every problem at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::Ipv4Addr;

use super::ipv4::Ipv4Cidr;
use super::locate::Locator;
use super::schema::{Addressing, Cluster, Host, Vm, VmRole};
use super::{crypt, ssh_key, ConfigError, MAX_VCPUS, MIN_SECRET_LEN, MIN_VM_MEMORY_MIB};
use crate::identity;

/// Accounts the dom0 root filesystem has already: Debian's base-passwd (uid < 1000 and
/// `nobody`) and those its packages add (systemd, D-Bus, OpenSSH, polkit, libvirt). A
/// configured user of one of these names would take over a system account.
pub const SYSTEM_USERS: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "_apt",
    "nobody",
    "systemd-network",
    "systemd-timesync",
    "messagebus",
    "sshd",
    "polkitd",
    "libvirt-qemu",
    "libvirt-dnsmasq",
];

/// The longest Linux network interface name (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;

/// Collects the errors of one file.
struct Checker<'a> {
    locator: Locator<'a>,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, path: &str, message: String, fix: &str) {
        self.errors.push(self.locator.error(path, message, fix));
    }
}

/// Every problem of `cluster`, read from the text `locator` scanned, in the order of the file.
pub(super) fn check_cluster(cluster: &Cluster, locator: Locator<'_>) -> Vec<ConfigError> {
    let mut checker = Checker {
        locator,
        errors: Vec::new(),
    };
    check_identity(cluster, &mut checker);
    check_hosts(cluster, &mut checker);
    check_pools(cluster, &mut checker);
    check_users(cluster, &mut checker);
    check_network(cluster, &mut checker);
    check_vms(cluster, &mut checker);
    let mut errors = checker.errors;
    // Stable: problems at the same place keep the order of the checks.
    errors.sort_by_key(|e| e.position);
    errors
}

fn check_identity(cluster: &Cluster, checker: &mut Checker) {
    if cluster.name.trim().is_empty() {
        checker.error(
            "name",
            "the cluster name is empty".into(),
            "give the cluster a short name, e.g. name: \"lab\"",
        );
    }
    let secret_len = cluster.secret.chars().count();
    if secret_len < MIN_SECRET_LEN {
        checker.error(
            "secret",
            format!("the secret has {secret_len} characters, fewer than {MIN_SECRET_LEN}"),
            "use a long random secret, e.g. one printed by `pxen config secret`",
        );
    }
    if let Err(why) = identity::check_hostname_prefix(&cluster.hostname_prefix) {
        checker.error(
            "hostname_prefix",
            format!("hostname_prefix `{}` {why}", cluster.hostname_prefix),
            "use 1 to 52 of a-z, 0-9 and '-', not starting or ending with '-'",
        );
    }
    if let Some(domain) = &cluster.domain {
        if let Err(why) = check_dns_name(domain) {
            checker.error("domain", format!("domain `{domain}` {why}"), DNS_NAME_FIX);
        }
    }
}

const DNS_NAME_FIX: &str = "write a DNS name: labels of a-z, 0-9 and '-' (not starting or ending with '-') joined by '.', e.g. \"lab.example.org\"";

fn check_hosts(cluster: &Cluster, checker: &mut Checker) {
    for (index, host) in cluster.hosts.iter().enumerate() {
        check_host(cluster, index, host, checker);
    }
    let serials = cluster.hosts.iter().map(|h| h.serial.as_str());
    for index in repeats(serials) {
        let serial = &cluster.hosts[index].serial;
        checker.error(
            &format!("hosts[{index}].serial"),
            format!("serial `{serial}` is listed twice"),
            "each machine has one entry: remove or correct the second one",
        );
    }
    let hostnames = cluster
        .hosts
        .iter()
        .map(|h| h.hostname.to_ascii_lowercase());
    for index in repeats(hostnames) {
        let hostname = &cluster.hosts[index].hostname;
        checker.error(
            &format!("hosts[{index}].hostname"),
            format!("hostname `{hostname}` is given to two machines"),
            "give every machine its own hostname",
        );
    }
    let macs: Vec<(usize, usize)> = cluster
        .hosts
        .iter()
        .enumerate()
        .flat_map(|(h, host)| (0..host.macs.len()).map(move |m| (h, m)))
        .collect();
    for index in repeats(macs.iter().map(|&(h, m)| cluster.hosts[h].macs[m])) {
        let (h, m) = macs[index];
        let mac = cluster.hosts[h].macs[m];
        checker.error(
            &format!("hosts[{h}].macs[{m}]"),
            format!("MAC address {mac} is listed twice"),
            "a network card belongs to one machine: remove or correct the second one",
        );
    }
    check_static_addresses_are_unique(cluster, checker);
}

fn check_host(cluster: &Cluster, index: usize, host: &Host, checker: &mut Checker) {
    let at = format!("hosts[{index}]");
    if let Err(why) = identity::check_hostname(&host.hostname) {
        checker.error(
            &format!("{at}.hostname"),
            format!("hostname `{}` {why}", host.hostname),
            "use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'",
        );
    }
    if let Some(why) = identity::bogus_reason(&host.serial) {
        checker.error(&format!("{at}.serial"), format!("serial `{}` {why}", host.serial), "firmware placeholders are shared by many machines: remove this entry; the machine is then named from its board serial, UUID or MAC");
    }
    for (m, mac) in host.macs.iter().enumerate() {
        if mac.is_multicast() {
            checker.error(
                &format!("{at}.macs[{m}]"),
                format!("MAC address {mac} is a multicast address"),
                "a network card's own address has the lowest bit of its first byte clear; copy it from `ip link`",
            );
        }
    }
    if let Some(pool) = &host.pool {
        if !cluster.pools.iter().any(|p| &p.name == pool) {
            checker.error(
                &format!("{at}.pool"),
                format!(
                    "host `{}` names the pool `{pool}`, which `pools` does not list",
                    host.hostname
                ),
                "add Pool(name: ..., primary: ...) to `pools`, or correct the name",
            );
        }
    }
    if let Some(Addressing::Static { address, gateway }) = &host.network {
        check_static(
            &format!("{at}.network"),
            address,
            gateway.as_deref(),
            checker,
        );
    }
}

fn check_static(at: &str, address: &str, gateway: Option<&str>, checker: &mut Checker) {
    let cidr = match address.parse::<Ipv4Cidr>() {
        Ok(cidr) => cidr,
        Err(why) => {
            checker.error(
                &format!("{at}.address"),
                format!("static address `{address}` {why}"),
                "write the address and its prefix length, e.g. \"192.168.1.11/24\"",
            );
            return;
        }
    };
    let Some(gateway) = gateway else { return };
    let path = format!("{at}.gateway");
    match gateway.parse::<Ipv4Addr>() {
        Err(_) => checker.error(
            &path,
            format!("gateway `{gateway}` is not an IPv4 address"),
            "write the router's address, e.g. \"192.168.1.1\", or None for no default route",
        ),
        Ok(ip) if !cidr.contains(ip) => checker.error(
            &path,
            format!("gateway {ip} is outside the subnet of {cidr}"),
            "the gateway must be reachable directly: correct it or the prefix length",
        ),
        Ok(ip) if ip == cidr.address => checker.error(
            &path,
            format!("gateway {ip} is the host's own address"),
            "write the router's address, or None for no default route",
        ),
        Ok(_) => {}
    }
}

fn check_static_addresses_are_unique(cluster: &Cluster, checker: &mut Checker) {
    let statics: Vec<(usize, Ipv4Addr)> = cluster
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(index, host)| match &host.network {
            Some(Addressing::Static { address, .. }) => {
                let cidr = address.parse::<Ipv4Cidr>().ok()?;
                Some((index, cidr.address))
            }
            _ => None,
        })
        .collect();
    for repeat in repeats(statics.iter().map(|(_, ip)| *ip)) {
        let (index, ip) = statics[repeat];
        checker.error(
            &format!("hosts[{index}].network.address"),
            format!("static address {ip} is given to two machines"),
            "give every machine its own address",
        );
    }
}

fn check_pools(cluster: &Cluster, checker: &mut Checker) {
    for (index, pool) in cluster.pools.iter().enumerate() {
        let at = format!("pools[{index}]");
        if let Err(why) = identity::check_hostname(&pool.name) {
            checker.error(
                &format!("{at}.name"),
                format!("pool name `{}` {why}", pool.name),
                "use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'",
            );
        }
        match cluster.hosts.iter().find(|h| h.hostname == pool.primary) {
            None => checker.error(
                &format!("{at}.primary"),
                format!(
                    "pool `{}` has the primary `{}`, which `hosts` does not list",
                    pool.name, pool.primary
                ),
                "name the hostname of a host in `hosts`",
            ),
            Some(host) if host.pool.as_deref() != Some(pool.name.as_str()) => checker.error(
                &format!("{at}.primary"),
                format!(
                    "pool `{}` has the primary `{}`, which is not a member",
                    pool.name, pool.primary
                ),
                &format!(
                    "add pool: Some({:?}) to host `{}`, or choose a member",
                    pool.name, pool.primary
                ),
            ),
            Some(_) => {}
        }
    }
    for index in repeats(cluster.pools.iter().map(|p| p.name.as_str())) {
        checker.error(
            &format!("pools[{index}].name"),
            format!("pool `{}` is listed twice", cluster.pools[index].name),
            "give every pool its own name",
        );
    }
}

fn check_users(cluster: &Cluster, checker: &mut Checker) {
    for (index, user) in cluster.users.iter().enumerate() {
        let at = format!("users[{index}]");
        if let Err(why) = check_account_name(&user.name) {
            checker.error(
                &format!("{at}.name"),
                format!("user name `{}` {why}", user.name),
                "use a lowercase letter or '_', then up to 31 of a-z, 0-9, '_' and '-'",
            );
        } else if SYSTEM_USERS.contains(&user.name.as_str()) {
            checker.error(
                &format!("{at}.name"),
                format!(
                    "user name `{}` is a system account of the root filesystem",
                    user.name
                ),
                &format!(
                    "choose another name; taken are {}; root's keys and password go in `root`",
                    SYSTEM_USERS.join(", ")
                ),
            );
        }
        for (g, group) in user.groups.iter().enumerate() {
            if let Err(why) = check_account_name(group) {
                checker.error(
                    &format!("{at}.groups[{g}]"),
                    format!("group name `{group}` {why}"),
                    "use a lowercase letter or '_', then up to 31 of a-z, 0-9, '_' and '-'",
                );
            }
        }
        check_ssh_keys(&at, &user.ssh_keys, checker);
        check_password_hash(&at, user.password_hash.as_deref(), checker);
    }
    for index in repeats(cluster.users.iter().map(|u| u.name.as_str())) {
        checker.error(
            &format!("users[{index}].name"),
            format!("user `{}` is listed twice", cluster.users[index].name),
            "merge the two entries into one",
        );
    }
    check_ssh_keys("root", &cluster.root.ssh_keys, checker);
    check_password_hash("root", cluster.root.password_hash.as_deref(), checker);
}

fn check_ssh_keys(at: &str, keys: &[String], checker: &mut Checker) {
    for (k, key) in keys.iter().enumerate() {
        if let Err(why) = ssh_key::parse(key) {
            checker.error(
                &format!("{at}.ssh_keys[{k}]"),
                format!("SSH key {} {why}", k + 1),
                "paste the whole line of the public key file (e.g. ~/.ssh/id_ed25519.pub)",
            );
        }
    }
}

fn check_password_hash(at: &str, hash: Option<&str>, checker: &mut Checker) {
    let Some(hash) = hash else { return };
    if let Err(why) = crypt::check(hash) {
        checker.error(
            &format!("{at}.password_hash"),
            format!("password_hash {why}"),
            "make a hash with `mkpasswd -m yescrypt` (Debian package whois), or None for no password login",
        );
    }
}

fn check_network(cluster: &Cluster, checker: &mut Checker) {
    let network = &cluster.network;
    if let Err(why) = check_ifname(&network.bridge) {
        checker.error(
            "network.bridge",
            format!("bridge name `{}` {why}", network.bridge),
            "use 1 to 15 of a-z, A-Z, 0-9, '_', '-' and '.', e.g. \"xenbr0\"",
        );
    }
    if let Addressing::Static { .. } = network.addressing {
        checker.error(
            "network.addressing",
            "the cluster's addressing is Static, but one address cannot serve every host".into(),
            "keep addressing: Dhcp here and give each host its own network: Some(Static(address: ..., gateway: ...))",
        );
    }
    for (index, server) in network.dns.iter().enumerate() {
        if server.parse::<Ipv4Addr>().is_err() {
            checker.error(
                &format!("network.dns[{index}]"),
                format!("DNS server `{server}` is not an IPv4 address"),
                "write the server's address, e.g. \"192.168.1.1\" (a DNS server cannot be found by name)",
            );
        }
    }
    for (index, server) in network.ntp.iter().enumerate() {
        let is_address = server.parse::<Ipv4Addr>().is_ok();
        if let (false, Err(why)) = (is_address, check_dns_name(server)) {
            checker.error(
                &format!("network.ntp[{index}]"),
                format!(
                    "NTP server `{server}` is neither an IPv4 address nor a DNS name: it {why}"
                ),
                "write an address, e.g. \"192.168.1.1\", or a name, e.g. \"pool.ntp.org\"",
            );
        }
    }
    for (index, domain) in network.search.iter().enumerate() {
        if let Err(why) = check_dns_name(domain) {
            checker.error(
                &format!("network.search[{index}]"),
                format!("search domain `{domain}` {why}"),
                DNS_NAME_FIX,
            );
        }
    }
}

fn check_vms(cluster: &Cluster, checker: &mut Checker) {
    for (index, vm) in cluster.vms.iter().enumerate() {
        check_vm(cluster, &format!("vms[{index}]"), vm, checker);
    }
    for index in repeats(cluster.vms.iter().map(|vm| vm.name.as_str())) {
        checker.error(
            &format!("vms[{index}].name"),
            format!("VM `{}` is listed twice", cluster.vms[index].name),
            "give every VM its own name",
        );
    }
    let consoles = cluster
        .vms
        .iter()
        .map(|vm| vm.role == Some(VmRole::ManagementConsole))
        .enumerate()
        .filter(|(_, is_console)| *is_console);
    for (index, _) in consoles.skip(1) {
        checker.error(
            &format!("vms[{index}].role"),
            format!(
                "VM `{}` is a second ManagementConsole",
                cluster.vms[index].name
            ),
            "a cluster has one management console: remove the role from all VMs but one",
        );
    }
}

fn check_vm(cluster: &Cluster, at: &str, vm: &Vm, checker: &mut Checker) {
    if let Err(why) = identity::check_hostname(&vm.name) {
        checker.error(
            &format!("{at}.name"),
            format!("VM name `{}` {why}", vm.name),
            "use 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'",
        );
    }
    if !(1..=MAX_VCPUS).contains(&vm.vcpus) {
        checker.error(
            &format!("{at}.vcpus"),
            format!("VM `{}` has {} vCPUs", vm.name, vm.vcpus),
            &format!("give it 1 to {MAX_VCPUS} vCPUs"),
        );
    }
    if vm.memory_mib < MIN_VM_MEMORY_MIB {
        checker.error(
            &format!("{at}.memory_mib"),
            format!("VM `{}` has {} MiB of memory", vm.name, vm.memory_mib),
            &format!("give it at least {MIN_VM_MEMORY_MIB} MiB"),
        );
    }
    if let Some(disk) = &vm.disk {
        if disk.location.trim().is_empty() {
            checker.error(
                &format!("{at}.disk.location"),
                format!("VM `{}` has a disk with an empty location", vm.name),
                "say where the disk lives",
            );
        }
        if disk.size_gib == 0 {
            checker.error(
                &format!("{at}.disk.size_gib"),
                format!("VM `{}` has a disk of 0 GiB", vm.name),
                "give the disk at least 1 GiB",
            );
        }
        if disk.bandwidth_mib_s == Some(0) {
            checker.error(
                &format!("{at}.disk.bandwidth_mib_s"),
                format!("VM `{}` has a disk limited to 0 MiB/s", vm.name),
                "give a limit of at least 1 MiB/s, or None for no limit",
            );
        }
    }
    if let Some(host) = &vm.host {
        if !cluster.hosts.iter().any(|h| &h.hostname == host) {
            checker.error(
                &format!("{at}.host"),
                format!(
                    "VM `{}` must run on `{host}`, which `hosts` does not list",
                    vm.name
                ),
                "name the hostname of a host in `hosts`, or None for any host",
            );
        }
    }
}

/// The indices of the items equal to an earlier one.
fn repeats<K: Eq + Hash>(keys: impl IntoIterator<Item = K>) -> Vec<usize> {
    let mut seen: HashMap<K, ()> = HashMap::new();
    keys.into_iter()
        .enumerate()
        .filter_map(|(index, key)| seen.insert(key, ()).map(|()| index))
        .collect()
}

/// Checks a DNS name: labels of a-z, 0-9 and '-' joined by '.', at most 253 characters.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    for label in name.split('.') {
        identity::check_hostname(label)
            .map_err(|why| format!("has a label `{label}` that {why}"))?;
    }
    Ok(())
}

/// Checks a user or group name: `[a-z_][a-z0-9_-]{0,31}`.
pub fn check_account_name(name: &str) -> Result<(), &'static str> {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return Err("is empty");
    };
    if !(first.is_ascii_lowercase() || first == b'_') {
        return Err("must start with a-z or '_'");
    }
    if name.len() > 32 {
        return Err("is longer than 32 characters");
    }
    if !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
        return Err("may only hold a-z, 0-9, '_' and '-'");
    }
    Ok(())
}

/// Checks a network interface name as the kernel accepts it (and networkd files can name).
fn check_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_IFNAME {
        return Err("is longer than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err("may only hold a-z, A-Z, 0-9, '_', '-' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_the_second_and_later_occurrences() {
        assert_eq!(repeats(["a", "b", "a", "c", "a", "b"]), [2, 4, 5]);
        assert!(repeats(Vec::<u8>::new()).is_empty());
    }

    #[test]
    fn dns_names_are_labels_joined_by_dots() {
        assert_eq!(check_dns_name("lab.example.org"), Ok(()));
        assert_eq!(check_dns_name("x"), Ok(()));
        assert_eq!(
            check_dns_name("lab..org"),
            Err("has a label `` that is empty".into())
        );
        assert_eq!(
            check_dns_name("Lab.org"),
            Err("has a label `Lab` that may only hold a-z, 0-9 and '-'".into())
        );
        assert_eq!(
            check_dns_name(&"a.".repeat(127)),
            Err("is longer than 253 characters".into())
        );
    }

    #[test]
    fn account_names_follow_debian_rules() {
        assert_eq!(check_account_name("admin"), Ok(()));
        assert_eq!(check_account_name("_svc-1"), Ok(()));
        assert_eq!(check_account_name(""), Err("is empty"));
        assert_eq!(
            check_account_name("1abc"),
            Err("must start with a-z or '_'")
        );
        assert_eq!(
            check_account_name("Admin"),
            Err("must start with a-z or '_'")
        );
        assert_eq!(
            check_account_name("ad.min"),
            Err("may only hold a-z, 0-9, '_' and '-'")
        );
        assert_eq!(
            check_account_name(&"a".repeat(33)),
            Err("is longer than 32 characters")
        );
        assert_eq!(check_account_name(&"a".repeat(32)), Ok(()));
    }

    #[test]
    fn interface_names_fit_the_kernel() {
        assert_eq!(check_ifname("xenbr0"), Ok(()));
        assert_eq!(check_ifname(""), Err("is empty"));
        assert_eq!(
            check_ifname("a-very-long-bridge"),
            Err("is longer than 15 characters")
        );
        assert_eq!(
            check_ifname("br/0"),
            Err("may only hold a-z, A-Z, 0-9, '_', '-' and '.'")
        );
    }
}
