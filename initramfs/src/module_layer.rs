//! `10-modules.tar`: the kernel modules the dom0 may load after the hand-off.
//!
//! A selection of the module tree (see [`MODULE_SELECTION`]), plus whatever the selected
//! modules depend on, each compressed to `.ko.zst`, with `modules.order`, `modules.builtin`,
//! `modules.builtin.modinfo` and the indexes `depmod` writes from them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::early::ModuleTree;
use crate::modinfo;

/// Which parts of the module tree go into the layer, as (prefix of the path under `kernel/`,
/// included?). The longest matching prefix decides; a path no rule matches is included, so
/// a kernel with an unusual directory still gets its modules. A module that an included one
/// depends on is added even if its own path is excluded, so every module in the layer loads.
pub const MODULE_SELECTION: &[(&str, bool)] = &[
    // Storage, network, filesystems, md/dm, USB, Xen backends, crypto, lib, arch ...: kept.
    ("", true),
    // Sound cards: a dom0 plays no sound.
    ("sound/", false),
    // Cameras, TV tuners, video capture.
    ("drivers/media/", false),
    // Graphics: a dom0 needs only the console the firmware left it.
    ("drivers/gpu/", false),
    // Wi-Fi and Bluetooth: a cluster host is cabled.
    ("drivers/net/wireless/", false),
    ("net/wireless/", false),
    ("net/mac80211/", false),
    ("drivers/bluetooth/", false),
    ("net/bluetooth/", false),
    // Drivers not yet of kernel quality.
    ("drivers/staging/", false),
    // InfiniBand/RDMA fabrics.
    ("drivers/infiniband/", false),
    // Industrial I/O sensors, data-acquisition cards, ISDN.
    ("drivers/iio/", false),
    ("drivers/comedi/", false),
    ("drivers/isdn/", false),
];

/// zstd level of each `.ko.zst`: modules are compressed again inside the initramfs, so a
/// moderate level keeps the build fast for little loss.
const MODULE_ZSTD_LEVEL: i32 = 9;

/// Files of the module tree's root copied into the layer when present.
const TREE_FILES: &[&str] = &[
    "modules.order",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// Programs tried, in order, to run depmod: a non-root `PATH` often lacks `/usr/sbin`.
const DEPMOD_CANDIDATES: &[&str] = &["depmod", "/usr/sbin/depmod", "/sbin/depmod"];

/// Failures while building the modules layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A module could not be read or understood.
    #[error(transparent)]
    Modinfo(#[from] modinfo::Error),
    /// A file could not be written to the staging directory.
    #[error(
        "cannot write {path} while staging the modules layer: {source}; check free space there"
    )]
    Stage {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file of the module tree's root could not be copied.
    #[error("cannot copy {path} into the modules layer: {source}")]
    CopyTreeFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// depmod is not installed.
    #[error("cannot run depmod (tried {}): {source}; install the kmod package", DEPMOD_CANDIDATES.join(", "))]
    DepmodMissing {
        /// The error of the last attempt.
        source: std::io::Error,
    },
    /// depmod ran and failed.
    #[error("`depmod -b {base} {version}` failed ({status}): {stderr}")]
    DepmodFailed {
        /// The staging directory given to depmod.
        base: PathBuf,
        /// The kernel version.
        version: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The layer tar could not be written.
    #[error("cannot write the modules layer {path}: {source}; check free space there")]
    WriteTar {
        /// The tar.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What was put into the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Number of modules.
    pub module_count: usize,
    /// Sum of the sizes of its regular files.
    pub regular_bytes: u64,
}

/// Whether `relative` (a path under `kernel/`) is selected by [`MODULE_SELECTION`].
fn is_selected(relative: &str) -> bool {
    MODULE_SELECTION
        .iter()
        .filter(|(prefix, _)| relative.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .is_none_or(|(_, included)| *included)
}

/// Builds the layer at `out`, using `staging` (an empty directory) for depmod. Its paths
/// start with `usr/lib/modules/<version>` when `usr_merged` (the base has `lib` as a
/// symlink to `usr/lib`), else `lib/modules/<version>`.
pub fn build(
    tree: &ModuleTree,
    version: &str,
    usr_merged: bool,
    staging: &Path,
    out: &Path,
) -> Result<Summary, Error> {
    // kmod 30 (Debian 12) looks in <base>/lib/modules, whatever the base's /usr layout.
    let staged_root = staging.join("lib/modules").join(version);
    let names = selection_closure(tree, &staged_root)?;
    for name in TREE_FILES {
        copy_tree_file(&tree.root().join(name), &staged_root.join(name))?;
    }
    run_depmod(staging, version)?;
    let modules_dir = if usr_merged {
        "usr/lib/modules"
    } else {
        "lib/modules"
    };
    let regular_bytes = write_tar(&staged_root, Path::new(modules_dir), version, out)?;
    Ok(Summary {
        module_count: names.len(),
        regular_bytes,
    })
}

/// Compresses the selected modules and, round after round, the modules they depend on, into
/// `staged_root`. Returns the names of all the modules staged.
fn selection_closure(tree: &ModuleTree, staged_root: &Path) -> Result<BTreeSet<String>, Error> {
    let mut staged = BTreeSet::new();
    // Each round: (name, path relative to the tree's root) of the modules to stage.
    let mut round: Vec<(&String, &String)> = tree
        .files()
        .iter()
        .filter(|(_, relative)| is_selected(relative.strip_prefix("kernel/").unwrap_or(relative)))
        .collect();
    while !round.is_empty() {
        staged.extend(round.iter().map(|(name, _)| (*name).clone()));
        let depends = stage_in_parallel(tree, &round, staged_root)?;
        round = Vec::new();
        for name in depends.iter().filter(|name| !staged.contains(*name)) {
            match tree.files().get_key_value(name) {
                Some(module) => round.push(module),
                // depmod will also name the symbols this leaves unresolved.
                None if !tree.is_builtin(name) => log::warn!(
                    "modules layer: kernel module {name} is needed but exists nowhere in {}",
                    tree.root().display()
                ),
                None => {}
            }
        }
        if !round.is_empty() {
            let names: Vec<&str> = round.iter().map(|(name, _)| name.as_str()).collect();
            log::info!(
                "modules layer: adding {} excluded module(s) needed by selected ones: {}",
                names.len(),
                names.join(", ")
            );
        }
    }
    Ok(staged)
}

/// Stages `modules` (name, relative path) using every CPU; returns the union of their
/// `depends=` lists.
fn stage_in_parallel(
    tree: &ModuleTree,
    modules: &[(&String, &String)],
    staged_root: &Path,
) -> Result<BTreeSet<String>, Error> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results: Vec<Result<BTreeSet<String>, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                scope.spawn(move || {
                    let mut depends = BTreeSet::new();
                    for (_, relative) in modules.iter().skip(worker).step_by(workers) {
                        depends.extend(stage_module(tree, relative, staged_root)?);
                    }
                    Ok(depends)
                })
            })
            .collect();
        handles
            .into_iter()
            // A worker only panics if the code above has a bug; re-raise it where it is seen.
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut all = BTreeSet::new();
    for result in results {
        all.extend(result?);
    }
    Ok(all)
}

