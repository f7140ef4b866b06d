//! Check: each `[[push.route]]` can deliver: an upstream push proxy answers HTTP (TCP, TLS and an
//! HTTP status within the deadline; any status, since only Mattermost's own requests are valid),
//! or the APNs key / FCM service account loads as the relay loads it.

use super::http::cause;
use super::Line;
use crate::config::Config;
use crate::push::config::PushDest;

const CHECK: &str = "push";

/// No line without `[push]`.
pub async fn check(cfg: &Config) -> Vec<Line> {
    let Some(push) = &cfg.push else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    for (i, r) in push.routes.iter().enumerate() {
        let shown = format!("[[push.route]] #{} ({})", i + 1, r.platforms.join(", "));
        let line = match &r.dest {
            PushDest::Upstream { url, ca_file } => match super::http::client(ca_file.as_deref()) {
                Err(e) => Line::fail(CHECK, format!("{shown}: {e}"), "fix `ca_file` of the route"),
                Ok(client) => match client.get(url).send().await {
                    Ok(resp) => Line::ok(
                        CHECK,
                        format!("{shown}: upstream {url} answers (HTTP {})", resp.status().as_u16()),
                    ),
                    Err(e) => Line::fail(
                        CHECK,
                        format!("{shown}: upstream {url} does not answer: {}", cause(&e)),
                        "check the route's `upstream` URL and that this machine may reach it (firewall, proxy)",
                    ),
                },
            },
            dest => match crate::push::destination(dest) {
                Ok(_) => Line::ok(CHECK, format!("{shown}: {} loads", credentials(dest))),
                Err(e) => Line::fail(
                    CHECK,
                    format!("{shown}: {e}"),
                    match dest {
                        PushDest::Fcm { .. } => {
                            "download the service account key again from the Firebase console; \
                             make it readable by vestibule"
                        }
                        _ => "download the .p8 key again from Apple's developer account; make it \
                              readable by vestibule",
                    },
                ),
            },
        };
        lines.push(line);
    }
    lines
}

/// The credentials a direct route loads, for the OK line.
fn credentials(dest: &PushDest) -> String {
    match dest {
        PushDest::Apns { key_file, .. } => format!("APNs key {}", key_file.display()),
        PushDest::Fcm {
            service_account_file, ..
        } => format!("FCM service account {}", service_account_file.display()),
        PushDest::Upstream { url, .. } => url.clone(),
    }
}
