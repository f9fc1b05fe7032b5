//! HTTP/1.1 on the wire (RFC 9110, 9112): request heads with hard limits, response heads,
//! request targets and byte ranges.
//!
//! In the style of smoltcp's `wire` module: [`Head`] is a checked view over the bytes received
//! (it finds where the head ends and enforces every size limit before anything is parsed), and
//! [`RequestRepr`] is the parsed request with [`RequestRepr::parse`] and [`RequestRepr::emit`].
//! Everything here is pure: no I/O, and no input can make it panic.
//!
//! The parser is strict where leniency would let two parties read one request differently
//! (request smuggling, path tricks): lines end in CRLF, no whitespace before a header's colon,
//! no obsolete line folding, no control characters, header values are UTF-8.

use std::fmt;

/// The size limits a request head must respect; exceeding one is answered with 414 or 431.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest request line (method, target, version), without its CRLF: 414 beyond.
    pub max_request_line: usize,
    /// The longest header line, without its CRLF: 431 beyond.
    pub max_header_line: usize,
    /// The largest head, request line and headers and the blank line included: 431 beyond.
    pub max_head: usize,
    /// The most header lines: 431 beyond.
    pub max_headers: usize,
}

impl Default for Limits {
    /// Generous for every boot client (iPXE, lpxelinux, curl send a few hundred bytes), small
    /// enough that a connection's head buffer stays tiny.
    fn default() -> Limits {
        Limits {
            max_request_line: 4096,
            max_header_line: 4096,
            max_head: 16384,
            max_headers: 64,
        }
    }
}

/// The response status codes this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 204.
    NoContent,
    /// 206, a byte range of the file.
    PartialContent,
    /// 400.
    BadRequest,
    /// 401.
    Unauthorized,
    /// 403, an unsafe path or a file that may not be served.
    Forbidden,
    /// 404.
    NotFound,
    /// 405, sent with `Allow`.
    MethodNotAllowed,
    /// 408, the head did not arrive in time.
    RequestTimeout,
    /// 409, an upload that would replace a state it was not made from.
    Conflict,
    /// 413, a body over the route's limit.
    ContentTooLarge,
    /// 414.
    UriTooLong,
    /// 416, sent with `Content-Range: bytes */LEN`.
    RangeNotSatisfiable,
    /// 431.
    HeaderFieldsTooLarge,
    /// 500.
    InternalServerError,
    /// 501, `Transfer-Encoding` in a request.
    NotImplemented,
    /// 503, too many connections.
    ServiceUnavailable,
    /// 505.
    VersionNotSupported,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NoContent => 204,
            Status::PartialContent => 206,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::Conflict => 409,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase of the status line.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NoContent => "No Content",
            Status::PartialContent => "Partial Content",
            Status::BadRequest => "Bad Request",
            Status::Unauthorized => "Unauthorized",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::Conflict => "Conflict",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

