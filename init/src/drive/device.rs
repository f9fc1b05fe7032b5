//! The facts that bind a drive to its physical device, read from sysfs and the disk's first
//! sector: which disk holds the partition, the disk's hardware identity ([`DeviceId`]), and
//! the partition's UUID.
//!
//! sysfs shapes this code relies on (Linux 6.1), e.g. for QEMU's `usb-storage`:
//! `/sys/class/block/sdb1` links to `…/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb/sdb1`
//! (a partition is a directory inside its disk's, with a `partition` file holding its number);
//! `/sys/class/block/sdb/device` links to the SCSI device `…/6:0:0:0`, whose ancestors are the
//! USB interface `2-1:1.0` and the USB device `2-1`, the first directory up with an
//! `idVendor` file, whose `serial` file is the iSerialNumber.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::identity::DeviceId;

/// Offset of the 4-byte disk signature in an MBR.
const MBR_SIGNATURE_AT: usize = 440;

/// What is known about the device a PXEN partition is on; what a binding records and a
/// classification compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// The disk holding the partition, e.g. `sdb` (the partition itself when it has no
    /// partition table around it).
    pub disk: String,
    /// The disk's hardware identity, if it has one that can be read.
    pub device: Option<DeviceId>,
    /// The partition's UUID (MBR: `<signature>-<number>`), if the disk has an MBR with a
    /// signature.
    pub partition_uuid: Option<String>,
}

/// Reads the facts of partition `partition` (e.g. `sdb1`) from `sys` (`/sys`) and the disk's
/// first sector from `dev` (`/dev`). What cannot be read is `None`, and logged.
pub fn device_facts(sys: &Path, dev: &Path, partition: &str) -> DeviceFacts {
    let (disk, number) = match (
        partition_parent(sys, partition),
        partition_number(sys, partition),
    ) {
        (Some(disk), Some(number)) => (disk, Some(number)),
        // A file system on the whole disk ("superfloppy"): no partition table, no UUID.
        _ => (partition.to_owned(), None),
    };
    let device = device_id(sys, &disk);
    if device.is_none() {
        log::warn!("{disk} has no USB serial, WWN or disk serial that can be read from {}: it cannot be told apart from a copy of it", sys.display());
    }
    let partition_uuid = number.and_then(|number| {
        let sector = read_first_sector(&dev.join(&disk))?;
        partition_uuid(&sector, number)
    });
    DeviceFacts {
        disk,
        device,
        partition_uuid,
    }
}

/// The disk that holds partition `partition` (`sdb1` → `sdb`, `nvme0n1p1` → `nvme0n1`), or
/// `None` when `partition` is not a partition.
///
/// The kernel puts a partition's directory inside its disk's, so the disk is the parent
/// directory of the partition's real sysfs path; names are not parsed.
pub fn partition_parent(sys: &Path, partition: &str) -> Option<String> {
    let link = sys.join("class/block").join(partition);
    if !link.join("partition").is_file() {
        return None;
    }
    let real = std::fs::canonicalize(&link).ok()?;
    let parent = real.parent()?.file_name()?;
    Some(parent.to_string_lossy().into_owned())
}

/// The number of partition `partition` in its disk's table, from its sysfs `partition` file.
pub fn partition_number(sys: &Path, partition: &str) -> Option<u32> {
    let text =
        std::fs::read_to_string(sys.join("class/block").join(partition).join("partition")).ok()?;
    text.trim().parse().ok()
}

/// The hardware identity of disk `disk` (e.g. `sdb`), the best one it offers: the USB serial
/// for USB media, else the WWN, else the disk's own serial.
///
/// USB media without a serial get `None` rather than their SCSI `wwid`: behind a USB bridge
/// that is made from the vendor and model strings, the same on every stick of a model.
pub fn device_id(sys: &Path, disk: &str) -> Option<DeviceId> {
    let block = sys.join("class/block").join(disk);
    let device = std::fs::canonicalize(block.join("device")).ok()?;
    if let Some(usb) = usb_device_dir(sys, &device) {
        return read_attribute(&usb.join("serial")).map(|serial| DeviceId::Usb { serial });
    }
    let wwn = [block.join("wwid"), device.join("wwid"), device.join("wwn")]
        .iter()
        .find_map(|path| read_attribute(path));
    if let Some(wwn) = wwn {
        return Some(DeviceId::Wwn { wwn });
    }
    // NVMe controllers and virtio disks have a `serial` file; SCSI disks VPD page 0x80.
    [device.join("serial"), block.join("serial")]
        .iter()
        .find_map(|path| read_attribute(path))
        .or_else(|| vpd_pg80_serial(&std::fs::read(device.join("vpd_pg80")).ok()?))
        .map(|serial| DeviceId::DiskSerial { serial })
}

