//! From the cluster configuration to the [`Plan`] applied to one host's root filesystem: which
//! of the configuration's values concern this host (its own addressing, the cluster's hosts
//! with a fixed address for `/etc/hosts`, the users, root, the network).

use super::apply::{AddressingSpec, HostsEntry, NetworkSpec, Plan, RootSpec, Uplink, UserSpec};
use crate::config::ipv4::Ipv4Cidr;
use crate::config::{Addressing, Cluster};

/// The plan for the host named `hostname`, whose bridge is carried by `uplink`. `cluster` has
/// been checked (`config::load_dir`), so its addresses parse; a value that would not anyway is
/// left out rather than stopping the boot (DHCP instead of a static address, a host missing
/// from `/etc/hosts`), because a host that is up can be fixed and one that is down cannot.
pub fn for_host(cluster: &Cluster, hostname: &str, uplink: Option<Uplink>) -> Plan {
    let own = cluster.hosts.iter().find(|h| h.hostname == hostname);
    let addressing = own.map_or(&cluster.network.addressing, |h| cluster.addressing_of(h));
    Plan {
        hostname: hostname.to_string(),
        domain: cluster.domain.clone(),
        hosts: hosts_entries(cluster),
        users: cluster
            .users
            .iter()
            .map(|u| UserSpec {
                name: u.name.clone(),
                groups: u.groups.clone(),
                ssh_keys: u.ssh_keys.clone(),
                password_hash: u.password_hash.clone(),
            })
            .collect(),
        root: RootSpec {
            ssh_keys: cluster.root.ssh_keys.clone(),
            password_hash: cluster.root.password_hash.clone(),
        },
        network: NetworkSpec {
            bridge: cluster.network.bridge.clone(),
            addressing: addressing_spec(addressing),
            dns: cluster.network.dns.clone(),
            search: cluster.network.search.clone(),
            ntp: cluster.network.ntp.clone(),
        },
        uplink,
    }
}

/// The hosts with a static address, which every host can name in `/etc/hosts`.
fn hosts_entries(cluster: &Cluster) -> Vec<HostsEntry> {
    cluster
        .hosts
        .iter()
        .filter_map(|host| match cluster.addressing_of(host) {
            Addressing::Static { address, .. } => {
                let cidr = address.parse::<Ipv4Cidr>().ok()?;
                Some(HostsEntry {
                    hostname: host.hostname.clone(),
                    address: cidr.address,
                })
            }
            Addressing::Dhcp => None,
        })
        .collect()
}

fn addressing_spec(addressing: &Addressing) -> AddressingSpec {
    let Addressing::Static { address, gateway } = addressing else {
        return AddressingSpec::Dhcp;
    };
    match address.parse::<Ipv4Cidr>() {
        Ok(cidr) => AddressingSpec::Static {
            address: cidr.address,
            prefix: cidr.prefix,
            gateway: gateway.as_deref().and_then(|g| g.parse().ok()),
        },
        Err(e) => {
            log::error!("network: the static address {address:?} {e}; using DHCP instead");
            AddressingSpec::Dhcp
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;

    use super::*;
    use crate::config::parse_cluster;
    use crate::net::mac::MacAddr;

    const LAB: &str = r#"Cluster(
        name: "lab", secret: "0123456789abcdef", domain: Some("lab.example"),
        hosts: [
            Host(serial: "S1", hostname: "node1",
                 network: Some(Static(address: "10.0.0.11/24", gateway: Some("10.0.0.1")))),
            Host(serial: "S2", hostname: "node2"),
            Host(serial: "S3", hostname: "node3", network: Some(Static(address: "10.0.0.13/24"))),
        ],
        users: [User(name: "ops", groups: ["sudo"],
                     ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAfdBKQ6nVbTMx2h+wNG8DUcUE/qHP35oorz1Ohn7DiK ops"])],
        root: Root(password_hash: Some("$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g.")),
        network: Network(bridge: "br0", dns: ["10.0.0.1"], ntp: ["ntp.lab.example"], search: ["lab.example"]),
    )"#;

    fn lab() -> Cluster {
        parse_cluster(Path::new("cluster.ron"), LAB).unwrap()
    }

    #[test]
    fn a_host_gets_its_own_static_address_and_the_cluster_network() {
        let uplink = Uplink {
            mac: MacAddr::new([0x52, 0x54, 0, 0, 0, 1]),
            name: "eth0".into(),
        };
        let plan = for_host(&lab(), "node1", Some(uplink.clone()));
        assert_eq!(plan.hostname, "node1");
        assert_eq!(plan.domain.as_deref(), Some("lab.example"));
        assert_eq!(
            plan.network.addressing,
            AddressingSpec::Static {
                address: Ipv4Addr::new(10, 0, 0, 11),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1))
            }
        );
        assert_eq!(plan.network.bridge, "br0");
        assert_eq!(plan.network.dns, ["10.0.0.1"]);
        assert_eq!(plan.network.ntp, ["ntp.lab.example"]);
        assert_eq!(plan.network.search, ["lab.example"]);
        assert_eq!(plan.uplink, Some(uplink));
        assert_eq!(plan.users.len(), 1);
        assert_eq!(plan.users[0].groups, ["sudo"]);
        assert!(plan.root.password_hash.is_some());
        assert!(plan.root.ssh_keys.is_empty());
    }

    #[test]
    fn every_host_names_the_statically_addressed_hosts() {
        let names = |plan: Plan| -> Vec<(String, Ipv4Addr)> {
            plan.hosts
                .into_iter()
                .map(|h| (h.hostname, h.address))
                .collect()
        };
        let expected = vec![
            ("node1".to_string(), Ipv4Addr::new(10, 0, 0, 11)),
            ("node3".to_string(), Ipv4Addr::new(10, 0, 0, 13)),
        ];
        assert_eq!(names(for_host(&lab(), "node2", None)), expected);
        assert_eq!(names(for_host(&lab(), "node1", None)), expected);
    }

    #[test]
    fn hosts_without_an_entry_or_a_static_address_use_dhcp() {
        for hostname in ["node2", "pxen-0123456789"] {
            let plan = for_host(&lab(), hostname, None);
            assert_eq!(plan.network.addressing, AddressingSpec::Dhcp, "{hostname}");
            assert_eq!(plan.hostname, hostname);
        }
    }
}
