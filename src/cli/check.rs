//! `vestibule check`: load + provision + validate, then drop, like `nginx -t`. Binds nothing, so it
//! works while the daemon holds the ports; systemd runs it before start and reload.

use super::out::{errln, outln};
use crate::config::{self, Location};
use crate::module::{provision_all, Context};

pub fn check(location: Location, dns: bool) -> i32 {
    let loaded = config::load_partial(&location);
    let ctx = Context::for_config(loaded.0.as_ref());
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
            if dns {
                let names = modules.tls.acme_names();
                if names.is_empty() {
                    outln!("dns: no vhost uses tls = \"acme\"");
                }
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => {
                        for answer in rt.block_on(crate::tls::preflight::check(&ctx.dns, &names)) {
                            outln!("dns: {answer}");
                        }
                    }
                    Err(e) => errln!("vestibule: cannot run the DNS check: {e}"),
                }
            }
            outln!("vestibule: configuration is valid");
            0
        }
        Err(diags) => {
            errln!("{diags}");
            errln!(
                "vestibule: configuration is invalid ({} error{})",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            1
        }
    }
}
