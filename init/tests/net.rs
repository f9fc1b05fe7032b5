//! host0's network bring-up, for real: as root, two network namespaces joined by a veth pair,
//! a real DHCP server that knows nothing of PXE (dnsmasq) in one, and our client in the
//! other. The client gets a lease, applies it (checked with `ip`), and removes it; without a
//! server it gives up within its deadline, naming the interface and what it awaited.
//!
//! The client side re-executes this test binary under `ip netns exec`, which also mounts
//! the namespace's own `/sys`, so the sysfs reads of `net::link` see its interfaces.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pxen::net::dhcp::{self, ClientConfig, DhcpError};
use pxen::net::link;
use pxen::net::mac::MacAddr;

const CHILD_ENV: &str = "PXEN_NET_TEST_INTERFACE";
const SUBNET: &str = "192.168.77";
const CARRIER_DEADLINE: Duration = Duration::from_secs(10);

/// Two namespaces, `server` and `client`, with a veth pair between them; deleted on drop.
struct Lan {
    server: String,
    client: String,
    server_interface: String,
    client_interface: String,
}

impl Lan {
    fn new(tag: &str) -> Lan {
        let id = format!("{tag}{}", std::process::id());
        let lan = Lan {
            server: format!("pxen-s-{id}"),
            client: format!("pxen-c-{id}"),
            server_interface: format!("pxs{id}"),
            client_interface: format!("pxc{id}"),
        };
        ip(&["netns", "add", &lan.server]);
        ip(&["netns", "add", &lan.client]);
        ip(&[
            "link",
            "add",
            &lan.server_interface,
            "netns",
            &lan.server,
            "type",
            "veth",
            "peer",
            "name",
            &lan.client_interface,
            "netns",
            &lan.client,
        ]);
        let address = format!("{SUBNET}.1/24");
        ip(&[
            "-n",
            &lan.server,
            "addr",
            "add",
            &address,
            "dev",
            &lan.server_interface,
        ]);
        ip(&[
            "-n",
            &lan.server,
            "link",
            "set",
            &lan.server_interface,
            "up",
        ]);
        lan
    }

    /// dnsmasq serving DHCP only (no DNS, no TFTP, no PXE) in the server namespace.
    fn start_dnsmasq(&self, dir: &Path) -> Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
            ])
            .arg(format!("--interface={}", self.server_interface))
            .args([
                "--bind-interfaces",
                "--no-ping",
                "--log-dhcp",
                "--user=root",
                "--pid-file",
            ])
            .arg(format!(
                "--dhcp-range={SUBNET}.50,{SUBNET}.99,255.255.255.0,1h"
            ))
            .arg(format!("--dhcp-option=3,{SUBNET}.1"))
            .arg(format!("--dhcp-option=6,{SUBNET}.1"))
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq must be installed: apt-get install dnsmasq-base (cargo xtask deps)")
    }

    /// Runs `test` of this binary again inside the client namespace.
    fn run_client(&self, test: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.client])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                test,
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &self.client_interface)
            .output()
            .unwrap()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the other end.
        for namespace in [&self.client, &self.server] {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2) must be installed");
    assert!(status.success(), "ip {} failed: {status}", args.join(" "));
}

