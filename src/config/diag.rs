//! Configuration diagnostics: `file:line:col: message` plus an optional hint.
//!
//! Validation never stops at the first problem: every reader pushes into one [`Diagnostics`] list so
//! that `vestibule check` shows an admin everything to fix in one go (ripgrep's config errors are the
//! model).

use std::fmt;

use super::source::Loc;

/// One problem found in the configuration.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// `file:line:col`, or just a file or directory when there is no position.
    pub place: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn at(loc: &Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            place: loc.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn in_file(path: impl fmt::Display, message: impl Into<String>) -> Self {
        Diagnostic {
            place: path.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.place, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n    hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found while loading a configuration tree.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn error(&mut self, loc: &Loc, message: impl Into<String>) {
        self.0.push(Diagnostic::at(loc, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

/// How many diagnostics are shown: past this, the rest are most likely the same mistake repeated (a
/// file that is not vestibule's, a misplaced table), and printing them all drowns the first ones.
pub const MAX_SHOWN: usize = 100;

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().take(MAX_SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if let Some(more) = self.0.len().checked_sub(MAX_SHOWN).filter(|n| *n > 0) {
            write!(f, "\nand {more} more error{}", if more == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let keys = ["upstream", "server_names", "max_body"];
        assert_eq!(did_you_mean("upstrem", keys), Some("upstream"));
        assert_eq!(did_you_mean("server_name", keys), Some("server_names"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }

    #[test]
    fn shows_the_first_hundred_then_a_count() {
        let mut diags = Diagnostics::default();
        for i in 0..MAX_SHOWN + 42 {
            diags.push(Diagnostic::in_file("f.toml", format!("problem {i}")));
        }
        let text = diags.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), MAX_SHOWN + 1, "{text}");
        assert_eq!(lines[0], "f.toml: error: problem 0");
        assert_eq!(lines[MAX_SHOWN - 1], "f.toml: error: problem 99");
        assert_eq!(lines[MAX_SHOWN], "and 42 more errors");
        diags.0.truncate(MAX_SHOWN + 1);
        assert!(diags.to_string().ends_with("\nand 1 more error"));
        diags.0.truncate(MAX_SHOWN);
        assert!(!diags.to_string().contains("more error"));
    }
}
