//! Reading a kernel module's `.modinfo` section: the module's name and the modules it needs.
//!
//! `.modinfo` is a sequence of NUL-terminated `key=value` strings. `depends=` lists, comma
//! separated, the modules whose symbols this one uses; `softdep=` (e.g. `pre: realtek`) names
//! modules or aliases to load before (`pre:`) or after (`post:`) it.

use std::path::{Path, PathBuf};

/// Name of the ELF section holding the module information.
const MODINFO_SECTION: &str = ".modinfo";

/// Failures while reading a module's information.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module file could not be read.
    #[error("cannot read kernel module {path}: {source}")]
    Read {
        /// The module file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `.ko.zst` module could not be decompressed.
    #[error("cannot decompress kernel module {path}: {source}; is it a complete zstd file?")]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// The zstd error.
        source: std::io::Error,
    },
    /// The file is not an ELF object.
    #[error("kernel module {path} is not a valid ELF file: {source}; the module tree may be damaged, reinstall the kernel package")]
    BadElf {
        /// The module file.
        path: PathBuf,
        /// The parser's error.
        source: goblin::error::Error,
    },
    /// The ELF object has no `.modinfo` section, so it is not a kernel module.
    #[error("{path} has no .modinfo section: it is not a Linux kernel module")]
    NoModinfo {
        /// The file.
        path: PathBuf,
    },
    /// The module is compressed in a format this crate does not read.
    #[error("kernel module {path} is compressed in a format PXEN does not read (only .ko and .ko.zst); decompress it (e.g. with `xz -d`) first")]
    UnsupportedCompression {
        /// The module file.
        path: PathBuf,
    },
}

/// What a module declares about the modules it needs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// Modules whose symbols it uses (`depends=`), in the order listed, names normalised.
    pub depends: Vec<String>,
    /// Modules or aliases to load before it (`softdep=pre:`), names normalised.
    pub softdep_pre: Vec<String>,
}

/// The name the kernel gives a module: the file name without `.ko`/`.ko.zst`/`.ko.xz`,
/// with `-` replaced by `_` (the kernel treats both as the same character).
pub fn module_name(file_name: &str) -> Option<String> {
    let stem = [".ko", ".ko.zst", ".ko.xz"]
        .iter()
        .find_map(|suffix| file_name.strip_suffix(suffix))?;
    Some(normalise(stem))
}

/// Replaces `-` with `_`, the spelling the kernel uses for module names.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses the content of a `.modinfo` section.
pub fn parse(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for record in section.split(|&b| b == 0) {
        let record = String::from_utf8_lossy(record);
        if let Some(list) = record.strip_prefix("depends=") {
            info.depends
                .extend(list.split(',').filter(|n| !n.is_empty()).map(normalise));
        } else if let Some(spec) = record.strip_prefix("softdep=") {
            info.softdep_pre.extend(softdep_pre(spec));
        }
    }
    info
}

/// The module names after `pre:` in a softdep value such as `pre: a b post: c`.
fn softdep_pre(spec: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_pre = false;
    for word in spec.split_whitespace() {
        match word {
            "pre:" => in_pre = true,
            "post:" => in_pre = false,
            name if in_pre => names.push(normalise(name)),
            _ => {}
        }
    }
    names
}

/// Reads a module file, decompressing `.ko.zst`, and returns the uncompressed ELF bytes.
pub fn read_module(path: &Path) -> Result<Vec<u8>, Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    if name.ends_with(".ko.zst") {
        zstd::decode_all(bytes.as_slice()).map_err(|source| Error::Decompress {
            path: path.to_owned(),
            source,
        })
    } else if name.ends_with(".ko") {
        Ok(bytes)
    } else {
        Err(Error::UnsupportedCompression {
            path: path.to_owned(),
        })
    }
}

/// Parses the `.modinfo` section of an uncompressed module read from `path`.
pub fn from_elf(path: &Path, elf_bytes: &[u8]) -> Result<ModInfo, Error> {
    let elf = goblin::elf::Elf::parse(elf_bytes).map_err(|source| Error::BadElf {
        path: path.to_owned(),
        source,
    })?;
    let section = elf
        .section_headers
        .iter()
        .find(|header| elf.shdr_strtab.get_at(header.sh_name) == Some(MODINFO_SECTION))
        .ok_or_else(|| Error::NoModinfo {
            path: path.to_owned(),
        })?;
    let bad_range = || Error::BadElf {
        path: path.to_owned(),
        source: goblin::error::Error::Malformed(format!(
            "section {MODINFO_SECTION} lies outside the file"
        )),
    };
    let range = section.file_range().ok_or_else(bad_range)?;
    let bytes = elf_bytes.get(range).ok_or_else(bad_range)?;
    Ok(parse(bytes))
}

