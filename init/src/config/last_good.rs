//! The last-known-good rule: which configuration a host boots with when the one the
//! administrator wrote does not validate, and the copy it falls back to.
//!
//! A configuration that validates is kept as the last-known-good copy: host0 writes it to its
//! drive's [`LAST_GOOD_DIR`] ([`keep`]) and serves it to the hosts it boots, in their
//! initramfs beside the current files. When the current configuration does not validate, a
//! host boots with that copy, or with the built-in default if there is none ([`choose`]),
//! and says so loudly; the administrator's files are never overwritten.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{load_dir, parse_cluster, Cluster, ConfigErrors, KNOWN_FILES};

/// Where the last-known-good copy is kept, relative to the drive's root (and in a network
/// boot's initramfs).
pub const LAST_GOOD_DIR: &str = "pxen/last-good";

/// The suffix of a file being written: a crash between writing it and renaming it over the
/// old copy leaves it complete (it was synced) beside a missing or stale old copy.
const NEW_SUFFIX: &str = ".new";

/// Keeping the last-known-good copy failed.
#[derive(Debug, thiserror::Error)]
pub enum KeepError {
    /// A configuration file could not be read.
    #[error("cannot read {path} to keep it as the last-known-good copy: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The copy could not be written.
    #[error("cannot write the last-known-good copy {path}: {source}; is the drive write-protected or full?")]
    Write {
        /// The file or directory being written.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The configuration a host boots with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    /// The current configuration validates.
    Current(Cluster),
    /// The current configuration is broken; the last-known-good copy is used.
    LastGood {
        /// The last-known-good configuration.
        cluster: Cluster,
        /// What is wrong with the current one.
        errors: ConfigErrors,
    },
    /// The current configuration is broken and there is no usable last-known-good copy; the
    /// built-in default is used.
    BuiltinDefault {
        /// The built-in default configuration (with a secret of its own).
        cluster: Cluster,
        /// What is wrong with the current one.
        errors: ConfigErrors,
        /// Why the last-known-good copy could not be used: `None` when there was none.
        last_good_errors: Option<ConfigErrors>,
    },
}

impl Chosen {
    /// The configuration to boot with.
    pub fn cluster(&self) -> &Cluster {
        match self {
            Chosen::Current(cluster)
            | Chosen::LastGood { cluster, .. }
            | Chosen::BuiltinDefault { cluster, .. } => cluster,
        }
    }

    /// Whether the current configuration is used (the others deserve a loud warning).
    pub fn is_current(&self) -> bool {
        matches!(self, Chosen::Current(_))
    }

