//! A virtual cluster: host0 booting from a USB stick, hostUs booting from the network, the
//! LAN's DHCP server and our switch between them.
//!
//! hostUs are only defined when the cluster starts: each is powered on by the switch when a
//! Wake-on-LAN magic packet for its MAC crosses the LAN (the power button), once; nothing
//! else starts a hostU. A dedicated power thread starts them, so their QEMU processes live as
//! long as the cluster (QEMU dies with the thread that started it).
//!
//! The cluster watches the LAN to time each host's network boot (first PXE DHCP request,
//! first TFTP or HTTP request) and reads the rest from the consoles; [`Cluster::timeline`]
//! puts it in one table. Dropping the cluster powers everything off.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;

use crate::lan::{Lan, LanError};
use crate::machine::{Boot, HarnessError, Machine, MachineConfig, Nic};
use crate::ssh::{Ssh, SshError, SshOutput};
use crate::switch::{Observed, PortId, Switch, SwitchBuilder, SwitchError, TestPort};
use crate::timeline::Timeline;

/// How often the cluster's threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// sshd's port on the hosts.
pub const SSH_PORT: u16 = 22;
/// The console command showing the IPv4 address of dom0's Xen bridge, which carries its LAN
/// address. Kept short: Xen buffers only 128
/// bytes of console input for dom0 and drops what overflows, which a long typed line (with
/// [`crate::shell`]'s markers around it) can do when dom0 is slow to read.
pub const SHOW_ADDRESS: &str = "ip -4 -o addr show xenbr0";
/// How long one [`SHOW_ADDRESS`] may take on the console.
const SHOW_ADDRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// How often [`Cluster::lan_address`] looks again while the bridge has no address. Polling:
/// nothing on the console announces the end of dom0's DHCP, and a wait inside the guest
/// would be a line too long to type safely (see [`SHOW_ADDRESS`]).
const ADDRESS_POLL: Duration = Duration::from_secs(2);

/// One host of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Its name: machine, log files and switch port.
    pub name: String,
    /// Its NIC's MAC.
    pub mac: MacAddr,
    /// Its DMI system serial.
    pub serial: String,
    /// Its RAM in MiB.
    pub memory_mib: u64,
}

/// A USB stick a machine of the cluster boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stick {
    /// The image file.
    pub image: PathBuf,
    /// The stick's USB serial.
    pub usb_serial: String,
    /// Whether the machine's writes reach the image file, as a real stick keeps them (the
    /// drive's binding, stamps, last-known-good configuration); `false` boots a snapshot and
    /// leaves the file as it was.
    pub persistent: bool,
}

