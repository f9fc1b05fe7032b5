//! One emulated PC: a QEMU process, its boot medium and its serial console.
//!
//! QEMU runs with TCG (KVM cannot run Xen as a nested hypervisor), a CPU model Xen's PV dom0
//! works on, no default devices, and the first serial port on QEMU's standard input and
//! output, which this process reads and writes through pipes. `-no-reboot` makes a reboot of
//! the guest end QEMU, so every boot is observed from power-on; a network-booted machine
//! instead boots again, as a PC retries its network boot.
//!
//! Every machine also has a QMP control socket ([`Machine::qmp`]), through which a test acts
//! on its hardware while it runs, e.g. pulls its USB stick ([`Machine::unplug_usb_stick`]).
//!
//! The machine is powered off (QEMU killed) when the [`Machine`] is dropped, and QEMU is
//! also killed by the kernel if the thread that started it ends (`PR_SET_PDEATHSIG`), so no
//! QEMU outlives a test, even one that panics or is killed.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pxen::net::mac::MacAddr;
use serde_json::json;

use crate::console::{self, Console, Line, PumpSinks, WaitResult};
use crate::qmp::{Qmp, QmpError};
use crate::shell::{self, CommandOutput};
use crate::switch::{netdev_arg, PortPaths};
use crate::timeline::Timeline;

/// The QEMU program.
pub const QEMU: &str = "qemu-system-x86_64";

/// How many console lines an error shows.
const TAIL_LINES: usize = 30;

/// How long to wait for an answer to one shell readiness probe before typing another.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// How long [`Machine::qmp`] waits for QEMU's QMP socket to accept a connection. QEMU
/// creates it while starting, before the guest runs, so this only matters on an overloaded
/// machine.
pub(crate) const QMP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The QEMU id of the USB stick of a [`Boot::UsbStick`] machine: both its drive (the image)
/// and its `usb-storage` device, which [`Machine::unplug_usb_stick`] deletes.
pub const USB_STICK_ID: &str = "stick";

/// What Xen prints when it hands the serial console's input to dom0. Before that line, every
/// key typed on the console is a Xen debug key ('R' reboots the machine, '%' enters the
/// debugger), so nothing may be typed earlier.
pub const XEN_INPUT_TO_DOM0: &str = "Serial input to DOM0";

/// What the machine boots from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A PXEN image as a USB stick on an xHCI controller, booted by the BIOS.
    UsbStick {
        /// The raw image file.
        image: PathBuf,
        /// The stick's USB hardware serial number, visible to the guest.
        usb_serial: String,
        /// Whether the guest's writes reach the image file, as on a real stick (what host0
        /// writes to its drive, kept for the next boot). Otherwise the image file is never
        /// modified: QEMU writes to a temporary snapshot (`snapshot=on`).
        persistent: bool,
    },
    /// Xen and a dom0 kernel loaded directly by QEMU's multiboot loader, without firmware or
    /// bootloader: for testing the harness itself.
    Multiboot {
        /// The uncompressed Xen ELF (`xen-4.17-amd64.gz`, gunzipped).
        xen: PathBuf,
        /// Xen's command line.
        xen_cmdline: String,
        /// The dom0 kernel.
        kernel: PathBuf,
        /// The dom0 kernel's command line.
        kernel_cmdline: String,
        /// The dom0 initramfs.
        initrd: PathBuf,
    },
    /// No disk: the BIOS runs the first NIC's iPXE ROM, which boots from the network (PXE).
    /// The machine needs at least one [`Nic`].
    Network,
}

/// A network card: an Intel e1000 (QEMU's default boot ROM for it is iPXE's, from
/// Debian's `ipxe-qemu`), plugged into a switch port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Its MAC address: the machine's identity on the LAN, and what Wake-on-LAN targets.
    pub mac: MacAddr,
    /// The switch port it is plugged into.
    pub port: PortPaths,
}

/// Everything that makes one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    /// A short name, used in log file names, errors and timelines.
    pub name: String,
    /// RAM in MiB. Xen needs room beside dom0: give dom0's memory plus 512.
    pub memory_mib: u64,
    /// The DMI system serial number (`/sys/class/dmi/id/product_serial` in the guest).
    pub smbios_serial: String,
    /// What it boots from.
    pub boot: Boot,
    /// Where the console log `<name>.console.log` and QEMU's own messages
    /// `<name>.qemu.log` are written (created if missing).
    pub log_dir: PathBuf,
    /// Whether to copy the console live to this process's standard output.
    pub echo_console: bool,
    /// Its network cards, in PCI order (the first one boots with [`Boot::Network`]).
    pub nics: Vec<Nic>,
}

