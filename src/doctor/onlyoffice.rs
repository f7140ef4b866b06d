//! Check: the ONLYOFFICE JWT secret is the same in its three places: vestibule's (the Mattermost
//! vhost's `[onlyoffice] secret_file`), the Mattermost ONLYOFFICE plugin's settings, and Document
//! Server's `local.json` (inbox, outbox and session secrets). Only SHA-256 digests are compared
//! and only their first 8 hex digits are shown: never a secret.

use std::path::PathBuf;

use super::Line;
use crate::config::Config;
use crate::integrate::backend::{file, Backend, Target};
use crate::integrate::onlyoffice::{self as oo, Secret, SECRET_KEYS};
use crate::integrate::plan;

const CHECK: &str = "onlyoffice";
const FIX: &str = "vestibule integrate onlyoffice (writes one secret to all three places)";

/// How the REST API shows a secret it will not reveal.
const MASKED: &str = "********************************";

/// What one place holds: its label, and the secret or why it cannot be read.
type Place = (String, Result<String, String>);

/// No line when the Mattermost vhost verifies no ONLYOFFICE tokens and no `local.json` was named:
/// ONLYOFFICE is not part of this installation.
pub fn check(cfg: &Config, mattermost: &Target, documentserver: Option<&PathBuf>) -> Vec<Line> {
    let Ok(vhost) = crate::integrate::mattermost::pick_vhost(cfg, None) else {
        return Vec::new();
    };
    let vhost_path = PathBuf::from(&vhost.loc.file.path);
    let secret_file = crate::integrate::vhost_file::VhostFile::read(&vhost_path)
        .ok()
        .and_then(|f| f.get("secret_file").map(PathBuf::from));
    if secret_file.is_none() && documentserver.is_none() {
        return Vec::new();
    }
    let mut places: Vec<Place> = Vec::new();
    places.push((
        format!("vhost {} [onlyoffice] secret_file", vhost.name),
        match &secret_file {
            None => Err("not set: vestibule does not verify the tokens".into()),
            Some(p) => crate::secret::load_secret(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| e.to_string()),
        },
    ));
    places.push(plugin(mattermost));
    places.extend(document_server(documentserver));

    let mut lines = Vec::new();
    let readable: Vec<(&String, &String)> = places
        .iter()
        .filter_map(|(l, r)| r.as_ref().ok().map(|s| (l, s)))
        .collect();
    for (label, r) in &places {
        if let Err(e) = r {
            lines.push(Line::warn(CHECK, format!("{label}: {e}"), FIX));
        }
    }
    // The value most places agree on is the reference (on a tie, the earliest place: vestibule's
    // own); each other one is named.
    let majority = readable
        .iter()
        .rev()
        .max_by_key(|(_, s)| readable.iter().filter(|(_, t)| t == s).count())
        .map(|(_, s)| s.to_string());
    if let Some(reference) = majority {
        let differ: Vec<String> = readable
            .iter()
            .filter(|(_, s)| **s != reference)
            .map(|(l, s)| format!("{l} has {}", Secret::label(s)))
            .collect();
        if differ.is_empty() && readable.len() > 1 {
            lines.push(Line::ok(
                CHECK,
                format!(
                    "the same secret {} in {}",
                    Secret::label(&reference),
                    readable
                        .iter()
                        .map(|(l, _)| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        } else if !differ.is_empty() {
            lines.push(Line::fail(
                CHECK,
                format!(
                    "the secret differs: {}; the others have {}",
                    differ.join(", "),
                    Secret::label(&reference)
                ),
                FIX,
            ));
        }
    }
    lines
}

/// The plugin's `desjwt`, read through the Mattermost back end.
fn plugin(target: &Target) -> Place {
    let key = SECRET_KEYS[0];
    let label = "Mattermost's ONLYOFFICE plugin (desjwt)".to_string();
    let read = Backend::open_within(target, file::MATTERMOST_PATHS, super::checks::DEADLINE)
        .map_err(|e| format!("cannot read Mattermost's configuration: {e}"))
        .and_then(|b| match plan::get(b.doc(), key).and_then(|v| v.as_str()) {
            None | Some("") => Err(format!("no secret set in {}", b.location())),
            Some(MASKED) => Err(format!(
                "{} masks it: run doctor on Mattermost's machine with [integrate] mattermost_config",
                b.location()
            )),
            Some(s) => Ok(s.to_string()),
        });
    (label, read)
}

/// Document Server's three secrets (inbox, outbox, session), one place each.
fn document_server(path: Option<&PathBuf>) -> Vec<Place> {
    let path = match path {
        Some(p) => p.clone(),
        None => match file::find(oo::DOCUMENTSERVER_PATHS) {
            Ok(p) => p,
            Err(_) => return Vec::new(),
        },
    };
    let doc = match file::ConfigFile::read_as(&path, "Document Server", "services") {
        Ok(f) => f.doc,
        Err(e) => return vec![(format!("{}", path.display()), Err(e.to_string()))],
    };
    SECRET_KEYS[1..]
        .iter()
        .map(|key| {
            let short = key
                .trim_start_matches("services.CoAuthoring.")
                .trim_end_matches(".string");
            let value = plan::get(&doc, key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("no {key}"));
            (format!("{} ({short})", path.display()), value)
        })
        .collect()
}
