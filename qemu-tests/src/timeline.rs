//! The boot timeline of a machine, read from its console: when each phase of the boot
//! started, counted from power-on.

use std::fmt;
use std::time::Duration;

use crate::console::Line;

/// One phase of the boot and when its first console line appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestone {
    /// What happened, e.g. "Xen starts".
    pub name: String,
    /// When, from power-on; `None` if the console never showed it.
    pub at: Option<Duration>,
}

/// The milestones of one boot, in boot order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The machine's name.
    pub host: String,
    /// Power-on, bootloader, Xen, dom0 kernel, every `/init` phase, dom0 ready.
    pub milestones: Vec<Milestone>,
}

/// How `/init` announces a phase: `pxen: phase <name>: <what>`, after the kernel's own
/// timestamp when it goes through the kernel log (`[   19.742225] pxen: phase rootfs: ...`),
/// possibly with a timestamp of its own (`pxen: [   1.234567] phase ...`).
const INIT_PREFIX: &str = "pxen: ";
const PHASE_WORD: &str = "phase ";

/// The longest phase description shown in the table.
const MAX_PHASE_LEN: usize = 60;

impl Timeline {
    /// Reads the milestones of one boot from the console `lines` of `host`.
    pub fn from_console(host: &str, lines: &[Line]) -> Timeline {
        let first =
            |matches: &dyn Fn(&str) -> bool| lines.iter().find(|l| matches(&l.text)).map(|l| l.at);
        let mut milestones = vec![
            milestone("power-on (QEMU starts)", Some(Duration::ZERO)),
            milestone("bootloader (SYSLINUX)", first(&|t| t.contains("SYSLINUX"))),
            milestone("Xen starts", first(&is_xen_start)),
            milestone(
                "dom0 kernel starts",
                first(&|t| t.contains("Linux version")),
            ),
        ];
        milestones.extend(lines.iter().filter_map(init_phase));
        milestones.push(milestone("dom0 ready (login)", first(&is_dom0_ready)));
        Timeline {
            host: host.to_string(),
            milestones,
        }
    }
}

fn milestone(name: &str, at: Option<Duration>) -> Milestone {
    Milestone {
        name: name.to_string(),
        at,
    }
}

fn is_xen_start(text: &str) -> bool {
    text.contains("Xen version") || text.starts_with("(XEN)")
}

/// The real init is up when systemd reaches its multi-user target or a getty prompts.
fn is_dom0_ready(text: &str) -> bool {
    text.contains("login:") || (text.contains("Reached target") && text.contains("Multi-User"))
}

/// A milestone for a line where `/init` announces a phase.
fn init_phase(line: &Line) -> Option<Milestone> {
    let after_prefix = &line.text[line.text.find(INIT_PREFIX)? + INIT_PREFIX.len()..];
    let after_stamp = match after_prefix.strip_prefix('[') {
        Some(stamped) => &stamped[stamped.find(']')? + 1..],
        None => after_prefix,
    };
    let phase = after_stamp.trim_start().strip_prefix(PHASE_WORD)?.trim();
    let shown: String = phase.chars().take(MAX_PHASE_LEN).collect();
    Some(milestone(&format!("/init: {shown}"), Some(line.at)))
}

impl fmt::Display for Timeline {
    /// A table: time since power-on, time since the previous milestone seen, milestone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "boot timeline of {} (seconds since power-on)", self.host)?;
        writeln!(f, "{:>9}  {:>8}  milestone", "at", "+delta")?;
        let mut previous = Duration::ZERO;
        for milestone in &self.milestones {
            match milestone.at {
                Some(at) => {
                    let delta = at.saturating_sub(previous);
                    previous = at;
                    writeln!(
                        f,
                        "{:>9.3}  {:>8.3}  {}",
                        at.as_secs_f64(),
                        delta.as_secs_f64(),
                        milestone.name
                    )?;
                }
                None => writeln!(f, "{:>9}  {:>8}  {}", "-", "-", milestone.name)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ms: u64, text: &str) -> Line {
        Line {
            at: Duration::from_millis(ms),
            text: text.to_string(),
        }
    }

    fn boot() -> Vec<Line> {
        vec![
            line(
                900,
                "SYSLINUX 6.04 EDD 20191223 Copyright (C) 1994-2015 H. Peter Anvin et al",
            ),
            line(2000, " Xen 4.17.6-pre"),
            line(2001, "(XEN) Xen version 4.17.6-pre (Debian 4.17.5) gcc"),
            line(
                5000,
                "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)",
            ),
            line(9000, "[   19.742225] pxen: phase init: PXEN 0.1.0 is PID 1"),
            line(9200, "[   21.676368] pxen: modules: 46 loaded"),
            line(
                9500,
                "[   69.981432] pxen: phase rootfs-in-ram: 376 MiB of root filesystem in RAM",
            ),
            line(
                9600,
                "pxen: [   4.700000] phase handoff: starting /sbin/init",
            ),
            line(
                12000,
                "[  OK  ] Reached target multi-user.target - Multi-User System.",
            ),
            line(12500, "pxen-a1b2c3 login: root (automatic login)"),
        ]
    }

    fn names_and_times(timeline: &Timeline) -> Vec<(String, Option<u128>)> {
        timeline
            .milestones
            .iter()
            .map(|m| (m.name.clone(), m.at.map(|at| at.as_millis())))
            .collect()
    }

    #[test]
    fn every_milestone_is_found_at_its_first_line() {
        let timeline = Timeline::from_console("a", &boot());
        let expected = [
            ("power-on (QEMU starts)", Some(0)),
            ("bootloader (SYSLINUX)", Some(900)),
            ("Xen starts", Some(2001)),
            ("dom0 kernel starts", Some(5000)),
            ("/init: init: PXEN 0.1.0 is PID 1", Some(9000)),
            (
                "/init: rootfs-in-ram: 376 MiB of root filesystem in RAM",
                Some(9500),
            ),
            ("/init: handoff: starting /sbin/init", Some(9600)),
            ("dom0 ready (login)", Some(12000)),
        ];
        let expected: Vec<_> = expected.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        assert_eq!(names_and_times(&timeline), expected);
    }

    #[test]
    fn milestones_never_seen_are_listed_without_a_time() {
        let timeline = Timeline::from_console("b", &boot()[3..4]);
        let missing: Vec<_> = timeline
            .milestones
            .iter()
            .filter(|m| m.at.is_none())
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            missing,
            ["bootloader (SYSLINUX)", "Xen starts", "dom0 ready (login)"]
        );
    }

    #[test]
    fn lines_merely_mentioning_a_phase_are_not_init_phases() {
        let lines = [
            line(1, "phase one"),
            line(2, "pxen: [ 1.0] phase   two  "),
            line(3, "pxen: modules: phase three is not a phase line"),
            line(4, "pxen: [ 1.0 phase four, unclosed stamp"),
        ];
        let phases: Vec<_> = lines
            .iter()
            .filter_map(init_phase)
            .map(|m| m.name)
            .collect();
        assert_eq!(phases, ["/init: two"]);
    }

    #[test]
    fn the_table_shows_times_deltas_and_gaps() {
        let timeline = Timeline::from_console("host-a", &boot()[..2]);
        let table = timeline.to_string();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows[0], "boot timeline of host-a (seconds since power-on)");
        assert_eq!(rows[2], "    0.000     0.000  power-on (QEMU starts)");
        assert_eq!(rows[3], "    0.900     0.900  bootloader (SYSLINUX)");
        assert_eq!(rows[4], "        -         -  Xen starts");
        assert_eq!(rows.len(), 7);
    }
}
