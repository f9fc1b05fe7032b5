//! Logging in to test hosts with the real OpenSSH client, as an administrator does.
//!
//! A test makes a key pair ([`SshKey::generate`]), puts its public line in the cluster's
//! configuration (or in a host's `authorized_keys`), and runs commands with [`Ssh::run`]
//! through a port of 127.0.0.1 that the LAN forwards to the host's port 22
//! ([`crate::lan::Lan::forward_tcp`]). Every run is `ssh` in batch mode with only that key,
//! no user configuration, and a known-hosts file of the test's own: the first login to a
//! port records its host key, and a later one to the same port fails if the key changed.
//! [`host_key`] reads a host's ed25519 key with `ssh-keyscan`, to compare keys across boots
//! whatever the port.
//!
//! Each call is bounded by a deadline: coreutils' `timeout` ends a client that outlives it.
//! While the host's sshd is not listening yet, logins are tried again until the deadline.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How often a login is tried again while the host's sshd does not answer. Polling: nothing
/// tells the test when a guest's sshd starts listening.
const RETRY: Duration = Duration::from_secs(2);

/// The longest a single attempt waits for the TCP connection and sshd's banner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What `ssh` prints when the host's sshd is not (yet) there: nothing listens on the guest
/// port, so slirp accepts and closes, or resets, the connection; or the banner never came.
const NOT_UP_YET: [&str; 6] = [
    "Connection refused",
    "Connection reset",
    "Connection closed by",
    "kex_exchange_identification",
    "Connection timed out",
    "timed out during banner exchange",
];

/// `ssh`'s exit status for its own errors (the remote command's status otherwise).
const SSH_FAILED: i32 = 255;

/// The exit status of coreutils' `timeout` when it ended the command.
const TIMED_OUT: i32 = 124;

/// Running the OpenSSH tools failed.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// A tool could not be started.
    #[error("cannot run {program}: {source}; install openssh-client with `cargo xtask deps`")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// `ssh-keygen` failed to make a key.
    #[error("ssh-keygen could not write the key {}: {stderr}", .path.display())]
    Keygen {
        /// The private key file.
        path: PathBuf,
        /// What it said.
        stderr: String,
    },
    /// The public key file could not be read.
    #[error("cannot read the public key {}: {source}", .path.display())]
    ReadPublicKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The host did not accept a connection before the deadline.
    #[error("ssh to {user}@127.0.0.1:{port} got no connection to sshd within {waited:?}; is sshd running on the host and the port forwarded to its address? ssh said: {stderr}")]
    NotUp {
        /// The user.
        user: String,
        /// The forwarded port.
        port: u16,
        /// How long it was tried.
        waited: Duration,
        /// What ssh said last.
        stderr: String,
    },
    /// `ssh` failed for another reason than sshd not being up: authentication, a changed
    /// host key, a bad option.
    #[error("ssh to {user}@127.0.0.1:{port} failed running `{command}`: {stderr}; is the key in the host's authorized_keys? did its host key change?")]
    Failed {
        /// The user.
        user: String,
        /// The forwarded port.
        port: u16,
        /// The command.
        command: String,
        /// What ssh said.
        stderr: String,
    },
    /// The command did not finish before the deadline.
    #[error("ssh to {user}@127.0.0.1:{port}: `{command}` did not finish before the deadline; it printed: {stdout} {stderr}")]
    TimedOut {
        /// The user.
        user: String,
        /// The forwarded port.
        port: u16,
        /// The command.
        command: String,
        /// Its standard output so far.
        stdout: String,
        /// Its standard error so far.
        stderr: String,
    },
    /// The command ran on the host and exited with a non-zero status.
    #[error("ssh to {user}@127.0.0.1:{port}: `{command}` exited with status {status}: {stdout} {stderr}")]
    CommandFailed {
        /// The user.
        user: String,
        /// The forwarded port.
        port: u16,
        /// The command.
        command: String,
        /// Its exit status.
        status: i32,
        /// Its standard output.
        stdout: String,
        /// Its standard error.
        stderr: String,
    },
    /// `ssh-keyscan` found no ed25519 host key before the deadline.
    #[error("ssh-keyscan found no ed25519 host key on 127.0.0.1:{port} within {waited:?}; is sshd running on the host, with an ed25519 key? it printed: {output}")]
    NoHostKey {
        /// The forwarded port.
        port: u16,
        /// How long it was tried.
        waited: Duration,
        /// What it printed last, both streams.
        output: String,
    },
}

