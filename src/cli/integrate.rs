//! `vestibule integrate mattermost`: print the plan, then apply it (see `crate::integrate`).
//!
//! Exit codes: 0 done (or nothing to do, or a dry run), 1 vestibule's configuration is invalid or
//! names no Mattermost, 2 Mattermost's configuration could not be read or written, 3 refused:
//! values an admin set would be overwritten (nothing written; `--force` overwrites them).

use serde_json::Value;

use super::out::{count, errln, fail, outln};
use crate::config::{self, Config, Location};
use crate::integrate::backend::Target;
use crate::integrate::{self, IntegrateError, IntegrateModule, Outcome, Request};

/// vestibule's configuration, provisioned and checked as `vestibule check` does it, with the
/// `[integrate]` module; or the exit code (1) once the errors are printed.
fn load(location: &Location) -> Result<(Config, IntegrateModule), i32> {
    let loaded = config::load_partial(location);
    let ctx = crate::module::Context::for_config(loaded.0.as_ref()).map_err(|e| {
        fail!("{e}");
        1
    })?;
    match crate::app::provision_all(loaded, &ctx, None) {
        Ok((cfg, modules)) => Ok((cfg, modules.integrate)),
        Err(diags) => {
            super::out::invalid(&diags);
            Err(1)
        }
    }
}

/// `integrate mattermost`'s options; `access`: the flags naming Mattermost's configuration, if any
/// (else `[integrate]`'s).
pub struct MattermostArgs {
    pub access: Option<Target>,
    pub vhost: Option<String>,
    pub packager_defaults: bool,
    pub dry_run: bool,
    pub force: bool,
}

pub fn mattermost(location: Location, args: MattermostArgs) -> i32 {
    match load(&location) {
        Ok((cfg, module)) => mattermost_with(&cfg, &module, args),
        Err(code) => code,
    }
}

fn mattermost_with(cfg: &Config, module: &IntegrateModule, args: MattermostArgs) -> i32 {
    let req = Request {
        target: args.access.unwrap_or_else(|| module.mattermost.clone()),
        api_timeout: crate::integrate::backend::API_TIMEOUT,
        options: integrate::mattermost::Options {
            vhost: args.vhost,
            packager_defaults: args.packager_defaults || module.packager_defaults,
        },
        dry_run: args.dry_run,
        force: args.force,
    };
    let prepared = match integrate::mattermost(cfg, &req) {
        Ok(p) => p,
        Err(e @ IntegrateError::Mattermost(_)) => {
            fail!("{e}");
            return 1;
        }
        Err(e @ IntegrateError::Backend(_)) => {
            fail!("{e}");
            return 2;
        }
    };
    let report = &prepared.report;
    outln!("Mattermost at {} (vhost `{}`):", report.location, report.vhost);
    for c in &report.plan.changes {
        outln!("  {}: {} -> {}", c.key, show(c.old.as_ref()), show(Some(&c.new)));
    }
    for (key, why) in &report.plan.absent {
        outln!("  note: {key} not set: {why}");
    }
    for n in &report.notes {
        outln!("  note: {n}");
    }
    let conflicts = &report.plan.conflicts;
    if !conflicts.is_empty() {
        let verb = if req.force {
            "overwritten (--force)"
        } else {
            "kept"
        };
        for c in conflicts {
            errln!(
                "  {}: set to {} by an admin; vestibule would set {}: {verb}",
                c.key,
                show(c.old.as_ref()),
                show(Some(&c.new))
            );
        }
    }
    let outcome = match prepared.apply(&req) {
        Ok(o) => o,
        Err(e) => {
            fail!("{e}");
            return 2;
        }
    };
    match outcome {
        Outcome::Refused => {
            fail!(
                "nothing written: {} set by an admin would change; rerun with --force to overwrite {}",
                count(conflicts.len(), "value"),
                if conflicts.len() == 1 { "it" } else { "them" }
            );
            3
        }
        Outcome::DryRun => {
            outln!(
                "dry run: {} would change; nothing written",
                count(report.plan.changes.len(), "setting")
            );
            0
        }
        Outcome::UpToDate => {
            outln!("Mattermost already matches vestibule: nothing to change");
            0
        }
        Outcome::Written { backup } => {
            let n = count(report.plan.changes.len(), "setting");
            match backup {
                Some(b) => outln!(
                    "changed {n}; the previous file is {}; restart Mattermost to apply them",
                    b.display()
                ),
                None => outln!(
                    "changed {n}; Mattermost applies them at once, except ListenAddress (after a restart)"
                ),
            }
            0
        }
    }
}