/// Why a request head was refused. [`ParseError::status`] is the answer the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The head has not ended yet: read more bytes (an error only if the client stops here).
    #[error("the request head is incomplete after {received} bytes")]
    Truncated {
        /// Bytes received so far.
        received: usize,
    },
    /// The request line is longer than [`Limits::max_request_line`].
    #[error("request line of {len}+ bytes is longer than the limit of {max}")]
    RequestLineTooLong {
        /// Its length so far.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A header line is longer than [`Limits::max_header_line`].
    #[error("header line of {len}+ bytes is longer than the limit of {max}")]
    HeaderLineTooLong {
        /// Its length so far.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The whole head is larger than [`Limits::max_head`].
    #[error("request head of {len}+ bytes is larger than the limit of {max}")]
    HeadTooLarge {
        /// Its length so far.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More header lines than [`Limits::max_headers`].
    #[error("more than {max} header lines")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// A CR not followed by LF, or an LF not preceded by CR.
    #[error("bare CR or LF at byte {offset}; lines must end in CRLF")]
    BareLineEnding {
        /// Where, from the start of the buffer.
        offset: usize,
    },
    /// The request line is not `METHOD SP TARGET SP VERSION`.
    #[error("malformed request line {line:?}")]
    MalformedRequestLine {
        /// The line (invalid UTF-8 replaced).
        line: String,
    },
    /// The method is not an RFC 9110 token.
    #[error("invalid method {method:?}")]
    InvalidMethod {
        /// The method (invalid UTF-8 replaced).
        method: String,
    },
    /// The target is not in origin form (`/path`), absolute form (`http://host/path`) or `*`.
    #[error("invalid request target {target:?}")]
    InvalidTarget {
        /// The target (invalid UTF-8 replaced).
        target: String,
    },
    /// `HTTP/x.y` other than 1.0 and 1.1.
    #[error("unsupported HTTP version {version:?}")]
    UnsupportedVersion {
        /// The version.
        version: String,
    },
    /// A header line without a colon, or with an invalid name or whitespace before the colon.
    #[error("malformed header line {line:?}")]
    MalformedHeader {
        /// The line (invalid UTF-8 replaced).
        line: String,
    },
    /// A header line starting with whitespace (obsolete line folding, RFC 9112 §5.2).
    #[error("obsolete line folding in header line {line:?}")]
    ObsoleteLineFolding {
        /// The line (invalid UTF-8 replaced).
        line: String,
    },
    /// A header value with a control character or invalid UTF-8.
    #[error("invalid value of header {name:?} (control character or invalid UTF-8)")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
    },
}

impl ParseError {
    /// The status of the answer to a request refused with this error.
    pub fn status(&self) -> Status {
        match self {
            ParseError::RequestLineTooLong { .. } => Status::UriTooLong,
            ParseError::HeaderLineTooLong { .. }
            | ParseError::HeadTooLarge { .. }
            | ParseError::TooManyHeaders { .. } => Status::HeaderFieldsTooLarge,
            ParseError::UnsupportedVersion { .. } => Status::VersionNotSupported,
            ParseError::Truncated { .. }
            | ParseError::BareLineEnding { .. }
            | ParseError::MalformedRequestLine { .. }
            | ParseError::InvalidMethod { .. }
            | ParseError::InvalidTarget { .. }
            | ParseError::MalformedHeader { .. }
            | ParseError::ObsoleteLineFolding { .. }
            | ParseError::InvalidHeaderValue { .. } => Status::BadRequest,
        }
    }
}

/// A checked view of a complete request head at the start of a buffer: the request line,
/// the header lines and the blank line, within the [`Limits`]. Bytes after it (a body, or the
/// next pipelined request) are not part of it.
#[derive(Debug, Clone)]
pub struct Head<T: AsRef<[u8]>> {
    buffer: T,
    /// Where the request line starts (empty lines before it are skipped, RFC 9112 §2.2).
    start: usize,
    /// Where the request line's CRLF is.
    request_line_end: usize,
    /// The head's length, up to and including the blank line's CRLF.
    len: usize,
}

impl<T: AsRef<[u8]>> Head<T> {
    /// Checks that the buffer starts with a complete head within the limits; returns
    /// [`ParseError::Truncated`] when more bytes are needed and no limit is exceeded yet, so a
    /// caller reading from a socket knows as early as possible that a head is too large.
    pub fn new_checked(buffer: T, limits: &Limits) -> Result<Head<T>, ParseError> {
        let bytes = buffer.as_ref();
        let mut offset = 0;
        let mut start = None;
        let mut request_line_end = 0;
        let mut headers = 0;
        loop {
            let rest = &bytes[offset..];
            let line_limit = match start {
                None => limits.max_request_line,
                Some(_) => limits.max_header_line,
            };
            let newline = rest.iter().position(|&b| b == b'\n');
            let line = &rest[..newline.unwrap_or(rest.len())];
            if let Some(cr) = line.iter().position(|&b| b == b'\r') {
                // A CR is only allowed as the last byte of a line, or as the last byte received.
                if cr + 1 != line.len() {
                    return Err(ParseError::BareLineEnding {
                        offset: offset + cr,
                    });
                }
            }
            let content_len = line.len() - usize::from(line.last() == Some(&b'\r'));
            if content_len > line_limit {
                return Err(match start {
                    None => ParseError::RequestLineTooLong {
                        len: content_len,
                        max: line_limit,
                    },
                    Some(_) => ParseError::HeaderLineTooLong {
                        len: content_len,
                        max: line_limit,
                    },
                });
            }
            let end = offset + line.len() + usize::from(newline.is_some());
            if end > limits.max_head {
                return Err(ParseError::HeadTooLarge {
                    len: end,
                    max: limits.max_head,
                });
            }
            let Some(newline) = newline else {
                return Err(ParseError::Truncated {
                    received: bytes.len(),
                });
            };
            if line.last() != Some(&b'\r') {
                return Err(ParseError::BareLineEnding {
                    offset: offset + newline,
                });
            }
            match start {
                None if content_len == 0 => {}
                None => {
                    start = Some(offset);
                    request_line_end = offset + content_len;
                }
                Some(start) if content_len == 0 => {
                    return Ok(Head {
                        buffer,
                        start,
                        request_line_end,
                        len: end,
                    });
                }
                Some(_) => {
                    headers += 1;
                    if headers > limits.max_headers {
                        return Err(ParseError::TooManyHeaders {
                            max: limits.max_headers,
                        });
                    }
                }
            }
            offset = end;
        }
    }

    /// The head's length in bytes, from the start of the buffer through the blank line.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a head has at least a request line; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The request line, without its CRLF.
    pub fn request_line(&self) -> &[u8] {
        &self.buffer.as_ref()[self.start..self.request_line_end]
    }

    /// The header lines, without their CRLFs, in order.
    pub fn header_lines(&self) -> impl Iterator<Item = &[u8]> {
        // The headers sit between the request line's CRLF and the blank line's CRLF; each
        // line ends in CRLF, which `new_checked` verified.
        let headers = &self.buffer.as_ref()[self.request_line_end + 2..self.len - 2];
        headers
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| &line[..line.len() - 1])
    }
}

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the answer unless the client asks to keep it.
    Http10,
    /// HTTP/1.1: the connection stays open unless either side says `Connection: close`.
    Http11,
}

