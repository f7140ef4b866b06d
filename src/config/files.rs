//! Reading the configuration files off disk: which entries of `conf.d/` and `vhosts/` count, and
//! reading one file without ever blocking on something that is not a regular file.
//!
//! Every `*.toml` entry is either read or reported: a dangling symlink, a symlink loop, a directory
//! or a special file (fifo, socket, device) named `*.toml` is an error with its path and a hint,
//! never silently skipped (an admin who symlinks a vhost from elsewhere must learn the link broke).
//! Entries not ending in `.toml` (README, `*.toml.dpkg-old`, editor backups) are ignored.

use std::fs::{FileType, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, Diagnostics};

const SUFFIX: &str = ".toml";

/// What an entry that is not a regular file is, for messages.
fn kind(t: &FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (fifo)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, md: &Metadata) -> Diagnostic {
    Diagnostic::in_file(
        path.display(),
        format!("is {}, not a regular file", kind(&md.file_type())),
    )
    .hint("configuration files must be regular files (or symlinks to them); move it away or rename it so it does not end in .toml")
}

/// Why `path` (whose `metadata` failed with `e`) cannot be read.
fn unreadable(path: &Path, e: &std::io::Error) -> Diagnostic {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    if is_link && e.raw_os_error() == Some(libc::ELOOP) {
        Diagnostic::in_file(path.display(), format!("is a symlink loop (-> {target})"))
            .hint("point the link at a regular file, or remove it")
    } else if is_link && e.kind() == std::io::ErrorKind::NotFound {
        Diagnostic::in_file(
            path.display(),
            format!("is a dangling symlink: its target {target} does not exist"),
        )
        .hint("restore the target, or remove the link")
    } else {
        Diagnostic::in_file(path.display(), format!("cannot read: {e}"))
    }
}

/// Vhost file names: the name is part of messages, metrics labels and `vhost new`'s target path.
pub fn valid_vhost_stem(stem: &str) -> bool {
    !stem.is_empty()
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The `*.toml` regular files in `dir` (symlinks followed), sorted by name; a missing directory is
/// empty. Every other `*.toml` entry is reported. With `vhost_names`, names outside
/// `[A-Za-z0-9._-]` are reported too.
pub fn toml_files(dir: &Path, vhost_names: bool, diags: &mut Diagnostics) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            diags.push(Diagnostic::in_file(
                dir.display(),
                format!("cannot list directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                diags.push(Diagnostic::in_file(
                    dir.display(),
                    format!("cannot list directory: {e}"),
                ));
                continue;
            }
        };
        let name = entry.file_name();
        let Some(stem) = name.as_bytes().strip_suffix(SUFFIX.as_bytes()) else {
            continue;
        };
        let path = entry.path();
        if vhost_names && !std::str::from_utf8(stem).is_ok_and(valid_vhost_stem) {
            diags.push(
                Diagnostic::in_file(
                    path.display(),
                    format!("`{}` is not a valid vhost file name", name.to_string_lossy()),
                )
                .hint("vhost file names may use only letters A-Z a-z, digits, `.`, `_` and `-`, followed by .toml"),
            );
            continue;
        }
        // metadata() follows symlinks; stat never opens, so a fifo cannot block here.
        match std::fs::metadata(&path) {
            Ok(md) if md.is_file() => files.push(path),
            Ok(md) => diags.push(not_regular(&path, &md)),
            Err(e) => diags.push(unreadable(&path, &e)),
        }
    }
    files.sort();
    files
}

/// Read `path` as UTF-8 text. Opened non-blocking and checked to be a regular file before reading,
/// so a fifo swapped in (or given as the main file) is an error instead of a hang.
pub fn read_text(path: &Path) -> Result<String, Diagnostic> {
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => return Err(unreadable(path, &e)),
    };
    let md = f
        .metadata()
        .map_err(|e| Diagnostic::in_file(path.display(), format!("cannot read: {e}")))?;
    if !md.is_file() {
        return Err(not_regular(path, &md));
    }
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| Diagnostic::in_file(path.display(), format!("cannot read: {e}")))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(diags: &Diagnostics) -> Vec<String> {
        diags.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    #[allow(unsafe_code)] // libc::mkfifo to make a FIFO (see SAFETY below)
    fn every_toml_entry_is_read_or_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("b.toml"), "x = 1\n").unwrap();
        std::fs::write(d.join("a.toml"), "x = 1\n").unwrap();
        std::fs::write(d.join("README"), "not config\n").unwrap();
        std::fs::write(d.join("c.toml.dpkg-old"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink(d.join("a.toml"), d.join("link.toml")).unwrap();
        std::os::unix::fs::symlink(d.join("gone"), d.join("dangling.toml")).unwrap();
        std::os::unix::fs::symlink(d.join("loop2.toml"), d.join("loop1.toml")).unwrap();
        std::os::unix::fs::symlink(d.join("loop1.toml"), d.join("loop2.toml")).unwrap();
        std::fs::create_dir(d.join("dir.toml")).unwrap();
        let fifo = std::ffi::CString::new(d.join("fifo.toml").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock.toml")).unwrap();

        let mut diags = Diagnostics::default();
        let files = toml_files(d, false, &mut diags);
        let names: Vec<_> = files.iter().map(|p| p.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["a.toml", "b.toml", "link.toml"]);
        let text = messages(&diags).join("\n");
        assert_eq!(diags.len(), 6, "{text}");
        for (file, what) in [
            ("dangling.toml", "is a dangling symlink"),
            ("loop1.toml", "is a symlink loop"),
            ("loop2.toml", "is a symlink loop"),
            ("dir.toml", "is a directory, not a regular file"),
            ("fifo.toml", "is a named pipe (fifo), not a regular file"),
            ("sock.toml", "is a socket, not a regular file"),
        ] {
            let line = format!("{}: error: {what}", d.join(file).display());
            assert!(text.contains(&line), "{line}\n in:\n{text}");
        }
        assert!(diags.iter().all(|d| d.hint.is_some()), "{text}");
    }

    #[test]
    #[allow(unsafe_code)] // libc::mkfifo to make a FIFO (see SAFETY below)
    fn reading_a_fifo_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vestibule.toml");
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_text(&path).unwrap_err();
        assert!(err.message.contains("named pipe"), "{err}");
    }

    #[test]
    fn vhost_names() {
        for ok in ["chat.example.org", "a_b-c", "X1"] {
            assert!(valid_vhost_stem(ok), "{ok}");
        }
        for bad in ["", "chat example", "chat/x", "ünï", "a:b", "a*b", "$x"] {
            assert!(!valid_vhost_stem(bad), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.toml"), "").unwrap();
        std::fs::write(dir.path().join("bad name.toml"), "").unwrap();
        let mut diags = Diagnostics::default();
        let files = toml_files(dir.path(), true, &mut diags);
        assert_eq!(files.len(), 1);
        let text = messages(&diags).join("\n");
        assert!(
            text.contains("`bad name.toml` is not a valid vhost file name")
                && text.contains("only letters A-Z a-z, digits, `.`, `_` and `-`"),
            "{text}"
        );
    }
}
