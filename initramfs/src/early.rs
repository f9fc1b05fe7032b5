//! The kernel's module tree, and the early modules: the dependency closure of the modules
//! `/init` loads before the hand-off, in an order where every module follows its dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::modinfo::{self, ModInfo};

/// Failures while indexing the module tree or resolving the early modules.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory of the module tree could not be listed.
    #[error("cannot list directory {path} of the kernel module tree: {source}; is `modules_dir` the kernel's lib/modules/<version> directory?")]
    List {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `modules.builtin` could not be read.
    #[error("cannot read {path}: {source}; every kernel's module tree has this file, is `modules_dir` right?")]
    Builtin {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A requested module, or a dependency of one, is neither a module file nor built in.
    #[error("kernel module {name:?}{} is neither in {tree} nor built into the kernel (modules.builtin); remove it from the early modules or use a kernel that has it", needed_by.as_ref().map(|m| format!(" (needed by {m})")).unwrap_or_default())]
    NotFound {
        /// The module's name.
        name: String,
        /// The module that depends on it, if it was not requested directly.
        needed_by: Option<String>,
        /// The module tree searched.
        tree: PathBuf,
    },
    /// The dependencies loop, so no load order exists.
    #[error("kernel modules depend on each other in a cycle: {}; the module tree is inconsistent", chain.join(" -> "))]
    Cycle {
        /// The modules in the cycle, the first repeated at the end.
        chain: Vec<String>,
    },
    /// A module's information could not be read.
    #[error(transparent)]
    Modinfo(#[from] modinfo::Error),
}

/// The modules of one kernel: which files exist and which modules are built in.
pub struct ModuleTree {
    /// The `lib/modules/<version>` directory.
    root: PathBuf,
    /// Module name (normalised) to its path relative to `root`, e.g. `kernel/fs/fat/vfat.ko`.
    files: BTreeMap<String, String>,
    /// Names of the modules built into the kernel.
    builtin: BTreeSet<String>,
}

impl ModuleTree {
    /// Indexes `root/kernel/**/*.ko{,.zst,.xz}` and reads `root/modules.builtin`.
    pub fn scan(root: &Path) -> Result<Self, Error> {
        let mut relative_paths = Vec::new();
        list_module_files(root, Path::new("kernel"), &mut relative_paths)?;
        let mut files = BTreeMap::new();
        for relative in relative_paths {
            let Some(name) = relative.rsplit('/').next().and_then(modinfo::module_name) else {
                continue;
            };
            // Two files for one name would be a broken tree; the first in path order wins,
            // as the warning says, so the choice is at least deterministic.
            if let Some(first) = files.get(&name) {
                log::warn!(
                    "kernel module {name} exists twice in {}: using {first}, ignoring {relative}",
                    root.display()
                );
                continue;
            }
            files.insert(name, relative);
        }
        let builtin_path = root.join("modules.builtin");
        let builtin_list =
            std::fs::read_to_string(&builtin_path).map_err(|source| Error::Builtin {
                path: builtin_path.clone(),
                source,
            })?;
        Ok(ModuleTree {
            root: root.to_owned(),
            files,
            builtin: builtin_names(&builtin_list),
        })
    }

    /// The `lib/modules/<version>` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every module file: (normalised name, path relative to the root), sorted by name.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// Whether the module `name` (normalised) is built into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(name)
    }
}

/// Appends the paths (relative to `root`, `/`-separated, sorted) of the module files under
/// `root/relative`.
fn list_module_files(root: &Path, relative: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    let dir = root.join(relative);
    let list_error = |source| Error::List {
        path: dir.clone(),
        source,
    };
    let mut entries = std::fs::read_dir(&dir)
        .map_err(list_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(list_error)?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let file_type = entry.file_type().map_err(list_error)?;
        let child = relative.join(entry.file_name());
        if file_type.is_dir() {
            list_module_files(root, &child, out)?;
        } else if modinfo::module_name(&entry.file_name().to_string_lossy()).is_some() {
            out.push(child.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// The normalised module names in a `modules.builtin` file (one `kernel/…/name.ko` a line).
fn builtin_names(list: &str) -> BTreeSet<String> {
    list.lines()
        .filter_map(|line| line.rsplit('/').next())
        .filter_map(modinfo::module_name)
        .collect()
}

/// One early module, ready to be put into the initramfs.
pub struct EarlyModule {
    /// Its normalised name.
    pub name: String,
    /// Its path relative to `lib/modules/<version>`, always ending in `.ko` (uncompressed).
    pub path: String,
    /// The uncompressed module.
    pub elf: Vec<u8>,
}

/// What `load_order` learns about one module name.
pub enum Lookup<T> {
    /// A module file: what its `.modinfo` says, and data the caller wants back with it.
    Module(ModInfo, T),
    /// Built into the kernel: nothing to load.
    Builtin,
    /// Neither.
    Missing,
}

/// Resolves `requested` (names as a user writes them) and their dependencies into the early
/// modules, each after its dependencies.
pub fn resolve(tree: &ModuleTree, requested: &[String]) -> Result<Vec<EarlyModule>, Error> {
    let names: Vec<String> = requested.iter().map(|n| modinfo::normalise(n)).collect();
    let order = load_order(&names, |name| {
        if let Some(relative) = tree.files.get(name) {
            let path = tree.root.join(relative);
            let elf = modinfo::read_module(&path)?;
            let info = modinfo::from_elf(&path, &elf)?;
            Ok(Lookup::Module(info, (uncompressed_path(relative), elf)))
        } else if tree.is_builtin(name) {
            log::debug!("kernel module {name} is built into the kernel: nothing to load");
            Ok(Lookup::Builtin)
        } else {
            Ok(Lookup::Missing)
        }
    })
    .map_err(|error| match error {
        Error::NotFound {
            name, needed_by, ..
        } => Error::NotFound {
            name,
            needed_by,
            tree: tree.root.clone(),
        },
        other => other,
    })?;
    Ok(order
        .into_iter()
        .map(|(name, (path, elf))| EarlyModule { name, path, elf })
        .collect())
}

/// `x.ko.zst` becomes `x.ko`: early modules are stored uncompressed.
fn uncompressed_path(relative: &str) -> String {
    relative.strip_suffix(".zst").unwrap_or(relative).to_owned()
}

/// Orders `roots` and their dependencies so that every module comes after the modules it
/// depends on (`depends=`) and its `softdep` "pre" modules. The order is a depth-first
/// post-order following the roots and each module's dependencies in the order listed, so it
/// is deterministic. Each name comes with the data its lookup gave. Built-in modules are
/// left out. A missing root or `depends=` entry is an
/// error; a missing softdep is only logged, because softdeps may name aliases (such as
/// `crypto-crc32c`) rather than modules.
pub fn load_order<T, F>(roots: &[String], mut lookup: F) -> Result<Vec<(String, T)>, Error>
where
    F: FnMut(&str) -> Result<Lookup<T>, Error>,
{
    let mut walk = Walk {
        lookup: &mut lookup,
        done: BTreeSet::new(),
        skipped: BTreeSet::new(),
        path: Vec::new(),
        order: Vec::new(),
    };
    for root in roots {
        walk.visit(root, None, true)?;
    }
    Ok(walk.order)
}

/// The state of the depth-first walk of `load_order`.
struct Walk<'a, T, F> {
    lookup: &'a mut F,
    /// Modules already placed in `order`.
    done: BTreeSet<String>,
    /// Built-in modules and unresolvable softdeps, already looked up.
    skipped: BTreeSet<String>,
    /// The modules being visited, outermost first: a name met again here is a cycle.
    path: Vec<String>,
    order: Vec<(String, T)>,
}

impl<T, F> Walk<'_, T, F>
where
    F: FnMut(&str) -> Result<Lookup<T>, Error>,
{
    fn visit(&mut self, name: &str, needed_by: Option<&str>, required: bool) -> Result<(), Error> {
        if self.done.contains(name) || self.skipped.contains(name) {
            return Ok(());
        }
        if let Some(start) = self.path.iter().position(|n| n == name) {
            let mut chain = self.path[start..].to_vec();
            chain.push(name.to_owned());
            return Err(Error::Cycle { chain });
        }
        let (info, data) = match (self.lookup)(name)? {
            Lookup::Module(info, data) => (info, data),
            Lookup::Builtin => {
                self.skipped.insert(name.to_owned());
                return Ok(());
            }
            Lookup::Missing if !required => {
                log::debug!(
                    "softdep {name} of {} is not a module file (an alias?): not loaded early",
                    needed_by.unwrap_or("?")
                );
                self.skipped.insert(name.to_owned());
                return Ok(());
            }
            Lookup::Missing => {
                return Err(Error::NotFound {
                    name: name.to_owned(),
                    needed_by: needed_by.map(str::to_owned),
                    tree: PathBuf::new(),
                })
            }
        };
        self.path.push(name.to_owned());
        for dependency in &info.depends {
            self.visit(dependency, Some(name), true)?;
        }
        for dependency in &info.softdep_pre {
            self.visit(dependency, Some(name), false)?;
        }
        self.path.pop();
        self.done.insert(name.to_owned());
        self.order.push((name.to_owned(), data));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup over a fixed graph: name -> (depends, softdep pre); "builtin_*" are built in.
    fn graph<'a>(
        edges: &'a [(&'a str, &'a [&'a str], &'a [&'a str])],
    ) -> impl FnMut(&str) -> Result<Lookup<()>, Error> + 'a {
        move |name| {
            if name.starts_with("builtin") {
                return Ok(Lookup::Builtin);
            }
            Ok(match edges.iter().find(|(n, _, _)| *n == name) {
                Some((_, depends, pre)) => Lookup::Module(
                    ModInfo {
                        depends: depends.iter().map(|s| s.to_string()).collect(),
                        softdep_pre: pre.iter().map(|s| s.to_string()).collect(),
                    },
                    (),
                ),
                None => Lookup::Missing,
            })
        }
    }

    fn roots(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The names of a load order.
    fn names(order: Vec<(String, ())>) -> Vec<String> {
        order.into_iter().map(|(name, ())| name).collect()
    }

    #[test]
    fn dependencies_come_first_and_shared_ones_once() {
        let edges: &[(&str, &[&str], &[&str])] = &[
            ("uas", &["usbcore", "scsi_mod", "usb_storage"], &[]),
            ("usb_storage", &["usbcore", "scsi_mod"], &[]),
            ("usbcore", &["usb_common"], &[]),
            ("usb_common", &[], &[]),
            ("scsi_mod", &["scsi_common"], &[]),
            ("scsi_common", &[], &[]),
        ];
        let order = names(load_order(&roots(&["uas", "usb_storage"]), graph(edges)).unwrap());
        assert_eq!(
            order,
            [
                "usb_common",
                "usbcore",
                "scsi_common",
                "scsi_mod",
                "usb_storage",
                "uas"
            ]
        );
    }

    #[test]
    fn builtin_modules_are_skipped() {
        let edges: &[(&str, &[&str], &[&str])] = &[("sd_mod", &["builtin_t10_pi"], &[])];
        let order = names(load_order(&roots(&["builtin_vfat", "sd_mod"]), graph(edges)).unwrap());
        assert_eq!(order, ["sd_mod"]);
    }

    #[test]
    fn softdep_modules_load_first_and_aliases_are_ignored() {
        let edges: &[(&str, &[&str], &[&str])] = &[
            ("r8169", &["libphy"], &["realtek", "crypto_crc32c"]),
            ("libphy", &[], &[]),
            ("realtek", &["libphy"], &[]),
        ];
        let order = names(load_order(&roots(&["r8169"]), graph(edges)).unwrap());
        assert_eq!(order, ["libphy", "realtek", "r8169"]);
    }

    #[test]
    fn missing_dependency_names_the_module_and_its_user() {
        let edges: &[(&str, &[&str], &[&str])] = &[("vfat", &["fat"], &[])];
        let error = load_order(&roots(&["vfat"]), graph(edges)).unwrap_err();
        assert!(
            matches!(&error, Error::NotFound { name, needed_by: Some(by), .. } if name == "fat" && by == "vfat"),
            "{error}"
        );
    }

    #[test]
    fn missing_requested_module_is_an_error() {
        let error = load_order(&roots(&["nosuch"]), graph(&[])).unwrap_err();
        assert!(
            matches!(&error, Error::NotFound { name, needed_by: None, .. } if name == "nosuch"),
            "{error}"
        );
    }

    #[test]
    fn cycles_are_reported_with_their_chain() {
        let edges: &[(&str, &[&str], &[&str])] = &[("a", &["b"], &[]), ("b", &["a"], &[])];
        let error = load_order(&roots(&["a"]), graph(edges)).unwrap_err();
        assert!(
            matches!(&error, Error::Cycle { chain } if chain == &["a", "b", "a"]),
            "{error}"
        );
    }

    #[test]
    fn builtin_list_is_parsed_into_normalised_names() {
        let names = builtin_names("kernel/drivers/usb/host/xhci-hcd.ko\nkernel/fs/fat/fat.ko\n\n");
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["fat", "xhci_hcd"]);
    }

    #[test]
    fn tree_is_scanned_and_closure_resolved_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("kernel/fs/fat")).unwrap();
        std::fs::write(
            root.join("kernel/fs/fat/vfat.ko"),
            modinfo::test_elf(b"depends=fat,nls-base\0"),
        )
        .unwrap();
        let fat = zstd::encode_all(&modinfo::test_elf(b"depends=\0")[..], 3).unwrap();
        std::fs::write(root.join("kernel/fs/fat/fat.ko.zst"), fat).unwrap();
        std::fs::write(root.join("modules.builtin"), "kernel/fs/nls/nls_base.ko\n").unwrap();
        let tree = ModuleTree::scan(root).unwrap();
        let early = resolve(&tree, &roots(&["vfat"])).unwrap();
        let paths: Vec<&str> = early.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["kernel/fs/fat/fat.ko", "kernel/fs/fat/vfat.ko"]);
        assert_eq!(&early[0].elf[..4], b"\x7fELF", "stored decompressed");
        let error = resolve(&tree, &roots(&["usb-storage"])).err().unwrap();
        assert!(error.to_string().contains("usb_storage"), "{error}");
    }
}
