//! host0's side: `POST /state/NAME` on the boot service, the stored archives, and the
//! initramfs tail that carries them to the hosts.
//!
//! # The request
//!
//! `POST /state/NAME` (NAME from [`super::archive::state_file_name`]) with the archive as
//! body, `X-PXEN-State-Base: HASH` (the hash of the state the host booted with, or `none`)
//! and `Authorization: PXEN-HMAC-SHA256 <signature>` over [`signed_message`]: the method, the
//! path, the base and the body, so a signature made for one host or base does not pass for
//! another. [`decide`] answers, in this order: 401 if the signature does not match (nothing
//! else is looked at), 413 beyond [`MAX_ARCHIVE`], 400 for a NAME that is not a host's file
//! name or an archive [`super::archive::check`] refuses, 409 if host0 holds a state for NAME
//! whose hash is not the base (the host booted without its saved state, or with an older one:
//! the saved state is kept, and the host gets it back by rebooting from host0), else 200.
//!
//! # Where it goes
//!
//! The boot service runs chrooted in host0's RAM copy of the drive: it writes
//! `pxen/hosts/NAME/state.cpio` there, crash-safely with a backup
//! ([`crate::drive::replace`]), and touches [`MARKER`], which starts `pxen state sync` in
//! dom0 to write it through to the drive ([`super::sync`]).
//!
//! Every `initrd.img` served is opened with the states as they are then ([`states_archive`]),
//! so a host that reboots after an upload boots with it. The states travel like the cluster
//! secret: see the trust note in [`super`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::archive::{self, content_hash, state_file_name};
use super::{HOSTS_DIR, MAX_ARCHIVE, NO_BASE, STATE_FILE};
use crate::cpio;
use crate::drive::replace::{self, read_best, ReplaceError, Rotation, StdFileOps};
use crate::report::wire::{self, AuthError};
use crate::serve::http::wire::{RequestRepr, Status};
use crate::serve::http::{PostRoute, Reply};

/// The prefix of the upload path: `POST /state/NAME`.
pub const STATE_PATH_PREFIX: &str = "/state/";
/// The header naming the state the upload replaces.
pub const BASE_HEADER: &str = "X-PXEN-State-Base";
/// The file the boot service touches after storing a state, relative to the drive's root.
pub const MARKER: &str = "pxen/hosts/.changed";

/// What host0 does with an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store it.
    Store,
    /// The signature does not match.
    Unauthorized(AuthError),
    /// The body is larger than [`MAX_ARCHIVE`].
    TooLarge(usize),
    /// The name or the archive is not acceptable.
    Invalid(String),
    /// host0 holds another state for this host than the one it booted with.
    Conflict {
        /// The stored state's hash.
        stored: String,
        /// The base the host sent.
        base: String,
    },
}

impl Decision {
    /// The HTTP status and the answer's text.
    pub fn answer(&self, name: &str) -> (Status, String) {
        match self {
            Decision::Store => (Status::Ok, format!("stored: the state of {name}\n")),
            Decision::Unauthorized(e) => (Status::Unauthorized, format!("{e}\n")),
            Decision::TooLarge(size) => (
                Status::ContentTooLarge,
                format!("a state of {size} bytes is larger than the {MAX_ARCHIVE} kept per host\n"),
            ),
            Decision::Invalid(why) => (Status::BadRequest, format!("{why}\n")),
            Decision::Conflict { stored, base } => (
                Status::Conflict,
                format!(
                    "host0 holds state {} for {name}, but this host booted with {}: it booted without its saved state (or with an older one); the saved state is kept; reboot it from host0 to get it back\n",
                    short(stored),
                    short(base)
                ),
            ),
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The bytes an upload's signature covers: `POST /state/NAME\nBASE\n` and the archive.
pub fn signed_message(name: &str, base: &str, archive: &[u8]) -> Vec<u8> {
    let mut message = format!("POST {STATE_PATH_PREFIX}{name}\n{base}\n").into_bytes();
    message.extend_from_slice(archive);
    message
}

/// An upload as host0 received it.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    /// NAME of the path.
    pub name: &'a str,
    /// The base header, if any.
    pub base: Option<&'a str>,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The archive.
    pub body: &'a [u8],
}

/// Decides an upload (see the module docs), given the hash of the state host0 holds for
/// that host.
pub fn decide(secret: &[u8], upload: &Upload<'_>, stored: Option<&str>) -> Decision {
    let base = upload.base.unwrap_or(NO_BASE).trim();
    let message = signed_message(upload.name, base, upload.body);
    if let Err(e) = wire::verify(secret, &message, upload.authorization) {
        return Decision::Unauthorized(e);
    }
    if upload.body.len() > MAX_ARCHIVE {
        return Decision::TooLarge(upload.body.len());
    }
    if upload.name.is_empty() || state_file_name(upload.name) != upload.name {
        return Decision::Invalid(format!(
            "{:?} is not a host's state name (PXEN's state_file_name of its machine ID)",
            upload.name
        ));
    }
    if let Err(e) = archive::check(upload.body) {
        return Decision::Invalid(e.to_string());
    }
    match stored {
        Some(stored) if stored != base => Decision::Conflict {
            stored: stored.to_string(),
            base: base.to_string(),
        },
        _ => Decision::Store,
    }
}

/// The hosts' stored states below a drive's root (or the RAM copy of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    hosts: PathBuf,
}

impl Store {
    /// The states of the drive at `root`.
    pub fn new(root: &Path) -> Store {
        Store {
            hosts: root.join(HOSTS_DIR),
        }
    }

