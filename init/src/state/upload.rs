//! `pxen state save`, in dom0: pack this host's state and send it to host0 when it changed.
//!
//! The state is packed from the root ([`super::archive::pack`]); when its hash is the one in
//! the base file (what host0 holds for this host, as far as this host knows: `/init` wrote
//! the hash it restored, and every acknowledged save writes its own), nothing is sent.
//! Otherwise it goes to host0 as `POST /state/NAME` ([`super::store`]), retried like the
//! report until host0 answers; on 200 the new hash becomes the base. A 409 (host0 holds a
//! state this host did not boot with) is final: the saved state is kept, and the host gets
//! it back by rebooting.

use std::path::{Path, PathBuf};

use super::archive::{self, content_hash, ArchiveError};
use super::store::{signed_message, BASE_HEADER, STATE_PATH_PREFIX};
use super::NO_BASE;
use crate::report::client::{self, Accepted, ClientError, RetryPolicy, SignedPost};
use crate::report::wire;

/// Saving the state failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The state could not be packed.
    #[error(transparent)]
    Pack(#[from] ArchiveError),
    /// host0 did not take it.
    #[error(transparent)]
    Post(#[from] ClientError),
    /// The new base could not be written; the next save sends the same state again.
    #[error("host0 stored the state, but {path} cannot be written: {source}; the next save sends it again and host0 refuses it (409) until this host reboots")]
    WriteBase {
        /// The base file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// The state has the hash host0 already holds: nothing was sent.
    Unchanged(String),
    /// host0 acknowledged the state with this hash.
    Sent {
        /// Its hash.
        hash: String,
        /// host0's answer.
        accepted: Accepted,
    },
}

/// Where a save goes, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// host0's HTTP server, `http://HOST[:PORT]`.
    pub server: &'a str,
    /// This host's state name ([`archive::state_file_name`] of its machine ID).
    pub name: &'a str,
    /// The cluster secret.
    pub secret: &'a str,
    /// The base file.
    pub base_file: &'a Path,
}

/// Packs the state below `root` and sends it to `target` when it differs from the base.
pub fn save(root: &Path, target: &Target<'_>, policy: &RetryPolicy) -> Result<Saved, UploadError> {
    let state = archive::pack(root)?;
    let hash = content_hash(&state);
    let base = read_base(target.base_file);
    if base == hash {
        return Ok(Saved::Unchanged(hash));
    }
    let post = SignedPost {
        what: "state",
        path: format!("{STATE_PATH_PREFIX}{}", target.name),
        content_type: "application/octet-stream",
        headers: vec![(BASE_HEADER, base.clone())],
        body: &state,
        authorization: wire::sign(
            target.secret.as_bytes(),
            &signed_message(target.name, &base, &state),
        ),
    };
    let accepted = client::post_signed(target.server, &post, policy)?;
    std::fs::write(target.base_file, format!("{hash}\n")).map_err(|source| {
        UploadError::WriteBase {
            path: target.base_file.to_path_buf(),
            source,
        }
    })?;
    Ok(Saved::Sent { hash, accepted })
}

/// The base in `path`; `none` when it is missing or empty.
fn read_base(path: &Path) -> String {
    let base = std::fs::read_to_string(path).unwrap_or_default();
    match base.trim() {
        "" => NO_BASE.to_string(),
        base => base.to_string(),
    }
}
