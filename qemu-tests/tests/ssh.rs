//! Logging in to a test host with the real OpenSSH client, through a port of 127.0.0.1 that
//! the LAN's slirp forwards to the host's address on the test LAN.
//!
//! The image does not put the test's key on the host yet (the configuration's users are not
//! applied by `/init` at this commit), so the test authorizes its key on the console shell
//! first, then logs in over SSH.
//!
//! Run by `cargo xtask test`, which sets `PXEN_TEST_IMAGE`, `PXEN_TEST_DOM0_MEM_MIB` and
//! `PXEN_TEST_LOG_DIR` (see `single_host.rs`).

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;
use pxen_qemu_tests::cluster::{ClusterBuilder, HostSpec, Stick};
use pxen_qemu_tests::lan;
use pxen_qemu_tests::ssh::{self, Ssh, SshKey};

/// Xen needs memory beside dom0's under QEMU.
const XEN_HEADROOM_MIB: u64 = 512;
/// From power-on to a shell under TCG emulation, the root filesystem copy included.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// For a quick command on the console.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// For a login and a command over SSH, dom0's address on its bridge (DHCP) and the host's
/// sshd starting included.
const SSH_TIMEOUT: Duration = Duration::from_secs(180);

const HOST: &str = "ssh-host";
const HOST_MAC: MacAddr = MacAddr::new([0x52, 0x54, 0x00, 0x50, 0x00, 0x30]);
const HOST_SERIAL: &str = "PXT-SSH-0001";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the scenarios with `cargo xtask test`"))
}

fn log_dir(work: &Path) -> PathBuf {
    std::env::var_os("PXEN_TEST_LOG_DIR").map_or_else(|| work.join("logs"), Into::into)
}

/// The console command that lets `public_key` log in as root.
fn authorize(public_key: &str) -> String {
    format!(
        "install -d -m 700 /root/.ssh && echo '{public_key}' >> /root/.ssh/authorized_keys \
         && chmod 600 /root/.ssh/authorized_keys"
    )
}

#[test]
#[ignore = "boots the PXEN test image in QEMU on the test LAN (minutes); run by `cargo xtask test`"]
fn root_logs_in_with_openssh_through_a_port_forwarded_to_the_test_lan() {
    let started = Instant::now();
    let dom0_mem_mib: u64 = env("PXEN_TEST_DOM0_MEM_MIB")
        .parse()
        .expect("a number of MiB");
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut cluster = ClusterBuilder::new(&log_dir(work.path()))
        .host0(
            HostSpec {
                name: HOST.into(),
                mac: HOST_MAC,
                serial: HOST_SERIAL.into(),
                memory_mib: dom0_mem_mib + XEN_HEADROOM_MIB,
            },
            Stick {
                image: env("PXEN_TEST_IMAGE").into(),
                usb_serial: "USB-SSH".into(),
            },
        )
        .start()
        .expect("the LAN and the host start");
    let key = SshKey::generate(work.path()).expect("ssh-keygen makes a key");

    let host = cluster.host0().expect("the host is powered on");
    host.wait_for_shell(BOOT_TIMEOUT)
        .expect("dom0 boots to the console shell");
    let booted = started.elapsed();
    host.run_ok("dmesg -n 1", COMMAND_TIMEOUT)
        .expect("console log level can be lowered");
    host.run_ok(&authorize(&key.public), COMMAND_TIMEOUT)
        .expect("the test's key is authorized for root");
    // Whether the image has host keys or sshd makes them at boot, there are some after this.
    host.run_ok(
        "ssh-keygen -A && systemctl start ssh && systemctl is-active ssh",
        COMMAND_TIMEOUT,
    )
    .expect("sshd runs");
    let hostname = host.run_ok("hostname", COMMAND_TIMEOUT).expect("hostname");
    let console_key = host
        .run_ok("cat /etc/ssh/ssh_host_ed25519_key.pub", COMMAND_TIMEOUT)
        .expect("the host has an ed25519 host key");

    let ssh = Ssh::new(&key, &work.path().join("known_hosts"));
    let login = Instant::now();
    let output = cluster
        .ssh_to(
            &ssh,
            HOST,
            "root",
            "hostname; cat /etc/hosts",
            Instant::now() + SSH_TIMEOUT,
        )
        .expect("root logs in over SSH");
    println!(
        "ssh: logged in and ran the command in {:?}",
        login.elapsed()
    );
    assert_eq!(output.status, 0, "{output:?}");
    let (first, hosts) = output
        .stdout
        .split_once('\n')
        .expect("the hostname, then /etc/hosts");
    assert_eq!(first, hostname, "the same host as on the console");
    assert!(
        hosts
            .lines()
            .any(|line| line.split_whitespace().skip(1).any(|name| name == hostname)),
        "/etc/hosts names the host {hostname}:\n{hosts}"
    );

    // The forward ssh_to made: reading the address again would type on the console again.
    let port = cluster.ssh_forward(HOST).expect("ssh_to forwarded a port");
    let scanned =
        ssh::host_key(port, Instant::now() + SSH_TIMEOUT).expect("ssh-keyscan reads the host key");
    assert_eq!(scanned, ssh::without_comment(&console_key));
    let again = ssh
        .run_ok("root", port, "hostname", Instant::now() + SSH_TIMEOUT)
        .expect("a second login checks the recorded host key");
    assert_eq!(again, hostname);
    println!(
        "ssh: {HOST} booted to its shell in {booted:?}; the whole test took {:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "starts the LAN's QEMU (seconds); run by `cargo xtask test`"]
fn the_lan_forwards_a_loopback_port_until_the_forward_is_removed() {
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut cluster = ClusterBuilder::new(&log_dir(work.path()))
        .start()
        .expect("the LAN starts");
    let guest = Ipv4Addr::new(10, 77, 0, 60);
    let port = cluster
        .lan()
        .forward_tcp(guest, 22)
        .expect("slirp forwards a port");
    assert_eq!(
        cluster.lan().forward_tcp(guest, 22).expect("known"),
        port,
        "the same forward is reused"
    );
    // slirp itself accepts on the host side, whether or not the guest exists.
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("slirp listens on the port");
    let other = cluster
        .lan()
        .forward_tcp(lan::DHCP_START, 22)
        .expect("a second forward");
    assert_ne!(other, port);

    cluster
        .lan()
        .remove_forward(guest, 22)
        .expect("the forward is removed");
    let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect_err("nobody listens");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    cluster
        .lan()
        .remove_forward(guest, 22)
        .expect("removing an unknown forward does nothing");
}
