//! `vestibule integrate kopano`: Mattermost inside Kopano WebApp.

use super::{load, show};
use crate::cli::out::{count, fail, outln};
use crate::config::{self, Config, Location};
use crate::integrate::backend::Target;
use crate::integrate::{self, IntegrateModule};

/// `integrate kopano`'s options (flags override `[integrate]`).
pub struct KopanoArgs {
    pub vhost: Option<String>,
    pub webapp_origin: Option<String>,
    pub webapp_config: Option<std::path::PathBuf>,
    pub access: Option<Target>,
    pub dry_run: bool,
    pub force: bool,
}

/// `vestibule integrate kopano`: WebApp's origin in the Mattermost vhost's embedding and in
/// Notifymatters' trusted origins, and a WebApp Intranet button to Mattermost (written when the
/// plugin's config.php is found, else printed).
pub fn kopano(location: Location, args: KopanoArgs) -> i32 {
    match load(&location) {
        Ok((cfg, module)) => kopano_with(&location, &cfg, &module, args),
        Err(code) => code,
    }
}

pub(super) fn kopano_with(
    location: &Location,
    cfg: &Config,
    module: &IntegrateModule,
    args: KopanoArgs,
) -> i32 {
    use crate::integrate::backend::{file, Backend};
    use crate::integrate::kopano as kp;
    use crate::integrate::plan::Plan;
    use crate::integrate::vhost_file::VhostFile;

    macro_rules! or {
        ($code:expr, $e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    fail!("{e}");
                    return $code;
                }
            }
        };
    }
    let vhost = or!(1, integrate::mattermost::pick_vhost(cfg, args.vhost.as_deref()));
    let site = or!(1, integrate::mattermost::site_url(cfg, vhost));
    let vhost_path = std::path::PathBuf::from(&vhost.loc.file.path);
    let mut vfile = or!(2, VhostFile::read(&vhost_path));
    let origin = match args.webapp_origin.as_deref() {
        Some(o) => or!(1, kp::origin(o).map_err(kp::KopanoError::Origin)),
        None => match (&module.webapp_origin, &vfile.embed_origins()[..]) {
            (Some(o), _) => o.clone(),
            (None, [one]) => or!(1, kp::origin(one).map_err(kp::KopanoError::Origin)),
            (None, []) => or!(1, Err(kp::KopanoError::NoOrigin)),
            (None, many) => or!(1, Err(kp::KopanoError::SeveralOrigins(many.join(", ")))),
        },
    };
    let mut notes = Vec::new();
    if let Some(n) = or!(1, kp::check_pair(&origin, &site)) {
        notes.push(n);
    }

    let embed = or!(2, vfile.add_embed_origin(&origin));
    let target = args.access.clone().unwrap_or_else(|| module.mattermost.clone());
    let mm = or!(2, Backend::open(&target, file::MATTERMOST_PATHS));
    let mm_plan = Plan::new(mm.doc(), &[kp::notifymatters_setting(&origin)], args.force);
    if mm
        .doc()
        .pointer("/PluginSettings/PluginStates/notifymatters/Enable")
        != Some(&serde_json::json!(true))
    {
        notes.push(
            "Notifymatters is not enabled in this Mattermost: install it and enable it in System Console > \
             Plugins for WebApp's desktop notifications"
                .into(),
        );
    }
    let webapp_path = args
        .webapp_config
        .clone()
        .or_else(|| module.webapp_config.clone())
        .or_else(|| file::find(kp::WEBAPP_PATHS).ok());
    let webapp = match &webapp_path {
        Some(p) => Some(or!(
            2,
            std::fs::read_to_string(p).map_err(|e| format!(
                "cannot read WebApp's Intranet plugin configuration {}: {e}",
                p.display()
            ))
        )),
        None => None,
    };
    let intranet = kp::intranet_changes(webapp.as_deref().unwrap_or(""), &site);

    outln!("Kopano WebApp {origin} and Mattermost {site}:");
    outln!("vestibule vhost `{}` ({}):", vhost.name, vhost_path.display());
    if let Some(line) = &embed {
        outln!("  {line}");
    }
    outln!("Mattermost ({}):", mm.location());
    for c in &mm_plan.changes {
        outln!("  {}: {} -> {}", c.key, show(c.old.as_ref()), show(Some(&c.new)));
    }
    match &webapp_path {
        Some(p) => {
            outln!("WebApp Intranet plugin ({}):", p.display());
            for c in &intranet {
                outln!(
                    "  {}: {} -> {}",
                    c.name,
                    c.old.as_deref().unwrap_or("(absent)"),
                    c.new
                );
            }
        }
        None => {
            outln!(
                "WebApp Intranet plugin: no configuration at {}; add these lines to its config.php (or give it with --webapp-config PATH):",
                kp::WEBAPP_PATHS.join(", ")
            );
            for c in &intranet {
                outln!("  define('{}', {});", c.name, c.new);
            }
        }
    }
    for n in &notes {
        outln!("  note: {n}");
    }
    // Notifymatters' origins are only ever added to: there is nothing an admin set to refuse.
    let n = usize::from(embed.is_some())
        + mm_plan.changes.len()
        + if webapp_path.is_some() { intranet.len() } else { 0 };
    if args.dry_run {
        outln!("dry run: {} would change; nothing written", count(n, "setting"));
        return 0;
    }
    if n == 0 {
        outln!("WebApp, Mattermost and vestibule already agree: nothing to change");
        return 0;
    }
    if !mm_plan.changes.is_empty() {
        or!(2, mm.write(&mm_plan.changes));
    }
    if let (Some(p), Some(text), false) = (&webapp_path, &webapp, intranet.is_empty()) {
        let new = kp::render_intranet(text, &intranet);
        let backup = or!(2, file::replace(p, text.as_bytes(), new.as_bytes()));
        outln!("WebApp: the previous file is {}", backup.display());
    }
    or!(2, vfile.write());
    if let Err(diags) = config::load(location) {
        crate::cli::out::invalid(&diags);
        return 1;
    }
    outln!(
        "changed {}; reload vestibule (systemctl reload vestibule) for the embedding",
        count(n, "setting")
    );
    0
}
