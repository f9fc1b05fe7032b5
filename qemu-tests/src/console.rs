//! A machine's serial console: the bytes QEMU writes, cut into timestamped lines.
//!
//! One reader thread per machine ([`pump`]) reads QEMU's console output, writes every line to
//! the machine's log file and appends it to a shared in-memory [`Console`]; the test thread
//! waits on that buffer with a deadline ([`Console::wait_for`]).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One line of console output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When the line's first byte arrived, counted from QEMU's start (power-on).
    pub at: Duration,
    /// The text, without the line ending, terminal escape sequences or control characters.
    pub text: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>9.3}] {}", self.at.as_secs_f64(), self.text)
    }
}

/// Removes what a terminal would interpret rather than show: `CSI` sequences such as colours
/// and cursor queries (`ESC [ ... final`), other two-byte `ESC x` sequences, carriage returns
/// and other control characters (tabs are kept).
pub fn clean_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // Any escape other than CSI is two characters long (or cut off at the end):
                // `next` drops its second one.
                if chars.next() == Some('[') {
                    // CSI: parameters and intermediates up to a final byte in '@'..='~'.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Cuts a byte stream into [`Line`]s, keeping the unfinished last line apart.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    partial_since: Duration,
}

impl LineSplitter {
    /// Adds `bytes` received at `now` and returns the lines they complete.
    pub fn push(&mut self, bytes: &[u8], now: Duration) -> Vec<Line> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if self.partial.is_empty() {
                self.partial_since = now;
            }
            if byte == b'\n' {
                lines.push(self.take());
            } else {
                self.partial.push(byte);
            }
        }
        lines
    }

    /// The unfinished last line (a shell prompt, say), if any text has arrived for it.
    pub fn partial(&self) -> Option<Line> {
        let line = self.peek();
        (!line.text.is_empty()).then_some(line)
    }

    /// Ends the stream: the unfinished last line, if any, becomes a line.
    pub fn finish(&mut self) -> Option<Line> {
        let line = self.take();
        (!line.text.is_empty()).then_some(line)
    }

    fn peek(&self) -> Line {
        Line {
            at: self.partial_since,
            text: clean_text(&String::from_utf8_lossy(&self.partial)),
        }
    }

    fn take(&mut self) -> Line {
        let line = self.peek();
        self.partial.clear();
        line
    }
}

/// What [`Console::wait_for`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitResult {
    /// A matching line, and its index in [`Console::lines`] (the index the unfinished last
    /// line will have once it is finished).
    Found(usize, Line),
    /// The deadline passed first.
    TimedOut,
    /// The console closed (QEMU exited) first.
    Closed,
}

#[derive(Debug, Default)]
struct ConsoleState {
    lines: Vec<Line>,
    partial: Option<Line>,
    closed: bool,
}

/// The in-memory console of one machine, shared by its reader thread and the test.
#[derive(Debug, Default)]
pub struct Console {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, ConsoleState> {
        // A poisoned lock means the reader thread panicked while appending; the lines it
        // held are still valid text, so keep using them rather than failing the test twice.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends finished `lines`, replaces the unfinished last line, and wakes waiters.
    pub fn append(&self, lines: Vec<Line>, partial: Option<Line>) {
        let mut state = self.lock();
        state.lines.extend(lines);
        state.partial = partial;
        self.changed.notify_all();
    }

    /// Marks the console closed (QEMU's output ended) and wakes waiters.
    pub fn close(&self, last: Option<Line>) {
        let mut state = self.lock();
        state.lines.extend(last);
        state.partial = None;
        state.closed = true;
        self.changed.notify_all();
    }

    /// Whether QEMU's output has ended.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// A copy of every line so far, the unfinished last one (a prompt, say) included.
    pub fn lines(&self) -> Vec<Line> {
        let state = self.lock();
        state
            .lines
            .iter()
            .chain(state.partial.as_ref())
            .cloned()
            .collect()
    }

    /// A copy of the finished lines with index in `range`.
    pub fn lines_in(&self, range: std::ops::Range<usize>) -> Vec<Line> {
        let state = self.lock();
        let end = range.end.min(state.lines.len());
        let start = range.start.min(end);
        state.lines[start..end].to_vec()
    }

