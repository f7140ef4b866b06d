//! The `admin` module: `/metrics` (Prometheus text) and `/healthz` on a loopback listener.
//!
//! Our own small hyper server rather than a pingora service, so that it binds before anything else
//! starts (a taken port is a clear start-up error) and reports the bound address. It must never be
//! exposed beyond loopback by default: metrics name vhosts and upstream servers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::BackgroundService;

use crate::config::{Config, Diagnostic, Diagnostics};
use crate::metrics::Metrics;
use crate::module::{Context, Module, ServiceError};
use crate::policy::remote_cluster::Peers;

pub struct Admin {
    listen: SocketAddr,
}

impl Module for Admin {
    const NAME: &'static str = "admin";
    /// The mail queue's flush/drop control, when the relay is configured.
    type Inputs = Option<Arc<crate::mail::control::Control>>;

    fn provision(cfg: &Config, _ctx: &Context, _previous: Option<&Self>) -> Result<Self, Diagnostics> {
        Ok(Admin {
            listen: cfg.admin.listen,
        })
    }

    fn validate(&self, cfg: &Config, diags: &mut Diagnostics) {
        // Port 0 asks the kernel for a free port: two such listeners never collide.
        if self.listen.port() != 0 && cfg.proxy.listen.contains(&self.listen) {
            diags.push(
                Diagnostic::in_file(
                    &cfg.origin,
                    format!("[admin] listen {} is also a proxy listen address", self.listen),
                )
                .hint("give the admin listener its own port, e.g. 127.0.0.1:9180"),
            );
        }
    }

    fn warnings(&self) -> Vec<String> {
        if self.listen.ip().is_loopback() {
            return Vec::new();
        }
        vec![format!(
            "[admin] listen {} is not on loopback: /metrics and the mail queue controls are reachable from the network",
            self.listen
        )]
    }

    fn services(&self, server: &mut Server, ctx: &Context, mail: Self::Inputs) -> Result<(), ServiceError> {
        let listener = crate::handover::bind(self.listen, "the admin listener")?;
        let svc = AdminService {
            listener: Mutex::new(Some(listener)),
            state: Arc::new(AdminState {
                metrics: ctx.metrics.clone(),
                peers: ctx.peers.clone(),
                certs: ctx.certs.clone(),
                acme: ctx.acme.clone(),
                mail,
            }),
        };
        server.add_service(pingora_core::services::background::background_service(
            "admin", svc,
        ));
        Ok(())
    }

    fn apply(&self, next: Self) -> Vec<String> {
        if next.listen != self.listen {
            vec!["[admin] listen changed: restart to apply".to_string()]
        } else {
            Vec::new()
        }
    }

    fn summary(&self) -> Vec<String> {
        vec![format!("listen http://{} (/metrics, /healthz)", self.listen)]
    }
}

struct AdminService {
    listener: Mutex<Option<std::net::TcpListener>>,
    state: Arc<AdminState>,
}

/// What the admin endpoints read.
struct AdminState {
    metrics: Arc<Metrics>,
    peers: Arc<Peers>,
    certs: Arc<crate::tls::store::CertStore>,
    acme: Arc<crate::tls::acme::Registry>,
    mail: Option<Arc<crate::mail::control::Control>>,
}