/// The USB device directory above `device`: the first ancestor with an `idVendor` file (the
/// interface below it has none; the hubs above it have their own, so the walk stops at the
/// first). `None` when the device is not on USB.
fn usb_device_dir(sys: &Path, device: &Path) -> Option<PathBuf> {
    let top = std::fs::canonicalize(sys).ok()?;
    device
        .ancestors()
        .take_while(|dir| dir.starts_with(&top) && *dir != top)
        .find(|dir| dir.join("idVendor").is_file())
        .map(Path::to_path_buf)
}

/// A sysfs text attribute, trimmed; `None` if missing, unreadable or blank.
fn read_attribute(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_owned())
}

/// The unit serial number in a SCSI VPD page 0x80 (header: peripheral byte, page code 0x80,
/// 2-byte big-endian length; then the serial, space-padded ASCII).
pub fn vpd_pg80_serial(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let serial = page.get(4..4 + len)?;
    let serial = String::from_utf8_lossy(serial);
    let serial = serial.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!serial.is_empty()).then(|| serial.to_owned())
}

/// The UUID of MBR partition `number` (from 1) as blkid shows `PARTUUID`: the disk signature
/// (4 little-endian bytes at offset 440) as 8 lowercase hex digits, `-`, the number as 2 hex
/// digits. `None` when `first_sector` is not an MBR or its signature is zero (unset).
pub fn partition_uuid(first_sector: &[u8], number: u32) -> Option<String> {
    if first_sector.len() < 512 || first_sector[510..512] != [0x55, 0xAA] || number == 0 {
        return None;
    }
    let bytes = first_sector.get(MBR_SIGNATURE_AT..MBR_SIGNATURE_AT + 4)?;
    let signature = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    (signature != 0).then(|| format!("{signature:08x}-{number:02x}"))
}