/// A step of driving a machine failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The log directory could not be created.
    #[error("cannot create the log directory {path}: {source}; check that its parent is writable")]
    LogDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A log file could not be created.
    #[error("cannot create the log file {path}: {source}; check free space and permissions")]
    LogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A NIC socket of a previous run could not be removed.
    #[error("cannot remove the stale NIC socket {path}: {source}; is another test using the same directory?")]
    StaleSocket {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// QEMU could not be started.
    #[error("cannot start {program} for machine {machine}: {source}; install it with `cargo xtask deps`")]
    Spawn {
        /// The machine.
        machine: String,
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// The console reader thread could not be started.
    #[error("cannot start the console reader thread of machine {machine}: {source}")]
    ReaderThread {
        /// The machine.
        machine: String,
        /// Why.
        source: io::Error,
    },
    /// Typing on the console failed: QEMU has most likely exited.
    #[error("cannot type {text:?} on the console of machine {machine}: {source}; did QEMU exit? see {qemu_log}")]
    ConsoleWrite {
        /// The machine.
        machine: String,
        /// What was being typed.
        text: String,
        /// QEMU's own log.
        qemu_log: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// What was awaited did not appear on the console in time.
    #[error("machine {}: waited {waited:?} for {}, it did not come; last console lines:\n{}(full log: {})",
        .context.machine, .context.awaited, .context.tail, .context.log.display())]
    Timeout {
        /// How long.
        waited: Duration,
        /// The machine, what was awaited, and its console.
        context: Box<ConsoleContext>,
    },
    /// QEMU exited while something was awaited on the console.
    #[error("machine {}: QEMU exited ({status}) while waiting for {}; last console lines:\n{}QEMU said: {qemu_said:?} (full log: {})",
        .context.machine, .context.awaited, .context.tail, .context.log.display())]
    ConsoleClosed {
        /// QEMU's exit status, as far as known.
        status: String,
        /// QEMU's own messages (its standard error).
        qemu_said: String,
        /// The machine, what was awaited, and its console.
        context: Box<ConsoleContext>,
    },
    /// A command run on the console exited with a non-zero status.
    #[error("machine {machine}: `{command}` exited with status {status}; it printed:\n{stdout}")]
    CommandFailed {
        /// The machine.
        machine: String,
        /// The command.
        command: String,
        /// Its exit status.
        status: i32,
        /// What it printed.
        stdout: String,
    },
    /// The private directory of the QMP socket could not be created.
    #[error("cannot create a temporary directory for the QMP socket of machine {machine}: {source}; check that TMPDIR is writable")]
    QmpDir {
        /// The machine.
        machine: String,
        /// Why.
        source: io::Error,
    },
    /// QMP was needed but QEMU has already exited.
    #[error("machine {machine}: QEMU has exited ({status}), nothing answers on its QMP socket; see {}", .qemu_log.display())]
    QemuExited {
        /// The machine.
        machine: String,
        /// QEMU's exit status.
        status: ExitStatus,
        /// QEMU's own log.
        qemu_log: PathBuf,
    },
    /// Talking to QEMU over its QMP socket failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// A USB stick was to be pulled from a machine that does not boot from one.
    #[error("machine {machine} does not boot from a USB stick: there is no stick to pull; give it `Boot::UsbStick`")]
    NoUsbStick {
        /// The machine.
        machine: String,
    },
    /// The USB stick was to be pulled but QEMU has no such device any more.
    #[error(
        "machine {machine}: the USB stick is already pulled (QEMU: {desc}); pull it only once"
    )]
    UsbStickGone {
        /// The machine.
        machine: String,
        /// QEMU's explanation.
        desc: String,
    },
    /// QEMU accepted the unplugging of the USB stick but did not report it done in time.
    #[error("machine {machine}: QEMU accepted `device_del` of the USB stick but sent no DEVICE_DELETED event for device {USB_STICK_ID:?} within {waited:?} (events seen meanwhile: {seen:?}); the stick may still be plugged in")]
    UsbStickNotReleased {
        /// The machine.
        machine: String,
        /// How long.
        waited: Duration,
        /// The names of the other QMP events seen meanwhile.
        seen: Vec<String>,
    },
    /// Waiting for or stopping the QEMU process failed.
    #[error("machine {machine}: cannot {action} the QEMU process: {source}")]
    Process {
        /// The machine.
        machine: String,
        /// "kill" or "wait for".
        action: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// Where a wait on the console stood when it failed, for error messages.
#[derive(Debug)]
pub struct ConsoleContext {
    /// The machine.
    pub machine: String,
    /// What was awaited.
    pub awaited: String,
    /// The last console lines, one per text line.
    pub tail: String,
    /// The console log file.
    pub log: PathBuf,
}

/// A handle for typing on a machine's console, which can be moved to another thread (to
/// forward a user's keyboard, say) while the [`Machine`] is waiting for output.
#[derive(Debug, Clone)]
pub struct ConsoleInput {
    machine: String,
    qemu_log: PathBuf,
    stdin: Arc<Mutex<ChildStdin>>,
}

impl ConsoleInput {
    /// Types `text` on the console, as is (add `\n` to press Enter).
    pub fn send(&self, text: &str) -> Result<(), HarnessError> {
        // A poisoned lock only means another writer panicked mid-write; the pipe is fine.
        let mut stdin = self
            .stdin
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        stdin
            .write_all(text.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|source| HarnessError::ConsoleWrite {
                machine: self.machine.clone(),
                text: text.to_string(),
                qemu_log: self.qemu_log.clone(),
                source,
            })
    }
}

/// A running emulated PC. Dropping it powers it off.
#[derive(Debug)]
pub struct Machine {
    name: String,
    child: Child,
    exit: Option<ExitStatus>,
    console: Arc<Console>,
    input: ConsoleInput,
    reader: Option<JoinHandle<()>>,
    /// Index of the first console line [`Machine::expect`] has not consumed yet.
    cursor: usize,
    /// Number of the next command or probe typed on the console (unique marker lines).
    next_id: u64,
    console_log: PathBuf,
    qemu_log: PathBuf,
    /// Whether it was started with a USB stick ([`Boot::UsbStick`]).
    has_usb_stick: bool,
    /// QEMU's QMP socket, in `_qmp_dir`.
    qmp_socket: PathBuf,
    /// The QMP connection, made on first use.
    qmp: Option<Qmp>,
    /// The short private directory of the QMP socket, removed after QEMU is killed (fields
    /// are dropped after [`Machine`]'s `drop`).
    _qmp_dir: tempfile::TempDir,
}

/// QEMU's command line (without the program) for `config`.
pub fn qemu_args(config: &MachineConfig) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-accel",
        "tcg",
        // With `-cpu max` the PV dom0 kernel crashes at once under TCG; Haswell-noTSX works.
        "-cpu",
        "Haswell-noTSX",
        "-nographic",
        "-nodefaults",
        // The first serial port (Xen's com1) is QEMU's stdin/stdout; `signal=off` so a
        // Ctrl-C byte typed on it reaches the guest instead of stopping QEMU.
        "-chardev",
        "stdio,id=con,signal=off",
        "-serial",
        "chardev:con",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    // A network-booted machine resets and boots from the network again when its boot loader
    // gives up (PXELINUX: "Boot failed ... wait for reset"), as a PC does; every other boot
    // ends QEMU on reboot, so it is observed from power-on.
    if config.boot != Boot::Network {
        args.push("-no-reboot".into());
    }
    args.push("-m".into());
    args.push(config.memory_mib.to_string().into());
    args.push("-smbios".into());
    args.push(format!("type=1,serial={}", escape_option(&config.smbios_serial)).into());
    args.extend(boot_args(&config.boot));
    args.extend(nic_args(&config.nics));
    args
}

