//! Reading the YAML into the raw schema, and turning serde-saphyr errors into
//! `ConfigError`s with a position, a field path and a message for humans.

use std::borrow::Cow;
use std::path::Path;

use serde_saphyr::{Error as YamlError, Location, MessageFormatter, UserMessageFormatter};

use super::error::{describe_location, ConfigError};
use super::locate::{join, node_at, Role};
use super::raw::RawConfig;

/// Parses `text` (the contents of `file`) into the raw schema.
pub(crate) fn parse(text: &str, file: &Path) -> Result<RawConfig, ConfigError> {
    // Snippets are for terminals; we report position and path ourselves.
    let options = serde_saphyr::options! { with_snippet: false };
    // `Option` so that an empty, comment-only or `~` document is `None`.
    match serde_saphyr::from_str_with_options::<Option<RawConfig>>(text, options) {
        Ok(Some(raw)) => Ok(raw),
        Ok(None) => Err(ConfigError::new(file, "config is empty")),
        Err(err) => Err(convert(&err, text, file)),
    }
}

fn convert(err: &YamlError, text: &str, file: &Path) -> ConfigError {
    let location = err.location().unwrap_or(Location::UNKNOWN);
    // For an alias, `location` is where it is used; the inner error tells what.
    let (inner, defined) = match err.without_snippet() {
        YamlError::AliasError { error, locations, .. } => (error.without_snippet(), Some(locations.defined_location)),
        other => (other, None),
    };
    let role = match inner {
        YamlError::SerdeUnknownField { .. } | YamlError::DuplicateMappingKey { .. } => Role::Key,
        _ => Role::Value,
    };
    let node = (location.line() > 0)
        .then(|| node_at(text, location.line() as usize, location.column() as usize, role))
        .flatten();
    // What was found is best read where it is written, not at an alias to it.
    let found_at = defined.unwrap_or(location);
    let found = (found_at.line() > 0)
        .then(|| node_at(text, found_at.line() as usize, found_at.column() as usize, Role::Value))
        .flatten()
        .map_or_else(|| "something else".to_string(), |n| n.kind.describe());
    let mut path = node.map(|n| n.path).unwrap_or_default();

    let mut message = match inner {
        YamlError::SerdeUnknownField { field, expected, .. } => unknown_field(field, expected),
        YamlError::SerdeMissingField { field, .. } => {
            // Reported at the mapping that lacks it; name the field in the path.
            path = join(&path, field);
            format!("missing required field `{field}`")
        }
        YamlError::DuplicateMappingKey { key: Some(key), .. } => {
            format!("duplicate key `{key}`: each key may appear only once")
        }
        YamlError::InvalidScalar { ty, .. } => {
            format!("expected {}, found {found}", describe_type(ty))
        }
        YamlError::Unexpected { expected, .. } => {
            format!("expected {}, found {found}", describe_expected(expected))
        }
        YamlError::NullIntoString { .. } => format!("expected a string, found {found}"),
        YamlError::MultipleDocuments { .. } => {
            "the config must be a single YAML document, but a second one starts here".to_string()
        }
        other => UserMessageFormatter.format_message(other).into_owned(),
    };
    if let Some(defined) = defined.filter(|d| *d != location) {
        message.push_str(&format!(" (in the value defined at {})", describe_location(defined)));
    }
    ConfigError::at(file, location, &path, sanitize(&message))
}

fn unknown_field(field: &str, expected: &[&str]) -> String {
    let mut message = format!("unknown field `{field}`");
    // One edit per three letters: catches `weigth`/`upstreem`, not `wat` -> `path`.
    let limit = (field.chars().count() / 3).max(1);
    if let Some(close) =
        expected.iter().filter(|e| edit_distance(field, e) <= limit).min_by_key(|e| edit_distance(field, e))
    {
        message.push_str(&format!(", did you mean `{close}`?"));
    }
    if expected.is_empty() {
        message.push_str(" (no fields are allowed here)");
    } else {
        message.push_str(&format!(" (expected one of: {})", expected.join(", ")));
    }
    message
}

fn describe_type(ty: &str) -> Cow<'static, str> {
    Cow::Borrowed(match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "boolean" | "bool" => "true or false",
        "char" => "a single character",
        other => return Cow::Owned(format!("a value of type {other}")),
    })
}

fn describe_expected(expected: &str) -> Cow<'_, str> {
    Cow::Borrowed(match expected {
        "mapping start" => "a mapping of `key: value` fields",
        "sequence start" => "a list",
        "string scalar" | "scalar" => "a single value",
        other => other,
    })
}

/// Levenshtein distance, for "did you mean" on typos in field names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Messages end up in logs and terminals: no raw control characters.
fn sanitize(message: &str) -> String {
    message.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("upstreem", "upstream"), 1);
        assert_eq!(edit_distance("weigth", "weight"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unknown_field_suggests() {
        let msg = unknown_field("weigth", &["url", "weight"]);
        assert_eq!(msg, "unknown field `weigth`, did you mean `weight`? (expected one of: url, weight)");
        assert!(!unknown_field("colour", &["url", "weight"]).contains("did you mean"));
        assert!(!unknown_field("wat", &["path"]).contains("did you mean"));
        assert!(unknown_field("limit", &["limits"]).contains("did you mean `limits`?"));
    }
}
