//! Log set-up: tracing to stderr (journald picks it up), text or JSON, level from the config unless
//! `RUST_LOG` says otherwise. pingora's own `log` records are routed through tracing too.

use tracing_subscriber::EnvFilter;

use crate::config::model::{LogConfig, LogFormat};

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (tests calling run twice in one process) is harmless: keep the first.
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
