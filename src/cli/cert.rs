//! `vestibule cert status`: what each served name gets. Asks the running daemon first (its live store,
//! with ACME errors and renewals); without a daemon, shows what the configuration would serve.

use super::out::{out, outln};
use crate::config::{self, Location};

pub fn status(location: Location) -> i32 {
    let loaded = config::load_partial(&location);
    if let Some(cfg) = &loaded.0 {
        if let Ok(table) = super::status::fetch(super::status::admin_addr(cfg), "/certificates") {
            out!("{table}");
            return 0;
        }
    }
    let modules = match super::out::provisioned(loaded) {
        Ok((_, m)) => m,
        Err(code) => return code,
    };
    outln!("(vestibule is not running: this is what the configuration would serve)");
    let acme = modules.tls.acme_from_disk();
    out!(
        "{}",
        crate::tls::status::render(modules.tls.snapshot(), Some(&acme))
    );
    0
}