    /// The last `count` lines (the unfinished one included), one per text line.
    pub fn tail(&self, count: usize) -> String {
        let state = self.lock();
        let all: Vec<&Line> = state.lines.iter().chain(state.partial.as_ref()).collect();
        let start = all.len().saturating_sub(count);
        all[start..]
            .iter()
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// Waits until a line at index `from` or later satisfies `matches`, until `deadline`.
    /// With `include_partial`, the unfinished last line counts too (to see prompts, which
    /// end without a newline).
    pub fn wait_for(
        &self,
        from: usize,
        include_partial: bool,
        deadline: Instant,
        matches: &dyn Fn(&str) -> bool,
    ) -> WaitResult {
        let mut state = self.lock();
        let mut next = from;
        loop {
            while next < state.lines.len() {
                if matches(&state.lines[next].text) {
                    return WaitResult::Found(next, state.lines[next].clone());
                }
                next += 1;
            }
            if include_partial {
                if let Some(partial) = state.partial.as_ref().filter(|p| matches(&p.text)) {
                    return WaitResult::Found(state.lines.len().max(from), partial.clone());
                }
            }
            if state.closed {
                return WaitResult::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return WaitResult::TimedOut;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// Where [`pump`] copies the console besides the in-memory [`Console`].
pub struct PumpSinks {
    /// The machine's console log: one timestamped line per console line.
    pub log: File,
    /// Whether to copy the raw console bytes to this process's standard output (for a human
    /// watching, as in `cargo xtask demo`).
    pub echo: bool,
}

/// Reads QEMU's console output until it ends, feeding `console` and `sinks`. Runs on the
/// machine's reader thread; returns when QEMU closes its output (it exited).
pub fn pump(mut output: impl Read, console: &Console, mut sinks: PumpSinks, started: Instant) {
    let mut splitter = LineSplitter::default();
    let mut buffer = [0u8; 4096];
    let mut log_ok = true;
    loop {
        let count = match output.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                log::warn!("reading the QEMU console failed, treating it as closed: {error}");
                break;
            }
        };
        let bytes = &buffer[..count];
        if sinks.echo {
            echo_to_stdout(bytes);
        }
        let lines = splitter.push(bytes, started.elapsed());
        log_ok = log_ok && write_log(&mut sinks.log, &lines);
        console.append(lines, splitter.partial());
    }
    let last = splitter.finish();
    if let Some(line) = &last {
        write_log(&mut sinks.log, std::slice::from_ref(line));
    }
    console.close(last);
}

/// Copies console bytes to standard output. A closed or broken terminal must not stop the
/// machine's console from being recorded, so failures are ignored.
fn echo_to_stdout(bytes: &[u8]) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|()| stdout.flush());
}

/// Appends `lines` to the log; on failure (disk full, say) warns once and reports `false`
/// so the caller stops writing: the in-memory console still holds every line.
fn write_log(log: &mut File, lines: &[Line]) -> bool {
    let result = lines
        .iter()
        .try_for_each(|line| writeln!(log, "{line}"))
        .and_then(|()| log.flush());
    if let Err(error) = &result {
        log::warn!("writing the console log failed, it stops here: {error}");
    }
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn clean_text_strips_colours_cursor_queries_and_carriage_returns() {
        assert_eq!(
            clean_text("[\u{1b}[0;32m  OK  \u{1b}[0m] Reached target\r"),
            "[  OK  ] Reached target"
        );
        assert_eq!(clean_text("/ # \u{1b}[6n"), "/ # ");
        assert_eq!(clean_text("a\u{1b}cb\tc\u{7}"), "ab\tc");
        assert_eq!(clean_text("cut \u{1b}[1;3"), "cut ");
    }

    #[test]
    fn splitter_stamps_each_line_with_the_arrival_of_its_first_byte() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(b"Xen ver", secs(1)).is_empty());
        let lines = splitter.push(b"sion 4.17\r\nLinux", secs(2));
        assert_eq!(
            lines,
            vec![Line {
                at: secs(1),
                text: "Xen version 4.17".into()
            }]
        );
        assert_eq!(
            splitter.partial(),
            Some(Line {
                at: secs(2),
                text: "Linux".into()
            })
        );
        assert_eq!(splitter.finish().map(|l| l.text), Some("Linux".into()));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn splitter_keeps_empty_lines_but_reports_no_empty_partial() {
        let mut splitter = LineSplitter::default();
        let lines = splitter.push(b"\n\na\n", secs(0));
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["", "", "a"]);
        assert_eq!(splitter.partial(), None);
    }

    fn console_with(texts: &[&str], partial: Option<&str>) -> Console {
        let console = Console::default();
        let line = |t: &str| Line {
            at: secs(0),
            text: t.to_string(),
        };
        console.append(texts.iter().map(|t| line(t)).collect(), partial.map(line));
        console
    }

    #[test]
    fn wait_for_finds_lines_from_the_cursor_on() {
        let console = console_with(&["login:", "x", "login:"], None);
        let past = Instant::now();
        let found = console.wait_for(1, false, past, &|t| t.contains("login:"));
        assert!(matches!(found, WaitResult::Found(2, _)), "{found:?}");
    }

    #[test]
    fn wait_for_sees_the_unfinished_line_only_when_asked() {
        let console = console_with(&["a"], Some("root@h:~# "));
        let past = Instant::now();
        let prompt = |t: &str| t.ends_with("# ");
        assert_eq!(
            console.wait_for(0, false, past, &prompt),
            WaitResult::TimedOut
        );
        assert!(matches!(
            console.wait_for(0, true, past, &prompt),
            WaitResult::Found(1, _)
        ));
    }

    #[test]
    fn wait_for_reports_a_closed_console() {
        let console = console_with(&["a"], None);
        console.close(None);
        let later = Instant::now() + secs(60);
        assert_eq!(
            console.wait_for(0, true, later, &|_| false),
            WaitResult::Closed
        );
    }

    #[test]
    fn wait_for_wakes_when_the_reader_appends() {
        let console = std::sync::Arc::new(console_with(&[], None));
        let writer = std::sync::Arc::clone(&console);
        let thread = std::thread::spawn(move || {
            writer.append(
                vec![Line {
                    at: secs(3),
                    text: "ready".into(),
                }],
                None,
            )
        });
        let deadline = Instant::now() + secs(30);
        let found = console.wait_for(0, false, deadline, &|t| t == "ready");
        thread.join().expect("the appending thread does not panic");
        assert!(matches!(found, WaitResult::Found(0, _)), "{found:?}");
    }

    #[test]
    fn lines_include_the_unfinished_last_line() {
        let console = console_with(&["1"], Some("host login: "));
        let texts: Vec<String> = console.lines().into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["1", "host login: "]);
    }

    #[test]
    fn tail_shows_the_last_lines_with_their_times() {
        let console = console_with(&["1", "2", "3"], Some("4"));
        assert_eq!(console.tail(2), "[    0.000] 3\n[    0.000] 4\n");
    }
}