/// A step of running the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The log directory could not be created.
    #[error("cannot create the cluster's log directory {path}: {source}; check that its parent is writable")]
    LogDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The socket directory could not be created.
    #[error("cannot create a temporary directory for the LAN's sockets: {source}; check that TMPDIR is writable")]
    SocketDir {
        /// Why.
        source: std::io::Error,
    },
    /// The switch failed.
    #[error(transparent)]
    Switch(#[from] SwitchError),
    /// The LAN's DHCP server failed.
    #[error(transparent)]
    Lan(#[from] LanError),
    /// host0 failed.
    #[error(transparent)]
    Machine(#[from] HarnessError),
    /// The power thread could not be started.
    #[error("cannot start the cluster's {thread} thread: {source}")]
    Thread {
        /// Which.
        thread: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// No host or test port has this name.
    #[error("the cluster has no {what} named {name:?}")]
    Unknown {
        /// "hostU", "USB host" or "test port".
        what: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A hostU was not powered on in time.
    #[error("hostU {name} ({mac}) was not powered on within {waited:?}: no Wake-on-LAN magic packet for it crossed the LAN (see the switch's frame log {switch_log})")]
    NotPoweredOn {
        /// The host.
        name: String,
        /// Its MAC.
        mac: MacAddr,
        /// How long.
        waited: Duration,
        /// The frame log.
        switch_log: PathBuf,
    },
    /// Starting a hostU's QEMU failed when its magic packet came.
    #[error("hostU {name} was woken but its machine failed to start: {why}")]
    PowerOnFailed {
        /// The host.
        name: String,
        /// The harness error, as text (it happened on the power thread).
        why: String,
    },
    /// A host's bridge had no IPv4 address in time.
    #[error("host {name}: its Xen bridge has no IPv4 address after {waited:?}: did its DHCP client get one from the LAN's DHCP server (see lan.qemu.log)? `{SHOW_ADDRESS}` printed last: {output:?}")]
    NoLanAddress {
        /// The host.
        name: String,
        /// How long.
        waited: Duration,
        /// What `ip` printed.
        output: String,
    },
    /// Logging in to a host failed.
    #[error("host {name}: {source}")]
    Ssh {
        /// The host.
        name: String,
        /// Why (boxed: it is large, and this enum is returned everywhere).
        source: Box<SshError>,
    },
    /// Awaited wake requests did not come.
    #[error("hostU {name}: waited {waited:?} for {wanted} Wake-on-LAN packets, saw {seen}")]
    WakesMissing {
        /// The host.
        name: String,
        /// How many were awaited.
        wanted: usize,
        /// How many came.
        seen: usize,
        /// How long.
        waited: Duration,
    },
}

/// Builds a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    log_dir: PathBuf,
    host0: Option<(HostSpec, Stick)>,
    hostus: Vec<HostSpec>,
    usb_hosts: Vec<HostSpec>,
    test_ports: Vec<String>,
    seed: u64,
    echo_console: bool,
}

impl ClusterBuilder {
    /// A cluster whose console logs, QEMU logs and frame log `switch.log` go in `log_dir`.
    pub fn new(log_dir: &Path) -> ClusterBuilder {
        ClusterBuilder {
            log_dir: log_dir.to_path_buf(),
            host0: None,
            hostus: Vec::new(),
            usb_hosts: Vec::new(),
            test_ports: Vec::new(),
            seed: 1,
            echo_console: false,
        }
    }

    /// host0, booted from `stick` when the cluster starts.
    pub fn host0(mut self, spec: HostSpec, stick: Stick) -> ClusterBuilder {
        self.host0 = Some((spec, stick));
        self
    }

    /// A hostU: defined, powered off, booted from the network once woken.
    pub fn hostu(mut self, spec: HostSpec) -> ClusterBuilder {
        self.hostus.push(spec);
        self
    }

    /// A machine on the LAN that boots from a USB stick when the test powers it on
    /// ([`Cluster::power_on_usb`]): a would-be host0 beside the real one.
    pub fn usb_host(mut self, spec: HostSpec) -> ClusterBuilder {
        self.usb_hosts.push(spec);
        self
    }

    /// A switch port for the test itself ([`Cluster::test_port`]).
    pub fn test_port(mut self, name: &str) -> ClusterBuilder {
        self.test_ports.push(name.to_string());
        self
    }

    /// Seeds the switch's fault injection.
    pub fn seed(mut self, seed: u64) -> ClusterBuilder {
        self.seed = seed;
        self
    }

    /// Copies host0's console live to standard output (the others stay in their log files:
    /// consoles interleaved line by line are unreadable).
    pub fn echo_console(mut self, echo: bool) -> ClusterBuilder {
        self.echo_console = echo;
        self
    }

    /// Starts the switch, the LAN's DHCP server and host0; hostUs wait for their magic packet.
    pub fn start(self) -> Result<Cluster, ClusterError> {
        let started = Instant::now();
        std::fs::create_dir_all(&self.log_dir).map_err(|source| ClusterError::LogDir {
            path: self.log_dir.clone(),
            source,
        })?;
        // Unix socket paths are short (107 bytes): they go in a short temporary directory,
        // not in the log directory, which may be deep.
        let sockets = tempfile::Builder::new()
            .prefix("pxen-lan-")
            .tempdir()
            .map_err(|source| ClusterError::SocketDir { source })?;
        let (wake_sender, wakes) = mpsc::channel::<MacAddr>();
        let wake_sender = Mutex::new(wake_sender);
        let mut switch = SwitchBuilder::new(sockets.path(), &self.log_dir.join("switch.log"))
            .seed(self.seed)
            .on_wake(Arc::new(move |target| {
                // The power thread ends only when the cluster is dropped, after the switch
                // has stopped calling: a failed send can only happen while shutting down.
                let _ = lock(&wake_sender).send(target);
            }));
        let lan_port = switch.add_port("lan");
        let host0_port = self
            .host0
            .as_ref()
            .map(|(spec, _)| switch.add_port(&spec.name));
        let hostu_ports: Vec<PortId> = self
            .hostus
            .iter()
            .map(|h| switch.add_port(&h.name))
            .collect();
        let usb_ports: Vec<PortId> = self
            .usb_hosts
            .iter()
            .map(|h| switch.add_port(&h.name))
            .collect();
        let test_ports: HashMap<String, PortId> = self
            .test_ports
            .iter()
            .map(|name| (name.clone(), switch.add_port(name)))
            .collect();
        let switch = switch.start()?;
        let lan = Lan::start(switch.port(lan_port), &self.log_dir.join("lan.qemu.log"))?;

        let shared = Arc::new(Shared {
            started,
            stop: AtomicBool::new(false),
            hostus: self
                .hostus
                .iter()
                .zip(&hostu_ports)
                .map(|(spec, &port)| Slot {
                    mac: spec.mac,
                    config: self.machine_config(spec, Boot::Network, &switch, port),
                    state: Mutex::new(SlotState::default()),
                    changed: Condvar::new(),
                })
                .collect(),
            network: Mutex::new(HashMap::new()),
            switch_started: switch.started(),
        });
        let power = spawn("power", {
            let shared = Arc::clone(&shared);
            move || power_thread(&shared, &wakes)
        })?;
        let watcher = spawn("lan-watch", {
            let shared = Arc::clone(&shared);
            let observer = switch.observe();
            move || watch_thread(&shared, &observer)
        })?;
        let mut cluster = Cluster {
            shared,
            threads: vec![power, watcher],
            host0: None,
            host0_mac: None,
            host0_serial: None,
            test_ports,
            usb_hosts: self
                .usb_hosts
                .iter()
                .zip(usb_ports)
                .map(|(spec, port)| {
                    let config = self.machine_config(spec, Boot::Network, &switch, port);
                    (
                        spec.name.clone(),
                        UsbHost {
                            config,
                            machine: None,
                        },
                    )
                })
                .collect(),
            ssh_forwards: HashMap::new(),
            lan,
            switch,
            _sockets: sockets,
        };
        if let (Some((spec, stick)), Some(port)) = (&self.host0, host0_port) {
            let boot = Boot::UsbStick {
                image: stick.image.clone(),
                usb_serial: stick.usb_serial.clone(),
                persistent: stick.persistent,
            };
            let mut config = self.machine_config(spec, boot, &cluster.switch, port);
            config.echo_console = self.echo_console;
            cluster.host0_mac = Some(spec.mac);
            cluster.host0_serial = Some(spec.serial.clone());
            let power_on = started.elapsed();
            cluster.host0 = Some((Machine::start(&config)?, power_on));
        }
        Ok(cluster)
    }

    fn machine_config(
        &self,
        spec: &HostSpec,
        boot: Boot,
        switch: &Switch,
        port: PortId,
    ) -> MachineConfig {
        MachineConfig {
            name: spec.name.clone(),
            memory_mib: spec.memory_mib,
            smbios_serial: spec.serial.clone(),
            boot,
            log_dir: self.log_dir.clone(),
            echo_console: false,
            nics: vec![Nic {
                mac: spec.mac,
                port: switch.port(port).clone(),
            }],
        }
    }
}

fn spawn(
    thread: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, ClusterError> {
    std::thread::Builder::new()
        .name(format!("cluster-{thread}"))
        .spawn(body)
        .map_err(|source| ClusterError::Thread { thread, source })
}

/// Locks `mutex`, going on with the data if a thread panicked holding it: each update here
/// is a single assignment, so the data stays consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The first IPv4 address in `ip -4 -o addr` output (`2: xenbr0    inet 10.77.0.50/24 ...`).
pub fn parse_inet(output: &str) -> Option<Ipv4Addr> {
    output.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|word| *word == "inet")?;
        words.next()?.split('/').next()?.parse().ok()
    })
}

/// When a host's network boot steps were first seen on the LAN, since the cluster started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetworkEvents {
    /// Its first DHCP message as a PXE client.
    pub pxe_dhcp: Option<Duration>,
    /// Its first TFTP or HTTP request.
    pub file_request: Option<Duration>,
}