    fn file(&self, name: &str) -> Rotation {
        Rotation::new(&self.hosts.join(name), STATE_FILE)
    }

    /// The stored state of `name` (the best complete version), if any.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        read_best(&StdFileOps, &self.file(name), usable).map(|(_, bytes)| bytes)
    }

    /// Stores `archive` as `name`'s state, crash-safely, the previous one kept as backup.
    pub fn write(&self, name: &str, archive: &[u8]) -> Result<(), ReplaceError> {
        let file = self.file(name);
        if let Err(source) = std::fs::create_dir_all(file.dir()) {
            return Err(ReplaceError::WriteNew {
                path: file.path(replace::Slot::New),
                source,
            });
        }
        let current = read_best(&StdFileOps, &file, usable).map(|(slot, _)| slot);
        replace::replace(&mut StdFileOps, &file, archive, current)
    }

    /// Touches the marker beside the hosts' directories, which starts `pxen state sync`.
    pub fn mark_changed(&self, name: &str) {
        let marker = self.hosts.join(".changed");
        if let Err(e) = std::fs::write(&marker, name) {
            log::warn!(
                "state: cannot touch {}: {e}; the drive is written at the next 2-minute retry",
                marker.display()
            );
        }
    }

    /// Every host's name and stored state, by name.
    pub fn all(&self) -> Vec<(String, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(&self.hosts) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| state_file_name(name) == *name)
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| self.read(&name).map(|state| (name, state)))
            .collect()
    }
}

/// A stored version is usable when it is an archive [`archive::check`] accepts.
fn usable(bytes: &[u8]) -> Result<(), String> {
    archive::check(bytes).map(|_| ()).map_err(|e| e.to_string())
}

/// Every host's state as a newc archive placing each at `pxen/hosts/NAME/state.cpio` (mode
/// 0600: they hold private keys), to append to the served initramfs; empty without states.
pub fn states_archive(store: &Store) -> Result<Vec<u8>, cpio::Error> {
    let states = store.all();
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let mut writer = cpio::Writer::new(Vec::new());
    writer.directory("pxen", 0o755)?;
    writer.directory(HOSTS_DIR, 0o700)?;
    for (name, state) in states {
        let dir = format!("{HOSTS_DIR}/{name}");
        writer.directory(&dir, 0o700)?;
        writer.file_bytes(&format!("{dir}/{STATE_FILE}"), 0o600, &state)?;
    }
    Ok(writer.finish()?.0)
}

/// The `POST /state/NAME` handler of the boot service.
pub struct StateRoute {
    secret: Vec<u8>,
    store: Store,
    /// One upload decided and written at a time, so two for one host cannot interleave.
    writing: Mutex<()>,
}

impl StateRoute {
    /// Accepts states signed with `secret` into the drive at `root`.
    pub fn new(secret: &str, root: &Path) -> StateRoute {
        StateRoute {
            secret: secret.as_bytes().to_vec(),
            store: Store::new(root),
            writing: Mutex::new(()),
        }
    }

    fn store(&self, upload: &Upload<'_>, peer: SocketAddr) -> Reply {
        // A panic while holding the lock left no half-written state (replace is crash-safe).
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let stored = self.store.read(upload.name).map(|s| content_hash(&s));
        let decision = decide(&self.secret, upload, stored.as_deref());
        let (mut status, mut text) = decision.answer(upload.name);
        if decision == Decision::Store {
            match self.store.write(upload.name, upload.body) {
                Ok(()) => self.store.mark_changed(upload.name),
                Err(e) => {
                    (status, text) = (
                        Status::InternalServerError,
                        format!("host0 cannot store the state: {e}\n"),
                    );
                }
            }
        }
        match status {
            Status::Ok => log::info!(
                "state: stored {} ({} bytes) from {}",
                upload.name,
                upload.body.len(),
                peer.ip()
            ),
            _ => log::warn!(
                "state: {} from {}: {}",
                upload.name,
                peer.ip(),
                text.trim_end()
            ),
        }
        Reply::text(status, &text)
    }
}