/// A key pair made for a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// The private key file (its public key beside it, with `.pub` added).
    pub private: PathBuf,
    /// The public key line, `ssh-ed25519 AAAA... comment`, for `authorized_keys` or the
    /// cluster configuration's users.
    pub public: String,
}

impl SshKey {
    /// Makes an ed25519 key pair without passphrase in `dir` (file `id_ed25519`).
    pub fn generate(dir: &Path) -> Result<SshKey, SshError> {
        let private = dir.join("id_ed25519");
        let output = output_of(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "pxen-test", "-f"])
                .arg(&private),
            "ssh-keygen",
        )?;
        if !output.status.success() {
            return Err(SshError::Keygen {
                path: private,
                stderr: text(&output.stderr),
            });
        }
        let public_file = dir.join("id_ed25519.pub");
        let public =
            fs::read_to_string(&public_file).map_err(|source| SshError::ReadPublicKey {
                path: public_file,
                source,
            })?;
        Ok(SshKey {
            private,
            public: public.trim().to_string(),
        })
    }
}

/// What a command run over SSH printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOutput {
    /// Its standard output, trailing newlines removed.
    pub stdout: String,
    /// Its standard error, trailing newlines removed.
    pub stderr: String,
    /// Its exit status.
    pub status: i32,
}

/// An SSH client with one key and one known-hosts file.
#[derive(Debug, Clone)]
pub struct Ssh {
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Ssh {
    /// A client logging in with `key`, recording and checking host keys in `known_hosts`
    /// (created on first use; give each test its own).
    pub fn new(key: &SshKey, known_hosts: &Path) -> Ssh {
        Ssh {
            key: key.private.clone(),
            known_hosts: known_hosts.to_path_buf(),
        }
    }

    /// Runs `command` as `user` on the host forwarded to port `port` of 127.0.0.1, trying
    /// again until `deadline` while its sshd does not answer, and returns what it printed and
    /// its exit status, whatever that is.
    pub fn run(
        &self,
        user: &str,
        port: u16,
        command: &str,
        deadline: Instant,
    ) -> Result<SshOutput, SshError> {
        let call = Call {
            user,
            port,
            command,
        };
        let started = Instant::now();
        loop {
            let output = self.attempt(&call, deadline)?;
            let not_up = output.status == SSH_FAILED && is_not_up(&output.stderr);
            if output.status == TIMED_OUT || (not_up && Instant::now() + RETRY >= deadline) {
                return Err(call.give_up(output, started.elapsed()));
            }
            if output.status == SSH_FAILED && !not_up {
                return Err(call.error(output, SshErrorKind::Failed));
            }
            if !not_up {
                return Ok(output);
            }
            log::debug!(
                "ssh to 127.0.0.1:{port}: sshd not up yet: {}",
                output.stderr
            );
            std::thread::sleep(RETRY);
        }
    }

    /// [`Ssh::run`], failing unless the command exits with status 0; returns its standard
    /// output.
    pub fn run_ok(
        &self,
        user: &str,
        port: u16,
        command: &str,
        deadline: Instant,
    ) -> Result<String, SshError> {
        let output = self.run(user, port, command, deadline)?;
        if output.status != 0 {
            let call = Call {
                user,
                port,
                command,
            };
            return Err(call.error(output, SshErrorKind::CommandFailed));
        }
        Ok(output.stdout)
    }

    /// One run of `ssh`, ended by `timeout` at `deadline`.
    fn attempt(&self, call: &Call<'_>, deadline: Instant) -> Result<SshOutput, SshError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let connect = left.min(CONNECT_TIMEOUT).as_secs().max(1);
        let mut ssh = bounded(left);
        ssh.arg("ssh")
            .args(ssh_options(
                &self.key,
                &self.known_hosts,
                call.port,
                connect,
            ))
            .arg(format!("{}@127.0.0.1", call.user))
            .arg("--")
            .arg(call.command);
        let output = output_of(&mut ssh, "ssh")?;
        Ok(SshOutput {
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
            status: output.status.code().unwrap_or(TIMED_OUT),
        })
    }
}

/// Which error a finished `ssh` run makes.
enum SshErrorKind {
    Failed,
    TimedOut,
    CommandFailed,
}

/// One command run over SSH, for its errors.
struct Call<'a> {
    user: &'a str,
    port: u16,
    command: &'a str,
}

