//! `[integrate]`: where the products behind vestibule keep their configuration, for `integrate` and
//! `doctor`. Every key is optional: without one, the commands look in the packaged locations (and
//! their flags override the section).

use std::path::PathBuf;

use crate::config::diag::Diagnostics;
use crate::config::read::{self, TableReader};
use crate::config::source::{Located, Node};

/// `[integrate]` as written.
#[derive(Debug, Clone, Default)]
pub struct IntegrateConfig {
    /// Mattermost's config.json (file back end).
    pub mattermost_config: Option<Located<PathBuf>>,
    /// Mattermost's address for its REST API (configuration in the database).
    pub mattermost_url: Option<Located<String>>,
    /// A system admin's personal access token (mode 600), for `mattermost_url`.
    pub mattermost_token_file: Option<Located<PathBuf>>,
    /// Document Server's local.json.
    pub documentserver_config: Option<Located<PathBuf>>,
    /// Document Server's address as browsers reach it (the ONLYOFFICE plugin's setting).
    pub documentserver_url: Option<Located<String>>,
    /// Kopano WebApp's origin (`https://mail.example.org`).
    pub webapp_origin: Option<Located<String>>,
    /// WebApp's Intranet plugin configuration (config-intranet.php).
    pub webapp_config: Option<Located<PathBuf>>,
    /// Also apply the Kopano packages' Mattermost defaults.
    pub packager_defaults: bool,
}

fn located<T>(
    f: impl Fn(&Node, &str, &mut Diagnostics) -> Option<T>,
) -> impl Fn(&Node, &str, &mut Diagnostics) -> Option<Located<T>> {
    move |node, name, diags| {
        f(node, name, diags).map(|value| Located {
            value,
            loc: node.loc.clone(),
        })
    }
}

fn path(node: &Node, name: &str, diags: &mut Diagnostics) -> Option<PathBuf> {
    read::string(node, name, diags).map(PathBuf::from)
}

/// Read `[integrate]`; the checks that need the file system are the module's (`provision`).
pub fn read_integrate(node: &Node, diags: &mut Diagnostics) -> Option<IntegrateConfig> {
    let mut t = TableReader::new(node, "[integrate]", diags)?;
    let c = IntegrateConfig {
        mattermost_config: t.opt("mattermost_config", diags, located(path)),
        mattermost_url: t.opt("mattermost_url", diags, located(read::string)),
        mattermost_token_file: t.opt("mattermost_token_file", diags, located(path)),
        documentserver_config: t.opt("documentserver_config", diags, located(path)),
        documentserver_url: t.opt("documentserver_url", diags, located(read::string)),
        webapp_origin: t.opt("webapp_origin", diags, located(read::string)),
        webapp_config: t.opt("webapp_config", diags, located(path)),
        packager_defaults: t.opt("packager_defaults", diags, read::boolean).unwrap_or(false),
    };
    t.finish(diags);
    Some(c)
}
