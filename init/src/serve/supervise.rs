//! Keeping host0's boot service running from before the handoff for as long as the host runs.
//!
//! `/init` forks a supervisor as soon as it knows it is host0, and goes on with the boot. The
//! supervisor first prepares the service (brings up the network: that needs `/sys`, which
//! `/init` keeps in place until the supervisor says it is done, see [`Supervisor::wait_ready`]),
//! then `chroot`s into
//! the directory it serves, the RAM copy of the drive on the `/run` tmpfs: a chroot holds on to
//! that directory itself, so it stays valid when `/init` later moves `/run` into the new root
//! and empties the initramfs. It becomes a session leader and runs the service in a child of
//! its own, restarting it with a growing delay whenever it dies. After the handoff the
//! supervisor is a child of the real init, which reaps it if it ever exits. Pulling the drive
//! changes nothing: every file served is in RAM.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, fork, pipe, setsid, ForkResult, Pid};

use super::service::{self, ServiceConfig};

/// The longest wait before restarting a service that keeps dying.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// The supervisor could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the boot service's supervisor: {0}; host0 boots on without serving")]
pub struct SuperviseError(nix::Error);

/// The running supervisor, as `/init` sees it.
pub struct Supervisor {
    /// Its process ID.
    pub pid: Pid,
    /// Readable once the supervisor no longer needs the initramfs' paths (a byte, or end of
    /// file if it died).
    ready: OwnedFd,
}

impl Supervisor {
    /// Waits up to `timeout` for the supervisor to finish preparing; `/init` calls this before
    /// it moves `/sys` and `/proc` away. Returns whether it finished in time.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(self.ready.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
    }
}

/// Forks the supervisor. It runs `prepare` (which returns the service to run, or `None` to run
/// none), tells `/init` it is done, chroots into `serve_root` and serves (the configuration's
/// paths are then relative to `serve_root`).
pub fn spawn(
    serve_root: &Path,
    prepare: impl FnOnce() -> Option<ServiceConfig>,
) -> Result<Supervisor, SuperviseError> {
    let (ready_read, ready_write) = pipe().map_err(SuperviseError)?;
    // SAFETY: PID 1 runs no other thread when it forks, so the child's copy of the process is
    // consistent (no lock held by a thread that does not exist in the child).
    match unsafe { fork() }.map_err(SuperviseError)? {
        ForkResult::Parent { child } => {
            drop(ready_write);
            Ok(Supervisor {
                pid: child,
                ready: ready_read,
            })
        }
        ForkResult::Child => {
            drop(ready_read);
            let config = prepare();
            // A failed write means /init is gone; serving goes on regardless.
            let _ = nix::unistd::write(&ready_write, b"r");
            drop(ready_write);
            match config {
                Some(config) => {
                    enter(serve_root);
                    supervise(&config)
                }
                None => std::process::exit(0),
            }
        }
    }
}

/// Moves the supervisor into the served directory and its own session.
fn enter(serve_root: &Path) {
    if let Err(e) = chroot(serve_root).and_then(|()| chdir("/")) {
        log::error!(
            "boot service: cannot enter {}: {e}; not serving",
            serve_root.display()
        );
        std::process::exit(1);
    }
    // Fails only if already a session leader, which is just as good.
    let _ = setsid();
}

/// Runs the service in a child and restarts it when it dies. Never returns.
fn supervise(config: &ServiceConfig) -> ! {
    let mut delay = Duration::from_secs(1);
    loop {
        // SAFETY: the supervisor is single-threaded (it only forks and waits).
        match unsafe { fork() } {
            Ok(ForkResult::Child) => serve_forever(config),
            Ok(ForkResult::Parent { child }) => {
                let status = wait_for(child);
                log::error!(
                    "boot service (pid {child}) stopped: {status}; restarting in {}s",
                    delay.as_secs()
                );
            }
            Err(e) => log::error!(
                "boot service: cannot fork: {e}; retrying in {}s",
                delay.as_secs()
            ),
        }
        // Nothing to wait for but time itself: a service that dies at once must not spin.
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

fn wait_for(child: Pid) -> String {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return format!("exited with status {code}"),
            Ok(WaitStatus::Signaled(_, signal, _)) => return format!("killed by {signal}"),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return format!("lost ({e})"),
        }
    }
}

/// The service process: starts the servers and keeps their threads alive.
fn serve_forever(config: &ServiceConfig) -> ! {
    match service::start(config) {
        Ok(_service) => loop {
            std::thread::park();
        },
        Err(e) => {
            log::error!("boot service: {e}");
            std::process::exit(1);
        }
    }
}