impl NetworkEvents {
    /// Records `observed` (at `at` since the cluster started) if it is a first.
    pub fn record(&mut self, observed: &Observed, at: Duration) {
        let summary = &observed.summary;
        if self.pxe_dhcp.is_none() && summary.dhcp().is_some_and(|dhcp| dhcp.pxe) {
            self.pxe_dhcp = Some(at);
        }
        if self.file_request.is_none() && summary.is_file_request() {
            self.file_request = Some(at);
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    /// Behind its own lock, so a test driving one hostU's console for a minute does not hold
    /// up the power button of the others.
    machine: Option<Arc<Mutex<Machine>>>,
    power_on: Option<Duration>,
    failed: Option<String>,
    wakes: usize,
}

/// A hostU: its configuration, and its machine once powered on.
struct Slot {
    mac: MacAddr,
    config: MachineConfig,
    state: Mutex<SlotState>,
    changed: Condvar,
}

struct Shared {
    started: Instant,
    switch_started: Instant,
    stop: AtomicBool,
    hostus: Vec<Slot>,
    network: Mutex<HashMap<MacAddr, NetworkEvents>>,
}

impl Shared {
    fn slot_of(&self, mac: MacAddr) -> Option<&Slot> {
        self.hostus.iter().find(|slot| slot.mac == mac)
    }
}

/// The power button: starts the hostU a magic packet targets, if it is off.
fn power_thread(shared: &Shared, wakes: &Receiver<MacAddr>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let target = match wakes.recv_timeout(POLL) {
            Ok(target) => target,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(slot) = shared.slot_of(target) else {
            log::info!(
                "power button: magic packet for {target}, which is no hostU of this cluster"
            );
            continue;
        };
        let mut state = lock(&slot.state);
        state.wakes += 1;
        if state.power_on.is_none() && state.failed.is_none() {
            let at = shared.started.elapsed();
            log::info!(
                "power button: {target} woken, powering on {}",
                slot.config.name
            );
            match Machine::start(&slot.config) {
                Ok(machine) => {
                    state.machine = Some(Arc::new(Mutex::new(machine)));
                    state.power_on = Some(at);
                }
                Err(error) => state.failed = Some(error.to_string()),
            }
        } else {
            log::info!(
                "power button: {target} woken again; {} is already on",
                slot.config.name
            );
        }
        drop(state);
        slot.changed.notify_all();
    }
}

/// Records each host's first PXE DHCP and file request seen on the switch.
fn watch_thread(shared: &Shared, observer: &Receiver<Observed>) {
    while !shared.stop.load(Ordering::Relaxed) {
        match observer.recv_timeout(POLL) {
            Ok(observed) => {
                let at =
                    (shared.switch_started + observed.at).saturating_duration_since(shared.started);
                lock(&shared.network)
                    .entry(observed.summary.src)
                    .or_default()
                    .record(&observed, at);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A running cluster. Dropping it powers everything off.
pub struct Cluster {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    host0: Option<(Machine, Duration)>,
    host0_mac: Option<MacAddr>,
    host0_serial: Option<String>,
    test_ports: HashMap<String, PortId>,
    usb_hosts: HashMap<String, UsbHost>,
    /// Per host name, the LAN address its SSH forward goes to and the port of 127.0.0.1.
    ssh_forwards: HashMap<String, (Ipv4Addr, u16)>,
    // Dropped in this order, after Drop has stopped the machines: the DHCP server, then the
    // switch, then the sockets' directory.
    lan: Lan,
    switch: Switch,
    _sockets: tempfile::TempDir,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("switch", &self.switch)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The switch.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Powers on USB host `name` (see [`ClusterBuilder::usb_host`]), booting from `stick`.
    pub fn power_on_usb(&mut self, name: &str, stick: &Stick) -> Result<(), ClusterError> {
        let host = self
            .usb_hosts
            .get_mut(name)
            .ok_or_else(|| ClusterError::Unknown {
                what: "USB host",
                name: name.to_string(),
            })?;
        let mut config = host.config.clone();
        config.boot = Boot::UsbStick {
            image: stick.image.clone(),
            usb_serial: stick.usb_serial.clone(),
            persistent: stick.persistent,
        };
        host.machine = Some(Machine::start(&config)?);
        Ok(())
    }

    /// USB host `name`'s machine, once powered on.
    pub fn usb_host(&mut self, name: &str) -> Option<&mut Machine> {
        self.usb_hosts.get_mut(name)?.machine.as_mut()
    }

    /// host0's machine, if the cluster has one.
    pub fn host0(&mut self) -> Option<&mut Machine> {
        self.host0.as_mut().map(|(machine, _)| machine)
    }

    /// The LAN's DHCP server, which forwards ports of 127.0.0.1 to hosts.
    pub fn lan(&mut self) -> &mut Lan {
        &mut self.lan
    }

    /// Runs `f` on the machine `name`: host0, a powered-on hostU or a powered-on USB host.
    pub fn with_machine<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Machine) -> R,
    ) -> Result<R, ClusterError> {
        if let Some((machine, _)) = self.host0.as_mut().filter(|(m, _)| m.name() == name) {
            return Ok(f(machine));
        }
        if let Some(machine) = self
            .usb_hosts
            .get_mut(name)
            .and_then(|h| h.machine.as_mut())
        {
            return Ok(f(machine));
        }
        self.with_hostu(name, f)?
            .ok_or_else(|| ClusterError::Unknown {
                what: "powered-on machine",
                name: name.to_string(),
            })
    }

    /// Host `name`'s address on the LAN: the IPv4 address of its Xen bridge, read on its
    /// console, so its shell must be up ([`Machine::wait_for_shell`]). Waits up to
    /// `timeout` for its DHCP client to get one.
    pub fn lan_address(&mut self, name: &str, timeout: Duration) -> Result<Ipv4Addr, ClusterError> {
        let deadline = Instant::now() + timeout;
        loop {
            let shown = self.with_machine(name, |machine| {
                machine.run(SHOW_ADDRESS, SHOW_ADDRESS_TIMEOUT)
            })??;
            if let Some(address) = parse_inet(&shown.stdout) {
                return Ok(address);
            }
            if Instant::now() + ADDRESS_POLL >= deadline {
                return Err(ClusterError::NoLanAddress {
                    name: name.to_string(),
                    waited: timeout,
                    output: shown.stdout,
                });
            }
            std::thread::sleep(ADDRESS_POLL);
        }
    }

    /// A port of 127.0.0.1 forwarded to sshd on host `name`'s current LAN address (see
    /// [`Cluster::lan_address`] for `timeout`). The forward is made once per address; when
    /// the host comes back with another address, the old forward is removed.
    pub fn ssh_port(&mut self, name: &str, timeout: Duration) -> Result<u16, ClusterError> {
        let address = self.lan_address(name, timeout)?;
        match self.ssh_forwards.get(name) {
            Some(&(known, port)) if known == address => return Ok(port),
            Some(&(old, _)) => self.lan.remove_forward(old, SSH_PORT)?,
            None => {}
        }
        let port = self.lan.forward_tcp(address, SSH_PORT)?;
        self.ssh_forwards.insert(name.to_string(), (address, port));
        Ok(port)
    }

    /// The port of 127.0.0.1 forwarded to sshd on host `name` at the address
    /// [`Cluster::ssh_port`] last found, without asking the host again.
    pub fn ssh_forward(&self, name: &str) -> Option<u16> {
        self.ssh_forwards.get(name).map(|&(_, port)| port)
    }

    /// Runs `command` as `user` on host `name` over SSH with `ssh`, through
    /// [`Cluster::ssh_port`], trying until `deadline` while its sshd is not up.
    pub fn ssh_to(
        &mut self,
        ssh: &Ssh,
        name: &str,
        user: &str,
        command: &str,
        deadline: Instant,
    ) -> Result<SshOutput, ClusterError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let port = self.ssh_port(name, left)?;
        ssh.run(user, port, command, deadline)
            .map_err(|source| ClusterError::Ssh {
                name: name.to_string(),
                source: Box::new(source),
            })
    }

    /// Plugs the test into its test port `name`.
    pub fn test_port(&self, name: &str) -> Result<TestPort, ClusterError> {
        let port = self
            .test_ports
            .get(name)
            .ok_or_else(|| ClusterError::Unknown {
                what: "test port",
                name: name.to_string(),
            })?;
        Ok(self.switch().test_port(*port)?)
    }

    fn slot(&self, name: &str) -> Result<&Slot, ClusterError> {
        self.shared
            .hostus
            .iter()
            .find(|slot| slot.config.name == name)
            .ok_or_else(|| ClusterError::Unknown {
                what: "hostU",
                name: name.to_string(),
            })
    }

    /// Waits up to `timeout` for hostU `name` to be powered on; returns when, since the
    /// cluster started.
    pub fn wait_powered_on(&self, name: &str, timeout: Duration) -> Result<Duration, ClusterError> {
        let slot = self.slot(name)?;
        let state = self.wait_slot(slot, timeout, |s| {
            s.power_on.is_some() || s.failed.is_some()
        });
        if let Some(why) = &state.failed {
            return Err(ClusterError::PowerOnFailed {
                name: name.to_string(),
                why: why.clone(),
            });
        }
        state.power_on.ok_or_else(|| ClusterError::NotPoweredOn {
            name: name.to_string(),
            mac: slot.mac,
            waited: timeout,
            switch_log: self.switch().log_path().to_path_buf(),
        })
    }

    /// Waits up to `timeout` until the power button has handled `count` magic packets for
    /// hostU `name` in all.
    pub fn wait_wakes(
        &self,
        name: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let slot = self.slot(name)?;
        let seen = self.wait_slot(slot, timeout, |s| s.wakes >= count).wakes;
        if seen < count {
            return Err(ClusterError::WakesMissing {
                name: name.to_string(),
                wanted: count,
                seen,
                waited: timeout,
            });
        }
        Ok(())
    }

    fn wait_slot<'a>(
        &self,
        slot: &'a Slot,
        timeout: Duration,
        done: impl Fn(&SlotState) -> bool,
    ) -> MutexGuard<'a, SlotState> {
        let (state, _) = slot
            .changed
            .wait_timeout_while(lock(&slot.state), timeout, |state| !done(state))
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
    }

    /// Whether hostU `name` is powered on, and how many times it was (0 or 1).
    pub fn power_ons(&self, name: &str) -> Result<usize, ClusterError> {
        Ok(usize::from(
            lock(&self.slot(name)?.state).power_on.is_some(),
        ))
    }

    /// Runs `f` on hostU `name`'s machine, if it is powered on (`None` if not yet).
    pub fn with_hostu<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Machine) -> R,
    ) -> Result<Option<R>, ClusterError> {
        let machine = lock(&self.slot(name)?.state).machine.clone();
        Ok(machine.map(|machine| f(&mut lock(&machine))))
    }

    /// Waits up to `timeout` until host0 has accepted the report of every host whose DMI serial
    /// is in `serials` (its log lines `report: HOSTNAME (SERIAL) is online, from ADDRESS`, in
    /// any order), and returns those lines in the order they came. Only whole lines count.
    pub fn await_online(
        &mut self,
        serials: &[&str],
        timeout: Duration,
    ) -> Result<Vec<String>, ClusterError> {
        let (host0, _) = self.host0.as_mut().ok_or(ClusterError::Unknown {
            what: "host0",
            name: "host0".to_string(),
        })?;
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<String> = serials
            .iter()
            .map(|serial| format!("({serial}) is online, from "))
            .collect();
        let mut lines = Vec::new();
        while !pending.is_empty() {
            let awaited = format!("host0 accepting the reports of {}", pending.join(", "));
            let left = deadline.saturating_duration_since(Instant::now());
            let line = host0.expect_line(&awaited, false, left, &|text| {
                text.contains("report: ") && pending.iter().any(|p| text.contains(p.as_str()))
            })?;
            pending.retain(|p| !line.text.contains(p.as_str()));
            lines.push(line.text);
        }
        Ok(lines)
    }

    /// When host0 accepted the report of the host with DMI serial `serial` (its log line
    /// `report: HOSTNAME (SERIAL) is online`), since the cluster started.
    pub fn online_at(&self, serial: &str) -> Option<Duration> {
        let (host0, power_on) = self.host0.as_ref()?;
        let wanted = format!("({serial}) is online");
        host0
            .lines()
            .iter()
            .find(|line| line.text.contains("report: ") && line.text.contains(&wanted))
            .map(|line| *power_on + line.at)
    }

    /// The cluster's timeline so far.
    pub fn timeline(&self) -> ClusterTimeline {
        let network = lock(&self.shared.network).clone();
        let mut rows = Vec::new();
        if let (Some((machine, power_on)), Some(mac)) = (&self.host0, self.host0_mac) {
            let events = network.get(&mac).copied().unwrap_or_default();
            rows.push(HostRow::new(
                machine.name(),
                Some(*power_on),
                events,
                Some(&machine.timeline()),
                self.host0_serial.as_deref().and_then(|s| self.online_at(s)),
            ));
        }
        for slot in &self.shared.hostus {
            let state = lock(&slot.state);
            let events = network.get(&slot.mac).copied().unwrap_or_default();
            let timeline = state
                .machine
                .as_ref()
                .map(|machine| lock(machine).timeline());
            rows.push(HostRow::new(
                &slot.config.name,
                state.power_on,
                events,
                timeline.as_ref(),
                self.online_at(&slot.config.smbios_serial),
            ));
        }
        ClusterTimeline { rows }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // The power thread first, so no machine starts while the others are stopped.
        for thread in self.threads.drain(..) {
            // A panicked thread has printed why; there is nothing more to clean up.
            let _ = thread.join();
        }
        for slot in &self.shared.hostus {
            lock(&slot.state).machine.take();
        }
        self.usb_hosts.clear();
        self.host0.take();
    }
}