impl Version {
    fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRepr {
    /// The method, case-sensitive as RFC 9110 says (`GET`, `HEAD`, `POST`, ...).
    pub method: String,
    /// The request target as sent (still percent-encoded); see [`RequestRepr::path`].
    pub target: String,
    /// The version.
    pub version: Version,
    /// The headers in order, names as sent, values without surrounding whitespace.
    pub headers: Vec<(String, String)>,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length` bytes (0 when absent).
    Length(u64),
    /// `Transfer-Encoding` was sent: not supported (answered with 501 and the connection closed,
    /// since its end cannot be found).
    TransferEncoding,
}

/// Why a request's target or body framing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A `%` not followed by two hex digits.
    #[error("bad percent-escape in target {target:?}")]
    BadEscape {
        /// The target as sent.
        target: String,
    },
    /// `%2F` (an encoded '/') would make one path component look like two.
    #[error("target {target:?} contains an encoded '/' (%2F)")]
    EncodedSlash {
        /// The target as sent.
        target: String,
    },
    /// The decoded path is not UTF-8.
    #[error("target {target:?} decodes to invalid UTF-8")]
    NotUtf8 {
        /// The target as sent.
        target: String,
    },
    /// `*` or an absolute form without a path: names no resource.
    #[error("target {target:?} names no path")]
    NoPath {
        /// The target as sent.
        target: String,
    },
    /// `Content-Length` that is not a number, or several that disagree (a smuggling attempt).
    #[error("invalid Content-Length {value:?}")]
    BadContentLength {
        /// The value(s) as sent.
        value: String,
    },
}

impl RequestError {
    /// The status of the answer to a request refused with this error.
    pub fn status(&self) -> Status {
        match self {
            RequestError::EncodedSlash { .. } => Status::Forbidden,
            RequestError::BadEscape { .. }
            | RequestError::NotUtf8 { .. }
            | RequestError::NoPath { .. }
            | RequestError::BadContentLength { .. } => Status::BadRequest,
        }
    }
}

impl RequestRepr {
    /// Parses a checked head.
    pub fn parse<T: AsRef<[u8]>>(head: &Head<T>) -> Result<RequestRepr, ParseError> {
        let line = head.request_line();
        let lossy = || String::from_utf8_lossy(line).into_owned();
        let mut parts = line.split(|&b| b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::MalformedRequestLine { line: lossy() });
        };
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err(ParseError::InvalidMethod {
                method: String::from_utf8_lossy(method).into_owned(),
            });
        }
        let target = parse_target(target)?;
        let version = parse_version(version)
            .ok_or_else(|| ParseError::MalformedRequestLine { line: lossy() })??;
        let headers = head
            .header_lines()
            .map(parse_header)
            .collect::<Result<Vec<_>, _>>()?;
        // Checked to be token characters, which are ASCII.
        let method = String::from_utf8_lossy(method).into_owned();
        Ok(RequestRepr {
            method,
            target,
            version,
            headers,
        })
    }

    /// The length of the head [`RequestRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let line = self.method.len() + 1 + self.target.len() + 1 + 8 + 2;
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum();
        line + headers + 2
    }