/// QEMU's arguments for a QMP control socket at `socket`: QEMU creates it and listens
/// (`server=on`) without waiting for a client before running the guest (`wait=off`).
pub fn qmp_args(socket: &Path) -> Vec<OsString> {
    vec![
        "-qmp".into(),
        format!(
            "unix:{},server=on,wait=off",
            escape_option(&socket.to_string_lossy())
        )
        .into(),
    ]
}

/// A netdev on the NIC's switch port and an e1000 with the NIC's MAC, for each NIC.
fn nic_args(nics: &[Nic]) -> Vec<OsString> {
    nics.iter()
        .enumerate()
        .flat_map(|(index, nic)| {
            let id = format!("net{index}");
            [
                "-netdev".into(),
                netdev_arg(&nic.port, &id).into(),
                "-device".into(),
                format!("e1000,netdev={id},mac={}", nic.mac).into(),
            ]
        })
        .collect()
}

fn boot_args(boot: &Boot) -> Vec<OsString> {
    match boot {
        Boot::UsbStick {
            image,
            usb_serial,
            persistent,
        } => vec![
            "-device".into(),
            "qemu-xhci,id=xhci".into(),
            "-drive".into(),
            format!(
                "file={},if=none,id={USB_STICK_ID},format=raw,snapshot={}",
                escape_option(&image.to_string_lossy()),
                if *persistent { "off" } else { "on" }
            )
            .into(),
            "-device".into(),
            format!(
                "usb-storage,bus=xhci.0,drive={USB_STICK_ID},id={USB_STICK_ID},serial={}",
                escape_option(usb_serial)
            )
            .into(),
        ],
        Boot::Multiboot {
            xen,
            xen_cmdline,
            kernel,
            kernel_cmdline,
            initrd,
        } => vec![
            "-kernel".into(),
            xen.into(),
            "-append".into(),
            xen_cmdline.into(),
            "-initrd".into(),
            multiboot_modules(&[
                format!("{} {kernel_cmdline}", kernel.to_string_lossy()),
                initrd.to_string_lossy().into_owned(),
            ])
            .into(),
        ],
        Boot::Network => vec!["-boot".into(), "order=n".into()],
    }
}

