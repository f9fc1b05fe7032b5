//! The "newc" cpio format, the only format the Linux kernel unpacks as an initramfs: a writer
//! (for the initramfs builder, and for the configuration host0 appends to the initramfs it
//! serves) and a checked reader.
//!
//! An archive is a sequence of entries, each a 110-byte ASCII header, the NUL-terminated name
//! and the data, name and data each padded with zeros to a multiple of 4 bytes, ended by an
//! entry named `TRAILER!!!`. Every number in the header is 8 hexadecimal digits. The writer
//! sets mtime to 0, uid and gid to 0 unless an `_owned` method gives them, and numbers inodes
//! 1, 2, 3 ... in writing order, so the same entries written in the same order give
//! byte-identical archives.

use std::io::{self, Read, Write};

/// The magic number of a newc header without checksums.
const MAGIC: &str = "070701";
/// Name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";
/// File type bits of `st_mode` (see inode(7)).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFLNK: u32 = 0o120_000;
/// Permission bits allowed in the `mode` argument of the writer's methods.
const PERMISSION_BITS: u32 = 0o7777;

/// Failures while writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing to the underlying output failed (disk full, broken pipe, compressor error).
    #[error("cannot write cpio entry {name:?} to the output: {source}; check free space where the initramfs is written")]
    Write {
        /// The entry being written.
        name: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading an entry's data from its source failed.
    #[error("cannot read the data of cpio entry {name:?}: {source}")]
    Read {
        /// The entry being written.
        name: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The source of a file gave fewer or more bytes than announced in its header.
    #[error("cpio entry {name:?}: its source gave {actual} bytes but {expected} were announced; was the file changed while the initramfs was being built?")]
    SizeMismatch {
        /// The entry being written.
        name: String,
        /// Size written in the header.
        expected: u64,
        /// Bytes the source actually gave.
        actual: u64,
    },
    /// A newc header stores sizes in 32 bits.
    #[error("cpio entry {name:?} is {size} bytes; the newc format holds at most 4 GiB - 1 per file: split this layer or make it smaller")]
    TooLarge {
        /// The entry being written.
        name: String,
        /// Its size.
        size: u64,
    },
    /// Names must be relative, non-empty and free of NUL bytes.
    #[error(
        "invalid cpio entry name {name:?}: it must be a non-empty relative path without NUL bytes"
    )]
    BadName {
        /// The rejected name.
        name: String,
    },
}

/// The metadata of one entry, as written in its header.
struct Header<'a> {
    name: &'a str,
    inode: u32,
    mode: u32,
    uid_gid: (u32, u32),
    nlink: u32,
    size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

/// Writes a newc archive to `W`, counting the bytes written.
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
}

