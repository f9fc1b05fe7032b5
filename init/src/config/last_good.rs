//! The last-known-good rule: which configuration a host boots with when the one the
//! administrator wrote does not validate.
//!
//! A configuration that validates is kept as the last-known-good copy (host0 on the drive, a
//! hostU in its initramfs). When the current one does not validate, the host boots with that
//! copy, or with the built-in default if there is none, and says so loudly; the administrator's
//! files are never overwritten. This module is the pure choice; reading and keeping the copies
//! is the caller's.

use super::{Cluster, ConfigErrors};

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse_cluster, ConfigError};

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
}
