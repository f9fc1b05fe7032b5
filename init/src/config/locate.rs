//! Where each value stands in a RON text, so an error about `hosts[1].hostname` can name its
//! line and column. serde forgets positions once a value is read, so the text is scanned a
//! second time: a small tokenizer that follows the nesting of structs, lists and variants and
//! records, for every value, the path that reaches it (`hosts[1].network.address`).
//!
//! The scan runs only on text ron has already accepted, so it needs no error handling of its
//! own: anything it does not understand simply gets no position.

use std::collections::HashMap;
use std::path::Path;

use super::ConfigError;

/// Points errors at the values of one configuration file.
pub struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset where the value at each path starts.
    starts: HashMap<String, usize>,
}

impl<'a> Locator<'a> {
    /// Scans `text`, the contents of `file`.
    pub fn new(file: &'a Path, text: &'a str) -> Locator<'a> {
        Locator {
            file,
            text,
            starts: scan(text),
        }
    }

    /// An error placed at the value at `path` (e.g. `hosts[1].macs[0]`) or, when that value is
    /// absent from the text (a default), at the nearest enclosing value that is present.
    pub fn error(&self, path: &str, message: String, fix: &str) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            position: self
                .offset_of(path)
                .map(|offset| line_col(self.text, offset)),
            message,
            fix: fix.to_string(),
        }
    }

    fn offset_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(offset) = self.starts.get(path) {
                return Some(*offset);
            }
            path = parent(path)?;
        }
    }
}

/// `hosts[1].network` for `hosts[1].network.address`, `hosts` for `hosts[1]`, `` for `hosts`;
/// `None` for the root itself.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |cut| &path[..cut]))
}

/// Line and column (1-based, columns in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// One level of nesting while scanning.
enum Frame {
    /// `(…)` or `{…}`: a struct (its current field, once `name:` was read) or a variant's or
    /// `Some`'s contents (no field: transparent in paths).
    Paren { field: Option<String> },
    /// `[…]`: a list, at its `index`th element.
    List { index: usize },
}

/// The path of the value about to be read, from the frames around it.
fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Paren { field: Some(field) } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(field);
            }
            Frame::Paren { field: None } => {}
            Frame::List { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The start of every value in `text`, by path. Where several tokens start the same value
/// (`Some("x")`, `Static(…)`), a string or number wins over the variant name before it, so an
/// error points at the text the administrator typed.
fn scan(text: &str) -> HashMap<String, usize> {
    let bytes = text.as_bytes();
    let mut starts = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b'/' if bytes.get(at + 1) == Some(&b'/') => at = line_end(bytes, at),
            b'/' if bytes.get(at + 1) == Some(&b'*') => at = block_comment_end(bytes, at),
            b'"' | b'\'' => {
                starts.insert(path_of(&stack), at);
                at = quoted_end(bytes, at);
            }
            b'r' | b'b' if raw_or_byte_string(bytes, at) => {
                starts.insert(path_of(&stack), at);
                at = prefixed_string_end(bytes, at);
            }
            b'(' | b'{' => {
                starts.entry(path_of(&stack)).or_insert(at);
                stack.push(Frame::Paren { field: None });
                at += 1;
            }
            b'[' => {
                starts.entry(path_of(&stack)).or_insert(at);
                stack.push(Frame::List { index: 0 });
                at += 1;
            }
            b')' | b'}' | b']' => {
                stack.pop();
                at += 1;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::List { index }) => *index += 1,
                    Some(Frame::Paren { field }) => *field = None,
                    None => {}
                }
                at += 1;
            }
            _ if is_atom_byte(byte) => {
                let end = atom_end(bytes, at);
                let word = &text[at..end];
                let colon = skip_blank(bytes, end);
                let is_field_name = bytes.get(colon) == Some(&b':');
                match stack.last_mut() {
                    Some(Frame::Paren { field }) if is_field_name => {
                        *field = Some(word.to_string());
                        at = colon + 1;
                        continue;
                    }
                    _ => {}
                }
                // An identifier (`Some`, `Host`, `Dhcp`) only starts a value that nothing
                // more precise starts; numbers and `true` are the value itself.
                if word.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    starts.entry(path_of(&stack)).or_insert(at);
                } else {
                    starts.insert(path_of(&stack), at);
                }
                at = end;
            }
            _ => at += 1,
        }
    }
    starts
}

fn is_atom_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'+' | b'.')
}

fn atom_end(bytes: &[u8], start: usize) -> usize {
    (start..bytes.len())
        .find(|&i| !is_atom_byte(bytes[i]))
        .unwrap_or(bytes.len())
}

