//! Log set-up: tracing to stderr (journald picks it up), text or JSON, level from the config unless
//! `RUST_LOG` says otherwise. pingora's and rustls's own `log` records are routed through tracing too.
//!
//! Level and format are reloadable layers: a reload applies `[log] level` and `[log] format` to every
//! line from then on (except a level set by `RUST_LOG`, which wins for the life of the process).
//! Access lines do not go through here: see `crate::access_log`.

use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::core::{LogConfig, LogFormat};

type Inner = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Format = Box<dyn Layer<Inner> + Send + Sync>;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<Format, Inner>,
    /// `RUST_LOG` was set: the configured level does not apply.
    from_env: bool,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// rustls warns through `log` about what clients send (an IP address or an invalid name as SNI,
/// alerts, odd handshake messages): one line per handshake a scanner makes, nothing to act on.
/// Unless the level asks for debug output (or the filter names rustls), only its errors are shown.
fn quiet_rustls(mut filter: EnvFilter, spec: &str) -> EnvFilter {
    let verbose = filter.max_level_hint().is_some_and(|l| l >= LevelFilter::DEBUG);
    if !verbose && !spec.contains("rustls") {
        if let Ok(d) = "rustls=error".parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

fn filter_for(level: &str) -> (EnvFilter, bool) {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => match EnvFilter::try_new(&spec) {
            Ok(f) => (quiet_rustls(f, &spec), true),
            Err(_) => (quiet_rustls(EnvFilter::new(level), level), false),
        },
        _ => (quiet_rustls(EnvFilter::new(level), level), false),
    }
}

fn format_layer(format: LogFormat) -> Format {
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => Box::new(base.json()),
        LogFormat::Text => Box::new(base),
    }
}

pub fn init(cfg: &LogConfig) {
    let (filter, from_env) = filter_for(&cfg.level);
    let (filter, filter_handle) = reload::Layer::new(filter);
    let (format, format_handle) = reload::Layer::new(format_layer(cfg.format));
    // A second init (tests calling run twice in one process) is harmless: keep the first.
    if tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .is_ok()
    {
        let _ = HANDLES.set(Handles {
            filter: filter_handle,
            format: format_handle,
            from_env,
        });
    }
}

/// Apply a reloaded `[log]` table: level (unless `RUST_LOG` set it) and format.
pub fn apply(cfg: &LogConfig) {
    let Some(h) = HANDLES.get() else { return };
    if !h.from_env {
        let (filter, _) = filter_for(&cfg.level);
        if let Err(e) = h.filter.reload(filter) {
            tracing::warn!(error = %e, "cannot apply the new log level; restart to apply it");
        }
        // `log` records (pingora, rustls) are cut at the level set at start-up: follow the new one.
        log::set_max_level(match LevelFilter::current() {
            LevelFilter::OFF => log::LevelFilter::Off,
            LevelFilter::ERROR => log::LevelFilter::Error,
            LevelFilter::WARN => log::LevelFilter::Warn,
            LevelFilter::INFO => log::LevelFilter::Info,
            LevelFilter::DEBUG => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        });
    }
    if let Err(e) = h.format.reload(format_layer(cfg.format)) {
        tracing::warn!(error = %e, "cannot apply the new log format; restart to apply it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_warnings_need_debug() {
        let quiet = quiet_rustls(EnvFilter::new("info"), "info").to_string();
        assert!(quiet.contains("rustls=error"), "{quiet}");
        let debug = quiet_rustls(EnvFilter::new("debug"), "debug").to_string();
        assert!(!debug.contains("rustls"), "{debug}");
        let named = quiet_rustls(EnvFilter::new("info,rustls=warn"), "info,rustls=warn").to_string();
        assert!(!named.contains("rustls=error"), "{named}");
    }
}
