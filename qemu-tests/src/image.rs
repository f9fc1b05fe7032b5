//! Reading and writing files of a PXEN drive image with mtools, as an administrator edits a
//! drive: a test boots its parts directly, or boots it with a configuration of its own.

use std::path::Path;
use std::process::Command;

use pxen::net::mac::MacAddr;

/// Where the FAT partition of a PXEN image starts (sector 2048), for mtools' `@@offset`.
pub const PARTITION_OFFSET: u64 = 2048 * 512;

/// A file could not be copied out of the image.
#[derive(Debug, thiserror::Error)]
#[error("cannot copy {name} out of the image {image} into {to}: {why}; mtools must be installed (`cargo xtask deps`)")]
pub struct ImageReadError {
    /// The image.
    pub image: String,
    /// The file on the FAT partition.
    pub name: String,
    /// Where it was to go.
    pub to: String,
    /// What went wrong.
    pub why: String,
}

/// Copies `name` from the FAT partition of `image` to `to`, with `mcopy` (no mounting).
pub fn copy_out(image: &Path, name: &str, to: &Path) -> Result<(), ImageReadError> {
    let error = |why: String| ImageReadError {
        image: image.display().to_string(),
        name: name.to_string(),
        to: to.display().to_string(),
        why,
    };
    let output = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-n")
        .arg("-i")
        .arg(format!("{}@@{PARTITION_OFFSET}", image.display()))
        .arg(format!("::/{name}"))
        .arg(to)
        .output()
        .map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        return Err(error(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// A file could not be written into an image.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {from} into the image {image} as {name}: {why}; mtools must be installed (`cargo xtask deps`)")]
pub struct ImageWriteError {
    /// The image.
    pub image: String,
    /// The file written.
    pub from: String,
    /// Its name on the FAT partition.
    pub name: String,
    /// What went wrong.
    pub why: String,
}

/// Writes `from` into the FAT partition of `image` as `name`, replacing any file of that
/// name, with `mcopy` (no mounting): the way an administrator edits a drive.
pub fn copy_in(image: &Path, from: &Path, name: &str) -> Result<(), ImageWriteError> {
    let error = |why: String| ImageWriteError {
        image: image.display().to_string(),
        from: from.display().to_string(),
        name: name.to_string(),
        why,
    };
    let output = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@{PARTITION_OFFSET}", image.display()))
        .arg(from)
        .arg(format!("::/{name}"))
        .output()
        .map_err(|e| error(e.to_string()))?;
    if !output.status.success() {
        return Err(error(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// A host named in a cluster configuration written for a test or the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredHost {
    /// Its DMI system serial.
    pub serial: String,
    /// The hostname the configuration gives it.
    pub hostname: String,
    /// Its network card's MAC, which host0 wakes; `None` for a host that is not woken (host0).
    pub mac: Option<MacAddr>,
    /// Its dom0's fixed address on the test LAN (`10.77.0.40/24`, through the LAN's gateway);
    /// `None`: from the LAN's DHCP server.
    pub static_address: Option<String>,
}

/// The `cluster.ron` an administrator writes for `hosts`, with the cluster's `secret`.
pub fn cluster_config(name: &str, secret: &str, hosts: &[ConfiguredHost]) -> String {
    cluster_config_with(name, secret, hosts, &[])
}

/// [`cluster_config`] with more of the configuration's fields, each `field: value` in RON
/// (`"domain: Some(\"lab.test\")"`, `"users: [User(name: \"ops\")]"`).
pub fn cluster_config_with(
    name: &str,
    secret: &str,
    hosts: &[ConfiguredHost],
    fields: &[String],
) -> String {
    let hosts: Vec<String> = hosts
        .iter()
        .map(|host| {
            let macs = host
                .mac
                .map(|mac| format!(", macs: [\"{mac}\"]"))
                .unwrap_or_default();
            let network = host
                .static_address
                .as_ref()
                .map(|address| {
                    format!(
                        ", network: Some(Static(address: {address:?}, gateway: Some(\"{}\")))",
                        crate::lan::GATEWAY
                    )
                })
                .unwrap_or_default();
            format!(
                "        Host(serial: {:?}, hostname: {:?}{macs}{network}),",
                host.serial, host.hostname
            )
        })
        .collect();
    let fields: String = fields.iter().map(|f| format!("    {f},\n")).collect();
    format!(
        "Cluster(\n    name: {name:?},\n    secret: {secret:?},\n    hosts: [\n{}\n    ],\n{fields})\n",
        hosts.join("\n")
    )
}

/// The image's configuration could not be read or replaced.
#[derive(Debug, thiserror::Error)]
pub enum ConfigImageError {
    /// A file could not be copied out of the image.
    #[error(transparent)]
    Read(#[from] ImageReadError),
    /// A file could not be written into the image.
    #[error(transparent)]
    Write(#[from] ImageWriteError),
    /// A local file could not be read or written.
    #[error("cannot use {path}: {source}")]
    Local {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The image's configuration is not valid.
    #[error("the image's configuration is not valid: {0}")]
    Invalid(pxen::config::ConfigErrors),
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigImageError + '_ {
    move |source| ConfigImageError::Local {
        path: path.display().to_string(),
        source,
    }
}

/// The cluster secret of the configuration on `image` (an administrator who edits the hosts
/// keeps it: the drive's identity names the cluster by it); `work` is a scratch directory.
pub fn config_secret(image: &Path, work: &Path) -> Result<String, ConfigImageError> {
    let ron = work.join("image-cluster.ron");
    copy_out(image, "config/cluster.ron", &ron)?;
    let text = std::fs::read_to_string(&ron).map_err(local(&ron))?;
    let cluster = pxen::config::parse_cluster(&ron, &text).map_err(ConfigImageError::Invalid)?;
    Ok(cluster.secret)
}

/// Copies `image` to `copy` and writes `config` as its `config/cluster.ron`, the way an
/// administrator edits a drive (mtools, no mounting); `work` is a scratch directory.
pub fn with_config(
    image: &Path,
    copy: &Path,
    config: &str,
    work: &Path,
) -> Result<(), ConfigImageError> {
    std::fs::copy(image, copy).map_err(local(copy))?;
    let ron = work.join("new-cluster.ron");
    std::fs::write(&ron, config).map_err(local(&ron))?;
    copy_in(copy, &ron, "config/cluster.ron")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_written_is_valid_and_names_every_host() {
        let hosts = [
            ConfiguredHost {
                serial: "S0".into(),
                hostname: "zero".into(),
                mac: None,
                static_address: None,
            },
            ConfiguredHost {
                serial: "S1".into(),
                hostname: "one".into(),
                mac: Some(MacAddr::new([0x52, 0x54, 0, 0, 0, 1])),
                static_address: Some("10.77.0.40/24".into()),
            },
        ];
        let fields = ["domain: Some(\"lab.test\")".to_string()];
        let text = cluster_config_with("lab", "a-secret-of-enough-length", &hosts, &fields);
        let cluster = pxen::config::parse_cluster(Path::new("cluster.ron"), &text).unwrap();
        assert_eq!(cluster.name, "lab");
        assert_eq!(cluster.secret, "a-secret-of-enough-length");
        assert_eq!(cluster.hostname_for_serial("S0"), Some("zero"));
        assert_eq!(
            cluster.wake_macs(),
            [MacAddr::new([0x52, 0x54, 0, 0, 0, 1])]
        );
        assert_eq!(cluster.domain.as_deref(), Some("lab.test"));
        assert_eq!(
            cluster.addressing_of(&cluster.hosts[1]),
            &pxen::config::Addressing::Static {
                address: "10.77.0.40/24".into(),
                gateway: Some("10.77.0.2".into())
            }
        );
    }
}
