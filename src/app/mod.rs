//! The loader: every module of one configuration, and the lifecycle run over all of them.
//!
//! Only the command line (`cli`) imports this; modules know [`crate::module`] and nothing of each
//! other. What one module needs of another at start (the push relay for the proxy's `push = true`
//! routes, the mail queue's control for the admin listener) is handed over here, explicitly, and
//! what spans modules (mail's TLS listener needs a certificate from `tls`) is checked here.
//!
//! Each phase runs for every module through the one list in `modules!` below, in that order:
//! adding a module is one line there.

pub mod reload;

use pingora_core::server::Server;

use crate::config::{Config, Diagnostic, Diagnostics};
use crate::module::{Context, Module, ServiceError};

/// Declares [`Modules`] and its phases from one list of `field: Type => inputs`, where `inputs` is
/// what the loader hands that module's `services` (an expression over the provisioned `$m`).
macro_rules! modules {
    (|$m:ident| $($field:ident: $ty:ty => $inputs:expr),+ $(,)?) => {
        /// Every module of one configuration, provisioned and validated together.
        pub struct Modules {
            $(pub $field: $ty,)+
        }

        impl Modules {
            /// Provision every module (collecting every module's errors), then validate each and
            /// run the cross-module checks.
            pub fn provision(
                cfg: &Config,
                ctx: &Context,
                previous: Option<&Modules>,
            ) -> Result<Modules, Diagnostics> {
                let mut diags = Diagnostics::default();
                $(
                    let $field = <$ty>::provision(cfg, ctx, previous.map(|p| &p.$field))
                        .map_err(|d| diags.0.extend(d.0))
                        .ok();
                )+
                let ($(Some($field),)+) = ($($field,)+) else {
                    return Err(diags);
                };
                let modules = Modules { $($field,)+ };
                $(modules.$field.validate(cfg, &mut diags);)+
                cross_check(&modules, cfg, &mut diags);
                if diags.is_empty() {
                    Ok(modules)
                } else {
                    Err(diags)
                }
            }

            /// Prepare a reloaded instance before it takes over (see [`Module::prime`]).
            pub async fn prime(&self, ctx: &Context) {
                $(self.$field.prime(ctx).await;)+
            }

            /// Bind and start every module's services; the first failure stops the start.
            pub fn services(&self, server: &mut Server, ctx: &Context) -> Result<(), ServiceError> {
                let $m = self;
                $($m.$field.services(server, ctx, $inputs)?;)+
                Ok(())
            }

            /// Take over `next`; returns the notes about changes that need a restart.
            pub fn apply(&self, next: Modules) -> Vec<String> {
                let mut notes = Vec::new();
                $(notes.extend(self.$field.apply(next.$field));)+
                notes
            }

            /// Each module's lines for `vestibule check`'s summary.
            pub fn summary(&self) -> Vec<(&'static str, Vec<String>)> {
                vec![$((<$ty>::NAME, self.$field.summary()),)+]
            }

            /// Every module's warnings, then the cross-module ones.
            pub fn warnings(&self) -> Vec<String> {
                let mut all = Vec::new();
                $(all.extend(self.$field.warnings());)+
                all.extend(cross_warnings(self));
                all
            }
        }
    };
}

modules! { |m|
    admin: crate::admin::Admin => m.mail.control(),
    tls: crate::tls::TlsModule => (),
    proxy: crate::proxy::ProxyModule => m.push.relay(),
    push: crate::push::PushModule => (),
    mail: crate::mail::MailModule => (),
    integrate: crate::integrate::IntegrateModule => (),
    users: crate::users::UsersModule => (),
    doctor: crate::doctor::module::DoctorModule => (),
}

/// Provision and validate every module of a freshly loaded configuration: what `run`, `check` and a
/// reload all do. Reading errors and the modules' checks are reported together.
pub fn provision_all(
    loaded: (Option<Config>, Diagnostics),
    ctx: &Context,
    previous: Option<&Modules>,
) -> Result<(Config, Modules), Diagnostics> {
    let (cfg, mut diags) = loaded;
    let Some(cfg) = cfg else { return Err(diags) };
    match Modules::provision(&cfg, ctx, previous) {
        Ok(m) if diags.is_empty() => Ok((cfg, m)),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.0.extend(more.0);
            Err(diags)
        }
    }
}

/// Checks that need two modules' provisioned values.
fn cross_check(m: &Modules, cfg: &Config, diags: &mut Diagnostics) {
    if let Some(mail) = &cfg.mail {
        if let (Some(first), true) = (mail.listen_tls.first(), m.tls.snapshot().certs.is_empty()) {
            diags.push(
                Diagnostic::in_file(
                    &cfg.origin,
                    format!("[mail] listen_tls = [\"{first}\"] needs a certificate, and no vhost has `tls`"),
                )
                .hint("give a vhost `tls` (files, \"acme\" or \"self-signed\"), or remove [mail] listen_tls"),
            );
        }
    }
}

/// Warnings that need two modules' provisioned values.
fn cross_warnings(m: &Modules) -> Vec<String> {
    let mut w = Vec::new();
    if m.mail.offers_auth() && m.tls.snapshot().certs.is_empty() {
        w.push("[mail] users_file is set but no vhost has `tls`: AUTH needs TLS and is not offered".into());
    }
    w
}