    /// Writes the head in canonical form: single spaces, `Name: value`, CRLFs.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        for part in [
            &self.method,
            " ",
            &self.target,
            " ",
            self.version.as_str(),
            "\r\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        for (name, value) in &self.headers {
            for part in [name.as_str(), ": ", value, "\r\n"] {
                out.extend_from_slice(part.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The values of the headers with this name (case-insensitive), in order.
    pub fn header_values<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s str> + use<'s, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of the header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// Whether the `Connection` headers hold this option (case-insensitive).
    fn connection_has(&self, option: &str) -> bool {
        self.header_values("connection")
            .flat_map(|v| v.split(','))
            .any(|o| o.trim().eq_ignore_ascii_case(option))
    }

    /// Whether the client wants the connection kept open after the answer.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_has("close"),
            Version::Http10 => self.connection_has("keep-alive") && !self.connection_has("close"),
        }
    }

    /// How the request's body is delimited.
    pub fn body_framing(&self) -> Result<BodyFraming, RequestError> {
        if self.header("transfer-encoding").is_some() {
            return Ok(BodyFraming::TransferEncoding);
        }
        let mut length = None;
        for value in self.header_values("content-length") {
            let parsed = parse_digits(value).ok_or_else(|| RequestError::BadContentLength {
                value: value.into(),
            })?;
            if length.is_some_and(|l| l != parsed) {
                let all: Vec<&str> = self.header_values("content-length").collect();
                return Err(RequestError::BadContentLength {
                    value: all.join(", "),
                });
            }
            length = Some(parsed);
        }
        Ok(BodyFraming::Length(length.unwrap_or(0)))
    }

    /// The target's path, percent-decoded, without the query; still to be checked by
    /// `SafePath` before it names a file. An encoded '/' is refused here because after
    /// decoding it could not be told from a real separator.
    pub fn path(&self) -> Result<String, RequestError> {
        let target = &self.target;
        let path = match target.strip_prefix("http://") {
            Some(rest) => rest.find('/').map(|slash| &rest[slash..]),
            None if target.starts_with('/') => Some(target.as_str()),
            None => None,
        }
        .ok_or_else(|| RequestError::NoPath {
            target: target.clone(),
        })?;
        let path = path.split(['?', '#']).next().unwrap_or_default();
        percent_decode(path, target)
    }
}

/// RFC 9110 `tchar`: the characters of methods and header names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_target(target: &[u8]) -> Result<String, ParseError> {
    let invalid = || ParseError::InvalidTarget {
        target: String::from_utf8_lossy(target).into_owned(),
    };
    // Visible ASCII only: spaces were split on, and anything else must be percent-encoded.
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(invalid());
    }
    let form_ok = target[0] == b'/' || target == b"*" || target.starts_with(b"http://");
    if !form_ok {
        return Err(invalid());
    }
    // Checked to be ASCII above.
    Ok(String::from_utf8_lossy(target).into_owned())
}

/// `Some(Ok(version))`, `Some(Err(_))` for a well-formed but unsupported version, `None` for
/// something that is not a version at all.
fn parse_version(version: &[u8]) -> Option<Result<Version, ParseError>> {
    match version {
        b"HTTP/1.1" => Some(Ok(Version::Http11)),
        b"HTTP/1.0" => Some(Ok(Version::Http10)),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some(Err(ParseError::UnsupportedVersion {
                version: String::from_utf8_lossy(version).into_owned(),
            }))
        }
        _ => None,
    }
}