/// The first 512 bytes of a block device or image, if they can be read.
pub fn read_first_sector(path: &Path) -> Option<Vec<u8>> {
    let mut sector = vec![0; 512];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut sector))
        .map_err(|e| log::warn!("cannot read the first sector of {}: {e}", path.display()))
        .ok()?;
    Some(sector)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A sysfs of the shape Linux 6.1 gives QEMU's `usb-storage` on `qemu-xhci`.
    const USB_SCSI: &str =
        "devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0";
    /// A SATA disk on AHCI.
    const SATA_SCSI: &str = "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0";

    fn write(path: &Path, text: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Adds disk `disk` with partition `disk1` under the SCSI device `scsi`, with the
    /// relative links the kernel makes.
    fn add_disk(sys: &Path, scsi: &str, disk: &str) {
        let block = sys.join(scsi).join("block").join(disk);
        write(&block.join(format!("{disk}1/partition")), b"1\n");
        let scsi_name = Path::new(scsi).file_name().unwrap().to_str().unwrap();
        symlink(format!("../../../{scsi_name}"), block.join("device")).unwrap();
        std::fs::create_dir_all(sys.join("class/block")).unwrap();
        let up = "../../";
        symlink(
            format!("{up}{scsi}/block/{disk}"),
            sys.join("class/block").join(disk),
        )
        .unwrap();
        symlink(
            format!("{up}{scsi}/block/{disk}/{disk}1"),
            sys.join("class/block").join(format!("{disk}1")),
        )
        .unwrap();
    }

    fn usb_sysfs(stick_serial: Option<&str>) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        let hub = sys.join("devices/pci0000:00/0000:00:04.0/usb2");
        // The root hub has a vendor and a "serial" too (the controller's PCI address).
        write(&hub.join("idVendor"), b"1d6b\n");
        write(&hub.join("serial"), b"0000:00:04.0\n");
        write(&hub.join("2-1/idVendor"), b"46f4\n");
        if let Some(serial) = stick_serial {
            write(&hub.join("2-1/serial"), format!("{serial}\n").as_bytes());
        }
        write(&hub.join("2-1/2-1:1.0/bInterfaceClass"), b"08\n");
        write(
            &sys.join(USB_SCSI).join("wwid"),
            b"t10.QEMU    QEMU HARDDISK   \n",
        );
        add_disk(sys, USB_SCSI, "sdb");
        root
    }

    #[test]
    fn a_partition_belongs_to_the_disk_around_it() {
        let sysfs = usb_sysfs(Some("USB-HOST0"));
        assert_eq!(
            partition_parent(sysfs.path(), "sdb1").as_deref(),
            Some("sdb")
        );
        assert_eq!(partition_number(sysfs.path(), "sdb1"), Some(1));
        assert_eq!(
            partition_parent(sysfs.path(), "sdb"),
            None,
            "a disk is no partition"
        );
        assert_eq!(partition_parent(sysfs.path(), "sdz1"), None);
    }

    #[test]
    fn usb_media_are_known_by_the_stick_serial_not_the_hub_or_the_wwid() {
        let sysfs = usb_sysfs(Some("USB-HOST0"));
        assert_eq!(
            device_id(sysfs.path(), "sdb"),
            Some(DeviceId::Usb {
                serial: "USB-HOST0".into()
            })
        );
        let no_serial = usb_sysfs(None);
        assert_eq!(device_id(no_serial.path(), "sdb"), None);
    }

    #[test]
    fn other_disks_are_known_by_wwn_then_serial() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        add_disk(sys, SATA_SCSI, "sda");
        assert_eq!(device_id(sys, "sda"), None, "nothing to read");
        let mut page = vec![0x00, 0x80, 0x00, 0x0c];
        page.extend_from_slice(b"  S3Z9NB0K12");
        write(&sys.join(SATA_SCSI).join("vpd_pg80"), &page);
        assert_eq!(
            device_id(sys, "sda"),
            Some(DeviceId::DiskSerial {
                serial: "S3Z9NB0K12".into()
            })
        );
        write(&sys.join(SATA_SCSI).join("wwid"), b"naa.5000c500a1b2c3d4\n");
        assert_eq!(
            device_id(sys, "sda"),
            Some(DeviceId::Wwn {
                wwn: "naa.5000c500a1b2c3d4".into()
            })
        );
    }

    #[test]
    fn vpd_pages_are_checked() {
        assert_eq!(vpd_pg80_serial(&[0, 0x83, 0, 2, b'a', b'b']), None);
        assert_eq!(vpd_pg80_serial(&[0, 0x80, 0, 9, b'a']), None, "too short");
        assert_eq!(vpd_pg80_serial(&[0, 0x80, 0, 2, b' ', 0]), None, "blank");
        assert_eq!(
            vpd_pg80_serial(&[0, 0x80, 0, 2, b'a', b'b']).as_deref(),
            Some("ab")
        );
    }

    fn mbr(signature: u32) -> Vec<u8> {
        let mut sector = vec![0u8; 512];
        sector[440..444].copy_from_slice(&signature.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xAA;
        sector
    }

    #[test]
    fn partition_uuids_are_written_as_blkid_does() {
        assert_eq!(
            partition_uuid(&mbr(0x1a2b_3c4d), 1).as_deref(),
            Some("1a2b3c4d-01")
        );
        assert_eq!(
            partition_uuid(&mbr(0x0000_00ff), 12).as_deref(),
            Some("000000ff-0c")
        );
        assert_eq!(partition_uuid(&mbr(0), 1), None, "no signature");
        assert_eq!(partition_uuid(&mbr(7), 0), None, "partitions count from 1");
        let mut not_mbr = mbr(7);
        not_mbr[511] = 0;
        assert_eq!(partition_uuid(&not_mbr, 1), None);
        assert_eq!(partition_uuid(&[0u8; 100], 1), None);
    }

    #[test]
    fn facts_gather_disk_device_and_partition_uuid() {
        let sysfs = usb_sysfs(Some("USB-HOST0"));
        let dev = sysfs.path().join("dev");
        write(&dev.join("sdb"), &mbr(0xcafe_f00d));
        assert_eq!(
            device_facts(sysfs.path(), &dev, "sdb1"),
            DeviceFacts {
                disk: "sdb".into(),
                device: Some(DeviceId::Usb {
                    serial: "USB-HOST0".into()
                }),
                partition_uuid: Some("cafef00d-01".into()),
            }
        );
        // A file system on the whole disk: the disk is itself, and there is no UUID.
        let whole = device_facts(sysfs.path(), &dev, "sdb");
        assert_eq!(whole.disk, "sdb");
        assert_eq!(whole.partition_uuid, None);
    }
}