/// A machine booted from a USB stick when the test says so.
#[derive(Debug)]
struct UsbHost {
    /// Its configuration; the stick is given at power-on.
    config: MachineConfig,
    machine: Option<Machine>,
}

/// One host's line of the cluster timeline; times since the cluster started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    /// The host.
    pub host: String,
    /// Power-on, PXE DHCP, first file request, Xen, `/init`, handoff, dom0 up, online
    /// (its report accepted by host0).
    pub at: [Option<Duration>; 8],
}

/// The columns of [`HostRow::at`].
pub const COLUMNS: [&str; 8] = [
    "power-on", "PXE DHCP", "1st file", "Xen", "/init", "handoff", "dom0 up", "online",
];

impl HostRow {
    /// The row of `host`, from its power-on time, its network events, its console timeline
    /// (whose times count from its power-on) and when host0 accepted its report.
    pub fn new(
        host: &str,
        power_on: Option<Duration>,
        network: NetworkEvents,
        timeline: Option<&Timeline>,
        online: Option<Duration>,
    ) -> HostRow {
        let from_console = |matches: &dyn Fn(&str) -> bool| {
            let milestone = timeline?.milestones.iter().find(|m| matches(&m.name))?;
            Some(power_on? + milestone.at?)
        };
        HostRow {
            host: host.to_string(),
            at: [
                power_on,
                network.pxe_dhcp,
                network.file_request,
                from_console(&|name| name == "Xen starts"),
                from_console(&|name| name.starts_with("/init:")),
                from_console(&|name| name.starts_with("/init: handoff")),
                from_console(&|name| name == "dom0 ready (login)"),
                online,
            ],
        }
    }
}

