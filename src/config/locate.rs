//! Finds the field path (`upstreams.web.servers[0].weight`) of the YAML node at
//! a line/column.
//!
//! serde-saphyr errors carry a position but no path (it records paths only with
//! its garde/validator features). Rather than wrap its deserializer, which
//! would hide the special newtype that `Spanned` relies on, we walk the failed
//! document again with the same parser (granit-parser, re-exported by
//! serde-saphyr), so positions agree exactly. This only runs on errors.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// What kind of node an error is about. A block mapping starts at its first
/// key, so one position can hold both a mapping (a value) and a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Key,
    Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Mapping,
    Sequence,
    Null,
    Scalar(String),
    Alias,
}

impl Kind {
    /// "a list", "`abc`", ... for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Kind::Mapping => "a mapping".to_string(),
            Kind::Sequence => "a list".to_string(),
            Kind::Null => "nothing (null)".to_string(),
            Kind::Alias => "an alias".to_string(),
            Kind::Scalar(text) if text.chars().count() > 60 || text.contains('\n') => "a long string".to_string(),
            Kind::Scalar(text) => format!("`{}`", text.escape_debug()),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub line: usize,
    pub column: usize,
    pub role: Role,
    pub kind: Kind,
    pub path: String,
}

enum Frame {
    Map { path: String, key: String, want_key: bool },
    Seq { path: String, next: usize },
}

/// The node at exactly (line, column) in the given role if there is one, else
/// any node there (outermost first), else the last node starting before it
/// (for syntax errors, which may point between nodes).
pub(crate) fn node_at(text: &str, line: usize, column: usize, role: Role) -> Option<Node> {
    let nodes = all_nodes(text);
    let here = |n: &&Node| n.line == line && n.column == column;
    nodes
        .iter()
        .filter(here)
        .find(|n| n.role == role)
        .or_else(|| nodes.iter().find(here))
        .or_else(|| nodes.iter().rfind(|n| (n.line, n.column) < (line, column)))
        .cloned()
}

/// Every node start in document order. Stops quietly at a syntax error: the
/// nodes before it are still useful.
pub(crate) fn all_nodes(text: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let (line, column) = (span.start.line(), span.start.col() + 1);
        let kind = match event {
            Event::Scalar(value, style, ..) => {
                let null = style == ScalarStyle::Plain && matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                if null {
                    Kind::Null
                } else {
                    Kind::Scalar(value.into_owned())
                }
            }
            Event::Alias(_) => Kind::Alias,
            Event::MappingStart(..) => Kind::Mapping,
            Event::SequenceStart(..) => Kind::Sequence,
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                node_done(&mut stack);
                continue;
            }
            _ => continue,
        };
        let (role, path) = node_start(&mut stack, &kind);
        match kind {
            Kind::Mapping => stack.push(Frame::Map { path: path.clone(), key: String::new(), want_key: true }),
            Kind::Sequence => stack.push(Frame::Seq { path: path.clone(), next: 0 }),
            _ => {}
        }
        let done_now = !matches!(kind, Kind::Mapping | Kind::Sequence);
        nodes.push(Node { line, column, role, kind, path });
        if done_now {
            node_done(&mut stack);
        }
    }
    nodes
}

/// Role and path of a node starting inside the innermost open collection.
fn node_start(stack: &mut [Frame], kind: &Kind) -> (Role, String) {
    match stack.last_mut() {
        None => (Role::Value, String::new()),
        Some(Frame::Seq { path, next }) => (Role::Value, format!("{path}[{next}]")),
        Some(Frame::Map { path, key, want_key }) => {
            if *want_key {
                *key = match kind {
                    Kind::Scalar(text) => text.clone(),
                    Kind::Null => String::new(),
                    _ => "?".to_string(), // complex keys never name a porter field
                };
            }
            let role = if *want_key { Role::Key } else { Role::Value };
            (role, join(path, key))
        }
    }
}

/// A node (scalar, alias, or a whole collection) ended: advance the parent.
fn node_done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { want_key, .. }) => *want_key = !*want_key,
        Some(Frame::Seq { next, .. }) => *next += 1,
        None => {}
    }
}

/// `parent.key`; keys that would make the path ambiguous are quoted.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '<'));
    let key = if plain { key.to_string() } else { format!("{key:?}") };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
limits:
  idle_timeout: 5s
upstreams:
  web:
    servers:
      - url: http://a
        weight: 2
      - {url: http://b, weight: 3}
routes: [{upstream: web}]
";

    fn path(line: usize, column: usize, role: Role) -> String {
        node_at(DOC, line, column, role).unwrap().path
    }

    #[test]
    fn paths_of_keys_values_and_items() {
        assert_eq!(path(2, 3, Role::Key), "limits.idle_timeout");
        assert_eq!(path(2, 3, Role::Value), "limits"); // the mapping starts at its first key
        assert_eq!(path(2, 17, Role::Value), "limits.idle_timeout");
        assert_eq!(path(6, 7, Role::Value), "upstreams.web.servers");
        assert_eq!(path(7, 17, Role::Value), "upstreams.web.servers[0].weight");
        assert_eq!(path(8, 37, Role::Value), "upstreams.web.servers[1].weight");
        assert_eq!(path(8, 28, Role::Key), "upstreams.web.servers[1].weight");
        assert_eq!(path(9, 22, Role::Value), "routes[0].upstream");
        assert_eq!(path(1, 1, Role::Value), "");
    }

    #[test]
    fn kinds_and_quoting() {
        let node = node_at("a:\n  b: ~\n", 2, 6, Role::Value).unwrap();
        assert_eq!((node.kind, node.path.as_str()), (Kind::Null, "a.b"));
        assert_eq!(join("upstreams", "api.v1"), "upstreams.\"api.v1\"");
        assert_eq!(join("", "web"), "web");
    }

    #[test]
    fn falls_back_to_preceding_node() {
        // The error of an unclosed flow list points past the last node.
        let node = node_at("routes: [a, b\n", 2, 1, Role::Value).unwrap();
        assert!(node.path.starts_with("routes["), "{}", node.path);
    }
}
