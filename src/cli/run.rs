//! `vestibule run`: load, provision, validate, then hand every module's services to pingora.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::{RunArgs, Server};

use super::out::{errln, fail};
use crate::app::provision_all;
use crate::app::reload::Reloader;
use crate::config::{self, Location};
use crate::files::unix_now;
use crate::module::Context;

#[allow(unsafe_code)] // ignores SIGHUP/SIGUSR1 until handlers exist (see SAFETY below)
pub fn run(location: Location, upgrade: bool) -> i32 {
    // Until the reload service installs its handler, a SIGHUP must not kill us (its default action).
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    // SIGUSR1 (log rotation) likewise, until the access log's reopener listens for it.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGUSR1, libc::SIG_IGN);
    }
    let config_arg = match &location {
        Location::Explicit(p) => Some(p.clone()),
        Location::Default => None,
    };
    let loaded = config::load_partial(&location);
    let ctx = match Context::for_config(loaded.0.as_ref()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            fail!("not starting: {e}");
            return 1;
        }
    };
    let (cfg, modules) = match provision_all(loaded, &ctx, None) {
        Ok((cfg, m)) => (cfg, Arc::new(m)),
        Err(diags) => {
            errln!("{diags}");
            fail!(
                "not starting: the configuration has {}",
                super::out::count(diags.len(), "error")
            );
            return 1;
        }
    };
    crate::logging::init(&cfg.log);
    if let Err(e) = crate::access_log::start(&cfg.log.access_log, ctx.metrics.access_log_dropped.clone()) {
        fail!("not starting: {e}");
        return 1;
    }
    tracing::info!(config = %cfg.origin, version = env!("CARGO_PKG_VERSION"), "starting vestibule");
    for w in modules.warnings() {
        tracing::warn!("{w}");
    }
    // Taken over before anything binds; until `ready` the old process serves on, and it keeps
    // serving if this one exits first (any error below).
    let predecessor = if upgrade {
        match crate::handover::receive(&cfg.state_dir) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("{e}");
                fail!("not starting: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    let state = cfg.state_dir.display().to_string();
    let conf = ServerConf {
        threads: cfg.proxy.threads,
        // With one thread there is nothing to steal, and a current-thread runtime costs less (6 % less
        // CPU per request for a bare pingora proxy). With several, per-thread runtimes split the
        // upstream keep-alive pool (the e2e routing test saw a second upstream connection for
        // sequential requests), so the shared work-stealing runtime stays.
        work_stealing: cfg.proxy.threads > 1,
        // The grace period is the upper bound of a stop: crate::drain ends the process as soon as
        // nothing is in flight. Past it, blocking work (a spool write) gets one more second.
        grace_period_seconds: Some(cfg.proxy.grace_period.as_millis().div_ceil(1000) as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: cfg.proxy.upstream_keepalive,
        pid_file: format!("{state}/vestibule.pid"),
        ..ServerConf::default()
    };
    // pingora binds nothing (every listener is ours), so its own upgrade (`Opt::upgrade`) stays off.
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    if let Err(e) = modules.services(&mut server, &ctx) {
        tracing::error!("{e}");
        fail!("{e}");
        return 2;
    }
    crate::handover::release_unclaimed();
    if !upgrade {
        // Left by a process that was killed: its addresses are no longer true. (Only now: an
        // instance that fails to start, say on a locked spool, must not remove a running one's.)
        let _ = std::fs::remove_file(cfg.state_dir.join(LISTENING));
    }
    let smtp_plain = cfg.mail.as_ref().map_or(0, |m| m.listen.len());
    let _ = PUBLISHED.set((cfg.state_dir.join(LISTENING), listening(smtp_plain)));
    server.add_service(pingora_core::services::background::background_service(
        "reload",
        Reloader {
            location,
            modules: modules.clone(),
            ctx: ctx.clone(),
        },
    ));
    if let Some(every) = crate::notify::watchdog_interval() {
        server.add_service(pingora_core::services::background::background_service(
            "systemd watchdog",
            crate::notify::Watchdog { every },
        ));
    }
    server.add_service(pingora_core::services::background::background_service(
        "access log reopener",
        crate::access_log::Reopener,
    ));
    crate::drain::watch(
        server.watch_execution_phase(),
        ctx.metrics.clone(),
        cfg.proxy.grace_period,
        || {
            withdraw();
            crate::access_log::flush(std::time::Duration::from_secs(2));
        },
    );
    ctx.metrics.reload_success_time.set(unix_now());
    tracing::info!("vestibule is serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(crate::handover::signals::Signals::new(
            cfg.state_dir.clone(),
            config_arg,
            predecessor,
            publish,
        )),
    });
    withdraw();
    crate::access_log::flush(std::time::Duration::from_secs(2));
    0
}

/// The file in the state directory listing the bound addresses, one `kind address` line each.
pub(crate) const LISTENING: &str = "listening";

/// Where the `listening` file goes and what it says, fixed once every listener is bound.
static PUBLISHED: OnceLock<(PathBuf, String)> = OnceLock::new();

/// The `listening` file's contents: every bound listener as `kind address`, in bind order. The
/// SMTP relay binds `mail.listen` first, then `mail.listen_tls` (`smtp_plain` = the former's count).
fn listening(smtp_plain: usize) -> String {
    let mut smtp = 0;
    let mut out = String::new();
    for (what, addr) in crate::handover::bound_listeners() {
        let kind = match what {
            "the HTTP proxy" => "http",
            "the HTTPS proxy" => "https",
            "the admin listener" => "admin",
            "the push relay" => "push",
            "the SMTP relay" => {
                smtp += 1;
                if smtp > smtp_plain {
                    "smtps"
                } else {
                    "smtp"
                }
            }
            other => other,
        };
        out.push_str(&format!("{kind} {addr}\n"));
    }
    out
}

/// Once every service is started: write the `listening` file atomically, so that whoever waits for
/// it (a script, the test suite) finds every port open, including those the kernel chose for `:0`.
fn publish() {
    if let Some((path, text)) = PUBLISHED.get() {
        if let Err(e) = write(path, text) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the list of bound addresses");
        }
    }
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        crate::files::ensure_private_dir(dir)?;
    }
    crate::files::write_private(path, text.as_bytes())
}

/// On a clean exit the addresses are no longer served, unless a new process took them over (it has
/// written its own file by then).
fn withdraw() {
    if let Some((path, _)) = PUBLISHED.get().filter(|_| !crate::handover::replaced()) {
        let _ = std::fs::remove_file(path);
    }
}
