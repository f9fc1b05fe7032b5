//! TFTP packets: a typed view over the bytes ([`Packet`]) and their parsed form ([`Repr`]).
//!
//! The layouts (RFC 1350, options RFC 2347), all integers big-endian:
//!
//! ```text
//! RRQ/WRQ  | 01/02 | filename | 0 | mode | 0 | opt1 | 0 | value1 | 0 | ...
//! DATA     | 03 | block | data (0 to blksize bytes)
//! ACK      | 04 | block
//! ERROR    | 05 | code | message | 0
//! OACK     | 06 | opt1 | 0 | value1 | 0 | ...
//! ```
//!
//! Everything here comes from the network: parsing returns an error for every malformed
//! packet and never panics. Strings must be UTF-8 (filenames of boot files are ASCII).
//! Option names and values are kept as sent; their meaning is decided by
//! [`super::options`].

/// A TFTP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Read request (1).
    ReadRequest,
    /// Write request (2).
    WriteRequest,
    /// A block of data (3).
    Data,
    /// Acknowledgement of a block (4).
    Ack,
    /// An error, which ends the transfer (5).
    Error,
    /// Option acknowledgement (6, RFC 2347).
    OptionAck,
}

impl Opcode {
    /// The opcode of a number, if TFTP defines one.
    pub fn from_u16(value: u16) -> Option<Opcode> {
        Some(match value {
            1 => Opcode::ReadRequest,
            2 => Opcode::WriteRequest,
            3 => Opcode::Data,
            4 => Opcode::Ack,
            5 => Opcode::Error,
            6 => Opcode::OptionAck,
            _ => return None,
        })
    }

    /// The number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            Opcode::ReadRequest => 1,
            Opcode::WriteRequest => 2,
            Opcode::Data => 3,
            Opcode::Ack => 4,
            Opcode::Error => 5,
            Opcode::OptionAck => 6,
        }
    }
}

/// The error codes of an ERROR packet (RFC 1350, code 8 from RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    NotDefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTransferId,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: the options were refused.
    OptionRefused,
    /// Any other number.
    Other(u16),
}

impl ErrorCode {
    /// The code of a number.
    pub fn from_u16(value: u16) -> ErrorCode {
        match value {
            0 => ErrorCode::NotDefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            other => ErrorCode::Other(other),
        }
    }

    /// The number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::NotDefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionRefused => 8,
            ErrorCode::Other(other) => other,
        }
    }
}

/// A packet that is not valid TFTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than its fixed header.
    #[error("a TFTP {what} needs at least {needed} bytes, the packet has {len}")]
    TooShort {
        /// The packet kind whose header did not fit.
        what: &'static str,
        /// The header's size.
        needed: usize,
        /// The packet's size.
        len: usize,
    },
    /// An opcode TFTP does not define.
    #[error("unknown TFTP opcode {opcode} (known: 1 RRQ, 2 WRQ, 3 DATA, 4 ACK, 5 ERROR, 6 OACK)")]
    UnknownOpcode {
        /// The opcode received.
        opcode: u16,
    },
    /// A string field without its terminating NUL byte.
    #[error("the {field} of a TFTP packet is not terminated by a NUL byte")]
    Unterminated {
        /// Which field.
        field: &'static str,
    },
    /// A string field that is not UTF-8.
    #[error("the {field} of a TFTP packet is not valid UTF-8")]
    NotUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// An option name without its value.
    #[error("the TFTP option {name:?} has no value")]
    OptionWithoutValue {
        /// The option's name.
        name: String,
    },
    /// The buffer given to [`Repr::emit`] cannot hold the packet.
    #[error("a buffer of {len} bytes cannot hold this {needed}-byte TFTP packet")]
    BufferTooSmall {
        /// The buffer's size.
        len: usize,
        /// The packet's size.
        needed: usize,
    },
}

/// The size of the opcode field.
const OPCODE_LEN: usize = 2;
/// The size of the opcode and block number (or error code) fields of DATA, ACK and ERROR.
pub const HEADER_LEN: usize = 4;