/// `POST /mail/flush`, `POST /mail/flush/ID`, `POST /mail/drop/ID` (what `vestibule mail` calls).
/// The unlinks of a drop run on a blocking thread.
async fn mail_control(path: String, svc: Arc<AdminState>) -> (u16, &'static str) {
    use crate::mail::control::DropOutcome;
    let Some(control) = svc.mail.clone() else {
        return (404, "the mail relay is not running\n");
    };
    if path == "/mail/flush" {
        control.flush(None);
        return (200, "flushing the whole queue\n");
    }
    if let Some(id) = path.strip_prefix("/mail/flush/") {
        return if control.flush(Some(id)) {
            (200, "flushing\n")
        } else {
            (404, "no such message in the queue\n")
        };
    }
    if let Some(id) = path.strip_prefix("/mail/drop/") {
        let id = id.to_string();
        let outcome = tokio::task::spawn_blocking(move || control.drop_message(&id)).await;
        return match outcome {
            Ok(DropOutcome::Dropped) => (200, "dropped\n"),
            Ok(DropOutcome::NotFound) => (404, "no such message in the queue\n"),
            Ok(DropOutcome::Busy) | Err(_) => (409, "the message is being delivered right now; try again\n"),
        };
    }
    (
        404,
        "not found: POST /mail/flush, /mail/flush/ID or /mail/drop/ID\n",
    )
}

/// Refresh the remote-cluster gauges from the peer table (online state depends on the clock).
fn refresh_peers(metrics: &Metrics, peers: &Peers) {
    let now = std::time::SystemTime::now();
    metrics.remote_online.reset();
    metrics.remote_last_ping.reset();
    for p in peers.list() {
        metrics
            .remote_online
            .with_label_values(&[&p.id])
            .set(p.online(now) as i64);
        let t = p
            .last_ping
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        metrics.remote_last_ping.with_label_values(&[&p.id]).set(t);
    }
}

/// `GET /status`: connected workspaces as a table (what `vestibule status` prints).
pub fn status_text(peers: &Peers) -> String {
    let now = std::time::SystemTime::now();
    let mut out = String::from("Connected workspaces (remote clusters)\n");
    let list = peers.list();
    if list.is_empty() {
        out.push_str("  none seen yet\n");
        return out;
    }
    out.push_str(&format!(
        "  {:<28} {:<40} {:<7} {}\n",
        "Connection ID", "Source", "Online", "Last ping"
    ));
    for p in list {
        let ago = now.duration_since(p.last_ping).map_or(0, |d| d.as_secs());
        let t = p
            .last_ping
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        out.push_str(&format!(
            "  {:<28} {:<40} {:<7} {} ({ago}s ago)\n",
            p.id,
            p.source,
            if p.online(now) { "yes" } else { "no" },
            crate::tls::load::format_time(t)
        ));
    }
    out
}

fn respond(req: &Request<hyper::body::Incoming>, svc: &AdminState) -> Response<Full<Bytes>> {
    let (metrics, peers) = (&*svc.metrics, &*svc.peers);
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            refresh_peers(metrics, peers);
            (200, "text/plain; version=0.0.4", Bytes::from(metrics.render()))
        }
        (&hyper::Method::GET, "/certificates") => (
            200,
            "text/plain; charset=utf-8",
            Bytes::from(crate::tls::status::render(&svc.certs.load(), Some(&svc.acme))),
        ),
        (&hyper::Method::GET, "/status") => {
            (200, "text/plain; charset=utf-8", Bytes::from(status_text(peers)))
        }
        (&hyper::Method::GET, "/healthz") => (200, "text/plain", Bytes::from_static(b"ok\n")),
        (&hyper::Method::GET, _) => (
            404,
            "text/plain",
            Bytes::from_static(b"not found: try /metrics, /healthz or /status\n"),
        ),
        _ => (405, "text/plain", Bytes::from_static(b"method not allowed\n")),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body))
        .unwrap_or_default()
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let state = self.state.clone();
        let metrics = self.state.metrics.clone();
        crate::listen::serve(listener, shutdown, "admin", &metrics, move |_, req| {
            let state = state.clone();
            async move {
                if req.method() == hyper::Method::POST && req.uri().path().starts_with("/mail/") {
                    let (status, body) = mail_control(req.uri().path().to_string(), state).await;
                    return Response::builder()
                        .status(status)
                        .header("content-type", "text/plain")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .unwrap_or_default();
                }
                respond(&req, &state)
            }
        })
        .await;
    }
}