impl Call<'_> {
    /// The error when the deadline passed: sshd never answered, or the command never ended.
    fn give_up(&self, output: SshOutput, waited: Duration) -> SshError {
        if output.status == TIMED_OUT && !is_not_up(&output.stderr) {
            return self.error(output, SshErrorKind::TimedOut);
        }
        SshError::NotUp {
            user: self.user.to_string(),
            port: self.port,
            waited,
            stderr: output.stderr,
        }
    }

    fn error(&self, output: SshOutput, kind: SshErrorKind) -> SshError {
        let (user, port, command) = (self.user.to_string(), self.port, self.command.to_string());
        match kind {
            SshErrorKind::Failed => SshError::Failed {
                user,
                port,
                command,
                stderr: output.stderr,
            },
            SshErrorKind::TimedOut => SshError::TimedOut {
                user,
                port,
                command,
                stdout: output.stdout,
                stderr: output.stderr,
            },
            SshErrorKind::CommandFailed => SshError::CommandFailed {
                user,
                port,
                command,
                status: output.status,
                stdout: output.stdout,
                stderr: output.stderr,
            },
        }
    }
}

/// `ssh`'s options for logging in on port `port` of 127.0.0.1 with `key` only, no user
/// configuration, host keys in `known_hosts`, and `connect_secs` for connecting.
pub fn ssh_options(key: &Path, known_hosts: &Path, port: u16, connect_secs: u64) -> Vec<String> {
    let option = |name: &str, value: &str| ["-o".to_string(), format!("{name}={value}")];
    let mut args = vec![
        "-F".to_string(),
        "none".to_string(),
        "-i".to_string(),
        key.display().to_string(),
        "-p".to_string(),
        port.to_string(),
    ];
    for (name, value) in [
        ("BatchMode", "yes"),
        ("IdentitiesOnly", "yes"),
        ("UserKnownHostsFile", &known_hosts.display().to_string()),
        ("GlobalKnownHostsFile", "none"),
        ("StrictHostKeyChecking", "accept-new"),
        ("ConnectTimeout", &connect_secs.to_string()),
        ("ConnectionAttempts", "1"),
        ("ServerAliveInterval", "10"),
        ("LogLevel", "ERROR"),
    ] {
        args.extend(option(name, value));
    }
    args
}

/// Whether `ssh`'s error says the host's sshd did not answer (yet), as opposed to refusing
/// the login.
pub fn is_not_up(stderr: &str) -> bool {
    NOT_UP_YET.iter().any(|sign| stderr.contains(sign))
}

/// The ed25519 host key of the host forwarded to port `port` of 127.0.0.1, as
/// `ssh-ed25519 AAAA...`, trying again until `deadline` while it does not answer.
pub fn host_key(port: u16, deadline: Instant) -> Result<String, SshError> {
    let started = Instant::now();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.min(CONNECT_TIMEOUT).as_secs().max(1).to_string();
        let mut keyscan = bounded(left);
        keyscan.args(["ssh-keyscan", "-t", "ed25519", "-T", &timeout, "-p"]);
        keyscan.arg(port.to_string()).arg("127.0.0.1");
        let output = output_of(&mut keyscan, "ssh-keyscan")?;
        let stdout = text(&output.stdout);
        if let Some(key) = parse_keyscan(&stdout) {
            return Ok(key);
        }
        if Instant::now() + RETRY >= deadline {
            return Err(SshError::NoHostKey {
                port,
                waited: started.elapsed(),
                output: format!("{stdout}{}", text(&output.stderr)),
            });
        }
        std::thread::sleep(RETRY);
    }
}

/// The first ed25519 key in `ssh-keyscan`'s output (`HOST ssh-ed25519 KEY` lines, `#`
/// comments), as `ssh-ed25519 KEY`.
pub fn parse_keyscan(output: &str) -> Option<String> {
    output
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [_, "ssh-ed25519", key, ..] => Some(format!("ssh-ed25519 {key}")),
                _ => None,
            },
        )
}

