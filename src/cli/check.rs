//! `vestibule check`: load + provision + validate, then drop, like `nginx -t`. Binds nothing, so it
//! works while the daemon holds the ports; systemd runs it before start and reload.

use super::out::{errln, fail, outln};
use crate::app::provision_all;
use crate::config::{self, Location};
use crate::module::Context;

pub fn check(location: Location, dns: bool) -> i32 {
    let loaded = config::load_partial(&location);
    let ctx = match Context::for_config(loaded.0.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            fail!("{e}");
            return 1;
        }
    };
    match provision_all(loaded, &ctx, None) {
        Ok((cfg, modules)) => {
            outln!("configuration: {}", cfg.origin);
            for (name, lines) in modules.summary() {
                for line in lines {
                    outln!("  {name}: {line}");
                }
            }
            for w in modules.warnings() {
                outln!("warning: {w}");
            }
            let unreachable = if dns { dns_check(&ctx, &modules) } else { 0 };
            if unreachable > 0 {
                fail!(
                    "configuration is valid, but {} cannot be validated here",
                    super::out::count(unreachable, "ACME name")
                );
                return 1;
            }
            outln!("vestibule: configuration is valid");
            0
        }
        Err(diags) => {
            super::out::invalid(&diags);
            1
        }
    }
}

/// `--dns`: every ACME name must resolve to this machine (not only to loopback). Returns how many
/// do not (a failed check counts as one).
fn dns_check(ctx: &Context, modules: &crate::app::Modules) -> usize {
    let names = modules.tls.acme_names();
    if names.is_empty() {
        outln!("dns: no vhost uses tls = \"acme\"");
        return 0;
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            fail!("cannot run the DNS check: {e}");
            return 1;
        }
    };
    let mut unreachable = 0;
    for answer in rt.block_on(crate::tls::preflight::check(&ctx.dns, &names)) {
        if answer.reachable() {
            outln!("dns: {answer}");
        } else {
            errln!("dns: error: {answer}");
            unreachable += 1;
        }
    }
    unreachable
}
