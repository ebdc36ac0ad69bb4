//! Keys as an operator reads them in logs and error messages.
//!
//! A key is arbitrary bytes, and `{:?}` of a `Vec<u8>` prints it as a list of decimal
//! numbers (`[116, 48, 48, ...]`) that nobody can match against the key they wrote.
//! [`Escaped`] prints printable ASCII as is and every other byte as `\xNN`, the way a C or
//! Rust string literal would spell it, so `user\x00\x01` reads as the key it is and can be
//! pasted back. The empty key, which in a region boundary means "unbounded", prints as
//! `""` so it is never an invisible blank in a log line.

use std::fmt;

/// Displays bytes as escaped text (see the module docs). Cheap: it formats on demand,
/// without allocating, so it can wrap a key in any log call.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("\"\"");
        }
        for &b in self.0 {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'"' => f.write_str("\\\"")?,
                0x20..=0x7e => fmt::Write::write_char(f, b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `bytes` as escaped text (see [`Escaped`]).
pub fn escape(bytes: &[u8]) -> String {
    Escaped(bytes).to_string()
}

/// Like [`escape`], but the empty key stays empty: for a page or a table that shows an
/// empty key its own way (an open region bound, an empty cell) rather than as `""`.
pub fn escape_bare(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    escape(bytes)
}

/// A key range `[start, end)` where an empty end means "to the end of the key space",
/// printed as `[start, end)` with both keys escaped and an open end as `+inf`.
#[derive(Clone, Copy)]
pub struct Range<'a>(pub &'a [u8], pub &'a [u8]);

impl fmt::Display for Range<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, ", Escaped(self.0))?;
        if self.1.is_empty() {
            f.write_str("+inf)")
        } else {
            write!(f, "{})", Escaped(self.1))
        }
    }
}

impl fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses what [`Escaped`] prints back into bytes (`\xNN`, `\\`, `\"`; anything else is
/// taken literally), so a key copied from a log can be given to a tool. `""` is the empty
/// key. Fails on a `\x` not followed by two hex digits or an unknown escape.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    if text == "\"\"" {
        return Ok(Vec::new());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => out.push(b'\\'),
            Some(b'"') => out.push(b'"'),
            Some(b'x') => {
                let hex = text
                    .get(i + 2..i + 4)
                    .ok_or_else(|| format!("`\\x` at byte {i} needs two hex digits"))?;
                let b = u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("`\\x{hex}` at byte {i} is not a hex byte"))?;
                out.push(b);
                i += 4;
                continue;
            }
            other => {
                return Err(format!(
                    "unknown escape `\\{}` at byte {i} (use \\xNN, \\\\ or \\\")",
                    other.map_or(String::new(), |c| (*c as char).to_string())
                ))
            }
        }
        i += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_stays_and_other_bytes_are_hex_escaped() {
        assert_eq!(escape(b"user42"), "user42");
        assert_eq!(escape(b"t\x00\x01\xff"), "t\\x00\\x01\\xff");
        assert_eq!(escape(b"a\\b\"c"), "a\\\\b\\\"c");
        assert_eq!(escape(b"\n"), "\\x0a");
        assert_eq!(escape(b""), "\"\"");
        assert_eq!(escape_bare(b""), "");
        assert_eq!(escape_bare(b"a\x01"), "a\\x01");
    }

    #[test]
    fn ranges_name_an_open_end() {
        assert_eq!(Range(b"a", b"").to_string(), "[a, +inf)");
        assert_eq!(Range(b"", b"m\x00").to_string(), "[\"\", m\\x00)");
    }

    #[test]
    fn unescape_inverts_escape_for_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(unescape(&escape(&all)).unwrap(), all);
        assert_eq!(unescape(&escape(b"")).unwrap(), b"");
        assert_eq!(
            unescape("k\\x4"),
            Err("`\\x` at byte 1 needs two hex digits".into())
        );
        assert!(unescape("k\\xzz").is_err());
        assert!(unescape("k\\n").is_err());
    }
}
