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

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
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
}