/// The public key file's `ssh-ed25519 KEY` without its comment, to compare with
/// [`host_key`]'s answer.
pub fn without_comment(public_line: &str) -> String {
    public_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command run through coreutils' `timeout`, which ends it after `left` (and kills it 5 s
/// later if it ignored that).
fn bounded(left: Duration) -> Command {
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=5"])
        .arg(format!("{:.3}s", left.as_secs_f64().max(0.001)));
    command
}

/// Runs `command` (`program` through [`bounded`]) and returns its output; `timeout`'s own
/// failures (it says so on standard error, with status 125 to 127) are errors.
fn output_of(command: &mut Command, program: &str) -> Result<Output, SshError> {
    let output = command.output().map_err(|source| SshError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let stderr = text(&output.stderr);
    if matches!(output.status.code(), Some(125..=127)) && stderr.starts_with("timeout: ") {
        return Err(SshError::Spawn {
            program: program.to_string(),
            source: io::Error::other(stderr),
        });
    }
    Ok(output)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches(['\n', '\r'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyscan_output_gives_the_ed25519_key_without_the_host() {
        let output = "# 127.0.0.1:40022 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u6\n\
                      [127.0.0.1]:40022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey\n";
        assert_eq!(
            parse_keyscan(output).as_deref(),
            Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey")
        );
        assert_eq!(parse_keyscan(""), None);
        assert_eq!(parse_keyscan("# only a comment\n"), None);
        assert_eq!(parse_keyscan("127.0.0.1 ssh-rsa AAAAB3Nza\n"), None);
    }

    #[test]
    fn a_public_key_line_compares_without_its_comment() {
        assert_eq!(
            without_comment("ssh-ed25519 AAAAC3Nz root@pxen-abc\n"),
            "ssh-ed25519 AAAAC3Nz"
        );
    }

    #[test]
    fn sshd_not_up_is_told_from_a_refused_login() {
        assert!(is_not_up(
            "kex_exchange_identification: read: Connection reset by peer"
        ));
        assert!(is_not_up(
            "kex_exchange_identification: Connection closed by remote host\nConnection closed by 127.0.0.1 port 40022"
        ));
        assert!(is_not_up(
            "ssh: connect to host 127.0.0.1 port 40022: Connection refused"
        ));
        assert!(!is_not_up("root@127.0.0.1: Permission denied (publickey)."));
        assert!(!is_not_up(
            "Host key for [127.0.0.1]:40022 has changed and you have requested strict checking.\nHost key verification failed."
        ));
    }

    #[test]
    fn ssh_uses_only_the_given_key_and_known_hosts_in_batch_mode() {
        let args = ssh_options(Path::new("k/id"), Path::new("k/known"), 40022, 7).join(" ");
        for expected in [
            "-F none -i k/id -p 40022",
            "-o BatchMode=yes",
            "-o IdentitiesOnly=yes",
            "-o UserKnownHostsFile=k/known",
            "-o StrictHostKeyChecking=accept-new",
            "-o ConnectTimeout=7",
        ] {
            assert!(args.contains(expected), "{expected} in {args}");
        }
    }

    #[test]
    fn a_generated_key_is_an_ed25519_line_beside_its_private_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = SshKey::generate(dir.path()).expect("ssh-keygen runs");
        assert!(key.public.starts_with("ssh-ed25519 AAAA"), "{}", key.public);
        assert!(key.public.ends_with(" pxen-test"), "{}", key.public);
        assert!(key.private.is_file());
    }

    #[test]
    fn nothing_listening_is_not_up_at_the_deadline() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = SshKey::generate(dir.path()).expect("ssh-keygen runs");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let ssh = Ssh::new(&key, &dir.path().join("known_hosts"));
        let started = Instant::now();
        let error = ssh
            .run(
                "root",
                port,
                "true",
                Instant::now() + Duration::from_secs(3),
            )
            .expect_err("nothing listens");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(error, SshError::NotUp { .. }), "{error:?}");
        assert!(error.to_string().contains("Connection refused"), "{error}");
    }
}