fn parse_header(line: &[u8]) -> Result<(String, String), ParseError> {
    let lossy = || String::from_utf8_lossy(line).into_owned();
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(ParseError::ObsoleteLineFolding { line: lossy() });
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ParseError::MalformedHeader { line: lossy() })?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::MalformedHeader { line: lossy() });
    }
    // Checked to be token characters, which are ASCII.
    let name = String::from_utf8_lossy(name).into_owned();
    let value = trim_ows(&line[colon + 1..]);
    let invalid = || ParseError::InvalidHeaderValue { name: name.clone() };
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(invalid());
    }
    let value = std::str::from_utf8(value)
        .map_err(|_| invalid())?
        .to_string();
    Ok((name, value))
}

/// Without the optional whitespace (spaces and tabs only) around a header value.
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// A decimal number of 1 to 19 digits (no sign, no spaces): at most 10^19 - 1, fits in u64.
fn parse_digits(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn percent_decode(path: &str, target: &str) -> Result<String, RequestError> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) else {
            return Err(RequestError::BadEscape {
                target: target.into(),
            });
        };
        // Two hex digits are at most 0xff.
        let byte = (high * 16 + low) as u8;
        if byte == b'/' {
            return Err(RequestError::EncodedSlash {
                target: target.into(),
            });
        }
        decoded.push(byte);
        i += 3;
    }
    String::from_utf8(decoded).map_err(|_| RequestError::NotUtf8 {
        target: target.into(),
    })
}

/// What to send of a file of some length, given the request's `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 and the whole file: no `Range`, one this server ignores (not `bytes=`, malformed,
    /// or several ranges: allowed by RFC 9110 §14.2, and boot clients ask for one), or
    /// `If-Range` (this server has no validators, so it cannot confirm the client's copy).
    Whole,
    /// 206 and the bytes `first..=last`.
    Part {
        /// The first byte sent.
        first: u64,
        /// The last byte sent (inclusive, as in `Content-Range`).
        last: u64,
    },
    /// 416 with `Content-Range: bytes */LEN`: the range starts at or beyond the end.
    Unsatisfiable,
}

/// Resolves a `Range` header value against a file's length (RFC 9110 §14.1.2): `a-b`, `a-`
/// and `-n` single ranges; a `last` beyond the end is cut to the end.
pub fn resolve_range(range: Option<&str>, if_range: bool, len: u64) -> RangeAnswer {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Whole;
    };
    if if_range || spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // Numbers too large for u64 are still valid syntax: they saturate, which gives the right
    // answer (a first byte that large is beyond any file; a last byte that large is the end).
    let number = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    match (digits(first), digits(last)) {
        (true, false) if last.is_empty() => part(number(first), u64::MAX, len),
        (true, true) if number(first) <= number(last) => part(number(first), number(last), len),
        (false, true) if first.is_empty() => match number(last) {
            0 => RangeAnswer::Unsatisfiable,
            suffix => part(len.saturating_sub(suffix), u64::MAX, len),
        },
        // Malformed, or a-b with a > b: the header is ignored.
        _ => RangeAnswer::Whole,
    }
}

fn part(first: u64, last: u64, len: u64) -> RangeAnswer {
    if first >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part {
        first,
        last: last.min(len - 1),
    }
}

/// A response's status line and headers. `Content-Length` is always written, from `body_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status.
    pub status: Status,
    /// The length of the body (of the body a GET would get, for a HEAD).
    pub body_len: u64,
    /// Whether the connection closes after this response (`Connection: close`), or stays
    /// open for an HTTP/1.0 client that asked (`Connection: keep-alive`).
    pub connection: ConnectionHeader,
    /// Other headers, in order.
    pub headers: Vec<(&'static str, String)>,
}

/// The `Connection` header of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionHeader {
    /// None: HTTP/1.1's default, the connection stays open.
    Omitted,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
    /// `Connection: close`.
    Close,
}

