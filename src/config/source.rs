//! Configuration sources: TOML files parsed into a span-carrying tree.
//!
//! Every value remembers the file and byte offset it came from, so that validation (which runs on the
//! merged tree of `vestibule.toml`, `conf.d/*.toml` and each vhost file) can still point at
//! `file:line:col`. This module only parses and merges; it knows nothing about what keys mean.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// One configuration file's name (as shown to the user) and full text.
#[derive(Debug)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
    /// Where each line starts, computed on the first [`Loc::line_col`]: scanning the text from the
    /// start for every diagnostic made `check` quadratic in the number of errors.
    lines: OnceLock<LineIndex>,
}

#[derive(Debug)]
struct LineIndex {
    /// Byte offset of each line's start.
    starts: Vec<usize>,
    /// Columns are bytes then, without counting characters along a (possibly very long) line.
    ascii: bool,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
            lines: OnceLock::new(),
        }
    }

    fn line_index(&self) -> &LineIndex {
        self.lines.get_or_init(|| {
            let bytes = self.text.as_bytes();
            let starts = std::iter::once(0)
                .chain((0..bytes.len()).filter(|&i| bytes[i] == b'\n').map(|i| i + 1))
                .collect();
            LineIndex {
                starts,
                ascii: self.text.is_ascii(),
            }
        })
    }
}

/// A position in a source file.
#[derive(Clone)]
pub struct Loc {
    pub file: Arc<SourceFile>,
    pub offset: usize,
}

impl Loc {
    /// 1-based line and column (in characters) of this position.
    pub fn line_col(&self) -> (usize, usize) {
        let text = &self.file.text;
        let mut offset = self.offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let index = self.file.line_index();
        // The number of line starts at or before `offset` (at least one: 0) is the line number.
        let line = index.starts.partition_point(|&s| s <= offset).max(1);
        let start = index.starts[line - 1];
        let col = if index.ascii {
            offset - start
        } else {
            text[start..offset].chars().count()
        };
        (line, col + 1)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.line_col();
        write!(f, "{}:{}:{}", self.file.path, line, col)
    }
}

impl fmt::Debug for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A value read from the tree, with where it was written so later checks (files to read, cross-checks)
/// can point at it. Equal when the values are: moving a line changes nothing.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// A parsed TOML value with its location.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// A key of a table, in document order.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_loc: Loc,
    pub node: Node,
}

impl Value {
    /// The TOML type name, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

impl Node {
    /// An empty table located at the start of `file`.
    pub fn empty_table(file: Arc<SourceFile>) -> Node {
        Node {
            value: Value::Table(Vec::new()),
            loc: Loc { file, offset: 0 },
        }
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Table(e) => Some(e),
            _ => None,
        }
    }

    /// Deep-merge `overlay` into `self`: tables merge key by key, every other value (arrays included)
    /// is replaced by the overlay's. This is how `conf.d` drop-ins override the main file.
    pub fn merge(&mut self, overlay: Node) {
        match (&mut self.value, overlay.value) {
            (Value::Table(base), Value::Table(over)) => {
                // An index, not a scan of `base` per key: a drop-in with many keys stays linear.
                let mut index: HashMap<String, usize> =
                    base.iter().enumerate().map(|(i, e)| (e.key.clone(), i)).collect();
                for entry in over {
                    match index.get(&entry.key) {
                        Some(&i) => {
                            let existing = &mut base[i];
                            existing.key_loc = entry.key_loc;
                            existing.node.merge(entry.node);
                        }
                        None => {
                            index.insert(entry.key.clone(), base.len());
                            base.push(entry);
                        }
                    }
                }
            }
            (_, value) => {
                self.value = value;
                self.loc = overlay.loc;
            }
        }
    }
}

/// A TOML syntax error, at its position (the caller turns it into a diagnostic).
#[derive(Debug)]
pub struct SyntaxError {
    pub loc: Loc,
    pub message: String,
}

/// Parse one TOML file into a tree. A syntax error is reported at its position.
pub fn parse(file: Arc<SourceFile>) -> Result<Node, SyntaxError> {
    let doc = toml_edit::Document::parse(file.text.as_str()).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let message = e.message().trim().to_string();
        SyntaxError {
            loc: Loc {
                file: file.clone(),
                offset,
            },
            message: format!("invalid TOML: {message}"),
        }
    })?;
    let root = Loc {
        file: file.clone(),
        offset: 0,
    };
    Ok(convert_item(doc.as_item(), &root))
}