/// A read-only or read-write view of a TFTP packet's bytes.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    /// The packet's bytes.
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view that has not been checked: accessors may panic on a short buffer. Use
    /// [`Packet::new_checked`] for bytes from the network.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view of a packet whose opcode is known and whose fixed header fits, so that every
    /// accessor of its kind is safe to call.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the opcode and the fixed header's length.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < OPCODE_LEN {
            return Err(WireError::TooShort {
                what: "packet",
                needed: OPCODE_LEN,
                len,
            });
        }
        let needed = match self.opcode()? {
            Opcode::ReadRequest | Opcode::WriteRequest | Opcode::OptionAck => OPCODE_LEN,
            Opcode::Data | Opcode::Ack | Opcode::Error => HEADER_LEN,
        };
        if len < needed {
            return Err(WireError::TooShort {
                what: self.kind(),
                needed,
                len,
            });
        }
        Ok(())
    }

    /// The opcode (the buffer must hold at least 2 bytes).
    pub fn opcode(&self) -> Result<Opcode, WireError> {
        let raw = self.read_u16(0);
        Opcode::from_u16(raw).ok_or(WireError::UnknownOpcode { opcode: raw })
    }

    /// The block number of a DATA or ACK packet.
    pub fn block_number(&self) -> u16 {
        self.read_u16(OPCODE_LEN)
    }

    /// The error code of an ERROR packet.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u16(self.read_u16(OPCODE_LEN))
    }

    /// What follows the fixed header: the data of DATA, the message of ERROR, the strings of
    /// a request or OACK, nothing for ACK (or whatever a client padded it with).
    pub fn payload(&self) -> &[u8] {
        let bytes = self.buffer.as_ref();
        match self.opcode() {
            Ok(Opcode::ReadRequest | Opcode::WriteRequest | Opcode::OptionAck) => {
                &bytes[OPCODE_LEN..]
            }
            _ => &bytes[HEADER_LEN..],
        }
    }

    /// Unwraps the view.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read_u16(&self, at: usize) -> u16 {
        let bytes = self.buffer.as_ref();
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    }

    fn kind(&self) -> &'static str {
        match self.opcode() {
            Ok(Opcode::ReadRequest) => "read request",
            Ok(Opcode::WriteRequest) => "write request",
            Ok(Opcode::Data) => "DATA packet",
            Ok(Opcode::Ack) => "ACK packet",
            Ok(Opcode::Error) => "ERROR packet",
            Ok(Opcode::OptionAck) => "OACK packet",
            Err(_) => "packet",
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the opcode.
    pub fn set_opcode(&mut self, opcode: Opcode) {
        self.buffer.as_mut()[..OPCODE_LEN].copy_from_slice(&opcode.to_u16().to_be_bytes());
    }

    /// Sets the block number of a DATA or ACK packet (or the code of an ERROR packet).
    pub fn set_block_number(&mut self, block: u16) {
        self.buffer.as_mut()[OPCODE_LEN..HEADER_LEN].copy_from_slice(&block.to_be_bytes());
    }

    /// The bytes after the 4-byte header, to fill with the data of a DATA packet.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The file asked for, as sent.
    pub filename: &'a str,
    /// The transfer mode, as sent (`octet`, `netascii`, `mail`, in any case).
    pub mode: &'a str,
    /// The options (RFC 2347), names and values as sent, in order.
    pub options: Vec<(&'a str, &'a str)>,
}

