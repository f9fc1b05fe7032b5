//! The files host0 serves to the hosts it boots: the drive's own boot files, and the few that
//! are generated for network boots.
//!
//! Generated at start-up, from the drive's `syslinux.cfg` (so Xen's and the kernel's arguments,
//! `dom0_mem` among them, have one source) and the cluster configuration:
//! - `pxelinux.cfg/default`: the same boot as the drive's, over HTTP, with `pxen.boot=net`
//!   and `pxen.server=` naming host0;
//! - `boot.ipxe`: for iPXE clients, the same PXELINUX stage fetched over HTTP;
//! - `initrd.img`: the drive's initramfs with the configuration appended as a second,
//!   uncompressed cpio archive under `/pxen/config/`, with the drive's last-known-good copy
//!   under `/pxen/last-good/`, so a hostU boots with host0's current configuration (or, when
//!   it is broken, with the same last-known-good copy as host0) without any further fetch;
//!   and every host's saved state as a third, under `/pxen/hosts/` (see
//!   [`crate::state::store`]), made each time the file is opened so that a state stored a
//!   moment ago is in it. The kernel unpacks concatenated archives in order; an uncompressed
//!   one must start at a multiple of 4 bytes, hence the zero padding (a cpio archive's own
//!   length is a multiple of 4).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{Content, DirSource, FileSource, OpenError, SafePath};
use crate::cpio;
use crate::state::store::{states_archive, Store};

/// The drive's SYSLINUX configuration, the source of the boot arguments.
pub const SYSLINUX_CFG: &str = "syslinux.cfg";
/// The initramfs on the drive, and as served.
pub const INITRD: &str = "initrd.img";
/// Where the appended configuration lands in the initramfs (see `boot::INITRAMFS_CONFIG`).
pub const CONFIG_IN_INITRAMFS: &str = "pxen/config";
/// Where the appended last-known-good copy lands in the initramfs (see
/// `boot::INITRAMFS_LAST_GOOD`); it is at the same place on the drive.
pub const LAST_GOOD_IN_INITRAMFS: &str = crate::config::last_good::LAST_GOOD_DIR;

/// The boot files could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum BootFilesError {
    /// The drive directory cannot be served.
    #[error("cannot serve the boot files in {dir}: {source}")]
    Root {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file needed to generate the network boot files cannot be read.
    #[error("cannot read {path}: {source}; the drive is incomplete, rebuild it with mkimage")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `syslinux.cfg` has no `mboot.c32` boot line to derive the network boot from.
    #[error("{path} has no `APPEND xen.gz ... --- vmlinuz ... --- initrd.img` line; restore it from a fresh mkimage build")]
    NoBootLine {
        /// The file.
        path: PathBuf,
    },
    /// The configuration could not be packed.
    #[error("cannot pack the configuration {dir} into the initramfs: {detail}")]
    PackConfig {
        /// The configuration directory.
        dir: PathBuf,
        /// Why.
        detail: String,
    },
}

/// Xen's and the kernel's arguments, as the drive boots them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    /// Xen's command line (without the image name).
    pub xen: String,
    /// The dom0 kernel's command line (without the image name).
    pub kernel: String,
}

/// Reads the arguments from the `APPEND` line of the drive's `syslinux.cfg`:
/// `APPEND xen.gz <xen args> --- vmlinuz <kernel args> --- initrd.img`.
pub fn parse_syslinux_append(text: &str) -> Option<BootArgs> {
    let append = text.lines().find_map(|line| {
        let line = line.trim();
        let (keyword, rest) = line.split_once(char::is_whitespace)?;
        keyword.eq_ignore_ascii_case("append").then_some(rest)
    })?;
    let parts: Vec<&str> = append.split("---").map(str::trim).collect();
    let [xen, kernel, initrd] = parts.as_slice() else {
        return None;
    };
    let args_after = |part: &str, image: &str| {
        let (name, args) = part.split_once(char::is_whitespace).unwrap_or((part, ""));
        (name == image).then(|| args.trim().to_string())
    };
    (initrd.split_whitespace().next() == Some(INITRD)).then_some(())?;
    Some(BootArgs {
        xen: args_after(xen, "xen.gz")?,
        kernel: args_after(kernel, "vmlinuz")?,
    })
}

