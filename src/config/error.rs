//! The one error type of the config module: where (file, line, column, field) and what.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// An invalid or unreadable configuration.
///
/// `line` and `column` are 1-based (columns count characters, not bytes) and are
/// both `Some` or both `None`. `field` is the dotted path of the offending node,
/// like `upstreams.web.servers[0].weight` or `routes[2].upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole (unreadable, empty, ...).
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_path_buf(), line: None, column: None, field: None, message: message.into() }
    }

    /// An error at a node of the document. An unknown location (as serde-saphyr
    /// reports for values it synthesised) leaves line/column out; an empty field
    /// path (the document root) leaves the field out.
    pub(crate) fn at(file: &Path, loc: Location, field: &str, message: impl Into<String>) -> Self {
        let known = loc.line() > 0 && loc != Location::UNKNOWN;
        ConfigError {
            file: file.to_path_buf(),
            line: known.then(|| loc.line() as usize),
            column: known.then(|| loc.column() as usize),
            field: (!field.is_empty()).then(|| field.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// "line 3, column 5", for messages that point at a second place (duplicates).
pub(crate) fn describe_location(loc: Location) -> String {
    if loc.line() == 0 {
        "an unknown position".to_string()
    } else {
        format!("line {}, column {}", loc.line(), loc.column())
    }
}