fn loc_of(span: Option<std::ops::Range<usize>>, parent: &Loc) -> Loc {
    Loc {
        file: parent.file.clone(),
        offset: span.map_or(parent.offset, |s| s.start),
    }
}

fn convert_item(item: &toml_edit::Item, parent: &Loc) -> Node {
    let loc = loc_of(item.span(), parent);
    match item {
        toml_edit::Item::None => Node {
            value: Value::Table(Vec::new()),
            loc,
        },
        toml_edit::Item::Value(v) => convert_value(v, parent),
        toml_edit::Item::Table(t) => {
            let loc = loc_of(t.span(), parent);
            let entries = t
                .iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(key, item)| entry(key, item, &loc))
                .collect();
            Node {
                value: Value::Table(entries),
                loc,
            }
        }
        toml_edit::Item::ArrayOfTables(a) => {
            let loc = loc_of(a.span(), parent);
            let items = a
                .iter()
                .map(|t| convert_item(&toml_edit::Item::Table(t.clone()), &loc_of(t.span(), &loc)))
                .collect();
            Node {
                value: Value::Array(items),
                loc,
            }
        }
    }
}

fn entry(key: &toml_edit::Key, item: &toml_edit::Item, parent: &Loc) -> Entry {
    let key_loc = loc_of(key.span(), parent);
    Entry {
        key: key.get().to_string(),
        node: convert_item(item, &key_loc),
        key_loc,
    }
}

fn convert_value(v: &toml_edit::Value, parent: &Loc) -> Node {
    let loc = loc_of(v.span(), parent);
    let value = match v {
        toml_edit::Value::String(s) => Value::Str(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::Int(*i.value()),
        toml_edit::Value::Float(f) => Value::Float(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::Datetime(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(|v| convert_value(v, &loc)).collect()),
        toml_edit::Value::InlineTable(t) => Value::Table(
            t.iter()
                .filter_map(|(k, _)| t.get_key_value(k))
                .map(|(key, item)| entry(key, item, &loc))
                .collect(),
        ),
    };
    Node { value, loc }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Arc<SourceFile> {
        Arc::new(SourceFile::new("t.toml", text))
    }

    #[test]
    fn locations_point_at_keys_and_values() {
        let n = parse(file("a = 1\n[b]\n  c = \"x\"\n")).unwrap();
        let e = n.entries().unwrap();
        assert_eq!(e[0].key, "a");
        assert_eq!(e[1].key, "b");
        let c = &e[1].node.entries().unwrap()[0];
        assert_eq!(c.key_loc.line_col(), (3, 3));
        assert_eq!(c.node.loc.line_col(), (3, 7));
    }

    #[test]
    fn line_and_column_from_the_line_index() {
        let ascii = file("a = 1\n\n[t]\nkey = 2\n");
        let at = |f: &Arc<SourceFile>, offset| {
            Loc {
                file: f.clone(),
                offset,
            }
            .line_col()
        };
        assert_eq!(at(&ascii, 0), (1, 1));
        assert_eq!(at(&ascii, 4), (1, 5));
        assert_eq!(at(&ascii, 6), (2, 1));
        assert_eq!(at(&ascii, 13), (4, 3));
        assert_eq!(at(&ascii, 999), (5, 1));
        // Columns count characters, not bytes.
        let utf8 = file("x = \"\u{e9}t\u{e9}\"\ny = \"\u{fc}\" z\n");
        let z = utf8.text.find('z').unwrap();
        assert_eq!(at(&utf8, z), (2, 9));
        // An offset inside a multi-byte character is its start.
        assert_eq!(at(&utf8, 6), (1, 6));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse(file("a = 1\nb = [\n")).unwrap_err();
        let err = super::super::diag::Diagnostic::at(&err.loc, err.message);
        assert!(err.to_string().starts_with("t.toml:"), "{err}");
        assert!(err.to_string().contains("invalid TOML"), "{err}");
    }

    #[test]
    fn merge_overrides_scalars_and_merges_tables() {
        let mut base = parse(file("x = 1\n[t]\na = 1\nb = [1, 2]\n")).unwrap();
        let over = parse(file("[t]\nb = [3]\nc = true\n")).unwrap();
        base.merge(over);
        let t = &base.entries().unwrap()[1].node;
        let keys: Vec<_> = t.entries().unwrap().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        match &t.entries().unwrap()[1].node.value {
            Value::Array(a) => assert_eq!(a.len(), 1),
            other => panic!("{other:?}"),
        }
    }
}
