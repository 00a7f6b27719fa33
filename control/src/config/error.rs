//! Config errors that point at the offending line and say how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub line: Option<(usize, usize)>,
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        Self {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read the config file: {e}"),
            hint: Some("check the path and permissions".into()),
        }
    }

    pub fn from_toml(path: &Path, text: &str, e: &toml::de::Error) -> Self {
        let message = e.message().to_string();
        let hint = hint_for(&message);
        Self {
            file: path.to_path_buf(),
            line: e.span().map(|s| line_col(text, s.start)),
            message,
            hint,
        }
    }

    /// A semantic error at `span` (from `toml::Spanned`) in `text`.
    pub fn at(
        path: &Path,
        text: &str,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            file: path.to_path_buf(),
            line: Some(line_col(text, span.start)),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A semantic error without a precise place.
    pub fn general(path: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            file: path.to_path_buf(),
            line: None,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// A hint for a TOML/serde message, specific to what was expected where one can tell.
fn hint_for(message: &str) -> Option<String> {
    if message.contains("unknown field") || message.contains("unknown variant") {
        return Some(
            "remove the key or fix its spelling; the expected values are listed above".into(),
        );
    }
    if message.contains("missing field") {
        return Some("add the missing key to this table".into());
    }
    if message.contains("untagged enum Listen") {
        return Some(
            "an address string, e.g. \"0.0.0.0:25565\", or a list of them, e.g. [\"0.0.0.0:25565\", \"[::]:25565\"]".into(),
        );
    }
    let expected = message.split_once("expected ")?.1;
    let hint = if expected.contains("sequence") {
        "this key takes a list: write [\"a\", \"b\"] (one item still needs the brackets)"
    } else if expected.contains("duration") {
        "durations are quoted strings like \"5s\", \"10m\" or \"1h 30m\""
    } else if expected.contains("string") || expected.contains("path") {
        "strings need quotes, e.g. \"127.0.0.1:25570\""
    } else if expected.contains("bool") {
        "write true or false, without quotes"
    } else if [
        "u8", "u16", "u32", "u64", "usize", "i32", "i64", "f64", "integer", "float",
    ]
    .iter()
    .any(|n| expected.contains(n))
    {
        "write a number, without quotes"
    } else if expected.contains("map") || expected.contains("struct") {
        "this key is a table: a [section] of its own, or an inline { key = value, … }"
    } else {
        return Some(format!(
            "check the value's type: expected {}",
            expected.trim()
        ));
    };
    Some(hint.into())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before.len() - i)
        .unwrap_or(before.len() + 1);
    (line, col)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.file.display(), self.message)?,
            None => write!(f, "{}: {}", self.file.display(), self.message)?,
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_match_what_was_expected() {
        let hint = |m: &str| hint_for(m).unwrap_or_default();
        assert!(hint("invalid type: string \"a\", expected a sequence").contains("list"));
        assert!(hint("invalid type: integer `5`, expected a duration").contains("\"5s\""));
        assert!(hint("invalid type: integer `5`, expected a string").contains("quotes"));
        assert!(hint("invalid type: string \"yes\", expected a boolean").contains("true or false"));
        assert!(hint("invalid type: string \"5\", expected u32").contains("number"));
        assert!(hint("unknown field `lisen`, expected one of `listen`").contains("spelling"));
        assert!(hint("data did not match any variant of untagged enum Listen").contains("list"));
    }

    #[test]
    fn line_and_column() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
    }
}
