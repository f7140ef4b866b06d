//! A vhost's TOML file, edited by `integrate` (the ONLYOFFICE secret file, the embedding origins)
//! with toml_edit, so that an admin's comments, order and spacing survive.

use std::path::{Path, PathBuf};

/// Why a vhost file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum VhostFileError {
    #[error("cannot read the vhost file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the vhost file {} is not valid TOML ({reason}): run `vestibule check` and fix it first", path.display())]
    Toml { path: PathBuf, reason: String },
    #[error("the vhost file {} has an `{table}` that is not a table: make it `[{table}]`", path.display())]
    Shape { path: PathBuf, table: &'static str },
    #[error("the vhost file {} has an [embed] allow_origins that is not a list of strings: fix it first", path.display())]
    Origins { path: PathBuf },
    #[error(transparent)]
    Write(#[from] super::backend::file::FileError),
}

/// A vhost's file, edited in place: comments and the rest of the text are kept.
pub struct VhostFile {
    pub path: PathBuf,
    doc: toml_edit::DocumentMut,
    original: String,
}

impl VhostFile {
    pub fn read(path: &Path) -> Result<VhostFile, VhostFileError> {
        let original = std::fs::read_to_string(path).map_err(|source| VhostFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let doc = original
            .parse::<toml_edit::DocumentMut>()
            .map_err(|e| VhostFileError::Toml {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(VhostFile {
            path: path.to_path_buf(),
            doc,
            original,
        })
    }

    /// A string key of `[onlyoffice]`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.doc.get("onlyoffice")?.get(key)?.as_str()
    }

    /// Set `[onlyoffice] secret_file` (creating the table); the lines that changed, for the diff.
    /// Comments and the rest of the file are kept as they are.
    pub fn set_secret_file(&mut self, secret_file: &Path) -> Result<Vec<String>, VhostFileError> {
        let want = secret_file.display().to_string();
        if self.get("secret_file") == Some(want.as_str()) {
            return Ok(Vec::new());
        }
        let table = self
            .doc
            .entry("onlyoffice")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_like_mut()
            .ok_or_else(|| VhostFileError::Shape {
                path: self.path.clone(),
                table: "onlyoffice",
            })?;
        let old = table
            .get("secret_file")
            .and_then(|i| i.as_str())
            .map(str::to_string);
        table.insert("secret_file", toml_edit::value(want.clone()));
        Ok(vec![format!(
            "[onlyoffice] secret_file: {} -> {want:?}",
            old.map_or_else(|| "(absent)".to_string(), |o| format!("{o:?}"))
        )])
    }

    /// `[embed] allow_origins`, as written.
    pub fn embed_origins(&self) -> Vec<String> {
        self.doc
            .get("embed")
            .and_then(|e| e.get("allow_origins"))
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// Add `origin` to `[embed] allow_origins` (creating the table); the line that changed, if any.
    pub fn add_embed_origin(&mut self, origin: &str) -> Result<Option<String>, VhostFileError> {
        let before = self.embed_origins();
        if before
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return Ok(None);
        }
        let path = self.path.clone();
        let table = self
            .doc
            .entry("embed")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_like_mut()
            .ok_or(VhostFileError::Shape {
                path: path.clone(),
                table: "embed",
            })?;
        let list = table
            .entry("allow_origins")
            .or_insert_with(|| toml_edit::value(toml_edit::Array::new()))
            .as_array_mut()
            .ok_or(VhostFileError::Origins { path })?;
        list.push(origin);
        Ok(Some(format!(
            "[embed] allow_origins: {before:?} -> {:?}",
            self.embed_origins()
        )))
    }

    /// Replace the file with the edited text as every product file is (`backend::file::replace`):
    /// backed up, owner and mode kept, refused if someone changed it meanwhile, through a symlink to
    /// the file it names. Nothing is written when nothing changed.
    pub fn write(&self) -> Result<(), VhostFileError> {
        let text = self.doc.to_string();
        if text == self.original {
            return Ok(());
        }
        super::backend::file::replace(&self.path, self.original.as_bytes(), text.as_bytes())?;
        Ok(())
    }
}
