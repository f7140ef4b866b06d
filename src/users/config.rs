//! `[users]`, `[users.ldap]` and `[users.mattermost]`: what `vestibule users sync` reads from, and
//! the Mattermost it writes to. Only the shape of the values is checked here; the files they name
//! (secrets, CSV) are read when the module is provisioned.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::diag::{Diagnostic, Diagnostics};
use crate::config::read::{self, located_path, located_string, TableReader};
use crate::config::source::{Loc, Located, Node};

/// `[users]`: bulk user provisioning from a directory or a CSV file into Mattermost.
#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub loc: Loc,
    /// `source`: which of the configured sources to read; `None` picks the only one configured.
    pub source: Option<SourceKind>,
    pub csv: Option<Located<PathBuf>>,
    pub ldap: Option<LdapConfig>,
    pub mattermost: Option<MattermostConfig>,
    /// `team`: the team (URL name) everyone is added to.
    pub team: Option<Located<String>>,
    pub team_display_name: Option<String>,
    /// `passwords_file`: where generated passwords are written (mode 0600) instead of stdout.
    pub passwords_file: Option<PathBuf>,
    /// `password_file`: one common initial password (a 0600 file) instead of random ones.
    pub password_file: Option<Located<PathBuf>>,
    pub deactivate_missing: bool,
    /// `rate_limit`: Mattermost API requests per second.
    pub rate_limit: u32,
    /// `retries`: further attempts of a request answered 429 or 5xx (or not answered).
    pub retries: u32,
    /// `timeout`: one request's deadline.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Ldap,
    Csv,
}

/// The attribute conventions of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// OpenLDAP (NethServer's local provider): uid, mail, givenName, sn, cn.
    OpenLdap,
    /// Active Directory (or Samba 4): sAMAccountName, mail / userPrincipalName, givenName, sn;
    /// disabled = userAccountControl bit 2 (ACCOUNTDISABLE).
    Ad,
}

/// `[users.ldap]`.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    pub url: Located<String>,
    pub starttls: bool,
    pub ca_file: Option<Located<PathBuf>>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<Located<PathBuf>>,
    pub base_dn: Option<Located<String>>,
    /// `None`: the schema's default.
    pub filter: Option<String>,
    pub schema: Schema,
    /// An attribute whose presence marks an entry disabled (`pwdAccountLockedTime`).
    pub disabled_attribute: Option<String>,
    /// A filter matching the disabled entries (`(shadowExpire=0)`).
    pub disabled_filter: Option<String>,
    pub page_size: i32,
    pub timeout: Duration,
}

/// `[users.mattermost]`.
#[derive(Debug, Clone)]
pub struct MattermostConfig {
    pub url: Located<String>,
    pub token_file: Option<Located<PathBuf>>,
    pub ca_file: Option<Located<PathBuf>>,
}

pub fn read_users(node: &Node, diags: &mut Diagnostics) -> Option<UsersConfig> {
    let mut t = TableReader::new(node, "[users]", diags)?;
    let source = t.opt("source", diags, read::one_of(&["ldap", "csv"]));
    let csv = t.opt("csv", diags, located_path);
    let ldap = t.get("ldap").and_then(|n| read_ldap(n, diags));
    let mattermost = t.get("mattermost").and_then(|n| read_mattermost(n, diags));
    let team = t.opt("team", diags, located_string);
    let team_display_name = t.opt("team_display_name", diags, read::string);
    let passwords_file = t.opt("passwords_file", diags, read::string).map(PathBuf::from);
    let password_file = t.opt("password_file", diags, located_path);
    let deactivate_missing = t.opt("deactivate_missing", diags, read::boolean);
    let rate_limit = t.opt("rate_limit", diags, read::int_in(1, 100_000));
    let retries = t.opt("retries", diags, read::int_in(0, 20));
    let timeout = t.opt("timeout", diags, read::positive_duration);
    t.finish(diags);
    let source = match source {
        Some("ldap") => Some(SourceKind::Ldap),
        Some(_) => Some(SourceKind::Csv),
        None => None,
    };
    if source == Some(SourceKind::Ldap) && ldap.is_none() {
        diags.push(
            Diagnostic::at(
                &node.loc,
                "[users] source = \"ldap\" but there is no [users.ldap]",
            )
            .hint("add [users.ldap] with url, bind_dn, bind_password_file and base_dn"),
        );
    }
    if source == Some(SourceKind::Csv) && csv.is_none() {
        diags.push(
            Diagnostic::at(&node.loc, "[users] source = \"csv\" but `csv` is not set")
                .hint("add csv = \"/etc/vestibule/users.csv\" (lines: username,email,first,last[,disabled])"),
        );
    }
    if let Some(team) = &team {
        if let Err(why) = super::rules::team_name(&team.value) {
            diags.push(
                Diagnostic::at(&team.loc, format!("[users] team `{}`: {why}", team.value)).hint(
                    "Mattermost's team names are 2 to 64 lowercase letters, digits and `-`, e.g. \"example\"",
                ),
            );
        }
    }
    Some(UsersConfig {
        loc: node.loc.clone(),
        source,
        csv,
        ldap,
        mattermost,
        team,
        team_display_name,
        passwords_file,
        password_file,
        deactivate_missing: deactivate_missing.unwrap_or(false),
        rate_limit: rate_limit.unwrap_or(10) as u32,
        retries: retries.unwrap_or(5) as u32,
        timeout: timeout.unwrap_or(Duration::from_secs(30)),
    })
}

