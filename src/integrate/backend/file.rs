//! A product's JSON configuration file, changed in place the way an admin would want it changed.
//!
//! - Key order and keys vestibule does not know survive (serde_json with `preserve_order`).
//! - The text is written as Mattermost writes it (Go's `json.MarshalIndent`: the file's own indent,
//!   `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026`), so lines vestibule did not change
//!   stay byte for byte what they were.
//! - The new text goes to a temporary file in the same directory, gets the original's owner, group
//!   and mode, is synced, then renamed over the original: a reader sees the old file or the new
//!   one, never half of one.
//! - Before the rename, the original is copied to `<file>.<UTC time>.vestibule-backup`, with its
//!   owner and mode (it holds the database password too).
//! - If the file changed since it was read, nothing is written and no backup is left (someone
//!   else is editing it).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::integrate::plan::{self, Change};

/// Why the configuration file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "none of {} exists: give the configuration file with --config-json PATH, or use --url for a \
         configuration stored in the database",
        candidates.join(", ")
    )]
    NotFound { candidates: Vec<String> },
    #[error("{} is not valid JSON ({source}): fix it, or restore it from a backup", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not {product}'s configuration (no `{key}` object at its top): give the right file", path.display())]
    NotProduct {
        path: PathBuf,
        product: &'static str,
        key: &'static str,
    },
    #[error("{} changed while vestibule was working on it: nothing was written; run the command again", path.display())]
    Changed { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot give the new {} its owner (uid {uid}, gid {gid}): {source}; nothing was written: run \
         as root or as that user",
        path.display()
    )]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{} has a `{key}` that is not an object, where Mattermost has a section: nothing was written", path.display())]
    Shape { path: PathBuf, key: &'static str },
}

/// Where the Mattermost packages put `config.json`: the release archive's location first, then the
/// one distribution packages use.
pub const MATTERMOST_PATHS: &[&str] = &[
    "/opt/mattermost/config/config.json",
    "/etc/mattermost/config.json",
];

/// The first of `candidates` that exists.
pub fn find(candidates: &[&str]) -> Result<PathBuf, FileError> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| FileError::NotFound {
            candidates: candidates.iter().map(|s| (*s).to_string()).collect(),
        })
}

/// A configuration file as read.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    original: Vec<u8>,
    pub doc: Value,
    indent: Vec<u8>,
}

impl ConfigFile {
    /// Read and parse `path`; it must be a JSON object with a `ServiceSettings` object.
    pub fn read(path: &Path) -> Result<ConfigFile, FileError> {
        Self::read_as(path, "Mattermost", "ServiceSettings")
    }

