//! `vestibule integrate kopano`: Mattermost inside Kopano WebApp.
//!
//! Three places must agree:
//! 1. vestibule's Mattermost vhost lets WebApp's origin frame Mattermost (`[embed] allow_origins`);
//! 2. Mattermost's Notifymatters plugin (id `notifymatters`, setting `TrustedOrigin`, stored lower-cased
//!    as `trustedorigin`; several origins separated by spaces) trusts WebApp's origin, so the desktop
//!    notifications of the framed Mattermost reach WebApp through `postMessage`;
//! 3. WebApp's Intranet plugin, which opens a site in a WebApp tab, points a button at Mattermost's
//!    site URL. Its `config.php` holds PHP `define`s: `PLUGIN_INTRANET_USER_DEFAULT_ENABLE`,
//!    `PLUGIN_INTRANET_BUTTON_TITLE`, `PLUGIN_INTRANET_URL`, and numbered `..._1`, `..._2` for more
//!    buttons (consecutive from 1). The plugin cannot open a site of another scheme than WebApp's.
//!
//! An admin's own Intranet site is never replaced: Mattermost gets the next numbered button.

use serde_json::json;

use super::plan::{Setting, Want};

/// The Intranet plugin's configuration as Kopano's packages install it.
pub const WEBAPP_PATHS: &[&str] = &[
    "/etc/kopano/webapp/config-intranet.php",
    "/usr/share/kopano-webapp/plugins/intranet/config.php",
];

/// Notifymatters' trusted origins (space separated).
pub const TRUSTED_ORIGIN: &str = "PluginSettings.Plugins[notifymatters].trustedorigin";

/// Why `integrate kopano` cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum KopanoError {
    #[error("WebApp's origin is not known: give it with --webapp-origin https://mail.example.org (or [integrate] webapp_origin)")]
    NoOrigin,
    #[error(
        "the Mattermost vhost lets several origins frame it ({0}): say which is WebApp's with --webapp-origin"
    )]
    SeveralOrigins(String),
    #[error("WebApp's origin: {0}")]
    Origin(String),
    #[error(
        "WebApp ({origin}) and Mattermost ({site}) use different schemes: WebApp cannot show a site of \
         another scheme in its tab; serve both over https (vhost `tls`)"
    )]
    Scheme { origin: String, site: String },
}

/// A WebApp origin, validated and written as browsers send it (`https://mail.example.org`).
pub fn origin(input: &str) -> Result<String, String> {
    if input.contains('*') {
        return Err(format!(
            "`{input}` is a wildcard; WebApp has one origin, like \"https://mail.example.org\""
        ));
    }
    input
        .parse::<crate::policy::embed::Origin>()
        .map(|o| o.as_ref().to_string())
}

/// Checks WebApp's `origin` against Mattermost's `site` URL; returns a note when they are not on the
/// same site (the login cookie may then be refused inside the frame).
pub fn check_pair(origin: &str, site: &str) -> Result<Option<String>, KopanoError> {
    let scheme = |u: &str| u.split("://").next().unwrap_or("").to_string();
    if scheme(origin) != scheme(site) {
        return Err(KopanoError::Scheme {
            origin: origin.to_string(),
            site: site.to_string(),
        });
    }
    let host = |u: &str| {
        let rest = u.split("://").nth(1).unwrap_or("");
        let host = rest.split(['/', ':']).next().unwrap_or("").to_string();
        host
    };
    // The last two labels: close enough to the registrable domain for the usual names.
    let site_of = |h: &str| {
        let labels: Vec<&str> = h.rsplitn(3, '.').collect();
        labels.iter().take(2).rev().copied().collect::<Vec<_>>().join(".")
    };
    let (a, b) = (host(origin), host(site));
    Ok((site_of(&a) != site_of(&b)).then(|| {
        format!(
            "{a} and {b} are not on the same site: browsers that block third-party cookies will not keep \
             Mattermost's login inside WebApp's frame; serve both under one domain"
        )
    }))
}