/// The first position at or after `at` that is no whitespace or comment.
fn skip_blank(bytes: &[u8], mut at: usize) -> usize {
    loop {
        match (bytes.get(at), bytes.get(at + 1)) {
            (Some(b), _) if b.is_ascii_whitespace() => at += 1,
            (Some(b'/'), Some(b'/')) => at = line_end(bytes, at),
            (Some(b'/'), Some(b'*')) => at = block_comment_end(bytes, at),
            _ => return at,
        }
    }
}

fn line_end(bytes: &[u8], start: usize) -> usize {
    (start..bytes.len())
        .find(|&i| bytes[i] == b'\n')
        .unwrap_or(bytes.len())
}

/// The end of a `/* … */` comment starting at `start` (RON nests them).
fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut at = start;
    while at < bytes.len() {
        match (bytes[at], bytes.get(at + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                at += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                at += 2;
                if depth == 0 {
                    return at;
                }
            }
            _ => at += 1,
        }
    }
    at
}

/// The end of a `"…"` or `'…'` literal starting at `start`, past its escapes.
fn quoted_end(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b if b == quote => return at + 1,
            _ => at += 1,
        }
    }
    at
}

/// Whether a raw string (`r"…"`, `r#"…"#`) or byte string (`b"…"`, `br"…"`) starts at `at`.
fn raw_or_byte_string(bytes: &[u8], at: usize) -> bool {
    let rest = &bytes[at..];
    let after_prefix = match rest {
        [b'b', b'r', ..] => 2,
        _ => 1,
    };
    let hashes = rest[after_prefix..]
        .iter()
        .take_while(|&&b| b == b'#')
        .count();
    let is_raw = rest[..after_prefix].contains(&b'r');
    rest.get(after_prefix + hashes) == Some(&b'"') && (is_raw || hashes == 0)
}

/// The end of a raw or byte string starting at `start`.
fn prefixed_string_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start;
    while bytes[at] != b'#' && bytes[at] != b'"' {
        at += 1;
    }
    let is_raw = bytes[start..at].contains(&b'r');
    if !is_raw {
        return quoted_end(bytes, at);
    }
    let hashes = bytes[at..].iter().take_while(|&&b| b == b'#').count();
    let body = at + hashes + 1;
    let mut closing = vec![b'"'];
    closing.extend(std::iter::repeat_n(b'#', hashes));
    (body..bytes.len())
        .find(|&i| bytes[i..].starts_with(&closing))
        .map_or(bytes.len(), |i| i + closing.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(text: &str, path: &str) -> Option<(usize, usize)> {
        Locator::new(Path::new("c.ron"), text)
            .error(path, String::new(), "")
            .position
    }

    #[test]
    fn values_are_found_by_their_path() {
        let text = "Cluster(\n  name: \"a\", // name: \"comment\"\n  hosts: [\n    Host(serial: \"S\", macs: [\"m0\", \"m1\"]),\n    Host(serial: \"T\", network: Some(Static(address: \"10.0.0.1/24\"))),\n  ],\n  pools: [/* ] */ Pool(name: r#\"p\"#)],\n  vcpus: 2,\n)";
        assert_eq!(position(text, "name"), Some((2, 9)));
        assert_eq!(position(text, "hosts[0]"), Some((4, 5)));
        assert_eq!(position(text, "hosts[0].serial"), Some((4, 18)));
        assert_eq!(position(text, "hosts[0].macs[1]"), Some((4, 36)));
        assert_eq!(position(text, "hosts[1].serial"), Some((5, 18)));
        assert_eq!(position(text, "hosts[1].network"), Some((5, 32)));
        assert_eq!(position(text, "hosts[1].network.address"), Some((5, 53)));
        assert_eq!(position(text, "pools[0].name"), Some((7, 30)));
        assert_eq!(position(text, "vcpus"), Some((8, 10)));
    }

    #[test]
    fn an_absent_value_is_placed_at_what_encloses_it() {
        let text = "Cluster(\n  hosts: [Host(serial: \"S\")],\n)";
        assert_eq!(position(text, "hosts[0].pool"), Some((2, 11)));
        assert_eq!(position(text, "domain"), Some((1, 1)));
        assert_eq!(position("", "domain"), None);
    }

    #[test]
    fn parents_strip_one_step() {
        assert_eq!(parent("hosts[1].network.address"), Some("hosts[1].network"));
        assert_eq!(parent("hosts[1]"), Some("hosts"));
        assert_eq!(parent("hosts"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("ab\ncé x", 7), (2, 4));
        assert_eq!(line_col("x", 0), (1, 1));
    }
}