/// The kernel arguments of a network boot: the drive's, with `pxen.boot=net` instead of any
/// `pxen.boot=` and `pxen.server=` naming host0's HTTP server.
pub fn network_kernel_args(drive_args: &str, server: &str) -> String {
    let mut words: Vec<String> = drive_args
        .split_whitespace()
        .filter(|w| !w.starts_with("pxen.boot=") && !w.starts_with("pxen.server="))
        .map(str::to_string)
        .collect();
    words.push("pxen.boot=net".into());
    words.push(format!("pxen.server={server}"));
    words.join(" ")
}

/// `pxelinux.cfg/default`: the drive's boot, with every file fetched from host0 over HTTP.
pub fn pxelinux_cfg(args: &BootArgs, server: &str) -> String {
    format!(
        "# Generated by PXEN host0 from the drive's syslinux.cfg.\n\
         DEFAULT pxen\nPROMPT 0\nTIMEOUT 0\nLABEL pxen\n  KERNEL mboot.c32\n  \
         APPEND {server}/xen.gz {} --- {server}/vmlinuz {} --- {server}/{INITRD}\n",
        args.xen,
        network_kernel_args(&args.kernel, server),
    )
}

/// `boot.ipxe`: iPXE clients run the same PXELINUX stage, fetched over HTTP. DHCP option 210
/// (PXELINUX's path prefix) makes PXELINUX fetch its own files over HTTP too.
pub fn ipxe_script(server: &str) -> String {
    format!("#!ipxe\n# Generated by PXEN host0.\nset 210:string {server}/\nchain {server}/lpxelinux.0\n")
}

/// The configuration directory as a newc archive under [`CONFIG_IN_INITRAMFS`], with the
/// last-known-good copy `last_good` under [`LAST_GOOD_IN_INITRAMFS`] when there is one. Only
/// regular files directly in each directory are taken, in name order, so the archive is
/// deterministic.
pub fn config_archive(dir: &Path, last_good: &Path) -> Result<Vec<u8>, BootFilesError> {
    let pack_error = |detail: String| BootFilesError::PackConfig {
        dir: dir.to_path_buf(),
        detail,
    };
    let mut writer = cpio::Writer::new(Vec::new());
    writer
        .directory("pxen", 0o755)
        .map_err(|e| pack_error(e.to_string()))?;
    pack_dir(&mut writer, dir, CONFIG_IN_INITRAMFS)?;
    if last_good.is_dir() {
        pack_dir(&mut writer, last_good, LAST_GOOD_IN_INITRAMFS)?;
    }
    let (archive, _) = writer.finish().map_err(|e| pack_error(e.to_string()))?;
    Ok(archive)
}

/// Adds the regular files directly in `dir` to `writer`, under `to`.
fn pack_dir(
    writer: &mut cpio::Writer<Vec<u8>>,
    dir: &Path,
    to: &str,
) -> Result<(), BootFilesError> {
    let pack_error = |detail: String| BootFilesError::PackConfig {
        dir: dir.to_path_buf(),
        detail,
    };
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| pack_error(e.to_string()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    files.sort();
    writer
        .directory(to, 0o755)
        .map_err(|e| pack_error(e.to_string()))?;
    for (name, path) in files {
        let data = std::fs::read(&path).map_err(|source| BootFilesError::Read { path, source })?;
        writer
            .file_bytes(&format!("{to}/{name}"), 0o644, &data)
            .map_err(|e| pack_error(e.to_string()))?;
    }
    Ok(())
}

/// Several contents served as one, in order.
struct Concat {
    parts: Vec<Arc<dyn Content>>,
}

impl Content for Concat {
    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// Fills `buf` across part boundaries: a short read would look like the end of the file
    /// to a reader that fills fixed-size blocks (TFTP).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        let mut part_start = 0;
        for part in &self.parts {
            let part_end = part_start + part.len();
            while filled < buf.len() && offset + (filled as u64) < part_end {
                let n = part.read_at(offset + filled as u64 - part_start, &mut buf[filled..])?;
                if n == 0 {
                    return Ok(filled);
                }
                filled += n;
            }
            part_start = part_end;
        }
        Ok(filled)
    }
}

/// The drive's files plus the generated ones; a generated file hides the drive's of that name.
pub struct BootFiles {
    drive: DirSource,
    generated: HashMap<String, Arc<dyn Content>>,
    /// The drive's initramfs with the configuration; the states are added at each open.
    initrd: Arc<dyn Content>,
    states: Store,
}