impl PostRoute for StateRoute {
    fn handle(&self, request: &RequestRepr, body: &[u8], peer: SocketAddr) -> Reply {
        let path = request.path().unwrap_or_default();
        let upload = Upload {
            name: path.strip_prefix(STATE_PATH_PREFIX).unwrap_or_default(),
            base: request.header(BASE_HEADER),
            authorization: request.header("authorization"),
            body,
        };
        self.store(&upload, peer)
    }

    fn max_body(&self) -> Option<usize> {
        Some(MAX_ARCHIVE)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const SECRET: &[u8] = b"a cluster secret of 16+";

    /// A small valid state archive holding `text` as the machine ID.
    pub(crate) fn state(text: &str) -> Vec<u8> {
        let mut writer = cpio::Writer::new(Vec::new());
        writer
            .file_bytes("etc/machine-id", 0o444, text.as_bytes())
            .unwrap();
        writer.finish().unwrap().0
    }

    fn signed<'a>(name: &'a str, base: &'a str, body: &'a [u8], auth: &'a str) -> Upload<'a> {
        Upload {
            name,
            base: Some(base),
            authorization: Some(auth),
            body,
        }
    }

    #[test]
    fn uploads_are_decided_signature_first() {
        let body = state("abc\n");
        let sign = |name: &str, base: &str, body: &[u8]| {
            wire::sign(SECRET, &signed_message(name, base, body))
        };
        let good = sign("sn-1", "none", &body);
        assert_eq!(
            decide(SECRET, &signed("sn-1", "none", &body, &good), None),
            Decision::Store
        );
        let stored = content_hash(&body);
        assert!(matches!(
            decide(SECRET, &signed("sn-1", "none", &body, &good), Some(&stored)),
            Decision::Conflict { .. }
        ));
        let on_base = sign("sn-1", &stored, &body);
        assert_eq!(
            decide(
                SECRET,
                &signed("sn-1", &stored, &body, &on_base),
                Some(&stored)
            ),
            Decision::Store
        );
        // The name and the base are signed: neither can be changed on the way.
        for (name, base) in [("sn-2", "none"), ("sn-1", stored.as_str())] {
            assert!(matches!(
                decide(SECRET, &signed(name, base, &body, &good), None),
                Decision::Unauthorized(AuthError::Mismatch)
            ));
        }
        let huge = vec![0u8; MAX_ARCHIVE + 1];
        let huge_auth = sign("sn-1", "none", &huge);
        assert_eq!(
            decide(SECRET, &signed("sn-1", "none", &huge, &huge_auth), None),
            Decision::TooLarge(MAX_ARCHIVE + 1)
        );
        for (name, body) in [
            ("SN-1", state("x")),
            ("../x", state("x")),
            ("sn-1", b"junk".to_vec()),
        ] {
            let auth = sign(name, "none", &body);
            assert!(
                matches!(
                    decide(SECRET, &signed(name, "none", &body, &auth), None),
                    Decision::Invalid(_)
                ),
                "{name}"
            );
        }
        let (status, text) = Decision::Conflict {
            stored: stored.clone(),
            base: "none".into(),
        }
        .answer("sn-1");
        assert_eq!(status, Status::Conflict);
        assert!(text.contains("reboot it from host0"), "{text}");
    }

    #[test]
    fn stored_states_ride_in_the_initramfs_tail() {
        let drive = tempfile::tempdir().unwrap();
        let store = Store::new(drive.path());
        assert_eq!(states_archive(&store).unwrap(), Vec::<u8>::new());
        store.write("sn-1", &state("one")).unwrap();
        store.write("sn-1", &state("two")).unwrap();
        store.write("sn-2", &state("three")).unwrap();
        assert_eq!(store.read("sn-1").unwrap(), state("two"));
        store.mark_changed("sn-2");
        assert_eq!(std::fs::read(drive.path().join(MARKER)).unwrap(), b"sn-2");
        let tail = states_archive(&store).unwrap();
        assert_eq!(tail.len() % 4, 0, "the kernel needs each archive 4-aligned");
        let entries = cpio::read_archive(&tail).unwrap();
        let files: Vec<(&str, &[u8])> = entries
            .iter()
            .filter(|e| e.name.ends_with(STATE_FILE))
            .map(|e| (e.name.as_str(), e.data.as_slice()))
            .collect();
        assert_eq!(
            files,
            [
                ("pxen/hosts/sn-1/state.cpio", state("two").as_slice()),
                ("pxen/hosts/sn-2/state.cpio", state("three").as_slice()),
            ]
        );
    }
}