/// The QEMU command for `config` with its QMP socket at `qmp_socket`, its console on pipes,
/// its own messages into `stderr`.
fn qemu_command(config: &MachineConfig, qmp_socket: &Path, stderr: File) -> Command {
    let mut command = Command::new(QEMU);
    command
        .args(qemu_args(config))
        .args(qmp_args(qmp_socket))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    die_with_parent(&mut command);
    command
}

/// Makes the process `command` starts die with the thread that starts it (see the module
/// documentation), and refuse to start if this process is already gone.
pub(crate) fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // getppid(2), which are async-signal-safe, and reads a copied integer.
    unsafe {
        command.pre_exec(move || {
            // Kill QEMU if the thread that started it dies, even by SIGKILL, when Drop
            // cannot run.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            // If the parent died before prctl, the signal will never come: do not start.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::other(
                    "the test process ended while QEMU was starting",
                ));
            }
            Ok(())
        });
    }
}

/// Escapes a value inside a QEMU option string, where `,` separates options: a literal comma
/// is written twice.
pub fn escape_option(value: &str) -> String {
    value.replace(',', ",,")
}

/// The `-initrd` value of QEMU's multiboot loader: modules (each "path arguments")
/// separated by commas, commas inside a module doubled.
pub fn multiboot_modules(modules: &[String]) -> String {
    modules
        .iter()
        .map(|m| escape_option(m))
        .collect::<Vec<_>>()
        .join(",")
}