fn output_of(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The interface's MAC, from the namespace's sysfs.
fn mac_of(interface: &str) -> MacAddr {
    let text =
        std::fs::read_to_string(format!("{}/{interface}/address", link::SYS_CLASS_NET)).unwrap();
    text.trim().parse().unwrap()
}

/// Brings the client's links up and waits for the carrier.
fn bring_up(interface: &str) {
    link::set_up("lo").unwrap();
    link::set_up(interface).unwrap();
    let waited = link::wait_for_carrier(interface, CARRIER_DEADLINE).unwrap();
    eprintln!("carrier on {interface} after {waited:?}");
}

fn fast_config(interface: &str, deadline: Duration) -> ClientConfig {
    let mut config = ClientConfig::new(interface, mac_of(interface), Some("pxen-net-test".into()));
    config.first_retry = Duration::from_millis(500);
    config.max_retry = Duration::from_secs(2);
    config.deadline = deadline;
    config
}

fn assert_child_passed(output: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- client stdout\n{stdout}--- client stderr\n{stderr}");
    assert!(
        output.status.success(),
        "the client in its namespace failed ({}): {what}",
        output.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the client test did not run: {stdout}"
    );
}

#[test]
#[ignore = "needs root, iproute2 and dnsmasq: run by `cargo xtask test`"]
fn dhcp_client_gets_applies_and_removes_a_lease_from_dnsmasq() {
    if let Ok(interface) = std::env::var(CHILD_ENV) {
        return lease_in_client_namespace(&interface);
    }
    let dir = tempfile::tempdir().unwrap();
    let lan = Lan::new("l");
    let mut dnsmasq = lan.start_dnsmasq(dir.path());
    let output = lan.run_client("dhcp_client_gets_applies_and_removes_a_lease_from_dnsmasq");
    let _ = dnsmasq.kill();
    let server_log = dnsmasq.wait_with_output().unwrap();
    eprintln!(
        "--- dnsmasq\n{}",
        String::from_utf8_lossy(&server_log.stderr)
    );
    assert_child_passed(&output, "getting a lease from dnsmasq");
    let leases = std::fs::read_to_string(dir.path().join("leases")).unwrap();
    assert!(
        leases.contains("pxen-net-test"),
        "dnsmasq did not record our hostname: {leases}"
    );
}

fn lease_in_client_namespace(interface: &str) {
    bring_up(interface);
    let started = Instant::now();
    let lease = dhcp::obtain_lease(&fast_config(interface, Duration::from_secs(30))).unwrap();
    println!("PXEN-NET lease {lease} after {:?}", started.elapsed());
    assert!(lease.address.to_string().starts_with(SUBNET), "{lease}");
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.router, Some(format!("{SUBNET}.1").parse().unwrap()));
    assert_eq!(
        lease.dns,
        vec![format!("{SUBNET}.1").parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert_eq!(
        lease.server,
        format!("{SUBNET}.1").parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(lease.lease_time, Some(Duration::from_secs(3600)));

    dhcp::apply(interface, &lease).unwrap();
    let addresses = output_of(&["ip", "-4", "addr", "show", "dev", interface]);
    let routes = output_of(&["ip", "-4", "route"]);
    println!("PXEN-NET after apply:\n{addresses}{routes}");
    assert!(
        addresses.contains(&format!("inet {}/24 brd {SUBNET}.255", lease.address)),
        "{addresses}"
    );
    assert!(
        routes.contains(&format!("default via {SUBNET}.1 dev {interface}")),
        "{routes}"
    );
    assert!(
        routes.contains(&format!("{SUBNET}.0/24 dev {interface}")),
        "{routes}"
    );
    let ping = Command::new("ping")
        .args(["-c", "1", "-W", "2", &format!("{SUBNET}.1")])
        .status();
    if let Ok(status) = ping {
        assert!(
            status.success(),
            "the server is not reachable at {SUBNET}.1 with the lease applied"
        );
    }

    // Applying twice is refused by the kernel, naming the interface and the step.
    let error = dhcp::apply(interface, &lease).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("add address {}/24", lease.address)),
        "{error}"
    );
    assert!(error.to_string().contains(interface), "{error}");

    dhcp::remove(interface, &lease).unwrap();
    let addresses = output_of(&["ip", "-4", "addr", "show", "dev", interface]);
    let routes = output_of(&["ip", "-4", "route"]);
    assert!(
        !addresses.contains("inet "),
        "the address is still there: {addresses}"
    );
    assert!(routes.trim().is_empty(), "routes are left: {routes}");
}

#[test]
#[ignore = "needs root and iproute2: run by `cargo xtask test`"]
fn dhcp_client_without_a_server_gives_up_within_its_deadline() {
    if let Ok(interface) = std::env::var(CHILD_ENV) {
        return timeout_in_client_namespace(&interface);
    }
    let lan = Lan::new("t");
    let output = lan.run_client("dhcp_client_without_a_server_gives_up_within_its_deadline");
    assert_child_passed(&output, "timing out without a server");
}

fn timeout_in_client_namespace(interface: &str) {
    bring_up(interface);
    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let error = dhcp::obtain_lease(&fast_config(interface, deadline)).unwrap_err();
    let took = started.elapsed();
    println!("PXEN-NET gave up after {took:?}: {error}");
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(500),
        "gave up after {took:?}"
    );
    let DhcpError::Timeout { attempts, .. } = &error else {
        panic!("not a timeout: {error:?}");
    };
    // 0.5 s, then 1 s, 2 s… with at most a quarter of jitter: 3 or 4 DISCOVERs in 3 s.
    assert!((3..=4).contains(attempts), "{attempts} DISCOVERs sent");
    let message = error.to_string();
    assert!(message.contains(&format!("`{interface}`")), "{message}");
    assert!(message.contains("no DHCPOFFER within 3s"), "{message}");
}