/// Every host's boot, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTimeline {
    /// host0 first, then the hostUs in the order they were defined.
    pub rows: Vec<HostRow>,
}

impl fmt::Display for ClusterTimeline {
    /// A table of seconds since the cluster started; `-` for what has not happened.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cluster timeline (seconds since the cluster started)")?;
        let width = self
            .rows
            .iter()
            .map(|r| r.host.len())
            .max()
            .unwrap_or(4)
            .max(4);
        write!(f, "{:<width$}", "host")?;
        for column in COLUMNS {
            write!(f, "  {column:>9}")?;
        }
        writeln!(f)?;
        for row in &self.rows {
            write!(f, "{:<width$}", row.host)?;
            for at in row.at {
                match at {
                    Some(at) => write!(f, "  {:>9.3}", at.as_secs_f64())?,
                    None => write!(f, "  {:>9}", "-")?,
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{build, FrameSummary};
    use crate::switch::Fate;
    use crate::timeline::Milestone;
    use std::net::Ipv4Addr;

    const HOST: MacAddr = MacAddr::new([0x52, 0x54, 0, 0, 0, 5]);

    fn observed(frame: &[u8]) -> Observed {
        Observed {
            at: Duration::ZERO,
            ingress: PortId(0),
            summary: FrameSummary::parse(frame).expect("a frame"),
            fate: Fate::Forwarded(Vec::new()),
        }
    }

    #[test]
    fn the_first_pxe_dhcp_and_file_request_are_recorded_once() {
        let any = Ipv4Addr::UNSPECIFIED;
        let server = (MacAddr::BROADCAST, Ipv4Addr::BROADCAST, 67);
        let plain = observed(&build::udp(
            (HOST, any, 68),
            server,
            &build::dhcp(1, false, any),
        ));
        let pxe = observed(&build::udp(
            (HOST, any, 68),
            server,
            &build::dhcp(1, true, any),
        ));
        let tftp = observed(&build::udp(
            (HOST, any, 2000),
            (MacAddr::BROADCAST, any, 69),
            b"\0\x01f\0octet\0",
        ));
        let mut events = NetworkEvents::default();
        events.record(&plain, Duration::from_secs(1));
        assert_eq!(
            events.pxe_dhcp, None,
            "a DHCP client without PXE is no network boot"
        );
        events.record(&pxe, Duration::from_secs(2));
        events.record(&pxe, Duration::from_secs(3));
        events.record(&tftp, Duration::from_secs(4));
        events.record(&tftp, Duration::from_secs(5));
        assert_eq!(
            events,
            NetworkEvents {
                pxe_dhcp: Some(Duration::from_secs(2)),
                file_request: Some(Duration::from_secs(4)),
            }
        );
    }

    #[test]
    fn the_bridge_address_is_read_from_ip_addr_output() {
        let output = "7: xenbr0    inet 10.77.0.51/24 brd 10.77.0.255 scope global dynamic xenbr0\\       valid_lft 86391sec preferred_lft 86391sec";
        assert_eq!(parse_inet(output), Some(Ipv4Addr::new(10, 77, 0, 51)));
        assert_eq!(parse_inet(""), None);
        assert_eq!(parse_inet("Device \"xenbr0\" does not exist."), None);
        assert_eq!(parse_inet("inet"), None);
        assert_eq!(parse_inet("3: xenbr0    inet bogus/24"), None);
    }

    #[test]
    fn console_times_are_shifted_by_the_power_on_time() {
        let milestone = |name: &str, secs: Option<u64>| Milestone {
            name: name.into(),
            at: secs.map(Duration::from_secs),
        };
        let timeline = Timeline {
            host: "h1".into(),
            milestones: vec![
                milestone("power-on (QEMU starts)", Some(0)),
                milestone("Xen starts", Some(10)),
                milestone("/init: init: PXEN 0.1.0 is PID 1", Some(20)),
                milestone("/init: handoff: starting /sbin/init as h1", Some(30)),
                milestone("dom0 ready (login)", None),
            ],
        };
        let network = NetworkEvents {
            pxe_dhcp: Some(Duration::from_secs(102)),
            file_request: None,
        };
        let row = HostRow::new(
            "h1",
            Some(Duration::from_secs(100)),
            network,
            Some(&timeline),
            Some(Duration::from_secs(200)),
        );
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            row.at,
            [
                secs(100),
                secs(102),
                None,
                secs(110),
                secs(120),
                secs(130),
                None,
                secs(200)
            ]
        );
        let table = ClusterTimeline {
            rows: vec![
                row,
                HostRow::new("off", None, NetworkEvents::default(), None, None),
            ],
        }
        .to_string();
        assert!(
            table.contains("h1      100.000    102.000          -    110.000"),
            "{table}"
        );
        assert!(
            table
                .lines()
                .last()
                .is_some_and(|l| l.starts_with("off") && l.matches('-').count() == 8),
            "{table}"
        );
    }
}