impl Machine {
    /// Powers on a machine as `config` describes.
    ///
    /// QEMU is killed when the calling thread ends (see the module documentation): start a
    /// machine on the thread that owns it for its whole life.
    pub fn start(config: &MachineConfig) -> Result<Machine, HarnessError> {
        let name = config.name.clone();
        fs::create_dir_all(&config.log_dir).map_err(|source| HarnessError::LogDir {
            path: config.log_dir.clone(),
            source,
        })?;
        let console_log = config.log_dir.join(format!("{name}.console.log"));
        let qemu_log = config.log_dir.join(format!("{name}.qemu.log"));
        let console_file = create_log(&console_log)?;
        for nic in &config.nics {
            remove_stale_socket(&nic.port.machine)?;
        }
        let qemu_file = create_log(&qemu_log)?;
        // Unix socket paths are short (107 bytes): the QMP socket goes in a short private
        // directory, not in the log directory, which may be deep.
        let qmp_dir = tempfile::Builder::new()
            .prefix("pxen-qmp-")
            .tempdir()
            .map_err(|source| HarnessError::QmpDir {
                machine: name.clone(),
                source,
            })?;
        let qmp_socket = qmp_dir.path().join("qmp.sock");

        let mut command = qemu_command(config, &qmp_socket, qemu_file);
        log::info!(
            "starting machine {name}: {QEMU} {:?}",
            command.get_args().collect::<Vec<_>>()
        );
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| HarnessError::Spawn {
            machine: name.clone(),
            program: QEMU.to_string(),
            source,
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both streams were configured as pipes just above")
        };
        let console = Arc::new(Console::default());
        let sinks = PumpSinks {
            log: console_file,
            echo: config.echo_console,
        };
        let reader_console = Arc::clone(&console);
        let reader = std::thread::Builder::new()
            .name(format!("console-{name}"))
            .spawn(move || console::pump(stdout, &reader_console, sinks, started));
        let reader = match reader {
            Ok(reader) => reader,
            Err(source) => {
                // No one would read the console: do not leave QEMU running.
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::ReaderThread {
                    machine: name,
                    source,
                });
            }
        };
        let input = ConsoleInput {
            machine: name.clone(),
            qemu_log: qemu_log.clone(),
            stdin: Arc::new(Mutex::new(stdin)),
        };
        Ok(Machine {
            name,
            child,
            exit: None,
            console,
            input,
            reader: Some(reader),
            cursor: 0,
            next_id: 1,
            console_log,
            qemu_log,
            has_usb_stick: matches!(config.boot, Boot::UsbStick { .. }),
            qmp_socket,
            qmp: None,
            _qmp_dir: qmp_dir,
        })
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The console log file: every line, stamped with the time since power-on.
    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// A copy of every console line so far, the unfinished last one (a prompt) included.
    pub fn lines(&self) -> Vec<Line> {
        self.console.lines()
    }

    /// The boot timeline read from the console so far.
    pub fn timeline(&self) -> Timeline {
        Timeline::from_console(&self.name, &self.console.lines())
    }

    /// A handle for typing on the console from any thread.
    pub fn console_input(&self) -> ConsoleInput {
        self.input.clone()
    }

    /// Types `text` on the console, as is (add `\n` to press Enter).
    pub fn send(&self, text: &str) -> Result<(), HarnessError> {
        self.input.send(text)
    }

    /// Waits up to `timeout` for a console line containing `pattern`, after the line the
    /// previous `expect` matched. The unfinished last line counts, so prompts (which end
    /// without a newline) can be awaited.
    pub fn expect(&mut self, pattern: &str, timeout: Duration) -> Result<Line, HarnessError> {
        let awaited = format!("a console line containing {pattern:?}");
        self.expect_line(&awaited, true, timeout, &|text| text.contains(pattern))
    }

    /// Waits up to `timeout` for a console line, after the line the previous `expect`
    /// matched, for which `matches` is true; `awaited` describes it for the error message.
    /// With `include_partial`, the unfinished last line counts too.
    pub fn expect_line(
        &mut self,
        awaited: &str,
        include_partial: bool,
        timeout: Duration,
        matches: &dyn Fn(&str) -> bool,
    ) -> Result<Line, HarnessError> {
        let deadline = Instant::now() + timeout;
        match self
            .console
            .wait_for(self.cursor, include_partial, deadline, matches)
        {
            WaitResult::Found(index, line) => {
                self.cursor = index + 1;
                Ok(line)
            }
            WaitResult::TimedOut => Err(self.timeout_error(awaited, timeout)),
            WaitResult::Closed => Err(self.closed_error(awaited)),
        }
    }

