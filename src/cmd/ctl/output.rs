//! How `ctl` shows keys and values: escaped text for people, hex for exact bytes, and
//! both in `--json` documents so a script never has to guess which one it got.

use serde_json::{json, Value};

/// Bytes as text an operator can read and paste back: printable ASCII as is, `\` and `"`
/// escaped with a backslash, every other byte as `\xNN`. The same spelling the logs use,
/// so a key seen in a log line matches what `ctl` prints. Tabs and newlines are escaped,
/// which keeps `scan`'s `key<TAB>value` lines unambiguous.
pub fn escape(bytes: &[u8]) -> String {
    codec::escape::escape_bare(bytes)
}

/// Bytes as upper-case hex, the spelling the scheduler's API uses for region keys.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses hex (either case, an optional `0x`), naming `what` in the error.
pub fn parse_hex(what: &str, text: &str) -> Result<Vec<u8>, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if !digits.len().is_multiple_of(2) {
        return Err(format!("{what} {text:?} is not hex: odd number of digits"));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("{what} {text:?} is not hex"))
        })
        .collect()
}

/// How data commands show bytes in text output: hex with `--hex`, else escaped text.
#[derive(Clone, Copy, Debug)]
pub struct Bytes {
    pub hex: bool,
}

impl Bytes {
    pub fn show(self, bytes: &[u8]) -> String {
        if self.hex {
            hex(bytes)
        } else {
            escape(bytes)
        }
    }
}

/// Both spellings of some bytes as JSON fields `<name>` (escaped text) and `<name>_hex`,
/// added to `obj`.
pub fn put_bytes(obj: &mut serde_json::Map<String, Value>, name: &str, bytes: &[u8]) {
    obj.insert(name.to_string(), json!(escape(bytes)));
    obj.insert(format!("{name}_hex"), json!(hex(bytes)));
}

/// A key and its value as a JSON object with both spellings of each.
pub fn kv_json(key: &[u8], value: &[u8]) -> Value {
    let mut obj = serde_json::Map::new();
    put_bytes(&mut obj, "key", key);
    put_bytes(&mut obj, "value", value);
    Value::Object(obj)
}

/// Prints one `--json` document on one line (one command, one line: easy to pipe).
pub fn print_json(v: &Value) {
    write_line(format_args!("{v}"));
}

/// `println!` for ctl's output, through [`write_line`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::ctl::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line to stdout. `println!` panics when stdout is a pipe whose reader has
/// gone (`tessera ctl scan | head -1`); here that ends the process quietly, as the
/// default SIGPIPE action would, and any other write error is one line on stderr.
pub fn write_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // stdout is line-buffered: the newline flushes, so a failed write surfaces here.
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tessera: writing to stdout: {e}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_printable_ascii_and_hex_escapes_the_rest() {
        assert_eq!(escape(b"user 42"), "user 42");
        assert_eq!(escape(b"a\tb\n\x00\xff"), "a\\x09b\\x0a\\x00\\xff");
        assert_eq!(escape(b"back\\slash \"q\""), "back\\\\slash \\\"q\\\"");
        assert_eq!(escape(b""), "");
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_input() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(parse_hex("key", &hex(&all)).unwrap(), all);
        assert_eq!(parse_hex("key", "0xff00").unwrap(), vec![0xff, 0]);
        assert_eq!(parse_hex("key", "").unwrap(), Vec::<u8>::new());
        assert!(parse_hex("key", "abc").unwrap_err().contains("odd"));
        assert!(parse_hex("key", "zz").is_err());
        // A multi-byte character must not panic the slicing.
        assert!(parse_hex("key", "é0").is_err());
    }

    #[test]
    fn json_gives_both_spellings() {
        let v = kv_json(b"k\x01", b"v");
        assert_eq!(v["key"], "k\\x01");
        assert_eq!(v["key_hex"], "6B01");
        assert_eq!(v["value"], "v");
        assert_eq!(v["value_hex"], "76");
    }
}
