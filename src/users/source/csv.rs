//! The CSV source: one user a line, `username,email,first,last[,disabled]`.
//!
//! Blank lines and lines starting with `#` are skipped, and so is a first line that starts with
//! `username,` (a header). A field may be quoted (`"Doe, Jr."`, `""` for a quote). `disabled` is
//! `true`/`yes`/`1`/`disabled` (anything else, or nothing, is enabled).

use std::path::{Path, PathBuf};

use crate::users::plan::SourceUser;

/// Why the CSV file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason} (expected username,email,first,last[,disabled])", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Every user of the file at `path`, in file order.
pub fn read(path: &Path) -> Result<Vec<SourceUser>, CsvError> {
    let text = std::fs::read_to_string(path).map_err(|source| CsvError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|(line, reason)| CsvError::Line {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// [`read`] on text; errors are (1-based line, reason).
pub fn parse(text: &str) -> Result<Vec<SourceUser>, (usize, String)> {
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if i == 0 && line.trim_start().to_ascii_lowercase().starts_with("username,") {
            continue;
        }
        let fields = split(line).map_err(|r| (i + 1, r))?;
        if !(4..=5).contains(&fields.len()) {
            return Err((i + 1, format!("{} fields", fields.len())));
        }
        let disabled = fields.get(4).is_some_and(|d| {
            matches!(
                d.trim().to_ascii_lowercase().as_str(),
                "true" | "yes" | "1" | "disabled"
            )
        });
        users.push(SourceUser {
            username: fields[0].trim().to_string(),
            email: fields[1].trim().to_string(),
            first_name: fields[2].trim().to_string(),
            last_name: fields[3].trim().to_string(),
            disabled,
        });
    }
    Ok(users)
}

/// One line's fields (RFC 4180 quoting).
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut cur)),
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(cur);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lines_headers_quotes_and_the_disabled_column() {
        let users = parse(
            "username,email,first,last,disabled\n# a comment\n\nalice,alice@example.org,Alice,Smith\n\
             bob,bob@example.org,\"Bob \"\"B\"\"\",\"Doe, Jr.\",yes\r\n",
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert!(!users[0].disabled);
        assert_eq!(users[1].first_name, "Bob \"B\"");
        assert_eq!(users[1].last_name, "Doe, Jr.");
        assert!(users[1].disabled);
    }

    #[test]
    fn a_short_line_names_its_number() {
        assert_eq!(parse("alice,alice@example.org\n").unwrap_err().0, 1);
        assert!(parse("a,\"b,c,d\n").unwrap_err().1.contains("quoted"));
    }
}
