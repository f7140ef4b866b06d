//! The configuration tree: `vestibule.toml`, `conf.d/*.toml` deep-merged in name order, and one
//! virtual host per `vhosts/*.toml`; or, when no file exists, the embedded default.
//!
//! Loading is pure apart from reading files: it returns a validated [`Config`] or every problem found,
//! each with `file:line:col` and a hint. Modules cross-check the result in their `validate` phase.
//!
//! Here live the tree ([`source`]), diagnostics ([`diag`]), the readers' building blocks ([`read`]),
//! the core keys ([`core`]) and the assembly of [`Config`]; each module reads its own section in its
//! `config` file (`mail/config.rs`, `proxy/config/`, ...), which may use the building blocks but
//! nothing else of this module.

mod assemble;
pub mod core;
pub mod diag;
mod files;
pub mod read;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use assemble::Config;
pub use diag::{Diagnostic, Diagnostics};
pub use files::valid_vhost_stem;
use source::{Node, SourceFile};

/// Where `run` and `check` look when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/vestibule/vestibule.toml";

/// The embedded default: serve at once on loopback, in front of Mattermost's default port.
pub const EMBEDDED_MAIN: &str = include_str!("embedded/vestibule.toml");
pub const EMBEDDED_VHOST: &str = include_str!("embedded/localhost.toml");

/// Which configuration to load.
#[derive(Debug, Clone)]
pub enum Location {
    /// A main file given on the command line (must exist).
    Explicit(PathBuf),
    /// The default path, falling back to the embedded default when it does not exist.
    Default,
}

impl Location {
    pub fn from_arg(arg: Option<PathBuf>) -> Self {
        arg.map_or(Location::Default, Location::Explicit)
    }
}

/// Load, merge and read the whole tree. All errors are returned together.
pub fn load(location: &Location) -> Result<Config, Diagnostics> {
    strict(load_partial(location))
}

/// Like [`load`], but also returns the best-effort configuration when there are errors, so that the
/// modules' cross-checks can add theirs (see [`crate::module::load`]). Never serve it with errors.
pub fn load_partial(location: &Location) -> (Option<Config>, Diagnostics) {
    load_partial_with(location, None)
}

/// A vhost file that is not written yet: (vhost name, text, the path it will have).
pub type PendingVhost<'a> = (&'a str, &'a str, &'a Path);

/// [`load_partial`] as if `pending` were already in `vhosts/` (replacing a file of the same name), so
/// `vestibule vhost new` can check a new file against the whole tree before writing it.
pub fn load_partial_with(
    location: &Location,
    pending: Option<PendingVhost<'_>>,
) -> (Option<Config>, Diagnostics) {
    match location {
        Location::Explicit(p) => load_dir_tree(p, pending),
        Location::Default if Path::new(DEFAULT_PATH).exists() => {
            load_dir_tree(Path::new(DEFAULT_PATH), pending)
        }
        Location::Default => load_embedded_partial(),
    }
}

fn strict((cfg, diags): (Option<Config>, Diagnostics)) -> Result<Config, Diagnostics> {
    match cfg {
        Some(c) if diags.is_empty() => Ok(c),
        _ => Err(diags),
    }
}

fn load_embedded_partial() -> (Option<Config>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let main = parse_text("<embedded>/vestibule.toml", EMBEDDED_MAIN, &mut diags);
    let vhost = parse_text("<embedded>/vhosts/localhost.toml", EMBEDDED_VHOST, &mut diags);
    finish(
        "embedded default configuration".into(),
        main,
        vhost
            .map(|v| vec![("localhost".to_string(), v)])
            .unwrap_or_default(),
        diags,
    )
}

fn parse_text(path: &str, text: &str, diags: &mut Diagnostics) -> Option<Node> {
    let file = Arc::new(SourceFile::new(path, text));
    source::parse(file)
        .map_err(|e| diags.push(Diagnostic::at(&e.loc, e.message)))
        .ok()
}

fn read_file(path: &Path, diags: &mut Diagnostics) -> Option<Node> {
    match files::read_text(path) {
        Ok(text) => parse_text(&path.display().to_string(), &text, diags),
        Err(mut d) => {
            if !path.exists() && std::fs::symlink_metadata(path).is_err() {
                d = d.hint("pass the main file with --config, or omit --config to use /etc/vestibule/vestibule.toml (or the embedded default)");
            }
            diags.push(d);
            None
        }
    }
}

fn load_dir_tree(main_path: &Path, pending: Option<PendingVhost<'_>>) -> (Option<Config>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let dir = main_path.parent().unwrap_or(Path::new("."));
    let mut main = read_file(main_path, &mut diags);
    for drop_in in files::toml_files(&dir.join("conf.d"), false, &mut diags) {
        if let (Some(m), Some(over)) = (main.as_mut(), read_file(&drop_in, &mut diags)) {
            m.merge(over);
        }
    }
    let mut vhosts = Vec::new();
    for path in files::toml_files(&dir.join("vhosts"), true, &mut diags) {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if pending.is_some_and(|(n, _, _)| n == name) {
            continue;
        }
        if let Some(node) = read_file(&path, &mut diags) {
            vhosts.push((name, node));
        }
    }
    if let Some((name, text, path)) = pending {
        if let Some(node) = parse_text(&path.display().to_string(), text, &mut diags) {
            vhosts.push((name.to_string(), node));
        }
    }
    finish(main_path.display().to_string(), main, vhosts, diags)
}

fn finish(
    origin: String,
    main: Option<Node>,
    vhosts: Vec<(String, Node)>,
    mut diags: Diagnostics,
) -> (Option<Config>, Diagnostics) {
    let Some(main) = main else { return (None, diags) };
    let cfg = assemble::read(origin, &main, &vhosts, &mut diags);
    (cfg, diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_loads() {
        let cfg = strict(load_embedded_partial()).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(cfg.vhosts.len(), 1);
        assert_eq!(cfg.admin.listen.to_string(), "127.0.0.1:9180");
    }
}