/// A parsed TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr<'a> {
    /// RRQ.
    ReadRequest(Request<'a>),
    /// WRQ.
    WriteRequest(Request<'a>),
    /// DATA.
    Data {
        /// The block number (wraps from 65535 to 0 on long transfers).
        block: u16,
        /// The block's bytes.
        data: &'a [u8],
    },
    /// ACK.
    Ack {
        /// The block acknowledged.
        block: u16,
    },
    /// ERROR.
    Error {
        /// The error code.
        code: ErrorCode,
        /// The message.
        message: &'a str,
    },
    /// OACK: the options the server accepts, with their final values.
    OptionAck {
        /// Names and values.
        options: Vec<(&'a str, &'a str)>,
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked packet.
    ///
    /// Leniencies, because real clients send them: bytes after an ACK's block number are
    /// ignored, as are NUL bytes padding a request after its last option.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let header_end = |n| &bytes[n..];
        Ok(match packet.opcode()? {
            Opcode::ReadRequest => Repr::ReadRequest(parse_request(header_end(OPCODE_LEN))?),
            Opcode::WriteRequest => Repr::WriteRequest(parse_request(header_end(OPCODE_LEN))?),
            Opcode::Data => Repr::Data {
                block: packet.block_number(),
                data: header_end(HEADER_LEN),
            },
            Opcode::Ack => Repr::Ack {
                block: packet.block_number(),
            },
            Opcode::Error => {
                let mut strings = Strings(header_end(HEADER_LEN));
                let message = strings.next_str("error message")?;
                Repr::Error {
                    code: packet.error_code(),
                    message,
                }
            }
            Opcode::OptionAck => Repr::OptionAck {
                options: parse_options(Strings(header_end(OPCODE_LEN)))?,
            },
        })
    }

    /// Parses bytes from the network.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Repr<'a>, WireError> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// The size of the emitted packet.
    pub fn buffer_len(&self) -> usize {
        let strings = |list: &[&str]| list.iter().map(|s| s.len() + 1).sum::<usize>();
        let options = |options: &[(&str, &str)]| {
            options
                .iter()
                .map(|(n, v)| n.len() + v.len() + 2)
                .sum::<usize>()
        };
        match self {
            Repr::ReadRequest(request) | Repr::WriteRequest(request) => {
                OPCODE_LEN + strings(&[request.filename, request.mode]) + options(&request.options)
            }
            Repr::Data { data, .. } => HEADER_LEN + data.len(),
            Repr::Ack { .. } => HEADER_LEN,
            Repr::Error { message, .. } => HEADER_LEN + message.len() + 1,
            Repr::OptionAck { options: list } => OPCODE_LEN + options(list),
        }
    }

    /// Writes the packet at the start of `buffer`; returns its length.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize, WireError> {
        let needed = self.buffer_len();
        if buffer.len() < needed {
            return Err(WireError::BufferTooSmall {
                len: buffer.len(),
                needed,
            });
        }
        let mut writer = Writer { buffer, at: 0 };
        match self {
            Repr::ReadRequest(request) | Repr::WriteRequest(request) => {
                let opcode = if matches!(self, Repr::ReadRequest(_)) {
                    Opcode::ReadRequest
                } else {
                    Opcode::WriteRequest
                };
                writer.u16(opcode.to_u16());
                writer.string(request.filename);
                writer.string(request.mode);
                writer.options(&request.options);
            }
            Repr::Data { block, data } => {
                writer.u16(Opcode::Data.to_u16());
                writer.u16(*block);
                writer.bytes(data);
            }
            Repr::Ack { block } => {
                writer.u16(Opcode::Ack.to_u16());
                writer.u16(*block);
            }
            Repr::Error { code, message } => {
                writer.u16(Opcode::Error.to_u16());
                writer.u16(code.to_u16());
                writer.string(message);
            }
            Repr::OptionAck { options } => {
                writer.u16(Opcode::OptionAck.to_u16());
                writer.options(options);
            }
        }
        Ok(writer.at)
    }

    /// The packet as a new vector of bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.buffer_len()];
        // The buffer was sized by buffer_len, so emit cannot run out of room.
        let _ = self.emit(&mut bytes);
        bytes
    }
}

fn parse_request(payload: &[u8]) -> Result<Request<'_>, WireError> {
    let mut strings = Strings(payload);
    let filename = strings.next_str("filename")?;
    let mode = strings.next_str("mode")?;
    Ok(Request {
        filename,
        mode,
        options: parse_options(strings)?,
    })
}

fn parse_options(mut strings: Strings<'_>) -> Result<Vec<(&str, &str)>, WireError> {
    let mut options = Vec::new();
    while !strings.is_padding() {
        let name = strings.next_str("option name")?;
        if strings.0.is_empty() {
            return Err(WireError::OptionWithoutValue {
                name: name.to_string(),
            });
        }
        let value = strings.next_str("option value")?;
        options.push((name, value));
    }
    Ok(options)
}

/// NUL-terminated strings, read one after the other.
struct Strings<'a>(&'a [u8]);