/// Builds a minimal ELF64 relocatable file holding one `.modinfo` section, for tests.
#[cfg(test)]
pub(crate) fn test_elf(modinfo: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const SHDR: usize = 64;
    let shstrtab = b"\0.modinfo\0.shstrtab\0";
    let modinfo_offset = EHDR;
    let shstrtab_offset = modinfo_offset + modinfo.len();
    let shdr_offset = (shstrtab_offset + shstrtab.len()).next_multiple_of(8);
    let mut elf = vec![0u8; shdr_offset + 3 * SHDR];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little endian
    elf[6] = 1; // ELF version
    elf[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[40..48].copy_from_slice(&(shdr_offset as u64).to_le_bytes());
    elf[52..54].copy_from_slice(&(EHDR as u16).to_le_bytes());
    elf[58..60].copy_from_slice(&(SHDR as u16).to_le_bytes());
    elf[60..62].copy_from_slice(&3u16.to_le_bytes()); // section count
    elf[62..64].copy_from_slice(&2u16.to_le_bytes()); // index of .shstrtab
    elf[modinfo_offset..shstrtab_offset].copy_from_slice(modinfo);
    elf[shstrtab_offset..shstrtab_offset + shstrtab.len()].copy_from_slice(shstrtab);
    // (name offset in .shstrtab, type, file offset, size) of sections 1 and 2.
    let sections = [
        (1u32, 1u32, modinfo_offset, modinfo.len()), // .modinfo, SHT_PROGBITS
        (10, 3, shstrtab_offset, shstrtab.len()),    // .shstrtab, SHT_STRTAB
    ];
    for (index, (name, kind, offset, size)) in sections.into_iter().enumerate() {
        let at = shdr_offset + (index + 1) * SHDR;
        elf[at..at + 4].copy_from_slice(&name.to_le_bytes());
        elf[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
        elf[at + 24..at + 32].copy_from_slice(&(offset as u64).to_le_bytes());
        elf[at + 32..at + 40].copy_from_slice(&(size as u64).to_le_bytes());
        elf[at + 48..at + 56].copy_from_slice(&1u64.to_le_bytes()); // alignment
    }
    elf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_suffixes_removed() {
        assert_eq!(
            module_name("usb-storage.ko").as_deref(),
            Some("usb_storage")
        );
        assert_eq!(
            module_name("nls_iso8859-1.ko.zst").as_deref(),
            Some("nls_iso8859_1")
        );
        assert_eq!(module_name("e1000e.ko.xz").as_deref(), Some("e1000e"));
        assert_eq!(module_name("modules.order"), None);
    }

    #[test]
    fn depends_and_softdep_pre_are_parsed() {
        let section = b"license=GPL\0depends=usbcore,scsi_mod,xhci-hcd\0softdep=pre: realtek crypto-crc32c post: other\0name=x\0";
        let info = parse(section);
        assert_eq!(info.depends, ["usbcore", "scsi_mod", "xhci_hcd"]);
        assert_eq!(info.softdep_pre, ["realtek", "crypto_crc32c"]);
    }

    #[test]
    fn empty_depends_gives_no_dependency() {
        assert_eq!(parse(b"depends=\0"), ModInfo::default());
    }

    #[test]
    fn modinfo_is_read_from_an_elf_file() {
        let elf = test_elf(b"depends=a,b-c\0");
        let info = from_elf(Path::new("t.ko"), &elf).unwrap();
        assert_eq!(info.depends, ["a", "b_c"]);
    }

    #[test]
    fn non_elf_file_is_rejected_with_its_path() {
        let error =
            from_elf(Path::new("bad.ko"), b"not an elf file at all, really not").unwrap_err();
        assert!(matches!(error, Error::BadElf { .. }), "{error}");
        assert!(error.to_string().contains("bad.ko"));
    }

    #[test]
    fn compressed_module_is_decompressed_and_xz_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let zst = dir.path().join("m.ko.zst");
        std::fs::write(&zst, zstd::encode_all(&b"ELF"[..], 3).unwrap()).unwrap();
        assert_eq!(read_module(&zst).unwrap(), b"ELF");
        let xz = dir.path().join("m.ko.xz");
        std::fs::write(&xz, b"x").unwrap();
        assert!(matches!(
            read_module(&xz),
            Err(Error::UnsupportedCompression { .. })
        ));
    }
}
