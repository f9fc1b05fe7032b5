//! A minimal `log` backend: the libraries the tasks call (the image builder, the QEMU
//! harness) log their progress through the `log` crate; this prints it on standard error.
//! `PXEN_LOG=debug` (or `trace`, `warn`...) changes the level; the default is `info`.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let level = match record.level() {
                Level::Error => "error: ",
                Level::Warn => "warning: ",
                Level::Info | Level::Debug | Level::Trace => "",
            };
            eprintln!("[{}] {level}{}", record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger, at the level `PXEN_LOG` names (default `info`).
pub fn init() {
    let level = std::env::var("PXEN_LOG")
        .ok()
        .and_then(|value| value.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    // Fails only if a logger is already installed, and this is the only place that does.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
