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
        let hint = if message.contains("unknown field") {
            Some("remove the key or fix its spelling; the expected keys are listed above".into())
        } else if message.contains("invalid type") {
            Some("check the value's type: strings need quotes, durations look like \"5s\" or \"10m\"".into())
        } else if message.contains("missing field") {
            Some("add the missing key to this table".into())
        } else {
            None
        };
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
    fn line_and_column() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
    }
}
