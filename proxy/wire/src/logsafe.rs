//! Client text made safe for a log line.
//!
//! A player name, a handshake host or anything else a client chose reaches the log through
//! [`log_safe`]: control characters (newlines, ESC, C1), whitespace, quotes, backslashes and
//! the Unicode characters that reorder or break lines are written as escapes, so a client
//! can neither forge a log line (`name\n… ERROR …`), nor add a `key=value` field, nor send
//! terminal escape sequences to whoever reads the log. Ordinary names and hosts print as
//! they are.

use std::fmt::{self, Display, Write};

/// At most this many characters of one value are logged; the rest is counted.
pub const MAX_LOGGED_CHARS: usize = 256;

/// Wraps `value` so its `Display` output is escaped (see the module docs). Allocation-free:
/// use it as a tracing field, `player = %log_safe(&name)`.
pub fn log_safe<T: Display>(value: T) -> LogSafe<T> {
    LogSafe(value)
}

/// See [`log_safe`].
pub struct LogSafe<T>(T);

impl<T: Display> Display for LogSafe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Escaper {
            inner: f,
            written: 0,
            dropped: 0,
        };
        write!(out, "{}", self.0)?;
        if out.dropped > 0 {
            write!(out.inner, "…(+{} chars)", out.dropped)?;
        }
        Ok(())
    }
}

struct Escaper<'a, 'b> {
    inner: &'a mut fmt::Formatter<'b>,
    written: usize,
    dropped: usize,
}

impl Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.written >= MAX_LOGGED_CHARS {
                self.dropped += 1;
                continue;
            }
            self.written += 1;
            match c {
                '\n' => self.inner.write_str("\\n")?,
                '\r' => self.inner.write_str("\\r")?,
                '\t' => self.inner.write_str("\\t")?,
                '\\' => self.inner.write_str("\\\\")?,
                '"' => self.inner.write_str("\\\"")?,
                c if needs_escape(c) => write!(self.inner, "\\u{{{:x}}}", c as u32)?,
                c => self.inner.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Control characters, whitespace (a space would start a new `key=value` field), and the
/// invisible characters that break or reorder a line on screen.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width and direction marks
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206f}' // word joiner, bidi isolates, invisible operators
            | '\u{feff}'              // byte order mark
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        log_safe(v).to_string()
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        assert_eq!(s("Notch_123"), "Notch_123");
        assert_eq!(s("survival.play.example.com"), "survival.play.example.com");
        assert_eq!(s("Jörg"), "Jörg");
    }

    #[test]
    fn a_newline_cannot_forge_a_line() {
        let forged = "x\n2024-01-01T00:00:00Z ERROR pwn";
        let out = s(forged);
        assert!(!out.contains('\n'), "{out}");
        assert_eq!(out, "x\\n2024-01-01T00:00:00Z\\u{20}ERROR\\u{20}pwn");
    }

    #[test]
    fn escapes_and_separators_are_escaped() {
        assert_eq!(s("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(s("a\u{9b}b"), "a\\u{9b}b");
        assert_eq!(s("a\u{2028}b\u{202e}c"), "a\\u{2028}b\\u{202e}c");
        assert_eq!(s("a\rb\tc\0d"), "a\\rb\\tc\\u{0}d");
        assert_eq!(s("a=\"b\" \\"), "a=\\\"b\\\"\\u{20}\\\\");
        assert!(s(&"\u{7f}".repeat(3)).chars().all(|c| !c.is_control()));
    }

    #[test]
    fn long_values_are_cut() {
        let out = s(&"a".repeat(MAX_LOGGED_CHARS + 10));
        assert!(out.starts_with(&"a".repeat(MAX_LOGGED_CHARS)));
        assert!(out.ends_with("…(+10 chars)"), "{out}");
    }

    #[test]
    fn works_for_any_display() {
        let e = std::io::Error::other("bad\nline");
        assert_eq!(log_safe(&e).to_string(), "bad\\nline");
    }
}
