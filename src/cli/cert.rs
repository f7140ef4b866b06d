//! `vestibule cert status`: what each served name gets. Asks the running daemon first (its live store,
//! with ACME errors and renewals); without a daemon, shows what the configuration would serve.

use super::out::{fail, out, outln};
use crate::app::provision_all;
use crate::config::{self, Location};
use crate::module::Context;

pub fn status(location: Location) -> i32 {
    let loaded = config::load_partial(&location);
    if let Some(cfg) = &loaded.0 {
        if let Ok(table) = super::status::fetch(super::status::admin_addr(cfg), "/certificates") {
            out!("{table}");
            return 0;
        }
    }
    let ctx = match Context::for_config(loaded.0.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            fail!("{e}");
            return 1;
        }
    };
    let modules = match provision_all(loaded, &ctx, None) {
        Ok((_, m)) => m,
        Err(diags) => {
            super::out::invalid(&diags);
            return 1;
        }
    };
    outln!("(vestibule is not running: this is what the configuration would serve)");
    let acme = modules.tls.acme_from_disk();
    out!(
        "{}",
        crate::tls::status::render(modules.tls.snapshot(), Some(&acme))
    );
    0
}