impl BootFiles {
    /// Prepares the files of `drive_dir` for serving by the host at `server` (e.g.
    /// `http://10.0.0.5:80`), with the configuration of `config_dir` appended to the initramfs.
    pub fn new(
        drive_dir: &Path,
        config_dir: &Path,
        server_ip: Ipv4Addr,
        http_port: u16,
    ) -> Result<BootFiles, BootFilesError> {
        let drive =
            DirSource::new(drive_dir.to_path_buf()).map_err(|source| BootFilesError::Root {
                dir: drive_dir.to_path_buf(),
                source,
            })?;
        let server = format!("http://{server_ip}:{http_port}");
        let cfg_path = drive_dir.join(SYSLINUX_CFG);
        let cfg = std::fs::read_to_string(&cfg_path).map_err(|source| BootFilesError::Read {
            path: cfg_path.clone(),
            source,
        })?;
        let args =
            parse_syslinux_append(&cfg).ok_or(BootFilesError::NoBootLine { path: cfg_path })?;

        let mut generated: HashMap<String, Arc<dyn Content>> = HashMap::new();
        generated.insert(
            "pxelinux.cfg/default".into(),
            Arc::new(pxelinux_cfg(&args, &server).into_bytes()),
        );
        generated.insert(
            "boot.ipxe".into(),
            Arc::new(ipxe_script(&server).into_bytes()),
        );
        let initrd = initrd_with_config(&drive, drive_dir, config_dir)?;
        Ok(BootFiles {
            drive,
            generated,
            initrd,
            states: Store::new(drive_dir),
        })
    }

    /// `initrd.img` as served now: the initramfs with the configuration, then the states.
    fn initrd_now(&self) -> Arc<dyn Content> {
        let states = states_archive(&self.states).unwrap_or_else(|e| {
            log::error!("state: cannot pack the hosts' states into the initramfs: {e}; hosts booting now get none and keep the ones they have");
            Vec::new()
        });
        Arc::new(Concat {
            parts: vec![self.initrd.clone(), Arc::new(states)],
        })
    }
}

/// The drive's initramfs, zero-padded to a multiple of 4 bytes, then the configuration archive.
fn initrd_with_config(
    drive: &DirSource,
    drive_dir: &Path,
    config_dir: &Path,
) -> Result<Arc<dyn Content>, BootFilesError> {
    let read_error = |e: OpenError| BootFilesError::Read {
        path: drive_dir.join(INITRD),
        source: std::io::Error::other(e.to_string()),
    };
    let path = SafePath::parse(INITRD).map_err(|e| {
        read_error(OpenError::NotFound {
            path: e.to_string(),
        })
    })?;
    let initrd = drive.open(&path).map_err(read_error)?;
    let padding = (4 - initrd.len() % 4) % 4;
    let parts: Vec<Arc<dyn Content>> = vec![
        initrd,
        Arc::new(vec![0u8; padding as usize]),
        Arc::new(config_archive(
            config_dir,
            &drive_dir.join(LAST_GOOD_IN_INITRAMFS),
        )?),
    ];
    Ok(Arc::new(Concat { parts }))
}

