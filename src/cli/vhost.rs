//! `vestibule vhost new|list`: render a vhost file from a template and check it with the rest of the
//! tree before writing it; list the vhosts of a tree.
//!
//! Templates are read from /usr/share/vestibule/templates (so packagers and admins can adjust them),
//! falling back to the copies built into the binary. Placeholders: `{{name}}`, `{{name_q}}` (a TOML
//! string), `{{upstream}}`, `{{upstream_q}}`, `{{tls}}` (a whole `tls = ...` line), `{{embed}}`
//! (an `[embed]` table, or nothing) and `{{onlyoffice}}` (an `[onlyoffice]` table, or nothing).

use std::path::{Path, PathBuf};

use super::out::{fail, outln};
use crate::app::provision_all;
use crate::config::{self, Location};
use crate::module::Context;

pub const TEMPLATE_DIR: &str = "/usr/share/vestibule/templates";

/// The templates shipped in the binary, by name.
pub const BUILTIN: [(&str, &str); 3] = [
    ("mattermost", include_str!("../../templates/mattermost.toml")),
    ("onlyoffice", include_str!("../../templates/onlyoffice.toml")),
    (
        "kopano-webapp",
        include_str!("../../templates/kopano-webapp.toml"),
    ),
];

pub struct NewVhost {
    pub template: String,
    pub name: String,
    pub upstream: String,
    pub embed_from: Vec<String>,
    pub tls: Option<String>,
    pub onlyoffice: bool,
    pub force: bool,
}

fn toml_str(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

/// Why `vhost new` wrote nothing. Each message says what to change on the command line or disk.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    #[error("no template `{name}` (known: {}){}", known.join(", "), suggestion.as_ref().map(|c| format!("; did you mean `{c}`?")).unwrap_or_default())]
    UnknownTemplate {
        name: String,
        known: Vec<&'static str>,
        suggestion: Option<String>,
    },
    #[error("--tls `{0}` is not understood: use acme, self-signed, none, or cert:PATH,key:PATH")]
    Tls(String),
    #[error("{} does not exist: vhost files live next to the main configuration file; create it (see packaging/vestibule.toml) or pass --config", .0.display())]
    NoMainFile(PathBuf),
    #[error("`{0}` cannot be a vhost file name: use only letters A-Z a-z, digits, `.`, `_` and `-`")]
    BadName(String),
    #[error("{} already exists: pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error(transparent)]
    Dns(#[from] crate::dns::DnsError),
    #[error("the new vhost would make the configuration invalid:\n{0}")]
    Invalid(config::Diagnostics),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn template_text(name: &str) -> Result<String, VhostError> {
    let on_disk = Path::new(TEMPLATE_DIR).join(format!("{name}.toml"));
    if let Ok(t) = std::fs::read_to_string(&on_disk) {
        return Ok(t);
    }
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.to_string())
        .ok_or_else(|| {
            let known: Vec<&'static str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            VhostError::UnknownTemplate {
                name: name.to_string(),
                suggestion: config::diag::did_you_mean(name, known.clone()).map(|c| c.to_string()),
                known,
            }
        })
}

/// `--tls` to a `tls = ...` line.
fn tls_line(tls: Option<&str>) -> Result<String, VhostError> {
    match tls {
        None | Some("self-signed") => Ok("tls = \"self-signed\"".into()),
        Some("acme") => Ok("tls = \"acme\"".into()),
        Some("none") => Ok("# no tls: served over plain HTTP only".into()),
        Some(files) => {
            let mut cert = None;
            let mut key = None;
            for part in files.split(',') {
                match part.split_once(':') {
                    Some(("cert", p)) => cert = Some(p),
                    Some(("key", p)) => key = Some(p),
                    _ => {}
                }
            }
            match (cert, key) {
                (Some(c), Some(k)) => Ok(format!(
                    "tls = {{ cert = {}, key = {} }}",
                    toml_str(c),
                    toml_str(k)
                )),
                _ => Err(VhostError::Tls(files.to_string())),
            }
        }
    }
}