    /// Read and parse `path`, the configuration of `product`: a JSON object with a `key` object.
    pub fn read_as(path: &Path, product: &'static str, key: &'static str) -> Result<ConfigFile, FileError> {
        let original = std::fs::read(path).map_err(|source| FileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let doc: Value = serde_json::from_slice(&original).map_err(|source| FileError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        if !doc.get(key).is_some_and(Value::is_object) {
            return Err(FileError::NotProduct {
                path: path.to_path_buf(),
                product,
                key,
            });
        }
        let indent = detect_indent(&original);
        Ok(ConfigFile {
            path: path.to_path_buf(),
            original,
            doc,
            indent,
        })
    }

    /// The file's text with `changes` applied.
    pub fn render(&self, changes: &[Change]) -> Result<Vec<u8>, FileError> {
        let mut doc = self.doc.clone();
        for c in changes {
            if !plan::set(&mut doc, c.key, c.new.clone()) {
                return Err(FileError::Shape {
                    path: self.path.clone(),
                    key: c.key,
                });
            }
        }
        let mut out = Vec::with_capacity(self.original.len() + 256);
        let fmt = GoFormatter(serde_json::ser::PrettyFormatter::with_indent(&self.indent));
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&doc, &mut ser).map_err(|e| FileError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        if self.original.ends_with(b"\n") {
            out.push(b'\n');
        }
        Ok(out)
    }

    /// Back up the original, then replace it with `changes` applied. Returns the backup's path.
    pub fn write(&self, changes: &[Change]) -> Result<PathBuf, FileError> {
        let text = self.render(changes)?;
        replace(&self.path, &self.original, &text)
    }
}

/// Replace the file at `path`, which held `original` when it was read, with `text`: back up the
/// original (same owner and mode) next to it, write the new text to a temporary file with the same
/// owner and mode, refuse if someone changed the file meanwhile, then rename over it. Returns the
/// backup's path. Every product file `integrate` edits goes through here.
pub fn replace(path: &Path, original: &[u8], text: &[u8]) -> Result<PathBuf, FileError> {
    // Through a symbolic link (Debian links plugin configurations from /usr/share into /etc), the
    // file it points at is replaced: a rename over the link would turn it into a copy.
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let path = resolved.as_path();
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FileError::Write { path, source }
    };
    let meta = std::fs::metadata(path).map_err(write_err(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    let (uid, gid) = (meta.uid(), meta.gid());

    // The new text first: if the owner cannot be kept, nothing is left behind, not even a backup.
    let tmp = path.with_file_name(format!(
        "{}.vestibule-{}.tmp",
        path.file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let owner_err = |at: &Path, source: std::io::Error| {
        if source.raw_os_error() == Some(libc::EPERM) {
            FileError::Owner {
                path: path.to_path_buf(),
                uid,
                gid,
                source,
            }
        } else {
            FileError::Write {
                path: at.to_path_buf(),
                source,
            }
        }
    };
    let result = write_new(&tmp, text, mode, Some((uid, gid))).and_then(|f| f.sync_all());
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(owner_err(&tmp, source));
    }
    // The backup holds what the original holds (database password included): same owner, same mode.
    let backup = backup_path(path);
    if let Err(source) = write_new(&backup, original, mode, Some((uid, gid))) {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&backup);
        return Err(owner_err(&backup, source));
    }
    // Someone else's edit since we read it must not be lost under ours.
    if std::fs::read(path).map_err(write_err(path))? != original {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&backup);
        return Err(FileError::Changed {
            path: path.to_path_buf(),
        });
    }
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    // The rename is durable once the directory is synced.
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(backup)
}

/// `<file>.<UTC time>.vestibule-backup`, numbered if several runs fall in one second.
fn backup_path(path: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let base = format!("{}.{stamp}.vestibule-backup", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// Create `path` (which must not exist) with `mode` and, if given, that owner, then write `data`.
/// The mode and owner are set before any data is written, so a secret never sits in a file more
/// open than the original.
fn write_new(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(data)?;
    Ok(file)
}

/// The whitespace before the first key: Mattermost writes four spaces; a hand-edited file may
/// differ, and keeps its own.
fn detect_indent(text: &[u8]) -> Vec<u8> {
    let after_brace = text
        .iter()
        .position(|&b| b == b'{')
        .map_or(text, |i| &text[i + 1..]);
    let line = after_brace
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&[][..], |i| &after_brace[i + 1..]);
    let indent: Vec<u8> = line
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .copied()
        .collect();
    if indent.is_empty() {
        b"    ".to_vec()
    } else {
        indent
    }
}

/// serde_json's pretty printer with Go's HTML-safe string escaping, as Mattermost writes its file.
struct GoFormatter<'a>(serde_json::ser::PrettyFormatter<'a>);

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
            self.0.$name(w $(, $arg)*)
        }
    )*};
}

impl serde_json::ser::Formatter for GoFormatter<'_> {
    delegate! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        end_object_key();
        begin_object_value();
        end_object_value();
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some(i) = rest.find(['<', '>', '&', '\u{2028}', '\u{2029}']) {
            w.write_all(&rest.as_bytes()[..i])?;
            let c = rest[i..].chars().next().unwrap_or('&');
            write!(w, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_text_is_written_back_byte_for_byte() {
        let text = "{\n    \"ServiceSettings\": {\n        \"SiteURL\": \"\",\n        \"X\": []\n    },\n    \"SqlSettings\": {\n        \"DataSource\": \"a?b=1\\u0026c=\\u003cd\\u003e\"\n    },\n    \"Unknown\": {}\n}\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, text).unwrap();
        let f = ConfigFile::read(&p).unwrap();
        assert_eq!(String::from_utf8(f.render(&[]).unwrap()).unwrap(), text);
    }

    #[test]
    fn an_edit_made_meanwhile_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            "{\n    \"ServiceSettings\": {\n        \"SiteURL\": \"\"\n    }\n}\n",
        )
        .unwrap();
        let f = ConfigFile::read(&p).unwrap();
        let theirs = "{\n    \"ServiceSettings\": {\n        \"SiteURL\": \"https://theirs\"\n    }\n}\n";
        std::fs::write(&p, theirs).unwrap();
        let change = Change {
            key: "ServiceSettings.SiteURL",
            old: Some(Value::String(String::new())),
            new: Value::String("https://ours".into()),
        };
        assert!(matches!(f.write(&[change]), Err(FileError::Changed { .. })));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), theirs);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") || n.contains(".vestibule-backup"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_tab_indented_file_keeps_its_tabs() {
        assert_eq!(detect_indent(b"{\n\t\"A\": 1\n}"), b"\t");
        assert_eq!(detect_indent(b"{\"A\":1}"), b"    ");
    }
}