    /// Waits up to `timeout` until a shell reads the console, by typing a probe that prints
    /// a marker line. Nothing is typed before Xen hands the console to dom0
    /// ([`XEN_INPUT_TO_DOM0`]). Input typed before a shell runs is lost (getty flushes the
    /// terminal), so a probe unanswered after a few seconds is typed again, with a new marker.
    pub fn wait_for_shell(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        self.wait_for_dom0_input(deadline, timeout)?;
        loop {
            let id = self.take_id();
            let marker = shell::ready_marker(id);
            self.send(&shell::ready_probe(id))?;
            let now = Instant::now();
            let wait = PROBE_INTERVAL.min(deadline.saturating_duration_since(now));
            let awaited = "a shell answering on the console";
            match self.expect_line(awaited, false, wait, &|text| text == marker) {
                Ok(_) => return Ok(()),
                Err(HarnessError::Timeout { .. }) if Instant::now() < deadline => continue,
                Err(HarnessError::Timeout { .. }) => {
                    return Err(self.timeout_error(awaited, timeout))
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Waits, without moving the `expect` cursor, until Xen has printed
    /// [`XEN_INPUT_TO_DOM0`] (looking from the first line, since a test may already have
    /// awaited later lines).
    fn wait_for_dom0_input(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), HarnessError> {
        let awaited = format!("Xen to hand the console to dom0 ({XEN_INPUT_TO_DOM0:?})");
        let is_switch = |text: &str| text.contains(XEN_INPUT_TO_DOM0);
        match self.console.wait_for(0, false, deadline, &is_switch) {
            WaitResult::Found(..) => Ok(()),
            WaitResult::TimedOut => Err(self.timeout_error(&awaited, timeout)),
            WaitResult::Closed => Err(self.closed_error(&awaited)),
        }
    }

    /// Runs one line of shell `command` in the shell on the console and returns what it
    /// printed and its exit status, waiting up to `timeout` for it to finish. Call
    /// [`Machine::wait_for_shell`] first so the typed command is not lost.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<CommandOutput, HarnessError> {
        let deadline = Instant::now() + timeout;
        let id = self.take_id();
        let begin = shell::begin_marker(id);
        self.send(&shell::marked_command(id, command))?;
        let awaited_begin = format!("the start of `{command}`");
        self.expect_line(&awaited_begin, false, timeout, &|text| text == begin)?;
        let first_output = self.cursor;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let awaited_end = format!("the end of `{command}`");
        let end = |text: &str| shell::parse_end_marker(id, text).is_some();
        let end_line = self.expect_line(&awaited_end, false, remaining, &end)?;
        let output = self.console.lines_in(first_output..self.cursor - 1);
        let stdout = shell::join_output(output.iter().map(|line| line.text.as_str()));
        // `end` matched, so the line parses; 255 could only come from a logic error here.
        let status = shell::parse_end_marker(id, &end_line.text).unwrap_or(255);
        log::debug!("{}: `{command}` exited {status}: {stdout:?}", self.name);
        Ok(CommandOutput { stdout, status })
    }

    /// Like [`Machine::run`], but a non-zero exit status is an error; returns the output.
    pub fn run_ok(&mut self, command: &str, timeout: Duration) -> Result<String, HarnessError> {
        let output = self.run(command, timeout)?;
        if output.status != 0 {
            return Err(HarnessError::CommandFailed {
                machine: self.name.clone(),
                command: command.to_string(),
                status: output.status,
                stdout: output.stdout,
            });
        }
        Ok(output.stdout)
    }

    /// The machine's QMP connection, for acting on its hardware from outside (see
    /// [`crate::qmp`]). The first call connects, waiting for QEMU to create the socket.
    pub fn qmp(&mut self) -> Result<&mut Qmp, HarnessError> {
        // A QEMU that has exited leaves its socket file behind: say so at once instead of
        // retrying to connect until the deadline.
        if let Ok(Some(_)) = self.child.try_wait() {
            let status = self.reap()?;
            return Err(HarnessError::QemuExited {
                machine: self.name.clone(),
                status,
                qemu_log: self.qemu_log.clone(),
            });
        }
        let qmp = match self.qmp.take() {
            Some(qmp) => qmp,
            None => Qmp::connect(&self.name, &self.qmp_socket, QMP_CONNECT_TIMEOUT)?,
        };
        Ok(self.qmp.insert(qmp))
    }

    /// Pulls the USB stick out of the running machine, as an administrator does, and waits
    /// up to `timeout` for QEMU to report it gone.
    ///
    /// Afterwards a test can rely on this: the `usb-storage` device and its drive are gone
    /// from QEMU (a second pull fails with [`HarnessError::UsbStickGone`], `query-block` no
    /// longer lists the drive), and the guest has been told of a USB disconnect on its xHCI
    /// port (QEMU detaches a USB device at once, without asking the guest); how soon the
    /// guest's kernel notices and removes its disk is up to the guest, so await that on the
    /// console. Any read of the stick after that fails in the guest.
    pub fn unplug_usb_stick(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        if !self.has_usb_stick {
            return Err(HarnessError::NoUsbStick {
                machine: self.name.clone(),
            });
        }
        let machine = self.name.clone();
        log::info!("machine {machine}: pulling out the USB stick");
        let deleted = self
            .qmp()?
            .execute("device_del", Some(json!({ "id": USB_STICK_ID })));
        match deleted {
            Ok(_) => {}
            // QEMU knows no such device: it was pulled before.
            Err(QmpError::Refused { class, desc, .. }) if class == "DeviceNotFound" => {
                return Err(HarnessError::UsbStickGone { machine, desc })
            }
            Err(other) => return Err(other.into()),
        }
        let is_stick = |data: &serde_json::Value| data["device"] == USB_STICK_ID;
        match self.qmp()?.wait_event("DEVICE_DELETED", is_stick, timeout) {
            Ok(_) => {
                log::info!("machine {machine}: the USB stick is pulled out");
                Ok(())
            }
            Err(QmpError::EventTimeout { waited, seen, .. }) => {
                Err(HarnessError::UsbStickNotReleased {
                    machine,
                    waited,
                    seen,
                })
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Makes the guest's next reboot reset the machine in place, as a real machine's does,
    /// instead of ending QEMU (`-no-reboot`): the same QEMU, console and NIC boot again, from
    /// the firmware on.
    pub fn reboot_in_place(&mut self) -> Result<(), HarnessError> {
        self.qmp()?
            .execute("set-action", Some(json!({ "reboot": "reset" })))?;
        log::info!("machine {}: a reboot now resets it in place", self.name);
        Ok(())
    }

    /// Waits up to `timeout` for the machine to power itself off (the guest shut down or
    /// rebooted: `-no-reboot` ends QEMU either way) and returns QEMU's exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let deadline = Instant::now() + timeout;
        let awaited = "QEMU to exit";
        if let WaitResult::TimedOut = self
            .console
            .wait_for(self.cursor, false, deadline, &|_| false)
        {
            return Err(self.timeout_error(awaited, timeout));
        }
        // The console is closed: QEMU closed its output, which it does when it exits.
        self.reap()
    }

    /// Pulls the plug: kills QEMU at once and returns its exit status.
    pub fn power_off(&mut self) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        if let Err(source) = self.child.kill() {
            // InvalidInput means QEMU already exited, which is what we want.
            if source.kind() != io::ErrorKind::InvalidInput {
                return Err(self.process_error("kill", source));
            }
        }
        self.reap()
    }

    /// Waits for the QEMU process and its console reader to finish.
    fn reap(&mut self) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .map_err(|source| self.process_error("wait for", source))?;
        self.exit = Some(status);
        if let Some(reader) = self.reader.take() {
            // QEMU is gone, so its output pipe is closed and the reader ends; a panic in it
            // has already been reported on stderr and lost no test result.
            let _ = reader.join();
        }
        log::info!("machine {} is off: QEMU {status}", self.name);
        Ok(status)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn timeout_error(&self, awaited: &str, waited: Duration) -> HarnessError {
        HarnessError::Timeout {
            waited,
            context: self.context(awaited),
        }
    }

    fn closed_error(&mut self, awaited: &str) -> HarnessError {
        let status = match self.reap() {
            Ok(status) => status.to_string(),
            Err(error) => format!("status unknown: {error}"),
        };
        let qemu_said = fs::read_to_string(&self.qemu_log)
            .unwrap_or_else(|error| format!("({} unreadable: {error})", self.qemu_log.display()));
        HarnessError::ConsoleClosed {
            status,
            qemu_said,
            context: self.context(awaited),
        }
    }

    fn context(&self, awaited: &str) -> Box<ConsoleContext> {
        Box::new(ConsoleContext {
            machine: self.name.clone(),
            awaited: awaited.to_string(),
            tail: self.console.tail(TAIL_LINES),
            log: self.console_log.clone(),
        })
    }

    fn process_error(&self, action: &'static str, source: io::Error) -> HarnessError {
        HarnessError::Process {
            machine: self.name.clone(),
            action,
            source,
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Err(error) = self.power_off() {
            log::warn!("could not power off machine {}: {error}", self.name);
        }
    }
}

/// Removes a NIC socket a previous run left behind: QEMU cannot bind over it.
fn remove_stale_socket(path: &Path) -> Result<(), HarnessError> {
    match fs::remove_file(path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => Err(HarnessError::StaleSocket {
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

fn create_log(path: &Path) -> Result<File, HarnessError> {
    File::create(path).map_err(|source| HarnessError::LogFile {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(boot: Boot) -> MachineConfig {
        MachineConfig {
            name: "a".into(),
            memory_mib: 1536,
            smbios_serial: "SER,A".into(),
            boot,
            log_dir: PathBuf::from("logs"),
            echo_console: false,
            nics: Vec::new(),
        }
    }

    fn args_of(config: &MachineConfig) -> Vec<String> {
        qemu_args(config)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The value following `option` in `args`.
    fn value_of<'a>(args: &'a [String], option: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == option)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn a_usb_machine_boots_a_snapshot_of_the_stick_on_xhci() {
        let args = args_of(&config(Boot::UsbStick {
            image: "/images/pxen.img".into(),
            usb_serial: "USB1".into(),
            persistent: false,
        }));
        assert_eq!(value_of(&args, "-accel"), ["tcg"]);
        assert_eq!(value_of(&args, "-cpu"), ["Haswell-noTSX"]);
        assert_eq!(value_of(&args, "-m"), ["1536"]);
        assert_eq!(value_of(&args, "-smbios"), ["type=1,serial=SER,,A"]);
        assert_eq!(
            value_of(&args, "-drive"),
            ["file=/images/pxen.img,if=none,id=stick,format=raw,snapshot=on"]
        );
        assert_eq!(
            value_of(&args, "-device"),
            [
                "qemu-xhci,id=xhci",
                "usb-storage,bus=xhci.0,drive=stick,id=stick,serial=USB1"
            ]
        );
        assert!(args.contains(&"-no-reboot".to_string()));
        assert!(args.contains(&"-nodefaults".to_string()));
        assert!(!args.contains(&"-kernel".to_string()));
        let persistent = args_of(&config(Boot::UsbStick {
            image: "/images/pxen.img".into(),
            usb_serial: "USB1".into(),
            persistent: true,
        }));
        assert_eq!(
            value_of(&persistent, "-drive"),
            ["file=/images/pxen.img,if=none,id=stick,format=raw,snapshot=off"]
        );
    }

    #[test]
    fn a_multiboot_machine_loads_xen_with_the_kernel_and_initrd_as_modules() {
        let args = args_of(&config(Boot::Multiboot {
            xen: "xen.elf".into(),
            xen_cmdline: "console=com1 dom0_mem=512M".into(),
            kernel: "vmlinuz".into(),
            kernel_cmdline: "console=hvc0 a=1,2".into(),
            initrd: "initrd.gz".into(),
        }));
        assert_eq!(value_of(&args, "-kernel"), ["xen.elf"]);
        assert_eq!(value_of(&args, "-append"), ["console=com1 dom0_mem=512M"]);
        assert_eq!(
            value_of(&args, "-initrd"),
            ["vmlinuz console=hvc0 a=1,,2,initrd.gz"]
        );
    }

    #[test]
    fn a_network_machine_boots_its_e1000_on_the_switch() {
        let mut config = config(Boot::Network);
        config.nics.push(Nic {
            mac: MacAddr::new([0x52, 0x54, 0, 0xaa, 0, 1]),
            port: PortPaths {
                name: "a".into(),
                machine: "/s/a.vm.sock".into(),
                switch: "/s/a.sw.sock".into(),
            },
        });
        let args = args_of(&config);
        assert_eq!(value_of(&args, "-boot"), ["order=n"]);
        assert_eq!(
            value_of(&args, "-netdev"),
            ["dgram,id=net0,local.type=unix,local.path=/s/a.vm.sock,remote.type=unix,remote.path=/s/a.sw.sock"]
        );
        assert_eq!(
            value_of(&args, "-device"),
            ["e1000,netdev=net0,mac=52:54:00:aa:00:01"]
        );
        assert!(!args.contains(&"-drive".to_string()));
    }

    #[test]
    fn the_qmp_socket_is_a_listening_unix_socket_that_does_not_hold_up_the_boot() {
        let args: Vec<String> = qmp_args(Path::new("/t/pxen-qmp-x/qmp,1.sock"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["-qmp", "unix:/t/pxen-qmp-x/qmp,,1.sock,server=on,wait=off"]
        );
    }

    #[test]
    fn commas_are_doubled_in_option_values() {
        assert_eq!(escape_option("a,b,,c"), "a,,b,,,,c");
        assert_eq!(multiboot_modules(&["k x".into(), "i".into()]), "k x,i");
    }
}