impl ResponseHead {
    /// Writes the head: status line, headers, `Content-Length`, `Connection`, blank line.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("HTTP/1.1 {}\r\nServer: pxen\r\n", self.status).as_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n", self.body_len).as_bytes());
        match self.connection {
            ConnectionHeader::Omitted => {}
            ConnectionHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            ConnectionHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::XorShift;

    fn parse(bytes: &[u8]) -> Result<RequestRepr, ParseError> {
        RequestRepr::parse(&Head::new_checked(bytes, &Limits::default())?)
    }

    fn small_limits() -> Limits {
        Limits {
            max_request_line: 20,
            max_header_line: 10,
            max_head: 60,
            max_headers: 2,
        }
    }

    #[test]
    fn parses_a_typical_request() {
        let bytes = b"GET /xen.gz HTTP/1.1\r\nHost: 10.0.0.1\r\nRange: bytes=0-99\r\n\r\nnext";
        let head = Head::new_checked(&bytes[..], &Limits::default()).unwrap();
        assert_eq!(head.len(), bytes.len() - 4);
        let request = RequestRepr::parse(&head).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/xen.gz");
        assert_eq!(request.version, Version::Http11);
        assert_eq!(request.header("RANGE"), Some("bytes=0-99"));
        assert!(request.keep_alive());
        assert_eq!(request.body_framing(), Ok(BodyFraming::Length(0)));
    }

    #[test]
    fn skips_empty_lines_before_the_request_line() {
        let request = parse(b"\r\n\r\nHEAD / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(request.method, "HEAD");
        assert!(request.headers.is_empty());
        assert!(!request.keep_alive());
    }

    #[test]
    fn malformed_heads_get_their_exact_error() {
        use ParseError::*;
        let s = |x: &str| x.to_string();
        let cases: Vec<(&[u8], ParseError)> = vec![
            (b"GET / HTTP/1.1\r\n", Truncated { received: 16 }),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\n\r",
                Truncated { received: 26 },
            ),
            (
                b"GET / HTTP/1.1\nHost: a\r\n\r\n",
                BareLineEnding { offset: 14 },
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
                BareLineEnding { offset: 20 },
            ),
            (b"GET / HTTP/1.1\r\n\n", BareLineEnding { offset: 16 }),
            (
                b"GET /  HTTP/1.1\r\n\r\n",
                MalformedRequestLine {
                    line: s("GET /  HTTP/1.1"),
                },
            ),
            (
                b"GET / HTTP/1.1 x\r\n\r\n",
                MalformedRequestLine {
                    line: s("GET / HTTP/1.1 x"),
                },
            ),
            (b"GET /\r\n\r\n", MalformedRequestLine { line: s("GET /") }),
            (
                b"GET / HTTP/11\r\n\r\n",
                MalformedRequestLine {
                    line: s("GET / HTTP/11"),
                },
            ),
            (
                b"G(T / HTTP/1.1\r\n\r\n",
                InvalidMethod { method: s("G(T") },
            ),
            (b" / HTTP/1.1\r\n\r\n", InvalidMethod { method: s("") }),
            (b"GET a HTTP/1.1\r\n\r\n", InvalidTarget { target: s("a") }),
            (
                b"GET /\x01 HTTP/1.1\r\n\r\n",
                InvalidTarget { target: s("/\x01") },
            ),
            (
                b"GET /\xff HTTP/1.1\r\n\r\n",
                InvalidTarget {
                    target: s("/\u{fffd}"),
                },
            ),
            (
                b"GET / HTTP/2.0\r\n\r\n",
                UnsupportedVersion {
                    version: s("HTTP/2.0"),
                },
            ),
            (
                b"GET / HTTP/1.1\r\nHost\r\n\r\n",
                MalformedHeader { line: s("Host") },
            ),
            (
                b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
                MalformedHeader {
                    line: s("Host : a"),
                },
            ),
            (
                b"GET / HTTP/1.1\r\n: a\r\n\r\n",
                MalformedHeader { line: s(": a") },
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
                ObsoleteLineFolding { line: s(" c") },
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",
                InvalidHeaderValue { name: s("A") },
            ),
            (
                b"GET / HTTP/1.1\r\nA: \xff\r\n\r\n",
                InvalidHeaderValue { name: s("A") },
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                parse(bytes),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn every_limit_is_enforced_even_before_the_head_ends() {
        use ParseError::*;
        let limits = small_limits();
        let head_limit = Limits {
            max_head: 30,
            ..limits
        };
        let cases: Vec<(&[u8], Limits, ParseError, Status)> = vec![
            (
                b"GET /0123456789abcdef",
                limits,
                RequestLineTooLong { len: 21, max: 20 },
                Status::UriTooLong,
            ),
            (
                b"GET /0123456789abcde HTTP/1.1\r\n\r\n",
                limits,
                RequestLineTooLong { len: 29, max: 20 },
                Status::UriTooLong,
            ),
            (
                b"GET / HTTP/1.1\r\nA: 0123456789",
                limits,
                HeaderLineTooLong { len: 13, max: 10 },
                Status::HeaderFieldsTooLarge,
            ),
            (
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                limits,
                TooManyHeaders { max: 2 },
                Status::HeaderFieldsTooLarge,
            ),
            (
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 23\r\n\r\n",
                head_limit,
                HeadTooLarge { len: 31, max: 30 },
                Status::HeaderFieldsTooLarge,
            ),
            (
                b"GET / HTTP/1.1\r\nA: 1\r\nB: 2345678\r",
                head_limit,
                HeadTooLarge { len: 33, max: 30 },
                Status::HeaderFieldsTooLarge,
            ),
        ];
        for (bytes, limits, expected, status) in cases {
            let error = Head::new_checked(bytes, &limits).unwrap_err();
            assert_eq!(error, expected, "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(error.status(), status);
        }
        // Exactly at every limit is fine.
        let at_limits = b"GET /012345 HTTP/1.1\r\nA: 1234567\r\nB: 1234567\r\n\r\n";
        let exact = Limits {
            max_request_line: 20,
            max_header_line: 10,
            max_head: at_limits.len(),
            max_headers: 2,
        };
        assert_eq!(
            Head::new_checked(&at_limits[..], &exact).unwrap().len(),
            at_limits.len()
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let ka = |bytes: &[u8]| parse(bytes).unwrap().keep_alive();
        assert!(ka(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn body_framing_refuses_smuggling() {
        let framing = |bytes: &[u8]| parse(bytes).unwrap().body_framing();
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(BodyFraming::TransferEncoding)
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(RequestError::BadContentLength {
                value: "5, 6".into()
            })
        );
        for bad in ["-1", "+5", "5 5", "0x10", "", "99999999999999999999"] {
            let text = format!("POST / HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n");
            assert!(framing(text.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_are_decoded_and_tricks_refused() {
        let path = |target: &str| {
            RequestRepr {
                method: "GET".into(),
                target: target.into(),
                version: Version::Http11,
                headers: vec![],
            }
            .path()
        };
        assert_eq!(path("/a%20b?x=%2F"), Ok("/a b".into()));
        assert_eq!(path("/%2e%2e/etc"), Ok("/../etc".into()));
        assert_eq!(path("http://host:80/xen.gz"), Ok("/xen.gz".into()));
        assert_eq!(path("/a%00b"), Ok("/a\0b".into()));
        assert_eq!(path("/a%2fb").unwrap_err().status(), Status::Forbidden);
        assert_eq!(
            path("/a%2").unwrap_err(),
            RequestError::BadEscape {
                target: "/a%2".into()
            }
        );
        assert_eq!(
            path("/a%g0").unwrap_err(),
            RequestError::BadEscape {
                target: "/a%g0".into()
            }
        );
        assert_eq!(
            path("/%ff").unwrap_err(),
            RequestError::NotUtf8 {
                target: "/%ff".into()
            }
        );
        assert_eq!(
            path("*").unwrap_err(),
            RequestError::NoPath { target: "*".into() }
        );
        assert_eq!(
            path("http://host").unwrap_err(),
            RequestError::NoPath {
                target: "http://host".into()
            }
        );
    }

    #[test]
    fn ranges_resolve_as_rfc_9110_says() {
        use RangeAnswer::*;
        let r = |value: &str, len| resolve_range(Some(value), false, len);
        assert_eq!(resolve_range(None, false, 10), Whole);
        assert_eq!(r("bytes=0-99", 1000), Part { first: 0, last: 99 });
        assert_eq!(r("bytes=0-99", 50), Part { first: 0, last: 49 });
        assert_eq!(
            r("bytes=100-", 1000),
            Part {
                first: 100,
                last: 999
            }
        );
        assert_eq!(
            r("bytes=-50", 1000),
            Part {
                first: 950,
                last: 999
            }
        );
        assert_eq!(
            r("bytes=-5000", 1000),
            Part {
                first: 0,
                last: 999
            }
        );
        assert_eq!(r("bytes=5-5", 10), Part { first: 5, last: 5 });
        assert_eq!(
            r("bytes=0-99999999999999999999999", 10),
            Part { first: 0, last: 9 }
        );
        assert_eq!(r("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(r("bytes=99999999999999999999999-", 1000), Unsatisfiable);
        assert_eq!(r("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Unsatisfiable);
        for ignored in [
            "bytes=5-4",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
        ] {
            assert_eq!(r(ignored, 1000), Whole, "{ignored}");
        }
        assert_eq!(resolve_range(Some("bytes=0-1"), true, 10), Whole);
    }

    #[test]
    fn response_heads_always_carry_content_length() {
        let mut out = Vec::new();
        ResponseHead {
            status: Status::RangeNotSatisfiable,
            body_len: 0,
            connection: ConnectionHeader::Close,
            headers: vec![("Content-Range", "bytes */10".into())],
        }
        .emit(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 416 Range Not Satisfiable\r\nServer: pxen\r\nContent-Range: bytes */10\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    const VALID: &[&[u8]] = &[
        b"GET /pxelinux.0 HTTP/1.1\r\nHost: 10.0.0.1\r\nConnection: keep-alive\r\n\r\n",
        b"HEAD /xen.gz HTTP/1.0\r\nUser-Agent: iPXE/1.21\r\nRange: bytes=-50\r\n\r\n",
        b"POST /report HTTP/1.1\r\nContent-Length: 12\r\nX-Auth: abc def\r\n\r\n",
        b"GET http://h/a%20b?q HTTP/1.1\r\nA:b\r\nB:  c \r\n\r\n",
    ];

    fn mutate(rng: &mut XorShift, input: &[u8]) -> Vec<u8> {
        let mut bytes = input.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(4) {
                0 if at < bytes.len() => bytes[at] = rng.next_u64() as u8,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at, b"\r\n :%/-,\x00"[rng.below(9)]),
                _ => bytes.truncate(at),
            }
        }
        bytes
    }

    /// Parse must never panic; what it accepts must survive emit and parse unchanged, and the
    /// derived answers (path, framing, range) must not panic either.
    fn check_round_trip(bytes: &[u8], limits: &Limits) {
        let Ok(head) = Head::new_checked(bytes, limits) else {
            return;
        };
        assert!(head.len() <= bytes.len() && head.len() <= limits.max_head);
        let Ok(request) = RequestRepr::parse(&head) else {
            return;
        };
        let mut emitted = Vec::new();
        request.emit(&mut emitted);
        assert_eq!(emitted.len(), request.buffer_len());
        let unlimited = Limits {
            max_request_line: usize::MAX,
            max_header_line: usize::MAX,
            max_head: usize::MAX,
            max_headers: usize::MAX,
        };
        let again = RequestRepr::parse(&Head::new_checked(&emitted[..], &unlimited).unwrap());
        assert_eq!(
            again.as_ref(),
            Ok(&request),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        let _ = request.path();
        let _ = request.body_framing();
        for len in [0, 1, 100, u64::MAX] {
            if let RangeAnswer::Part { first, last } =
                resolve_range(request.header("range"), false, len)
            {
                assert!(first <= last && last < len, "{first}-{last} of {len}");
            }
        }
    }

    #[test]
    fn random_and_mutated_heads_never_panic_and_round_trip() {
        let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
        let limits = Limits {
            max_request_line: 64,
            max_header_line: 64,
            max_head: 256,
            max_headers: 4,
        };
        for round in 0..20_000 {
            let bytes = match round % 3 {
                0 => (0..rng.below(80))
                    .map(|_| b"GET /HTTP1.\r\n: a"[rng.below(16)])
                    .collect(),
                1 => {
                    let valid = VALID[rng.below(VALID.len())];
                    mutate(&mut rng, valid)
                }
                _ => (0..rng.below(300))
                    .map(|_| rng.next_u64() as u8)
                    .collect::<Vec<u8>>(),
            };
            check_round_trip(&bytes, &limits);
            check_round_trip(&bytes, &Limits::default());
        }
        for valid in VALID {
            assert!(parse(valid).is_ok(), "{:?}", String::from_utf8_lossy(valid));
        }
    }
}
