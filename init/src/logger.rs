//! Log lines for the console and the kernel log, each with a monotonic timestamp.
//!
//! Every record is written to `/dev/kmsg`, so it is in `dmesg` and the journal after the
//! handoff. The kernel echoes kernel-log records to the console itself when their level is
//! below the console log level; writing those to the console as well would print every line
//! twice, so the logger writes a record to the console only when the kernel will not echo it
//! (see [`kernel_echoes`]). Outside PID 1 (the `pxen` command) records go to standard error.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::time::{clock_gettime, ClockId};

/// Seconds since boot on the monotonic clock: the same clock as the kernel log's timestamps.
pub fn uptime_seconds() -> f64 {
    // The monotonic clock cannot fail on Linux; zero keeps logging alive if it ever did.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

/// Formats one console line: `pxen: [   1.234567] message`.
pub fn format_line(uptime: f64, message: &str) -> String {
    let mut line = String::with_capacity(message.len() + 24);
    // Writing into a String cannot fail.
    let _ = writeln!(line, "pxen: [{uptime:>12.6}] {message}");
    line
}

/// The syslog priority the kernel log uses for a `log` level.
pub fn kmsg_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether the kernel prints a kernel-log record of `priority` on the console by itself.
///
/// `printk` holds `/proc/sys/kernel/printk` (its first field is the console log level) and
/// `devkmsg` holds `/proc/sys/kernel/printk_devkmsg`: records written to `/dev/kmsg` may be
/// dropped by rate limiting unless it is `on`, so only then can the echo be relied on.
pub fn kernel_echoes(priority: u8, printk: &str, devkmsg: &str) -> bool {
    let console_level = printk
        .split_whitespace()
        .next()
        .and_then(|f| f.parse::<u8>().ok());
    let reliable = devkmsg.trim() == "on";
    matches!(console_level, Some(level) if priority < level) && reliable
}

/// Where the records of this process go.
enum Sink {
    /// PID 1: the kernel log, plus the console for what the kernel does not echo.
    Boot {
        kmsg: Option<File>,
        console: Option<File>,
        printk: String,
        devkmsg: String,
    },
    /// The `pxen` command: standard error.
    Stderr,
}

/// The logger behind the `log` macros.
struct Logger {
    sink: Mutex<Sink>,
    max_level: LevelFilter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.max_level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        // A poisoned lock only means another thread panicked while logging: keep logging.
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Boot {
                kmsg,
                console,
                printk,
                devkmsg,
            } => {
                let priority = kmsg_priority(record.level());
                if let Some(kmsg) = kmsg {
                    // One write() is one record for /dev/kmsg. A failed write must not stop
                    // the boot: the console line below still carries the message.
                    let _ = kmsg.write_all(format!("<{priority}>pxen: {message}\n").as_bytes());
                }
                if kmsg.is_none() || !kernel_echoes(priority, printk, devkmsg) {
                    if let Some(console) = console {
                        let _ =
                            console.write_all(format_line(uptime_seconds(), &message).as_bytes());
                    }
                }
            }
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(format!("pxen: {message}\n").as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the PID 1 logger: kernel log and console. Call after `/dev` and `/proc` exist.
pub fn init_boot(max_level: LevelFilter) {
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    let console = OpenOptions::new().write(true).open("/dev/console").ok();
    let printk = std::fs::read_to_string("/proc/sys/kernel/printk").unwrap_or_default();
    let devkmsg = std::fs::read_to_string("/proc/sys/kernel/printk_devkmsg").unwrap_or_default();
    install(
        Sink::Boot {
            kmsg,
            console,
            printk,
            devkmsg,
        },
        max_level,
    );
}

/// Installs the logger of the `pxen` command: standard error.
pub fn init_command(max_level: LevelFilter) {
    install(Sink::Stderr, max_level);
}

fn install(sink: Sink, max_level: LevelFilter) {
    let logger = Box::new(Logger {
        sink: Mutex::new(sink),
        max_level,
    });
    // Fails only if a logger is already installed, which then keeps serving.
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(max_level);
    }
}

/// The boot phases reached so far, with their uptime in seconds (see [`phases`]).
static PHASES: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

/// Logs the start of a boot phase and remembers when it was reached. The QEMU harness builds
/// its timeline from these lines; the host's report to host0 carries [`phases`].
pub fn phase(name: &str, detail: &str) {
    let at = uptime_seconds();
    // A poisoned lock only means a panic elsewhere while pushing: the list is still usable.
    PHASES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((name.to_string(), at));
    log::info!("phase {name}: {detail}");
}

/// Every phase logged by [`phase`] in this process, in order, with its uptime in seconds.
pub fn phases() -> Vec<(String, f64)> {
    PHASES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_remembered_in_order() {
        phase("test-phase-a", "first");
        phase("test-phase-b", "second");
        let mine: Vec<(String, f64)> = phases()
            .into_iter()
            .filter(|(name, _)| name.starts_with("test-phase-"))
            .collect();
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert_eq!(mine[0].0, "test-phase-a");
        assert!(mine[0].1 <= mine[1].1);
    }

    #[test]
    fn console_line_has_fixed_width_timestamp() {
        assert_eq!(format_line(1.5, "hello"), "pxen: [    1.500000] hello\n");
        assert_eq!(format_line(12345.000001, "x"), "pxen: [12345.000001] x\n");
    }

    #[test]
    fn kernel_echo_needs_low_priority_and_unlimited_devkmsg() {
        assert!(kernel_echoes(6, "7\t4\t1\t7\n", "on\n"));
        assert!(
            !kernel_echoes(7, "7\t4\t1\t7\n", "on\n"),
            "debug is not echoed at level 7"
        );
        assert!(!kernel_echoes(6, "4\t4\t1\t7\n", "on\n"), "quiet console");
        assert!(
            !kernel_echoes(3, "7\t4\t1\t7\n", "ratelimit\n"),
            "may be dropped"
        );
        assert!(
            !kernel_echoes(3, "", "on"),
            "unknown level: write it ourselves"
        );
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(kmsg_priority(Level::Error), 3);
        assert_eq!(kmsg_priority(Level::Warn), 4);
        assert_eq!(kmsg_priority(Level::Info), 6);
        assert_eq!(kmsg_priority(Level::Trace), 7);
    }
}