impl FileSource for BootFiles {
    fn open(&self, path: &SafePath) -> Result<Arc<dyn Content>, OpenError> {
        if path.as_str() == INITRD {
            return Ok(self.initrd_now());
        }
        match self.generated.get(path.as_str()) {
            Some(content) => Ok(content.clone()),
            None => self.drive.open(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIVE_CFG: &str = "SERIAL 0 115200\nDEFAULT pxen\nLABEL pxen\n  KERNEL mboot.c32\n  \
        APPEND xen.gz console=com1 dom0_mem=1536M,max:1536M --- vmlinuz console=hvc0 pxen.boot=usb quiet --- initrd.img\n";

    #[test]
    fn boot_arguments_come_from_the_drive() {
        let args = parse_syslinux_append(DRIVE_CFG).unwrap();
        assert_eq!(args.xen, "console=com1 dom0_mem=1536M,max:1536M");
        assert_eq!(args.kernel, "console=hvc0 pxen.boot=usb quiet");
        assert_eq!(parse_syslinux_append("APPEND xen.gz --- vmlinuz"), None);
        assert_eq!(
            parse_syslinux_append("APPEND other.gz --- vmlinuz --- initrd.img"),
            None
        );
    }

    #[test]
    fn network_boots_are_marked_and_name_host0() {
        let args = parse_syslinux_append(DRIVE_CFG).unwrap();
        assert_eq!(
            pxelinux_cfg(&args, "http://10.77.0.50:80"),
            "# Generated by PXEN host0 from the drive's syslinux.cfg.\nDEFAULT pxen\nPROMPT 0\nTIMEOUT 0\n\
             LABEL pxen\n  KERNEL mboot.c32\n  APPEND http://10.77.0.50:80/xen.gz console=com1 \
             dom0_mem=1536M,max:1536M --- http://10.77.0.50:80/vmlinuz console=hvc0 quiet \
             pxen.boot=net pxen.server=http://10.77.0.50:80 --- http://10.77.0.50:80/initrd.img\n"
        );
        assert!(ipxe_script("http://h:80").contains("chain http://h:80/lpxelinux.0\n"));
    }

    #[test]
    fn the_served_initrd_is_the_drives_plus_the_config_and_last_good_archive() {
        let drive = tempfile::tempdir().unwrap();
        let config = tempfile::tempdir().unwrap();
        std::fs::write(drive.path().join(SYSLINUX_CFG), DRIVE_CFG).unwrap();
        std::fs::write(drive.path().join(INITRD), b"compressed!").unwrap();
        std::fs::write(drive.path().join("xen.gz"), b"xen").unwrap();
        std::fs::write(config.path().join("cluster.ron"), b"Cluster(name: \"lab\")").unwrap();
        std::fs::create_dir(config.path().join("ignored-subdir")).unwrap();
        let last_good = drive.path().join(LAST_GOOD_IN_INITRAMFS);
        std::fs::create_dir_all(&last_good).unwrap();
        std::fs::write(last_good.join("cluster.ron"), b"Cluster(name: \"good\")").unwrap();
        let files = BootFiles::new(
            drive.path(),
            config.path(),
            Ipv4Addr::new(10, 77, 0, 50),
            80,
        )
        .unwrap();

        let read_all = |name: &str| {
            let content = files.open(&SafePath::parse(name).unwrap()).unwrap();
            let mut data = vec![0; content.len() as usize];
            let mut at = 0;
            while at < data.len() {
                at += content.read_at(at as u64, &mut data[at..]).unwrap();
            }
            data
        };
        let initrd = read_all(INITRD);
        let content = files.open(&SafePath::parse(INITRD).unwrap()).unwrap();
        let mut across = [0u8; 8];
        assert_eq!(
            content.read_at(8, &mut across).unwrap(),
            8,
            "one read spans the parts"
        );
        assert_eq!(&across, b"ed!\0\x30\x37\x30\x37");
        assert_eq!(&initrd[..11], b"compressed!");
        assert_eq!(initrd[11], 0, "padded to a multiple of 4");
        let appended = cpio::read_archive(&initrd[12..]).unwrap();
        let names: Vec<&str> = appended.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pxen",
                "pxen/config",
                "pxen/config/cluster.ron",
                "pxen/last-good",
                "pxen/last-good/cluster.ron",
                "TRAILER!!!"
            ]
        );
        assert_eq!(appended[2].data, b"Cluster(name: \"lab\")");
        assert_eq!(appended[4].data, b"Cluster(name: \"good\")");
        let store = Store::new(drive.path());
        let mut state = cpio::Writer::new(Vec::new());
        state.file_bytes("etc/machine-id", 0o444, b"id\n").unwrap();
        let state = state.finish().unwrap().0;
        store.write("sn-1", &state).unwrap();
        let with_state = read_all(INITRD);
        assert_eq!(
            with_state[..initrd.len()],
            initrd[..],
            "states come after the rest"
        );
        let tail = cpio::read_archive(&with_state[initrd.len()..]).unwrap();
        let carried = tail.iter().find(|e| e.name == "pxen/hosts/sn-1/state.cpio");
        assert_eq!(carried.map(|e| e.data.as_slice()), Some(state.as_slice()));
        assert_eq!(
            read_all("xen.gz"),
            b"xen",
            "drive files are served as they are"
        );
        assert!(String::from_utf8(read_all("pxelinux.cfg/default"))
            .unwrap()
            .contains("pxen.boot=net"));
    }
}