/// Writes the module at `relative` in the tree as `<relative>.ko.zst` under `staged_root`;
/// returns its dependencies.
fn stage_module(
    tree: &ModuleTree,
    relative: &str,
    staged_root: &Path,
) -> Result<Vec<String>, Error> {
    let source = tree.root().join(relative);
    let elf = modinfo::read_module(&source)?;
    let info = modinfo::from_elf(&source, &elf)?;
    let uncompressed = relative.strip_suffix(".zst").unwrap_or(relative);
    let target = staged_root.join(format!("{uncompressed}.zst"));
    let stage_error = |source| Error::Stage {
        path: target.clone(),
        source,
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(stage_error)?;
    }
    let compressed = zstd::encode_all(elf.as_slice(), MODULE_ZSTD_LEVEL).map_err(stage_error)?;
    std::fs::write(&target, compressed).map_err(stage_error)?;
    Ok(info.depends)
}

/// Copies a file of the tree's root; one that does not exist is skipped with a warning
/// (depmod and modprobe work without them, with less information).
fn copy_tree_file(source: &Path, target: &Path) -> Result<(), Error> {
    if !source.exists() {
        log::warn!(
            "{} does not exist: the modules layer will not have it",
            source.display()
        );
        return Ok(());
    }
    std::fs::copy(source, target)
        .map(drop)
        .map_err(|error| Error::CopyTreeFile {
            path: source.to_owned(),
            source: error,
        })
}

/// Runs `depmod -b <base> <version>`; its warnings (e.g. unknown symbols) are logged.
fn run_depmod(base: &Path, version: &str) -> Result<(), Error> {
    let mut last_error = None;
    for program in DEPMOD_CANDIDATES {
        let output = Command::new(program)
            .arg("-b")
            .arg(base)
            .arg(version)
            .output();
        let output = match output {
            Ok(output) => output,
            // Not at this place: try the next one.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                last_error = Some(error);
                continue;
            }
            Err(source) => return Err(Error::DepmodMissing { source }),
        };
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !output.status.success() {
            return Err(Error::DepmodFailed {
                base: base.to_owned(),
                version: version.to_owned(),
                status: output.status,
                stderr,
            });
        }
        for line in stderr.lines() {
            log::warn!("depmod: {line}");
        }
        return Ok(());
    }
    Err(Error::DepmodMissing {
        source: last_error.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
    })
}