/// A value as JSON, so `""`, `"10025"` and `10025` read differently; `(absent)` for a missing key.
fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(absent)".to_string(), Value::to_string)
}

/// `integrate onlyoffice`'s options (flags override `[integrate]`).
pub struct OnlyofficeArgs {
    pub vhost: Option<String>,
    pub secret_file: Option<std::path::PathBuf>,
    pub documentserver_config: Option<std::path::PathBuf>,
    pub documentserver_url: Option<String>,
    pub access: Option<Target>,
    pub dry_run: bool,
    pub force: bool,
}

/// `vestibule integrate onlyoffice`: the secret and header in the vhost, the plugin and Document
/// Server; nothing is written if any of the three would overwrite an admin's value (unless forced).
pub fn onlyoffice(location: Location, args: OnlyofficeArgs) -> i32 {
    match load(&location) {
        Ok((cfg, module)) => onlyoffice_with(&location, &cfg, &module, args),
        Err(code) => code,
    }
}

fn onlyoffice_with(location: &Location, cfg: &Config, module: &IntegrateModule, args: OnlyofficeArgs) -> i32 {
    use crate::integrate::backend::{file, Backend};
    use crate::integrate::onlyoffice as oo;
    use crate::integrate::plan::Plan;

    let vhost = match integrate::mattermost::pick_vhost(cfg, args.vhost.as_deref()) {
        Ok(v) => v,
        Err(e) => {
            fail!("{e}");
            return 1;
        }
    };
    let vhost_path = std::path::PathBuf::from(&vhost.loc.file.path);
    // Errors past this point are about reading or writing files or servers: exit 2.
    macro_rules! or2 {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    fail!("{e}");
                    return 2;
                }
            }
        };
    }
    let mut vfile = or2!(crate::integrate::vhost_file::VhostFile::read(&vhost_path));
    let secret_path = args
        .secret_file
        .clone()
        .or_else(|| vfile.get("secret_file").map(Into::into))
        .unwrap_or_else(|| {
            // vhosts/ sits in vestibule's configuration directory.
            let dir = vhost_path.parent().and_then(std::path::Path::parent);
            dir.unwrap_or(std::path::Path::new("/etc/vestibule"))
                .join("secrets/onlyoffice.jwt")
        });
    let ds_path = match args
        .documentserver_config
        .clone()
        .or_else(|| module.documentserver_config.clone())
    {
        Some(p) => p,
        None => or2!(file::find(oo::DOCUMENTSERVER_PATHS).map_err(|_| format!(
            "{} does not exist: give Document Server's local.json with --documentserver-config PATH",
            oo::DOCUMENTSERVER_PATHS.join(", ")
        ))),
    };
    let ds = or2!(file::ConfigFile::read_as(&ds_path, "Document Server", "services"));
    let found = oo::found_secret(&ds.doc).map(str::to_string);
    let mut secret = or2!(oo::read_or_generate(&secret_path));
    let mut notes = Vec::new();
    if secret.new {
        if let Some(f) = &found {
            // Document Server's packages made one on install: keep it, so Document Server's own
            // other clients keep working.
            secret.value = f.clone();
            notes.push(format!(
                "the secret is the one Document Server already had in {}",
                ds_path.display()
            ));
        }
    }
    let headers = oo::Headers {
        document_server: "Authorization".into(),
        plugin: vfile
            .get("header")
            .unwrap_or(crate::policy::onlyoffice::DEFAULT_CUSTOM_HEADER)
            .to_string(),
        prefix: vfile
            .get("prefix")
            .unwrap_or(crate::policy::onlyoffice::DEFAULT_PREFIX)
            .to_string(),
    };
    let address = args
        .documentserver_url
        .clone()
        .or_else(|| module.documentserver_url.clone())
        .or_else(|| oo::documentserver_address(cfg));
    if address.is_none() {
        notes.push(
            "Document Server's address is not known: give it with --documentserver-url (or [integrate] \
             documentserver_url), or set it in the plugin's settings (ONLYOFFICE Docs address)"
                .into(),
        );
    }
    let target = args.access.clone().unwrap_or_else(|| module.mattermost.clone());
    let mm = or2!(Backend::open(&target, file::MATTERMOST_PATHS));
    let mm_plan = Plan::new(
        mm.doc(),
        &oo::plugin_settings(&secret.value, &headers, address.as_deref()),
        args.force,
    );
    let ds_plan = Plan::new(
        &ds.doc,
        &oo::documentserver_settings(&secret.value, &headers, found.as_deref()),
        args.force,
    );
    let vhost_changes = or2!(vfile.set_secret_file(&secret_path));

    let label = oo::Secret::label(&secret.value);
    let show = |key: &str, v: Option<&Value>| match v {
        Some(Value::String(s)) if oo::SECRET_KEYS.contains(&key) => oo::Secret::label(s),
        other => other.map_or_else(|| "(absent)".to_string(), Value::to_string),
    };
    outln!(
        "JWT secret {label} in {}{}",
        secret_path.display(),
        if secret.new { " (new, mode 600)" } else { "" }
    );
    outln!("vestibule vhost `{}` ({}):", vhost.name, vhost_path.display());
    for line in &vhost_changes {
        outln!("  {line}");
    }
    let mut conflicts = 0;
    for (what, location, plan) in [
        ("Mattermost ONLYOFFICE plugin", mm.location(), &mm_plan),
        ("Document Server", ds_path.display().to_string(), &ds_plan),
    ] {
        outln!("{what} ({location}):");
        for c in &plan.changes {
            outln!(
                "  {}: {} -> {}",
                c.key,
                show(c.key, c.old.as_ref()),
                show(c.key, Some(&c.new))
            );
        }
        for c in &plan.conflicts {
            conflicts += 1;
            errln!(
                "  {}: set to {} by an admin; vestibule would set {}: {}",
                c.key,
                show(c.key, c.old.as_ref()),
                show(c.key, Some(&c.new)),
                if args.force {
                    "overwritten (--force)"
                } else {
                    "kept"
                }
            );
        }
    }
    for n in &notes {
        outln!("  note: {n}");
    }
    if conflicts > 0 && !args.force {
        fail!(
            "nothing written: {} set by an admin would change; rerun with --force to overwrite {}",
            count(conflicts, "value"),
            if conflicts == 1 { "it" } else { "them" }
        );
        return 3;
    }
    let n = vhost_changes.len() + mm_plan.changes.len() + ds_plan.changes.len() + usize::from(secret.new);
    if args.dry_run {
        outln!("dry run: {} would change; nothing written", count(n, "setting"));
        return 0;
    }
    if n == 0 {
        outln!("vestibule, the plugin and Document Server already share the secret: nothing to change");
        return 0;
    }
    if secret.new {
        or2!(oo::write_secret(&secret_path, &secret));
    }
    or2!(vfile.write());
    if !ds_plan.changes.is_empty() {
        let backup = or2!(ds.write(&ds_plan.changes));
        outln!(
            "Document Server: the previous file is {}; restart Document Server (ds-docservice, ds-converter) to apply",
            backup.display()
        );
    }
    if !mm_plan.changes.is_empty() {
        or2!(mm.write(&mm_plan.changes));
    }
    // What vestibule now verifies with must load: the secret file's mode, the vhost's syntax.
    if let Err(diags) = config::load(location) {
        super::out::invalid(&diags);
        return 1;
    }
    outln!(
        "changed {}; reload vestibule to verify with the secret",
        count(n, "setting")
    );
    0
}

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

fn kopano_with(location: &Location, cfg: &Config, module: &IntegrateModule, args: KopanoArgs) -> i32 {
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
        super::out::invalid(&diags);
        return 1;
    }
    outln!(
        "changed {}; reload vestibule (systemctl reload vestibule) for the embedding",
        count(n, "setting")
    );
    0
}

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
