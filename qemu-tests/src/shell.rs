//! Running commands through a shell on a serial console.
//!
//! The console mixes everything: the shell echoing what we type, prompts, kernel messages. To
//! find one command's output, the command is wrapped in marker lines that the shell prints
//! before and after it, ending with its exit status:
//!
//! ```text
//! printf '\nPXEN-%s-%s\n' BEGIN 7; CMD; printf '\nPXEN-%s-%s-%s\n' END 7 $?
//! ```
//!
//! prints `PXEN-BEGIN-7`, the output of `CMD`, then `PXEN-END-7-<status>`, each marker on a
//! line of its own (the leading `\n` ends a prompt or an unfinished last output line). The
//! typed text never contains the marker itself (`PXEN-%s-%s` is not `PXEN-BEGIN-7`), so the
//! echo of the command cannot be taken for its output, whether the terminal echoes or not.

/// What a command run on the console printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Standard output and standard error (both go to the console), lines joined with `\n`,
    /// trailing newlines removed (as the shell's `$(...)` does). Kernel messages printed to
    /// the console meanwhile appear here too: silence them with `dmesg -n 1` first.
    pub stdout: String,
    /// The command's exit status (`$?`).
    pub status: i32,
}

/// The line the shell prints before command number `id`.
pub fn begin_marker(id: u64) -> String {
    format!("PXEN-BEGIN-{id}")
}

/// The line the shell prints when it is ready to read, in answer to [`ready_probe`]`(id)`.
pub fn ready_marker(id: u64) -> String {
    format!("PXEN-READY-{id}")
}

/// The text to type so that the shell prints [`ready_marker`]`(id)`.
pub fn ready_probe(id: u64) -> String {
    format!("printf '\\nPXEN-%s-%s\\n' READY {id}\n")
}

/// The text to type to run `command` as command number `id` (see the module documentation).
/// `command` must be one line of shell.
pub fn marked_command(id: u64, command: &str) -> String {
    format!(
        "printf '\\nPXEN-%s-%s\\n' BEGIN {id}; {command}; printf '\\nPXEN-%s-%s-%s\\n' END {id} $?\n"
    )
}

/// If `line` is the end marker of command `id`, the exit status it carries.
pub fn parse_end_marker(id: u64, line: &str) -> Option<i32> {
    line.strip_prefix(&format!("PXEN-END-{id}-"))?.parse().ok()
}

/// The output of a command from the console lines between its two markers.
pub fn join_output<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let joined: Vec<&str> = lines.into_iter().collect();
    joined.join("\n").trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_command_never_contains_its_markers() {
        let typed = marked_command(7, "echo hi");
        assert!(!typed.contains(&begin_marker(7)));
        assert!(!typed.contains("PXEN-END-7"));
        assert!(typed.ends_with('\n'));
        assert_eq!(typed.matches('\n').count(), 1, "one line: {typed:?}");
        assert!(!ready_probe(3).contains(&ready_marker(3)));
    }

    #[test]
    fn markers_are_what_the_shell_prints() {
        // What `printf '\nPXEN-%s-%s\n' BEGIN 7` prints, after the empty line.
        assert_eq!(begin_marker(7), "PXEN-BEGIN-7");
        assert_eq!(ready_marker(3), "PXEN-READY-3");
        assert!(marked_command(7, "true").contains("' BEGIN 7;"));
        assert!(marked_command(7, "true").contains("' END 7 $?"));
    }

    #[test]
    fn end_marker_gives_the_status_of_its_own_command_only() {
        assert_eq!(parse_end_marker(7, "PXEN-END-7-0"), Some(0));
        assert_eq!(parse_end_marker(7, "PXEN-END-7-127"), Some(127));
        assert_eq!(parse_end_marker(7, "PXEN-END-17-0"), None);
        assert_eq!(parse_end_marker(7, "PXEN-END-7-"), None);
        assert_eq!(parse_end_marker(7, "# printf PXEN-END-7-0"), None);
    }

    #[test]
    fn output_drops_the_trailing_empty_line_of_the_end_marker() {
        assert_eq!(join_output(["xen", ""]), "xen");
        assert_eq!(join_output(["a", "b"]), "a\nb");
        assert_eq!(join_output([""]), "");
        assert_eq!(join_output(Vec::<&str>::new()), "");
    }
}