/// Tars the directory `staged_root` as `<modules_dir>/<version>`, entries sorted, with fixed
/// owner (root), modes (0755 directories, 0644 files) and times, so the layer is the same
/// for the same modules. Returns the sum of the file sizes.
fn write_tar(
    staged_root: &Path,
    modules_dir: &Path,
    version: &str,
    out: &Path,
) -> Result<u64, Error> {
    let write_error = |source| Error::WriteTar {
        path: out.to_owned(),
        source,
    };
    let file = File::create(out).map_err(write_error)?;
    let mut builder = tar::Builder::new(BufWriter::new(file));
    let mut total = 0;
    // `modules` and `modules/<version>` themselves, so a base without them still gets them;
    // `lib` and `usr/lib` are left to the base layer.
    let prefix = modules_dir.join(version);
    append(&mut builder, modules_dir, None).map_err(write_error)?;
    append(&mut builder, &prefix, None).map_err(write_error)?;
    let mut files = Vec::new();
    list_sorted(staged_root, Path::new(""), &mut files).map_err(|source| Error::Stage {
        path: staged_root.to_owned(),
        source,
    })?;
    for (relative, is_dir) in files {
        let name = prefix.join(&relative);
        if is_dir {
            append(&mut builder, &name, None).map_err(write_error)?;
        } else {
            let path = staged_root.join(&relative);
            let data = File::open(&path).map_err(|source| Error::Stage { path, source })?;
            total += append(&mut builder, &name, Some(data)).map_err(write_error)?;
        }
    }
    let mut writer = builder.into_inner().map_err(write_error)?;
    writer.flush().map_err(write_error)?;
    Ok(total)
}

/// Appends a directory (`data` None) or a file with fixed metadata; returns the file size.
fn append(
    builder: &mut tar::Builder<BufWriter<File>>,
    name: &Path,
    data: Option<File>,
) -> std::io::Result<u64> {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    match data {
        None => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, name, std::io::empty())?;
            Ok(0)
        }
        Some(file) => {
            let size = file.metadata()?.len();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(size);
            builder.append_data(&mut header, name, file)?;
            Ok(size)
        }
    }
}

/// Appends (path relative to `root`, is a directory) for everything under `root/relative`,
/// depth first, sorted by name, so parents come before their content.
fn list_sorted(
    root: &Path,
    relative: &Path,
    out: &mut Vec<(PathBuf, bool)>,
) -> std::io::Result<()> {
    let mut entries = std::fs::read_dir(root.join(relative))?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let child = relative.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        out.push((child.clone(), is_dir));
        if is_dir {
            list_sorted(root, &child, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_the_longest_prefix() {
        assert!(is_selected("drivers/usb/storage/usb-storage.ko"));
        assert!(is_selected("drivers/net/ethernet/intel/igb/igb.ko"));
        assert!(!is_selected(
            "drivers/net/wireless/intel/iwlwifi/iwlwifi.ko"
        ));
        assert!(!is_selected("sound/core/snd.ko"));
        assert!(!is_selected("drivers/gpu/drm/drm.ko"));
        assert!(is_selected("fs/ext4/ext4.ko"));
        assert!(is_selected("drivers/xen/xen-blkback/xen-blkback.ko"));
    }

    #[test]
    fn layer_holds_compressed_modules_their_dependencies_and_depmod_output() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        for sub in ["kernel/fs/fat", "kernel/sound/core"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(
            root.join("kernel/fs/fat/vfat.ko"),
            modinfo::test_elf(b"depends=snd\0"),
        )
        .unwrap();
        std::fs::write(
            root.join("kernel/sound/core/snd.ko"),
            modinfo::test_elf(b"depends=\0"),
        )
        .unwrap();
        std::fs::write(
            root.join("kernel/sound/core/snd-pcm.ko"),
            modinfo::test_elf(b"depends=snd\0"),
        )
        .unwrap();
        std::fs::write(root.join("modules.builtin"), "").unwrap();
        std::fs::write(root.join("modules.order"), "kernel/fs/fat/vfat.ko\n").unwrap();
        let tree = ModuleTree::scan(&root).unwrap();
        let staging = dir.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let out = dir.path().join("10-modules.tar");
        let summary = build(&tree, "6.1.0-test", true, &staging, &out).unwrap();
        assert_eq!(
            summary.module_count, 2,
            "vfat and the excluded snd it needs, not snd-pcm"
        );
        let mut archive = tar::Archive::new(File::open(&out).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        let base = "usr/lib/modules/6.1.0-test/";
        assert_eq!(names[0], "usr/lib/modules");
        assert!(
            names.contains(&format!("{base}kernel/fs/fat/vfat.ko.zst")),
            "{names:?}"
        );
        assert!(names.contains(&format!("{base}kernel/sound/core/snd.ko.zst")));
        assert!(!names.iter().any(|n| n.contains("snd-pcm")));
        assert!(
            names.contains(&format!("{base}modules.dep")),
            "depmod ran: {names:?}"
        );
        assert!(names.contains(&format!("{base}modules.order")));
        let modules = names.iter().filter(|n| n.ends_with(".ko.zst")).count();
        assert_eq!(modules, 2);
        let staged =
            std::fs::read(staging.join("lib/modules/6.1.0-test/kernel/fs/fat/vfat.ko.zst"))
                .unwrap();
        assert_eq!(
            zstd::decode_all(staged.as_slice()).unwrap(),
            modinfo::test_elf(b"depends=snd\0")
        );
    }
}