impl<W: Write> Writer<W> {
    /// Starts an empty archive on `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            next_inode: 1,
        }
    }

    /// Adds a directory. Its parent must have been added before (the kernel does not create
    /// missing parents).
    pub fn directory(&mut self, name: &str, mode: u32) -> Result<(), Error> {
        self.directory_owned(name, mode, (0, 0))
    }

    /// Adds a directory owned by `uid_gid` (user, group).
    pub fn directory_owned(
        &mut self,
        name: &str,
        mode: u32,
        uid_gid: (u32, u32),
    ) -> Result<(), Error> {
        let header = Header {
            name,
            inode: self.take_inode(),
            mode: S_IFDIR | (mode & PERMISSION_BITS),
            uid_gid,
            nlink: 2,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.header(&header)
    }

    /// Adds a character device node, e.g. `dev/console` (5, 1). This needs no privilege: a
    /// device node in a cpio archive is only a header.
    pub fn char_device(
        &mut self,
        name: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), Error> {
        let header = Header {
            name,
            inode: self.take_inode(),
            mode: S_IFCHR | (mode & PERMISSION_BITS),
            uid_gid: (0, 0),
            nlink: 1,
            size: 0,
            rdev_major: major,
            rdev_minor: minor,
        };
        self.header(&header)
    }

    /// Adds a regular file of `size` bytes read from `data`, which must give exactly that many.
    pub fn file(
        &mut self,
        name: &str,
        mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), Error> {
        self.file_owned(name, mode, (0, 0), size, data)
    }

    /// Adds a regular file owned by `uid_gid` (user, group), of `size` bytes read from `data`.
    pub fn file_owned(
        &mut self,
        name: &str,
        mode: u32,
        uid_gid: (u32, u32),
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), Error> {
        let size32 = u32::try_from(size).map_err(|_| Error::TooLarge {
            name: name.to_owned(),
            size,
        })?;
        let header = Header {
            name,
            inode: self.take_inode(),
            mode: S_IFREG | (mode & PERMISSION_BITS),
            uid_gid,
            nlink: 1,
            size: size32,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.header(&header)?;
        let copied = self.copy_data(name, &mut data.take(size + 1))?;
        if copied != size {
            return Err(Error::SizeMismatch {
                name: name.to_owned(),
                expected: size,
                actual: copied,
            });
        }
        self.pad(name)
    }

    /// Adds a regular file holding `data`.
    pub fn file_bytes(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<(), Error> {
        // A slice's length always fits in u64 on the platforms Rust supports (usize <= 64 bits).
        let size = data.len() as u64;
        self.file(name, mode, size, &mut { data })
    }

    /// Adds a symbolic link to `target` owned by `uid_gid`; like the kernel's, its
    /// permission bits are 0777 and its data is the target.
    pub fn symlink_owned(
        &mut self,
        name: &str,
        uid_gid: (u32, u32),
        target: &str,
    ) -> Result<(), Error> {
        let size = u32::try_from(target.len()).map_err(|_| Error::TooLarge {
            name: name.to_owned(),
            size: target.len() as u64,
        })?;
        let header = Header {
            name,
            inode: self.take_inode(),
            mode: S_IFLNK | 0o777,
            uid_gid,
            nlink: 1,
            size,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.header(&header)?;
        self.write_all(name, target.as_bytes())?;
        self.pad(name)
    }

    /// Writes the trailer entry; returns the output and the archive's total size in bytes.
    pub fn finish(mut self) -> Result<(W, u64), Error> {
        let trailer = Header {
            name: TRAILER,
            inode: 0,
            mode: 0,
            uid_gid: (0, 0),
            nlink: 1,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        };
        self.header(&trailer)?;
        self.out.flush().map_err(|source| Error::Write {
            name: TRAILER.to_owned(),
            source,
        })?;
        Ok((self.out, self.written))
    }

    /// Returns a new inode number: every entry is its own file (no hard links).
    fn take_inode(&mut self) -> u32 {
        let inode = self.next_inode;
        self.next_inode += 1;
        inode
    }

    /// Writes a header and the padded name.
    fn header(&mut self, header: &Header<'_>) -> Result<(), Error> {
        check_name(header.name)?;
        let name_size = header.name.len() + 1;
        let text = format!(
            "{MAGIC}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            header.inode,
            header.mode,
            header.uid_gid.0,
            header.uid_gid.1,
            header.nlink,
            0, // mtime: fixed, for reproducible archives
            header.size,
            0, // major of the device holding the file: meaningless in an archive
            0, // minor of the same
            header.rdev_major,
            header.rdev_minor,
            name_size,
            0, // checksum: unused by the "070701" format
        );
        self.write_all(header.name, text.as_bytes())?;
        self.write_all(header.name, header.name.as_bytes())?;
        self.write_all(header.name, &[0])?;
        self.pad(header.name)
    }

    /// Pads the output with zeros to the next multiple of 4 bytes.
    fn pad(&mut self, name: &str) -> Result<(), Error> {
        let padding = padding_for(self.written);
        self.write_all(name, &[0u8; 3][..padding])
    }

    /// Copies `data` to the output until its end; returns the number of bytes copied.
    /// `file` reads one byte more than announced through here, so a source that grew since
    /// its size was taken is detected too.
    fn copy_data(&mut self, name: &str, data: &mut dyn Read) -> Result<u64, Error> {
        let mut buffer = vec![0u8; 1 << 16];
        let mut copied = 0;
        loop {
            let count = match data.read(&mut buffer) {
                Ok(0) => return Ok(copied),
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Read {
                        name: name.to_owned(),
                        source,
                    })
                }
            };
            self.write_all(name, &buffer[..count])?;
            copied += count as u64;
        }
    }

    /// Writes `bytes`, counting them.
    fn write_all(&mut self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes).map_err(|source| Error::Write {
            name: name.to_owned(),
            source,
        })?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Zero bytes needed after `offset` to reach a multiple of 4.
fn padding_for(offset: u64) -> usize {
    // The result is 0..=3, so the cast cannot truncate.
    ((4 - offset % 4) % 4) as usize
}

/// Rejects names the kernel would misplace or could not read.
fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.starts_with('/') || name.contains('\0') {
        return Err(Error::BadName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// One entry read back from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    /// The path, as stored.
    pub name: String,
    /// The inode number.
    pub inode: u32,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner and group.
    pub uid_gid: (u32, u32),
    /// Modification time (seconds since the epoch).
    pub mtime: u32,
    /// Number of links.
    pub nlink: u32,
    /// Device number of a device node (major, minor).
    pub rdev: (u32, u32),
    /// The data of a regular file (empty for others).
    pub data: Vec<u8>,
}

/// An archive that is not valid newc.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid newc cpio archive at byte {offset}: {what}")]
pub struct ReadError {
    /// Where the problem is.
    pub offset: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// Reads every entry of one newc archive, up to and including its trailer, which must end
/// `archive` (padding zeros aside, as the kernel allows between concatenated archives).
pub fn read_archive(archive: &[u8]) -> Result<Vec<ReadEntry>, ReadError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    loop {
        let fail = |what| ReadError { offset, what };
        let header = archive
            .get(offset..offset + 110)
            .ok_or(fail("truncated header"))?;
        if &header[..6] != MAGIC.as_bytes() {
            return Err(fail("bad magic (not 070701)"));
        }
        let field = |index: usize| -> Result<u32, ReadError> {
            let start = 6 + index * 8;
            std::str::from_utf8(&header[start..start + 8])
                .ok()
                .and_then(|text| u32::from_str_radix(text, 16).ok())
                .ok_or(fail("a header field is not 8 hex digits"))
        };
        let name_size = field(11)? as usize;
        let name_end = offset + 110 + name_size;
        let name_bytes = archive
            .get(offset + 110..name_end)
            .ok_or(fail("truncated name"))?;
        let name = match name_bytes.split_last() {
            Some((0, name)) => std::str::from_utf8(name).map_err(|_| fail("name is not UTF-8"))?,
            _ => return Err(fail("name is not NUL-terminated")),
        };
        let data_start = name_end + padding_for(name_end as u64);
        let size = field(6)? as usize;
        let data = archive
            .get(data_start..data_start + size)
            .ok_or(fail("truncated data"))?;
        let done = name == TRAILER;
        entries.push(ReadEntry {
            name: name.to_owned(),
            inode: field(0)?,
            mode: field(1)?,
            uid_gid: (field(2)?, field(3)?),
            nlink: field(4)?,
            mtime: field(5)?,
            rdev: (field(9)?, field(10)?),
            data: data.to_vec(),
        });
        offset = data_start + size;
        offset += padding_for(offset as u64);
        if done {
            if archive
                .get(offset..)
                .is_some_and(|rest| rest.iter().all(|&b| b == 0))
            {
                return Ok(entries);
            }
            return Err(ReadError {
                offset,
                what: "bytes after the trailer",
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One parsed header: (name, mode, nlink, size, rdev major, rdev minor, inode, data).
    pub(crate) type Parsed = (String, u32, u32, u32, u32, u32, u32, Vec<u8>);

    /// Parses an archive back with [`read_archive`], checking the fixed metadata the writer
    /// promises (owner, group and time zero).
    pub(crate) fn parse(archive: &[u8]) -> Vec<Parsed> {
        let entries = read_archive(archive).unwrap();
        entries
            .into_iter()
            .map(|e| {
                assert_eq!(
                    (e.uid_gid, e.mtime),
                    ((0, 0), 0),
                    "fixed metadata of {}",
                    e.name
                );
                let size = e.data.len() as u32;
                (
                    e.name, e.mode, e.nlink, size, e.rdev.0, e.rdev.1, e.inode, e.data,
                )
            })
            .collect()
    }

    #[test]
    fn the_reader_names_what_is_wrong_and_where() {
        let good = sample();
        assert!(read_archive(&good).is_ok());
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 512]);
        assert!(
            read_archive(&padded).is_ok(),
            "zero padding after the trailer is allowed"
        );
        let cases = [
            (
                good[..50].to_vec(),
                ReadError {
                    offset: 0,
                    what: "truncated header",
                },
            ),
            (
                [b"070702".as_slice(), &good[6..]].concat(),
                ReadError {
                    offset: 0,
                    what: "bad magic (not 070701)",
                },
            ),
            (
                [&good[..], b"junk"].concat(),
                ReadError {
                    offset: good.len(),
                    what: "bytes after the trailer",
                },
            ),
        ];
        for (archive, expected) in &cases {
            assert_eq!(read_archive(archive).unwrap_err(), *expected);
        }
        assert!(
            read_archive(&good[..good.len() - 120]).is_err(),
            "a cut archive is refused"
        );
    }

    fn sample() -> Vec<u8> {
        let mut writer = Writer::new(Vec::new());
        writer.directory("dev", 0o755).unwrap();
        writer.char_device("dev/console", 0o600, 5, 1).unwrap();
        writer.file_bytes("init", 0o755, b"#!/bin/sh\n").unwrap();
        writer.file_bytes("a", 0o644, b"").unwrap();
        writer.file_bytes("odd-name", 0o644, b"12345").unwrap();
        let (archive, total) = writer.finish().unwrap();
        assert_eq!(total, archive.len() as u64);
        archive
    }

    #[test]
    fn entries_read_back_with_types_sizes_and_alignment() {
        let entries = parse(&sample());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["dev", "dev/console", "init", "a", "odd-name", TRAILER]
        );
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
        assert_eq!(
            (entries[1].1, entries[1].4, entries[1].5),
            (S_IFCHR | 0o600, 5, 1)
        );
        assert_eq!(entries[2].1, S_IFREG | 0o755);
        assert_eq!(entries[2].7, b"#!/bin/sh\n");
        assert_eq!(entries[4].7, b"12345");
        let inodes: Vec<u32> = entries.iter().map(|e| e.6).collect();
        assert_eq!(inodes, [1, 2, 3, 4, 5, 0]);
    }

    #[test]
    fn same_entries_give_identical_bytes() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn gnu_cpio_lists_and_extracts_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cpio");
        std::fs::write(&path, sample()).unwrap();
        let listing = std::process::Command::new("cpio")
            .args(["-t", "-F"])
            .arg(&path)
            .output();
        // GNU cpio is optional on a developer machine; the byte-level tests above still run.
        let Ok(listing) = listing else { return };
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        let names = String::from_utf8(listing.stdout).unwrap();
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            ["dev", "dev/console", "init", "a", "odd-name"]
        );
        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        let extract = std::process::Command::new("cpio")
            .args([
                "-i",
                "--quiet",
                "--no-absolute-filenames",
                "--nonmatching",
                "-F",
            ])
            .arg(&path)
            .arg("dev/console")
            .current_dir(&out)
            .output()
            .unwrap();
        assert!(
            extract.status.success(),
            "{}",
            String::from_utf8_lossy(&extract.stderr)
        );
        assert_eq!(std::fs::read(out.join("odd-name")).unwrap(), b"12345");
    }

    #[test]
    fn short_source_is_reported() {
        let mut writer = Writer::new(Vec::new());
        let error = writer.file("f", 0o644, 10, &mut &b"abc"[..]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::SizeMismatch {
                    expected: 10,
                    actual: 3,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn long_source_is_reported() {
        let mut writer = Writer::new(Vec::new());
        let error = writer.file("f", 0o644, 2, &mut &b"abc"[..]).unwrap_err();
        assert!(
            matches!(
                error,
                Error::SizeMismatch {
                    expected: 2,
                    actual: 3,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn absolute_and_empty_names_are_rejected() {
        let mut writer = Writer::new(Vec::new());
        assert!(matches!(
            writer.directory("/dev", 0o755),
            Err(Error::BadName { .. })
        ));
        assert!(matches!(
            writer.directory("", 0o755),
            Err(Error::BadName { .. })
        ));
    }

    #[test]
    fn padding_reaches_the_next_multiple_of_four() {
        let pads: Vec<usize> = (0..8).map(padding_for).collect();
        assert_eq!(pads, [0, 3, 2, 1, 0, 3, 2, 1]);
    }
}
