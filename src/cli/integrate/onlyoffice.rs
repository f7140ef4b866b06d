//! `vestibule integrate onlyoffice`: one JWT secret in vestibule, the plugin and Document Server.

use serde_json::Value;

use super::load;
use crate::cli::out::{count, errln, fail, outln};
use crate::config::{self, Config, Location};
use crate::integrate::backend::Target;
use crate::integrate::{self, IntegrateModule};

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

pub(super) fn onlyoffice_with(
    location: &Location,
    cfg: &Config,
    module: &IntegrateModule,
    args: OnlyofficeArgs,
) -> i32 {
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
        &oo::documentserver_settings(&secret.value, &headers, found.as_deref().filter(|_| secret.new)),
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
        or2!(oo::write_secret(&secret_path, &secret, service_owner(cfg)));
    }
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
    // The vhost last: it names the secret only once Document Server and the plugin have it, so a
    // failed write above leaves vestibule verifying with the secret they still share.
    or2!(vfile.write());
    // What vestibule now verifies with must load: the secret file's mode, the vhost's syntax.
    if let Err(diags) = config::load(location) {
        crate::cli::out::invalid(&diags);
        return 1;
    }
    outln!(
        "changed {}; reload vestibule to verify with the secret",
        count(n, "setting")
    );
    0
}

/// The user and group the daemon runs as: the owner of the state directory (the package makes it
/// `vestibule:vestibule`, mode 700). A secret file root created and kept would be unreadable to the
/// daemon, and the next reload would fail.
fn service_owner(cfg: &Config) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&cfg.state_dir).ok()?;
    Some((meta.uid(), meta.gid()))
}
