//! End-to-end tests: a real vestibule process on loopback, real clients, stand-in upstreams.
//! One binary with a module per area (ripgrep's and rustls's layout).

mod support;

#[path = "e2e/access_log.rs"]
mod access_log;
#[path = "e2e/acme.rs"]
mod acme;
#[path = "e2e/check.rs"]
mod check;
#[path = "e2e/check_run.rs"]
mod check_run;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/doctor.rs"]
mod doctor;
#[path = "e2e/failover.rs"]
mod failover;
#[path = "e2e/forwarded.rs"]
mod forwarded;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/integrate.rs"]
mod integrate;
#[path = "e2e/integrate_kopano.rs"]
mod integrate_kopano;
#[path = "e2e/integrate_onlyoffice.rs"]
mod integrate_onlyoffice;
#[path = "e2e/limits.rs"]
mod limits;
#[path = "e2e/mail.rs"]
mod mail;
#[path = "e2e/mail_limits.rs"]
mod mail_limits;
#[path = "e2e/mail_routes.rs"]
mod mail_routes;
#[path = "e2e/monitoring.rs"]
mod monitoring;
#[path = "e2e/notify.rs"]
mod notify;
#[path = "e2e/observability.rs"]
mod observability;
#[path = "e2e/onlyoffice.rs"]
mod onlyoffice;
#[path = "e2e/policy.rs"]
mod policy;
#[path = "e2e/push.rs"]
mod push;
#[path = "e2e/push_direct.rs"]
mod push_direct;
#[path = "e2e/reload.rs"]
mod reload;
#[path = "e2e/routing.rs"]
mod routing;
#[path = "e2e/sendmail.rs"]
mod sendmail;
#[path = "e2e/stop.rs"]
mod stop;
#[path = "e2e/templates.rs"]
mod templates;
#[path = "e2e/tls.rs"]
mod tls;
#[path = "e2e/upgrade.rs"]
mod upgrade;
#[path = "e2e/users.rs"]
mod users;
#[path = "e2e/websocket.rs"]
mod websocket;
#[path = "e2e/wired.rs"]
mod wired;
