//! The core keys: `state_dir`, `[log]`, `[admin]` and `[dns]`, which belong to no module.

use std::net::SocketAddr;

use super::diag::{Diagnostic, Diagnostics};
use super::read::{self, TableReader};
use super::source::{Node, Value};

pub const STATE_DIR: &str = "/var/lib/vestibule";
pub const ADMIN_LISTEN: &str = "127.0.0.1:9180";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub access_log: crate::access_log::Destination,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: ADMIN_LISTEN.parse().expect("constant"),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: crate::access_log::Destination::Stderr,
        }
    }
}

pub fn read_log(node: &Node, diags: &mut Diagnostics) -> Option<LogConfig> {
    let mut t = TableReader::new(node, "[log]", diags)?;
    let level = t.opt(
        "level",
        diags,
        read::one_of(&["error", "warn", "info", "debug", "trace"]),
    );
    let format = t.opt("format", diags, read::one_of(&["text", "json"]));
    let access_log = t.opt("access_log", diags, access_log_destination);
    t.finish(diags);
    Some(LogConfig {
        level: level.unwrap_or("info").to_string(),
        format: if format == Some("json") {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
        access_log: access_log.unwrap_or(crate::access_log::Destination::Stderr),
    })
}

/// `access_log = true` (stderr), `false`, or an absolute file path.
fn access_log_destination(
    node: &Node,
    name: &str,
    diags: &mut Diagnostics,
) -> Option<crate::access_log::Destination> {
    use crate::access_log::Destination;
    match &node.value {
        Value::Bool(true) => Some(Destination::Stderr),
        Value::Bool(false) => Some(Destination::Off),
        Value::Str(s) if std::path::Path::new(s).is_absolute() => Some(Destination::File(s.into())),
        _ => {
            diags.push(
                Diagnostic::at(
                    &node.loc,
                    format!("{name} must be true, false or an absolute file path"),
                )
                .hint("for example access_log = \"/var/log/vestibule/access.log\""),
            );
            None
        }
    }
}

pub fn read_admin(node: &Node, diags: &mut Diagnostics) -> Option<AdminConfig> {
    let mut t = TableReader::new(node, "[admin]", diags)?;
    let listen = t.opt("listen", diags, read::socket_addr);
    t.finish(diags);
    Some(AdminConfig {
        listen: listen.unwrap_or_else(|| ADMIN_LISTEN.parse().expect("constant")),
    })
}

/// `[dns] servers`: name servers to ask instead of /etc/resolv.conf's.
pub fn read_dns(node: &Node, diags: &mut Diagnostics) -> Option<Vec<SocketAddr>> {
    let mut t = TableReader::new(node, "[dns]", diags)?;
    let servers = t.opt("servers", diags, read::list(read::socket_addr));
    t.finish(diags);
    servers
}
