//! The `doctor` module: `[doctor]` checked with the rest of the configuration (`vestibule check`
//! rejects a bad `clock_url` as `run` would), and handed to the command. It serves nothing: the
//! command is the service.

use pingora_core::server::Server;

use super::config::DoctorConfig;
use crate::config::{Config, Diagnostic, Diagnostics};
use crate::module::{Context, Module, ServiceError};

/// `[doctor]`, validated.
pub struct DoctorModule {
    pub config: DoctorConfig,
    /// `clock_url`, parsed.
    pub clock_url: Option<reqwest::Url>,
}

impl Module for DoctorModule {
    const NAME: &'static str = "doctor";
    type Inputs = ();

    fn provision(cfg: &Config, _ctx: &Context, _previous: Option<&Self>) -> Result<Self, Diagnostics> {
        let mut diags = Diagnostics::default();
        let clock_url = cfg
            .doctor
            .clock_url
            .as_ref()
            .and_then(|u| match reqwest::Url::parse(&u.value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
                _ => {
                    diags.push(
                        Diagnostic::at(
                            &u.loc,
                            format!(
                                "`clock_url` in [doctor]: `{}` is not an http:// or https:// URL",
                                u.value
                            ),
                        )
                        .hint("e.g. clock_url = \"https://acme-v02.api.letsencrypt.org/directory\""),
                    );
                    None
                }
            });
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(DoctorModule {
            config: cfg.doctor.clone(),
            clock_url,
        })
    }

    fn services(&self, _server: &mut Server, _ctx: &Context, (): ()) -> Result<(), ServiceError> {
        Ok(())
    }

    /// Nothing runs: the next `vestibule doctor` reads the file again.
    fn apply(&self, _next: Self) -> Vec<String> {
        Vec::new()
    }

    fn summary(&self) -> Vec<String> {
        let c = &self.config;
        let mut lines = vec![if c.public_resolvers.is_empty() {
            "public DNS: not asked".to_string()
        } else {
            format!(
                "public DNS: {}",
                c.public_resolvers
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }];
        if let Some(u) = &self.clock_url {
            lines.push(format!("clock compared with {u}"));
        }
        lines
    }

    fn warnings(&self) -> Vec<String> {
        if self.config.public_resolvers.is_empty() {
            vec!["[doctor] public_resolvers = []: doctor does not check what the Internet resolves".into()]
        } else {
            Vec::new()
        }
    }
}
