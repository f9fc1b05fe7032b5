//! Helpers shared by the tasks.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The workspace root (the parent of this crate's directory).
pub fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // CARGO_MANIFEST_DIR is `<root>/xtask`, which always has a parent.
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo that runs this task (cargo sets `CARGO` for the programs it runs).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `command`, showing it first; fails unless it exits successfully.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = show(command);
    println!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed: {status}");
    }
    Ok(())
}

/// Runs `command` silently and returns its standard output, or `None` if it did not start
/// or did not succeed.
pub fn output_of(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    output_of(Command::new("id").arg("-u")).is_some_and(|uid| uid.trim() == "0")
}

/// A command line as a human would type it.
pub fn show(command: &Command) -> String {
    let envs = command.get_envs().filter_map(|(key, value)| {
        Some(format!(
            "{}={}",
            key.to_string_lossy(),
            value?.to_string_lossy()
        ))
    });
    let program = std::iter::once(command.get_program().to_string_lossy().into_owned());
    let args = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned());
    envs.chain(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
