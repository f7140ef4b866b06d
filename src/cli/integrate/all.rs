//! `vestibule integrate all`: every product in one run.

use super::kopano::{kopano_with, KopanoArgs};
use super::onlyoffice::{onlyoffice_with, OnlyofficeArgs};
use super::{load, mattermost_with, MattermostArgs};
use crate::cli::out::{fail, outln};
use crate::config::Location;
use crate::integrate::{self, backend::Target};

/// `integrate all`'s options.
pub struct AllArgs {
    pub vhost: Option<String>,
    pub access: Option<Target>,
    pub webapp_origin: Option<String>,
    pub packager_defaults: bool,
    pub dry_run: bool,
    pub force: bool,
}

/// `vestibule integrate all`: Mattermost, then ONLYOFFICE when the Mattermost vhost has an
/// `[onlyoffice]` table, then Kopano WebApp when its origin is known. The exit code is the worst.
pub fn all(location: Location, args: AllArgs) -> i32 {
    let (cfg, module) = match load(&location) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let vhost = match integrate::mattermost::pick_vhost(&cfg, args.vhost.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            fail!("{e}");
            return 1;
        }
    };
    outln!("== Mattermost");
    let mut worst = mattermost_with(
        &cfg,
        &module,
        MattermostArgs {
            access: args.access.clone(),
            vhost: args.vhost.clone(),
            packager_defaults: args.packager_defaults,
            dry_run: args.dry_run,
            force: args.force,
        },
    );
    if vhost.onlyoffice.is_some() {
        outln!("== ONLYOFFICE");
        worst = worst.max(onlyoffice_with(
            &location,
            &cfg,
            &module,
            OnlyofficeArgs {
                vhost: args.vhost.clone(),
                secret_file: None,
                documentserver_config: None,
                documentserver_url: None,
                access: args.access.clone(),
                dry_run: args.dry_run,
                force: args.force,
            },
        ));
    } else {
        outln!("== ONLYOFFICE: skipped (the Mattermost vhost has no [onlyoffice] table)");
    }
    let embeds = crate::integrate::vhost_file::VhostFile::read(std::path::Path::new(&vhost.loc.file.path))
        .map_or(0, |f| f.embed_origins().len());
    if args.webapp_origin.is_some() || module.webapp_origin.is_some() || embeds == 1 {
        outln!("== Kopano WebApp");
        worst = worst.max(kopano_with(
            &location,
            &cfg,
            &module,
            KopanoArgs {
                vhost: args.vhost,
                webapp_origin: args.webapp_origin,
                webapp_config: None,
                access: args.access,
                dry_run: args.dry_run,
                force: args.force,
            },
        ));
    } else {
        outln!("== Kopano WebApp: skipped (no --webapp-origin, [integrate] webapp_origin or single embedding origin)");
    }
    worst
}
