//! The kernel command line parameters `/init` reads (`/proc/cmdline`).
//!
//! Unknown words belong to the kernel or to the real init and are ignored here. A malformed
//! `pxen.*` value is not fatal: the boot goes on with the default and the problem is reported,
//! because a typo on a boot menu must not keep a host down.

use std::path::PathBuf;
use std::time::Duration;

/// How this host was booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootSource {
    /// From a PXEN flash drive (SYSLINUX on the drive's FAT partition).
    Usb,
    /// Over the network, from host0's boot service.
    Net,
}

/// The parameters `/init` takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// The real init to hand off to, inside the dom0 root filesystem (`init=`).
    pub init: PathBuf,
    /// How this host was booted (`pxen.boot=usb|net`).
    pub boot_source: BootSource,
    /// After a fatal error, reboot after this long unless the emergency shell is taken
    /// (`pxen.reboot_delay=SECONDS`).
    pub reboot_delay: Duration,
    /// How long to wait for the flash drive to appear on a USB boot (`pxen.drive_wait=SECONDS`).
    pub drive_wait: Duration,
    /// Log debug records too (`pxen.debug`).
    pub debug: bool,
    /// host0's HTTP server, `http://ADDRESS:PORT`, on a network boot (`pxen.server=`, written
    /// by host0 into the boot menu it serves).
    pub server: Option<String>,
    /// The drive ID of the flash drive whose boot menu started this boot (`pxen.drive=`,
    /// written by mkimage), to find it among several plugged-in drives.
    pub drive: Option<String>,
}

impl Default for BootParams {
    fn default() -> Self {
        BootParams {
            init: PathBuf::from("/sbin/init"),
            boot_source: BootSource::Net,
            reboot_delay: Duration::from_secs(60),
            drive_wait: Duration::from_secs(20),
            debug: false,
            server: None,
            drive: None,
        }
    }
}

/// A `pxen.*` parameter whose value could not be used; the default was taken instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel command line: `{word}` is not valid ({expected}); using the default instead. Fix the boot menu entry (syslinux.cfg or pxelinux.cfg)")]
pub struct BadParam {
    /// The whole word as written, e.g. `pxen.boot=cdrom`.
    pub word: String,
    /// What the value should look like.
    pub expected: &'static str,
}

/// Parses a kernel command line into the parameters, with the words that were not valid.
pub fn parse(cmdline: &str) -> (BootParams, Vec<BadParam>) {
    let mut params = BootParams::default();
    let mut bad = Vec::new();
    for word in cmdline.split_whitespace() {
        if let Err(expected) = apply(&mut params, word) {
            bad.push(BadParam {
                word: word.to_string(),
                expected,
            });
        }
    }
    (params, bad)
}

/// Applies one word of the command line; `Err` says what a valid value looks like.
fn apply(params: &mut BootParams, word: &str) -> Result<(), &'static str> {
    let (key, value) = word.split_once('=').unwrap_or((word, ""));
    match key {
        "init" if value.starts_with('/') => params.init = PathBuf::from(value),
        "init" => return Err("an absolute path such as /sbin/init"),
        "pxen.boot" => {
            params.boot_source = match value {
                "usb" => BootSource::Usb,
                "net" => BootSource::Net,
                _ => return Err("usb or net"),
            }
        }
        "pxen.reboot_delay" => params.reboot_delay = seconds(value)?,
        "pxen.drive_wait" => params.drive_wait = seconds(value)?,
        "pxen.debug" => params.debug = true,
        "pxen.server" if value.starts_with("http://") => params.server = Some(value.to_string()),
        "pxen.server" => return Err("host0's HTTP server, http://ADDRESS:PORT"),
        "pxen.drive" if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
            params.drive = Some(value.to_ascii_lowercase())
        }
        "pxen.drive" => return Err("the drive ID of pxen/identity.ron, 32 hex digits"),
        _ => {}
    }
    Ok(())
}

fn seconds(value: &str) -> Result<Duration, &'static str> {
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| "a whole number of seconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_command_line_gives_defaults() {
        assert_eq!(parse(""), (BootParams::default(), vec![]));
    }

    #[test]
    fn reads_every_parameter_and_ignores_foreign_words() {
        let (params, bad) = parse(
            "console=hvc0 init=/lib/systemd/systemd pxen.boot=usb pxen.reboot_delay=5 \
             pxen.drive_wait=3 quiet pxen.debug pxen.server=http://10.0.0.1:80 \
             pxen.drive=9C1E0000000000000000000000000001",
        );
        assert!(bad.is_empty());
        assert_eq!(params.init, PathBuf::from("/lib/systemd/systemd"));
        assert_eq!(params.boot_source, BootSource::Usb);
        assert_eq!(params.reboot_delay, Duration::from_secs(5));
        assert_eq!(params.drive_wait, Duration::from_secs(3));
        assert!(params.debug);
        assert_eq!(params.server.as_deref(), Some("http://10.0.0.1:80"));
        assert_eq!(
            params.drive.as_deref(),
            Some("9c1e0000000000000000000000000001")
        );
    }

    #[test]
    fn bad_values_keep_defaults_and_are_reported() {
        let (params, bad) =
            parse("init=sbin/init pxen.boot=cdrom pxen.reboot_delay=soon pxen.server=10.0.0.1 pxen.drive=xyz");
        assert_eq!(params, BootParams::default());
        let words: Vec<_> = bad.iter().map(|b| b.word.as_str()).collect();
        assert_eq!(
            words,
            [
                "init=sbin/init",
                "pxen.boot=cdrom",
                "pxen.reboot_delay=soon",
                "pxen.server=10.0.0.1",
                "pxen.drive=xyz"
            ]
        );
        assert!(bad[1].to_string().contains("usb or net"));
    }

    #[test]
    fn last_word_wins_like_the_kernel() {
        let (params, _) = parse("pxen.boot=usb pxen.boot=net");
        assert_eq!(params.boot_source, BootSource::Net);
    }
}