    /// What a host says on its console, and host0 on its status page, when the current
    /// configuration is not used: a headline in capitals, then what is wrong and what to do,
    /// a line each. `None` when the current configuration is used.
    pub fn notice(&self) -> Option<Vec<String>> {
        let (headline, errors, last_good_errors) = match self {
            Chosen::Current(_) => return None,
            Chosen::LastGood { errors, .. } => (
                "THE CONFIGURATION IS BROKEN: THIS HOST RUNS THE LAST-KNOWN-GOOD COPY",
                errors,
                None,
            ),
            Chosen::BuiltinDefault {
                errors,
                last_good_errors,
                ..
            } => (
                "NO VALID CONFIGURATION: THIS HOST RUNS THE BUILT-IN DEFAULT",
                errors,
                last_good_errors.as_ref(),
            ),
        };
        let mut lines = vec![headline.to_string()];
        lines.extend(errors.to_string().lines().map(str::to_string));
        match (self, last_good_errors) {
            (Chosen::BuiltinDefault { .. }, Some(copy)) => {
                lines.push("the last-known-good copy is unusable too:".to_string());
                lines.extend(copy.to_string().lines().map(str::to_string));
            }
            (Chosen::BuiltinDefault { .. }, None) => {
                lines.push(
                    "there is no last-known-good copy yet: none has validated on this drive"
                        .to_string(),
                );
            }
            _ => {}
        }
        lines.push(
            "nothing you wrote was changed: fix the files (`pxen config check DIR` lists every \
             problem) and reboot"
                .to_string(),
        );
        Some(lines)
    }
}

/// Chooses the configuration to boot with, from the current one and the last-known-good copy
/// (`None`: there is none). `builtin_default` is called only when it is needed.
pub fn choose(
    current: Result<Cluster, ConfigErrors>,
    last_good: Option<Result<Cluster, ConfigErrors>>,
    builtin_default: impl FnOnce() -> Cluster,
) -> Chosen {
    let errors = match current {
        Ok(cluster) => return Chosen::Current(cluster),
        Err(errors) => errors,
    };
    match last_good {
        Some(Ok(cluster)) => Chosen::LastGood { cluster, errors },
        // A last-known-good copy that does not validate (damaged on the drive, or written by
        // an older PXEN whose rules were looser) is as good as none.
        Some(Err(last_good_errors)) => Chosen::BuiltinDefault {
            cluster: builtin_default(),
            errors,
            last_good_errors: Some(last_good_errors),
        },
        None => Chosen::BuiltinDefault {
            cluster: builtin_default(),
            errors,
            last_good_errors: None,
        },
    }
}

/// Reads the last-known-good copy in `dir`: `None` when there is none. A `cluster.ron` that
/// is missing or broken beside a complete `cluster.ron.new` (a write cut short after the new
/// file was synced) gives the new file.
pub fn read(dir: &Path) -> Option<Result<Cluster, ConfigErrors>> {
    let new_file = |name: &str| dir.join(format!("{name}{NEW_SUFFIX}"));
    let exists = |name: &str| dir.join(name).exists() || new_file(name).exists();
    if !KNOWN_FILES.iter().any(|name| exists(name)) {
        return None;
    }
    let loaded = load_dir(dir);
    if loaded.is_ok() {
        return Some(loaded);
    }
    let pending = new_file(super::CLUSTER_FILE);
    match std::fs::read_to_string(&pending) {
        Ok(text) => match parse_cluster(&pending, &text) {
            Ok(cluster) => Some(Ok(cluster)),
            Err(_) => Some(loaded),
        },
        Err(_) => Some(loaded),
    }
}

/// Keeps the configuration files of `current` (which validated) as the last-known-good copy in
/// `dir`, writing only the files that differ. Returns whether anything was written. Each file
/// is written beside the old one, synced, and renamed over it, so a crash leaves the old copy
/// or the new one readable by [`read`].
pub fn keep(current: &Path, dir: &Path) -> Result<bool, KeepError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeepError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    let mut written = false;
    for name in KNOWN_FILES {
        let from = current.join(name);
        let bytes =
            std::fs::read(&from).map_err(|source| KeepError::Read { path: from, source })?;
        let to = dir.join(name);
        if std::fs::read(&to).is_ok_and(|kept| kept == bytes) {
            continue;
        }
        let pending = dir.join(format!("{name}{NEW_SUFFIX}"));
        write_synced(&pending, &bytes).map_err(write_error(&pending))?;
        std::fs::rename(&pending, &to).map_err(write_error(&to))?;
        written = true;
    }
    if written {
        // Linux syncs a directory's entries (the renames) through a descriptor of it.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error(dir))?;
    }
    Ok(written)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ConfigError;

    fn cluster(name: &str) -> Cluster {
        let text = format!("Cluster(name: {name:?}, secret: \"0123456789abcdef\")");
        parse_cluster(Path::new("cluster.ron"), &text).unwrap()
    }

    fn broken(what: &str) -> ConfigErrors {
        ConfigErrors(vec![ConfigError {
            file: "cluster.ron".into(),
            position: Some((1, 1)),
            message: what.to_string(),
            fix: "fix it".to_string(),
        }])
    }

    fn no_default() -> Cluster {
        panic!("the built-in default was built though it was not needed")
    }

    #[test]
    fn a_valid_current_configuration_wins() {
        let chosen = choose(Ok(cluster("now")), Some(Ok(cluster("before"))), no_default);
        assert_eq!(chosen, Chosen::Current(cluster("now")));
        assert!(chosen.is_current());
        assert_eq!(
            choose(Ok(cluster("now")), None, no_default).cluster().name,
            "now"
        );
    }