impl<'a> Strings<'a> {
    /// The next string, without its NUL.
    fn next_str(&mut self, field: &'static str) -> Result<&'a str, WireError> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Unterminated { field })?;
        let text = std::str::from_utf8(&self.0[..end]).map_err(|_| WireError::NotUtf8 { field })?;
        self.0 = &self.0[end + 1..];
        Ok(text)
    }

    /// Whether only NUL bytes (or nothing) are left.
    fn is_padding(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

/// Writes fields into a buffer already checked to be large enough.
struct Writer<'b> {
    buffer: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.buffer[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    fn u16(&mut self, value: u16) {
        self.bytes(&value.to_be_bytes());
    }

    fn string(&mut self, text: &str) {
        self.bytes(text.as_bytes());
        self.bytes(&[0]);
    }

    fn options(&mut self, options: &[(&str, &str)]) {
        for (name, value) in options {
            self.string(name);
            self.string(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::XorShift;

    fn rrq<'a>(filename: &'a str, options: &[(&'a str, &'a str)]) -> Repr<'a> {
        Repr::ReadRequest(Request {
            filename,
            mode: "octet",
            options: options.to_vec(),
        })
    }

    #[test]
    fn known_packets_parse_to_their_representation() {
        let cases: Vec<(&[u8], Repr)> = vec![
            (b"\0\x01pxelinux.0\0octet\0", rrq("pxelinux.0", &[])),
            (
                b"\0\x01vmlinuz\0octet\0blksize\x001468\0tsize\x000\0windowsize\x004\0",
                rrq(
                    "vmlinuz",
                    &[("blksize", "1468"), ("tsize", "0"), ("windowsize", "4")],
                ),
            ),
            (
                b"\0\x02up\0NetASCII\0",
                Repr::WriteRequest(Request {
                    filename: "up",
                    mode: "NetASCII",
                    options: vec![],
                }),
            ),
            (
                b"\0\x03\x01\x02abc",
                Repr::Data {
                    block: 0x0102,
                    data: b"abc",
                },
            ),
            (
                b"\0\x03\xff\xff",
                Repr::Data {
                    block: 65535,
                    data: b"",
                },
            ),
            (b"\0\x04\0\0", Repr::Ack { block: 0 }),
            (
                b"\0\x05\0\x01nope\0",
                Repr::Error {
                    code: ErrorCode::FileNotFound,
                    message: "nope",
                },
            ),
            (
                b"\0\x05\0\x63\0",
                Repr::Error {
                    code: ErrorCode::Other(99),
                    message: "",
                },
            ),
            (
                b"\0\x06blksize\x00512\0",
                Repr::OptionAck {
                    options: vec![("blksize", "512")],
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Repr::parse_bytes(bytes), Ok(expected.clone()), "{bytes:?}");
            assert_eq!(expected.to_bytes(), bytes, "emit {expected:?}");
        }
    }

    #[test]
    fn real_client_quirks_are_accepted() {
        // Padding after an ACK's block number and NUL padding after a request's options.
        assert_eq!(
            Repr::parse_bytes(b"\0\x04\0\x07\0\0"),
            Ok(Repr::Ack { block: 7 })
        );
        assert_eq!(
            Repr::parse_bytes(b"\0\x01f\0octet\0\0\0\0"),
            Ok(rrq("f", &[]))
        );
        assert_eq!(
            Repr::parse_bytes(b"\0\x01f\0octet\0tsize\x000\0\0"),
            Ok(rrq("f", &[("tsize", "0")]))
        );
    }

    #[test]
    fn malformed_packets_get_the_exact_error() {
        let cases: &[(&[u8], WireError)] = &[
            (
                b"",
                WireError::TooShort {
                    what: "packet",
                    needed: 2,
                    len: 0,
                },
            ),
            (
                b"\0",
                WireError::TooShort {
                    what: "packet",
                    needed: 2,
                    len: 1,
                },
            ),
            (b"\0\0", WireError::UnknownOpcode { opcode: 0 }),
            (b"\0\x07abc", WireError::UnknownOpcode { opcode: 7 }),
            (b"\xff\xff", WireError::UnknownOpcode { opcode: 65535 }),
            (
                b"\0\x03\0",
                WireError::TooShort {
                    what: "DATA packet",
                    needed: 4,
                    len: 3,
                },
            ),
            (
                b"\0\x04",
                WireError::TooShort {
                    what: "ACK packet",
                    needed: 4,
                    len: 2,
                },
            ),
            (
                b"\0\x05\0",
                WireError::TooShort {
                    what: "ERROR packet",
                    needed: 4,
                    len: 3,
                },
            ),
            (
                b"\0\x05\0\x01no nul",
                WireError::Unterminated {
                    field: "error message",
                },
            ),
            (b"\0\x01", WireError::Unterminated { field: "filename" }),
            (
                b"\0\x01pxelinux.0",
                WireError::Unterminated { field: "filename" },
            ),
            (
                b"\0\x01pxelinux.0\0",
                WireError::Unterminated { field: "mode" },
            ),
            (
                b"\0\x01pxelinux.0\0octet",
                WireError::Unterminated { field: "mode" },
            ),
            (
                b"\0\x01\xff\xfe\0octet\0",
                WireError::NotUtf8 { field: "filename" },
            ),
            (b"\0\x01f\0oc\xc3\0", WireError::NotUtf8 { field: "mode" }),
            (
                b"\0\x01f\0octet\0blksize\0",
                WireError::OptionWithoutValue {
                    name: "blksize".into(),
                },
            ),
            (
                b"\0\x01f\0octet\0blksize\x001468",
                WireError::Unterminated {
                    field: "option value",
                },
            ),
            (
                b"\0\x01f\0octet\0blksize",
                WireError::Unterminated {
                    field: "option name",
                },
            ),
            (
                b"\0\x06tsize\0",
                WireError::OptionWithoutValue {
                    name: "tsize".into(),
                },
            ),
            (
                b"\0\x02f\0octet\0\xc0\0x\0",
                WireError::NotUtf8 {
                    field: "option name",
                },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Repr::parse_bytes(bytes), Err(expected.clone()), "{bytes:?}");
        }
    }

    #[test]
    fn emit_refuses_a_short_buffer_and_data_headers_are_written_in_place() {
        let mut small = [0u8; 3];
        assert_eq!(
            Repr::Ack { block: 1 }.emit(&mut small),
            Err(WireError::BufferTooSmall { len: 3, needed: 4 })
        );
        let mut packet = Packet::new_unchecked(vec![0u8; 7]);
        packet.set_opcode(Opcode::Data);
        packet.set_block_number(258);
        packet.data_mut().copy_from_slice(b"xyz");
        assert_eq!(packet.into_inner(), b"\0\x03\x01\x02xyz");
    }

    /// Strings that emit and parse back unchanged: no NUL, and not a lone trailing padding.
    const WORDS: &[&str] = &[
        "pxelinux.0",
        "octet",
        "netascii",
        "blksize",
        "1468",
        "tsize",
        "0",
        "x",
        "é",
        "a/b",
    ];

    fn random_repr_bytes(rng: &mut XorShift) -> Vec<u8> {
        let word = |rng: &mut XorShift| WORDS[rng.below(WORDS.len())];
        let options = |rng: &mut XorShift| {
            (0..rng.below(4))
                .map(|_| (word(rng), word(rng)))
                .collect::<Vec<_>>()
        };
        let block = rng.next_u64() as u16;
        let len = rng.below(600);
        let data = rng.bytes(len);
        let repr = match rng.below(6) {
            0 => Repr::ReadRequest(Request {
                filename: word(rng),
                mode: word(rng),
                options: options(rng),
            }),
            1 => Repr::WriteRequest(Request {
                filename: word(rng),
                mode: word(rng),
                options: options(rng),
            }),
            2 => Repr::Data { block, data: &data },
            3 => Repr::Ack { block },
            4 => Repr::Error {
                code: ErrorCode::from_u16(rng.next_u64() as u16 % 10),
                message: word(rng),
            },
            _ => Repr::OptionAck {
                options: options(rng),
            },
        };
        let bytes = repr.to_bytes();
        assert_eq!(
            Repr::parse_bytes(&bytes).as_ref(),
            Ok(&repr),
            "a valid packet must round-trip"
        );
        bytes
    }

    /// Parse must never panic; whatever parses must emit to bytes that parse to the same packet.
    fn check_never_panics_and_round_trips(bytes: &[u8]) {
        if let Ok(repr) = Repr::parse_bytes(bytes) {
            let emitted = repr.to_bytes();
            assert_eq!(
                Repr::parse_bytes(&emitted).as_ref(),
                Ok(&repr),
                "{bytes:?} -> {emitted:?}"
            );
        }
    }

    #[test]
    fn random_and_mutated_packets_never_panic_and_round_trip() {
        let mut rng = XorShift::new(0x5EED_7F7F_0000_0003);
        for _ in 0..20_000 {
            let len = rng.below(64);
            let random = rng.bytes(len);
            check_never_panics_and_round_trips(&random);

            let mut mutated = random_repr_bytes(&mut rng);
            for _ in 0..1 + rng.below(4) {
                match rng.below(3) {
                    0 if !mutated.is_empty() => {
                        let at = rng.below(mutated.len());
                        mutated[at] = rng.next_u64() as u8;
                    }
                    1 => mutated.truncate(rng.below(mutated.len() + 1)),
                    _ => mutated.push(rng.next_u64() as u8),
                }
            }
            check_never_panics_and_round_trips(&mutated);
        }
    }
}