/// Notifymatters' setting: `origin` among its trusted origins (others an admin added are kept).
pub fn notifymatters_setting(origin: &str) -> Setting {
    Setting {
        key: TRUSTED_ORIGIN,
        want: Want::Includes(origin.to_string()),
        defaults: vec![json!("")],
        add_if_absent: true,
        if_absent: "",
    }
}

/// One `define` of the Intranet plugin's config.php to set: `name: old -> new` (PHP literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefineChange {
    pub name: String,
    pub old: Option<String>,
    pub new: String,
}

/// A `define('NAME', value);` line: its index, its value's PHP source and where that is in the line.
struct Define {
    line: usize,
    name: String,
    value: String,
    at: std::ops::Range<usize>,
}

fn defines(text: &str) -> Vec<Define> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"^\s*define\s*\(\s*['"]([A-Za-z0-9_]+)['"]\s*,\s*(.*?)\s*\)\s*;"#)
            .expect("a valid regex")
    });
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let c = RE.captures(l)?;
            let value = c.get(2)?;
            Some(Define {
                line: i,
                name: c[1].to_string(),
                value: value.as_str().to_string(),
                at: value.range(),
            })
        })
        .collect()
}

/// A PHP string literal's text (`'https://x/'` -> `https://x/`); `None` for anything else.
fn unquote(v: &str) -> Option<String> {
    let q = v.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = v.strip_prefix(q)?.strip_suffix(q)?;
    Some(inner.replace("\\'", "'").replace("\\\\", "\\"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Whether an Intranet URL is still the plugin's example (a Kopano address) or empty: nobody's choice.
fn is_example(url: &str) -> bool {
    let u = url.to_ascii_lowercase();
    u.is_empty() || u.contains("kopano.io") || u.contains("kopano.com")
}

/// What the Intranet plugin's config.php needs for a Mattermost button to `site`.
pub fn intranet_changes(text: &str, site: &str) -> Vec<DefineChange> {
    let defs = defines(text);
    let value = |name: &str| defs.iter().find(|d| d.name == name).map(|d| d.value.clone());
    let same = |v: &str| unquote(v).is_some_and(|u| u.trim_end_matches('/') == site.trim_end_matches('/'));
    let mut out = Vec::new();
    let mut set = |name: String, new: String| {
        let old = value(&name);
        if old.as_deref() != Some(new.as_str()) {
            out.push(DefineChange { name, old, new });
        }
    };
    let enable = "PLUGIN_INTRANET_USER_DEFAULT_ENABLE";
    if !value(enable).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        set(enable.to_string(), "true".into());
    }
    let mut slots = vec![String::new()];
    let mut n = 1;
    while value(&format!("PLUGIN_INTRANET_URL_{n}")).is_some() {
        slots.push(format!("_{n}"));
        n += 1;
    }
    if slots
        .iter()
        .any(|s| value(&format!("PLUGIN_INTRANET_URL{s}")).is_some_and(|v| same(&v)))
    {
        return out;
    }
    let main_free = value("PLUGIN_INTRANET_URL").is_none_or(|v| unquote(&v).is_some_and(|u| is_example(&u)));
    let suffix = if main_free { String::new() } else { format!("_{n}") };
    set(
        format!("PLUGIN_INTRANET_BUTTON_TITLE{suffix}"),
        quote("Mattermost"),
    );
    set(format!("PLUGIN_INTRANET_URL{suffix}"), quote(site));
    out
}

/// `text` with `changes` applied: a changed define keeps its line (only the value changes), a new one
/// goes before a closing `?>` or at the end.
pub fn render_intranet(text: &str, changes: &[DefineChange]) -> String {
    let defs = defines(text);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut added = Vec::new();
    for c in changes {
        match defs.iter().find(|d| d.name == c.name) {
            Some(d) => {
                lines[d.line].replace_range(d.at.clone(), &c.new);
            }
            None => added.push(format!("define('{}', {});", c.name, c.new)),
        }
    }
    if !added.is_empty() {
        let at = lines
            .iter()
            .rposition(|l| l.trim() == "?>")
            .unwrap_or(lines.len());
        let mut block = vec!["// Mattermost in a WebApp tab (vestibule integrate kopano)".to_string()];
        block.extend(added);
        lines.splice(at..at, block);
    }
    // A file written on Windows keeps its line ends.
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = lines.join(eol);
    if text.ends_with('\n') || text.is_empty() {
        out.push_str(eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGED: &str = "<?php\n/** Enable the plugin for new users */\ndefine('PLUGIN_INTRANET_USER_DEFAULT_ENABLE', false); // false: off\n\ndefine('PLUGIN_INTRANET_BUTTON_TITLE', 'Kopano.io');\ndefine('PLUGIN_INTRANET_URL', 'http://www.kopano.io/');\n?>\n";

    #[test]
    fn the_example_site_becomes_mattermost_and_a_second_run_is_empty() {
        let site = "https://chat.example.org";
        let changes = intranet_changes(PACKAGED, site);
        let names: Vec<_> = changes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "PLUGIN_INTRANET_USER_DEFAULT_ENABLE",
                "PLUGIN_INTRANET_BUTTON_TITLE",
                "PLUGIN_INTRANET_URL"
            ]
        );
        let out = render_intranet(PACKAGED, &changes);
        assert!(
            out.contains("define('PLUGIN_INTRANET_URL', 'https://chat.example.org');"),
            "{out}"
        );
        assert!(out.contains("/** Enable the plugin for new users */"), "{out}");
        assert!(
            out.contains("define('PLUGIN_INTRANET_USER_DEFAULT_ENABLE', true); // false: off"),
            "only the value changes, not a comment that repeats it: {out}"
        );
        assert!(out.ends_with("?>\n"), "{out}");
        assert!(intranet_changes(&out, site).is_empty());
    }

    #[test]
    fn an_admins_intranet_site_is_kept_and_mattermost_gets_the_next_button() {
        let text = "<?php\ndefine('PLUGIN_INTRANET_USER_DEFAULT_ENABLE', true);\ndefine('PLUGIN_INTRANET_BUTTON_TITLE', 'Wiki');\ndefine('PLUGIN_INTRANET_URL', 'https://wiki.example.org/');\ndefine('PLUGIN_INTRANET_BUTTON_TITLE_1', 'Files');\ndefine(\"PLUGIN_INTRANET_URL_1\", \"https://files.example.org/\");\n";
        let changes = intranet_changes(text, "https://chat.example.org");
        assert_eq!(
            changes,
            vec![
                DefineChange {
                    name: "PLUGIN_INTRANET_BUTTON_TITLE_2".into(),
                    old: None,
                    new: "'Mattermost'".into()
                },
                DefineChange {
                    name: "PLUGIN_INTRANET_URL_2".into(),
                    old: None,
                    new: "'https://chat.example.org'".into()
                },
            ]
        );
        let out = render_intranet(text, &changes);
        assert!(out.contains("https://wiki.example.org/"));
        assert!(
            out.ends_with("define('PLUGIN_INTRANET_URL_2', 'https://chat.example.org');\n"),
            "{out}"
        );
        assert!(intranet_changes(&out, "https://chat.example.org/").is_empty());
    }

    #[test]
    fn windows_line_ends_are_kept() {
        let text = PACKAGED.replace('\n', "\r\n");
        let out = render_intranet(&text, &intranet_changes(&text, "https://chat.example.org"));
        assert_eq!(out.matches("\r\n").count(), out.matches('\n').count(), "{out:?}");
        assert!(out.contains("'https://chat.example.org');\r\n"), "{out:?}");
    }

    #[test]
    fn origins_and_schemes() {
        assert_eq!(
            origin("https://Mail.Example.org/").unwrap(),
            "https://mail.example.org"
        );
        assert!(origin("https://*.example.org").is_err());
        assert!(origin("https://mail.example.org/webapp").is_err());
        assert!(matches!(
            check_pair("http://mail.example.org", "https://chat.example.org"),
            Err(KopanoError::Scheme { .. })
        ));
        assert_eq!(
            check_pair("https://mail.example.org", "https://chat.example.org").unwrap(),
            None
        );
        assert!(check_pair("https://mail.example.com", "https://chat.example.org")
            .unwrap()
            .is_some());
    }
}