pub fn render(req: &NewVhost) -> Result<String, VhostError> {
    let text = template_text(&req.template)?;
    let embed = if req.embed_from.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = req.embed_from.iter().map(|o| toml_str(o)).collect();
        format!("\n[embed]                          # who may show this site in an iframe\nallow_origins = [{}]\n", list.join(", "))
    };
    Ok(text
        .replace("{{name_q}}", &toml_str(&req.name))
        .replace("{{upstream_q}}", &toml_str(&req.upstream))
        .replace("{{name}}", &req.name)
        .replace("{{upstream}}", &req.upstream)
        .replace("{{tls}}", &tls_line(req.tls.as_deref())?)
        .replace("{{embed}}", &embed)
        .replace(
            "{{onlyoffice}}",
            if req.onlyoffice {
                "\n[onlyoffice]                     # ONLYOFFICE plugin: Authorization -> AuthorizationJWT\n# secret_file = \"/etc/vestibule/secrets/onlyoffice.jwt\"   # 0600; verify tokens at the edge\n"
            } else {
                ""
            },
        ))
}

/// The directory holding the main file (and so conf.d/ and vhosts/).
fn config_dir(location: &Location) -> Result<PathBuf, VhostError> {
    let main = match location {
        Location::Explicit(p) => p.clone(),
        Location::Default => PathBuf::from(config::DEFAULT_PATH),
    };
    if !main.exists() {
        return Err(VhostError::NoMainFile(main));
    }
    Ok(main.parent().unwrap_or(Path::new(".")).to_path_buf())
}

pub fn new(location: Location, req: NewVhost) -> i32 {
    let result = (|| -> Result<PathBuf, VhostError> {
        if !config::valid_vhost_stem(&req.name) {
            return Err(VhostError::BadName(req.name.clone()));
        }
        let dir = config_dir(&location)?;
        let text = render(&req)?;
        let target = dir.join("vhosts").join(format!("{}.toml", req.name));
        if target.exists() && !req.force {
            return Err(VhostError::Exists(target));
        }
        // Check the whole tree as it will be, with this file in it, before writing anything.
        let loaded = config::load_partial_with(&location, Some((&req.name, &text, &target)));
        let ctx = Context::for_config(loaded.0.as_ref())?;
        match provision_all(loaded, &ctx, None) {
            Ok((_, modules)) => {
                for w in modules.warnings() {
                    outln!("warning: {w}");
                }
            }
            Err(diags) => return Err(VhostError::Invalid(diags)),
        }
        let parent = target.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent).map_err(|source| VhostError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
        let tmp = target.with_extension("toml.tmp");
        std::fs::write(&tmp, &text)
            .and_then(|_| std::fs::rename(&tmp, &target))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                VhostError::Write {
                    path: target.clone(),
                    source,
                }
            })?;
        Ok(target)
    })();
    match result {
        Ok(path) => {
            outln!("wrote {}", path.display());
            outln!("next: review it, then `systemctl reload vestibule` (or send SIGHUP) to serve it");
            if req.tls.as_deref() == Some("acme") {
                outln!(
                    "      make sure the DNS record of {} points at this machine first",
                    req.name
                );
            }
            0
        }
        Err(e) => {
            fail!("{e}");
            1
        }
    }
}

pub fn list(location: Location) -> i32 {
    let cfg = match config::load(&location) {
        Ok(c) => c,
        Err(diags) => {
            super::out::invalid(&diags);
            return 1;
        }
    };
    for v in &cfg.vhosts {
        let names: Vec<String> = v.server_names.iter().map(|(n, _)| n.to_string()).collect();
        let tls = match &v.tls {
            None => "http only".to_string(),
            Some((crate::tls::config::TlsSource::SelfSigned, _)) => "self-signed".into(),
            Some((crate::tls::config::TlsSource::Acme, _)) => "acme".into(),
            Some((crate::tls::config::TlsSource::Files { cert, .. }, _)) => {
                format!("cert {}", cert.display())
            }
        };
        let upstream = match &v.upstream {
            Some(crate::proxy::config::upstream::UpstreamRef::Named(n)) => n.name.clone(),
            Some(crate::proxy::config::upstream::UpstreamRef::Inline(u)) => u
                .servers
                .iter()
                .map(|s| format!("{}:{}", s.host, s.port))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "-".into(),
        };
        outln!(
            "{:<24} {:<40} -> {:<28} {}",
            v.name,
            names.join(", "),
            upstream,
            tls
        );
    }
    0
}