    #[test]
    fn a_broken_configuration_falls_back_to_the_last_good_copy() {
        let chosen = choose(Err(broken("now")), Some(Ok(cluster("before"))), no_default);
        assert_eq!(
            chosen,
            Chosen::LastGood {
                cluster: cluster("before"),
                errors: broken("now")
            }
        );
        assert!(!chosen.is_current());
    }

    #[test]
    fn without_a_usable_copy_the_builtin_default_is_used() {
        let chosen = choose(Err(broken("now")), None, || cluster("default"));
        assert_eq!(
            chosen,
            Chosen::BuiltinDefault {
                cluster: cluster("default"),
                errors: broken("now"),
                last_good_errors: None
            }
        );
        let chosen = choose(Err(broken("now")), Some(Err(broken("copy"))), || {
            cluster("default")
        });
        assert_eq!(chosen.cluster().name, "default");
        assert!(matches!(
            chosen,
            Chosen::BuiltinDefault { last_good_errors: Some(e), .. } if e == broken("copy")
        ));
    }

    fn cluster_text(name: &str) -> String {
        format!("Cluster(name: {name:?}, secret: \"0123456789abcdef\")")
    }

    #[test]
    fn keeping_writes_a_copy_that_reads_back_and_skips_an_identical_one() {
        let (current, drive) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let kept = drive.path().join(LAST_GOOD_DIR);
        assert!(read(&kept).is_none(), "no copy yet");
        std::fs::write(current.path().join("cluster.ron"), cluster_text("v1")).unwrap();
        assert!(keep(current.path(), &kept).unwrap());
        assert_eq!(read(&kept).unwrap().unwrap().name, "v1");
        assert!(!keep(current.path(), &kept).unwrap(), "nothing changed");
        std::fs::write(current.path().join("cluster.ron"), cluster_text("v2")).unwrap();
        assert!(keep(current.path(), &kept).unwrap());
        assert_eq!(read(&kept).unwrap().unwrap().name, "v2");
        assert!(!kept.join("cluster.ron.new").exists());
    }

    #[test]
    fn a_write_cut_before_its_rename_leaves_a_readable_copy() {
        let dir = tempfile::tempdir().unwrap();
        // Cut after the old file was removed and before the new one took its name.
        std::fs::write(dir.path().join("cluster.ron.new"), cluster_text("new")).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().name, "new");
        // Cut while writing the new file: the old copy is read.
        std::fs::write(dir.path().join("cluster.ron"), cluster_text("old")).unwrap();
        std::fs::write(dir.path().join("cluster.ron.new"), "Cluster(name: \"ne").unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().name, "old");
    }

    #[test]
    fn a_damaged_copy_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cluster.ron"), "Cluster(").unwrap();
        let errors = read(dir.path()).unwrap().unwrap_err();
        assert!(errors.to_string().contains("cluster.ron:1:"), "{errors}");
    }

    #[test]
    fn the_notice_says_which_copy_runs_what_is_wrong_and_what_to_do() {
        assert_eq!(Chosen::Current(cluster("now")).notice(), None);
        let last_good = Chosen::LastGood {
            cluster: cluster("before"),
            errors: broken("a duplicate MAC"),
        };
        let lines = last_good.notice().unwrap();
        assert!(lines[0].contains("LAST-KNOWN-GOOD"), "{lines:?}");
        assert!(lines
            .iter()
            .any(|l| l.contains("cluster.ron:1:1: a duplicate MAC; fix it")));
        assert!(lines
            .last()
            .unwrap()
            .contains("nothing you wrote was changed"));
        let default = Chosen::BuiltinDefault {
            cluster: cluster("default"),
            errors: broken("now"),
            last_good_errors: Some(broken("the copy")),
        };
        let lines = default.notice().unwrap();
        assert_eq!(
            lines[0], "NO VALID CONFIGURATION: THIS HOST RUNS THE BUILT-IN DEFAULT",
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("the copy")), "{lines:?}");
    }
}