fn read_ldap(node: &Node, diags: &mut Diagnostics) -> Option<LdapConfig> {
    let mut t = TableReader::new(node, "[users.ldap]", diags)?;
    let url = t.opt("url", diags, located_string);
    let starttls = t.opt("starttls", diags, read::boolean).unwrap_or(false);
    let ca_file = t.opt("ca_file", diags, located_path);
    let bind_dn = t.opt("bind_dn", diags, read::string);
    let bind_password_file = t.opt("bind_password_file", diags, located_path);
    let base_dn = t.opt("base_dn", diags, located_string);
    let filter = t.opt("filter", diags, read::string);
    let schema = t.opt("schema", diags, read::one_of(&["openldap", "ad"]));
    let disabled_attribute = t.opt("disabled_attribute", diags, read::string);
    let disabled_filter = t.opt("disabled_filter", diags, read::string);
    let page_size = t.opt("page_size", diags, read::int_in(1, 100_000));
    let timeout = t.opt("timeout", diags, read::positive_duration);
    t.finish(diags);
    let Some(url) = url else {
        diags.push(
            Diagnostic::at(&node.loc, "[users.ldap] has no `url`")
                .hint("add url = \"ldaps://ldap.example.org\" (or ldap://, with starttls = true)"),
        );
        return None;
    };
    match reqwest::Url::parse(&url.value) {
        Ok(u) if u.scheme() == "ldap" || u.scheme() == "ldaps" => {
            if u.scheme() == "ldaps" && starttls {
                diags.push(
                    Diagnostic::at(&url.loc, "[users.ldap] starttls = true needs an ldap:// url").hint(
                        "ldaps:// is TLS from the first byte; use ldap:// with starttls, or drop starttls",
                    ),
                );
            }
            if u.host_str().is_none_or(str::is_empty) {
                diags.push(
                    Diagnostic::at(&url.loc, format!("[users.ldap] url `{}` has no host", url.value))
                        .hint("write ldaps://ldap.example.org or ldap://127.0.0.1:389"),
                );
            }
        }
        _ => diags.push(
            Diagnostic::at(
                &url.loc,
                format!(
                    "[users.ldap] url `{}` is not an ldap:// or ldaps:// URL",
                    url.value
                ),
            )
            .hint("write ldaps://ldap.example.org or ldap://127.0.0.1:389"),
        ),
    }
    if bind_dn.is_some() != bind_password_file.is_some() {
        diags.push(
            Diagnostic::at(
                &node.loc,
                "[users.ldap] needs both bind_dn and bind_password_file, or neither (anonymous)",
            )
            .hint("bind_password_file names a file (chmod 600) holding the bind DN's password"),
        );
    }
    if base_dn.is_none() {
        diags.push(
            Diagnostic::at(&node.loc, "[users.ldap] has no `base_dn`")
                .hint("add base_dn = \"ou=People,dc=example,dc=org\" (AD: \"cn=Users,dc=example,dc=org\")"),
        );
    }
    for (key, f) in [("filter", &filter), ("disabled_filter", &disabled_filter)] {
        if let Some(f) = f {
            if !(f.starts_with('(') && f.ends_with(')')) {
                diags.push(
                    Diagnostic::at(
                        &node.loc,
                        format!("[users.ldap] {key} `{f}` is not an LDAP filter"),
                    )
                    .hint("an LDAP filter is in parentheses, e.g. \"(objectClass=inetOrgPerson)\""),
                );
            }
        }
    }
    Some(LdapConfig {
        url,
        starttls,
        ca_file,
        bind_dn,
        bind_password_file,
        base_dn,
        filter,
        schema: if schema == Some("ad") {
            Schema::Ad
        } else {
            Schema::OpenLdap
        },
        disabled_attribute,
        disabled_filter,
        page_size: page_size.unwrap_or(500) as i32,
        timeout: timeout.unwrap_or(Duration::from_secs(30)),
    })
}

fn read_mattermost(node: &Node, diags: &mut Diagnostics) -> Option<MattermostConfig> {
    let mut t = TableReader::new(node, "[users.mattermost]", diags)?;
    let url = t.opt("url", diags, located_string);
    let token_file = t.opt("token_file", diags, located_path);
    let ca_file = t.opt("ca_file", diags, located_path);
    t.finish(diags);
    let url = url.unwrap_or_else(|| Located {
        value: "http://127.0.0.1:8065".into(),
        loc: node.loc.clone(),
    });
    match reqwest::Url::parse(&url.value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host_str().is_some() => {}
        _ => diags.push(
            Diagnostic::at(
                &url.loc,
                format!(
                    "[users.mattermost] url `{}` is not an http:// or https:// URL",
                    url.value
                ),
            )
            .hint("write Mattermost's own address, e.g. http://127.0.0.1:8065"),
        ),
    }
    // A missing token_file may come from [integrate]: the module decides (it sees both sections).
    Some(MattermostConfig {
        url,
        token_file,
        ca_file,
    })
}
