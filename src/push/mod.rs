//! The `push` module: a Mattermost push-notification relay (spec/push-relay.md).
//!
//! Mattermost's `PushNotificationServer` points here. Each notification is validated like the
//! reference push proxy does, cut down to the configured privacy ceiling, and sent either unchanged to
//! an upstream push proxy (Mattermost's hosted service, for the store apps) or straight to APNs / FCM
//! (self-built apps), with the reference's retries bounded below Mattermost's 30 s timeout. The answer
//! is only "OK" once the destination accepted the notification; never a message body in the logs.

pub mod apns;
pub mod client;
pub mod config;
pub mod fcm;
pub mod notification;
pub mod send;
pub mod upstream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::background::BackgroundService;

use crate::config::{Config, Diagnostic, Diagnostics};
use crate::metrics::Metrics;
use crate::module::{Context, Module, ServiceError};
use config::{PushConfig, PushDest};
use notification::{Answer, Contents, Notification};
use send::{Destination, Limits};

/// A destination, and the same one as an upstream push proxy when it is one (acks go there too).
pub(crate) type Built = (Arc<dyn Destination>, Option<Arc<upstream::Upstream>>);

/// One configured route: the platforms it serves and where their notifications go.
struct Route {
    platforms: Vec<String>,
    dest: Arc<dyn Destination>,
    /// For upstream routes: acks are relayed too.
    upstream: Option<Arc<upstream::Upstream>>,
}

/// Everything a request needs; swapped whole on reload.
pub struct PushState {
    routes: Vec<Route>,
    allow: Vec<ipnet::IpNet>,
    contents: Contents,
    limits: Limits,
    max_body: u64,
    rate: (f64, f64),
}

impl PushState {
    fn route(&self, platform: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.platforms.iter().any(|p| p == platform))
    }
}

pub struct PushModule {
    /// `None` when the configuration has no `[push]` section.
    listen: Option<SocketAddr>,
    state: Arc<ArcSwap<PushState>>,
    /// The relay over `state`, for this module's listener and for the proxy's `push = true` routes
    /// (`None` without `[push]`).
    relay: Option<Arc<Relay>>,
    summary: Vec<String>,
}

impl PushModule {
    /// The relay, for the proxy (handed over by the loader when services start).
    pub fn relay(&self) -> Option<Arc<Relay>> {
        self.relay.clone()
    }
}

/// The destination of one route as the relay sends to it: its HTTPS client built, and the APNs
/// key or FCM service account read (`vestibule doctor` checks the same).
pub(crate) fn destination(dest: &PushDest) -> Result<Built, client::DestinationError> {
    let ca = |c: &Option<std::path::PathBuf>| client::build(c.as_deref());
    match dest {
        PushDest::Upstream { url, ca_file } => ca(ca_file).map(|c| {
            let u = Arc::new(upstream::Upstream::new(c, url));
            (u.clone() as Arc<dyn Destination>, Some(u))
        }),
        PushDest::Apns {
            key_file,
            key_id,
            team_id,
            topic,
            endpoint,
            ca_file,
        } => ca(ca_file)
            .and_then(|c| apns::Apns::new(c, endpoint, key_file, key_id, team_id, topic))
            .map(|a| (Arc::new(a) as Arc<dyn Destination>, None)),
        PushDest::Fcm {
            service_account_file,
            endpoint,
            ca_file,
        } => ca(ca_file)
            .and_then(|c| fcm::Fcm::new(c, endpoint, service_account_file))
            .map(|f| (Arc::new(f) as Arc<dyn Destination>, None)),
    }
}

fn build_state(cfg: &PushConfig, diags: &mut Diagnostics) -> Option<PushState> {
    let mut routes = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, r) in cfg.routes.iter().enumerate() {
        for p in &r.platforms {
            if let Some(first) = seen.insert(p.as_str(), i) {
                diags.push(
                    Diagnostic::at(
                        &r.loc,
                        format!(
                            "platform `{p}` is already served by [[push.route]] #{}",
                            first + 1
                        ),
                    )
                    .hint("each platform goes to one destination"),
                );
            }
        }
        let built = destination(&r.dest);
        match built {
            Ok((dest, upstream)) => routes.push(Route {
                platforms: r.platforms.clone(),
                dest,
                upstream,
            }),
            Err(e) => diags.push(Diagnostic::at(&r.loc, format!("[[push.route]] #{}: {e}", i + 1))),
        }
    }
    diags.is_empty().then(|| PushState {
        routes,
        allow: cfg.allow.clone(),
        contents: cfg.contents,
        limits: Limits {
            attempt: cfg.attempt_timeout,
            total: cfg.total_timeout,
        },
        max_body: cfg.max_body,
        rate: (cfg.rate_per_second as f64, cfg.rate_burst as f64),
    })
}

impl Module for PushModule {
    const NAME: &'static str = "push";
    type Inputs = ();

    fn provision(cfg: &Config, ctx: &Context, _previous: Option<&Self>) -> Result<Self, Diagnostics> {
        let mut diags = Diagnostics::default();
        let Some(pc) = &cfg.push else {
            let empty = PushState {
                routes: Vec::new(),
                allow: Vec::new(),
                contents: Contents::Full,
                limits: Limits::default(),
                max_body: 0,
                rate: (1.0, 1.0),
            };
            return Ok(PushModule {
                listen: None,
                state: Arc::new(ArcSwap::from_pointee(empty)),
                relay: None,
                summary: Vec::new(),
            });
        };
        let state = build_state(pc, &mut diags).ok_or(diags)?;
        let mut summary = vec![format!(
            "listen http://{} (/api/v1/send_push, /api/v1/ack)",
            pc.listen
        )];
        for r in &pc.routes {
            let dest = match &r.dest {
                PushDest::Upstream { url, .. } => format!("upstream {url}"),
                PushDest::Apns { endpoint, topic, .. } => format!("APNs {endpoint} topic {topic}"),
                PushDest::Fcm { endpoint, .. } => format!("FCM {endpoint}"),
            };
            summary.push(format!("{} -> {dest}", r.platforms.join(", ")));
        }
        let state = Arc::new(ArcSwap::from_pointee(state));
        let relay = Arc::new(Relay {
            state: state.clone(),
            metrics: ctx.metrics.clone(),
            buckets: Mutex::default(),
        });
        Ok(PushModule {
            listen: Some(pc.listen),
            state,
            relay: Some(relay),
            summary,
        })
    }

    fn services(&self, server: &mut Server, _ctx: &Context, (): ()) -> Result<(), ServiceError> {
        let (Some(listen), Some(relay)) = (self.listen, &self.relay) else {
            return Ok(());
        };
        let listener = crate::handover::bind(listen, "the push relay")?;
        let svc = PushService {
            listener: Mutex::new(Some(listener)),
            relay: relay.clone(),
        };
        server.add_service(pingora_core::services::background::background_service(
            "push", svc,
        ));
        Ok(())
    }

    fn apply(&self, next: Self) -> Vec<String> {
        self.state.store(next.state.load_full());
        if next.listen != self.listen {
            vec!["[push] listen changed (or the relay was turned on/off): restart to apply".into()]
        } else {
            Vec::new()
        }
    }

    fn summary(&self) -> Vec<String> {
        self.summary.clone()
    }
}

/// The relay itself: shared by its own listener and by vhost routes with `push = true`.
pub struct Relay {
    state: Arc<ArcSwap<PushState>>,
    metrics: Arc<Metrics>,
    /// Per-client token buckets (allowed networks only, so few entries; touched once per request).
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Relay {
    fn allow_rate(&self, ip: IpAddr, (per_second, burst): (f64, f64)) -> bool {
        let Ok(mut b) = self.buckets.lock() else {
            return true;
        };
        if b.len() > 10_000 {
            b.clear();
        }
        let now = Instant::now();
        let (tokens, last) = b.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct PushService {
    listener: Mutex<Option<std::net::TcpListener>>,
    relay: Arc<Relay>,
}

fn reply(status: u16, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

fn answer(status: u16, a: &Answer) -> Response<Full<Bytes>> {
    reply(status, "application/json", a.to_json())
}

/// A request body longer than `max_body` (or cut off while it was read): answered 413.
#[derive(Debug)]
pub struct BodyTooLarge;

async fn handle(
    relay: Arc<Relay>,
    peer: IpAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    // Refused from the headers: a client that may not send holds no body open.
    if !relay.allows(peer) {
        return relay.forbidden();
    }
    // A stop waits for sends in progress (crate::drain).
    let _busy = crate::drain::Busy::enter();
    let method = req.method().clone();
    let path = crate::policy::path::normalize(req.uri().path()).into_owned();
    let max = relay.state.load().max_body as usize;
    // Mattermost sends no Content-Type: whatever the header says, the body is read as JSON.
    let body = Limited::new(req.into_body(), max)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| BodyTooLarge);
    relay.respond(&method, &path, peer, body).await
}

impl Relay {
    pub fn max_body(&self) -> usize {
        self.state.load().max_body as usize
    }

    /// Whether `peer` may send notifications (`[push] allow`).
    pub fn allows(&self, peer: IpAddr) -> bool {
        self.state.load().allow.iter().any(|n| n.contains(&peer))
    }

    /// The answer to a client [`allows`](Self::allows) refuses, counted.
    pub fn forbidden(&self) -> Response<Full<Bytes>> {
        self.metrics.push_forbidden.inc();
        answer(
            403,
            &Answer::Fail("this address may not send push notifications here".into()),
        )
    }

    /// Answer one request. `path` may carry a prefix (a vhost route like `/push/api/v1/send_push`);
    /// `body` is `Err` when it was larger than `max_body`.
    pub async fn respond(
        &self,
        method: &hyper::Method,
        path: &str,
        peer: IpAddr,
        body: Result<Bytes, BodyTooLarge>,
    ) -> Response<Full<Bytes>> {
        let state = self.state.load_full();
        let m = &self.metrics;
        if !state.allow.iter().any(|n| n.contains(&peer)) {
            return self.forbidden();
        }
        let endpoint = ["/api/v1/send_push", "/api/v1/ack", "/version"]
            .into_iter()
            .find(|e| path.ends_with(e))
            .unwrap_or(path);
        match (method, endpoint) {
            (&hyper::Method::GET, "/") => {
                return reply(
                    200,
                    "text/html",
                    "<html><body>Mattermost Push Proxy (vestibule)</body></html>",
                )
            }
            (&hyper::Method::GET, "/version") => {
                let v = serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "name": "vestibule" });
                return reply(200, "application/json", v.to_string());
            }
            (&hyper::Method::POST, "/api/v1/send_push") | (&hyper::Method::POST, "/api/v1/ack") => {}
            _ => return answer(404, &Answer::Fail(format!("no such endpoint: {method} {path}"))),
        }
        if !self.allow_rate(peer, state.rate) {
            m.push_rate_limited.inc();
            return answer(429, &Answer::Fail("rate limited: too many requests".into()));
        }
        let Ok(body) = body else {
            m.push_bad_requests.inc();
            return answer(
                413,
                &Answer::Fail(format!("body larger than {} bytes", state.max_body)),
            );
        };
        if endpoint == "/api/v1/ack" {
            return ack(&state, m, &body).await;
        }
        let mut n = match Notification::parse(&body) {
            Ok(n) => n,
            Err(e) => {
                m.push_bad_requests.inc();
                return answer(400, &Answer::Fail(e.to_string()));
            }
        };
        let Some(route) = state.route(&n.platform) else {
            m.push_bad_requests.inc();
            return answer(
                400,
                &Answer::Fail(format!("unknown platform `{}`", n.get("platform"))),
            );
        };
        n.limit(state.contents);
        let dest = route.dest.label();
        let histogram = m.push_destination_duration.with_label_values(&[dest]);
        let (a, removed) = send::deliver(&*route.dest, &n, state.limits, |d| {
            histogram.observe(d.as_secs_f64())
        })
        .await;
        m.push_notifications
            .with_label_values(&[&n.platform, n.kind(), a.label()])
            .inc();
        if let Some(reason) = &removed {
            let reason =
                if reason.len() <= 32 && reason.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    reason.as_str()
                } else {
                    "other"
                };
            m.push_removals.with_label_values(&[&n.platform, reason]).inc();
        }
        tracing::info!(
            target: "vestibule::push",
            platform = %n.platform,
            kind = n.kind(),
            destination = dest,
            result = a.label(),
            error = match &a { Answer::Fail(e) => e.as_str(), _ => "" },
            "push notification"
        );
        answer(200, &a)
    }
}

async fn ack(state: &PushState, m: &Metrics, body: &[u8]) -> Response<Full<Bytes>> {
    let fields = match notification::parse_ack(body) {
        Ok(f) => f,
        Err(e) => {
            m.push_bad_requests.inc();
            return answer(400, &Answer::Fail(e.to_string()));
        }
    };
    let platform = notification::base_platform(fields.get("platform").and_then(|v| v.as_str()).unwrap_or(""));
    let Some(route) = state.route(platform) else {
        m.push_bad_requests.inc();
        return answer(400, &Answer::Fail(format!("unknown platform `{platform}`")));
    };
    m.push_acks.with_label_values(&[platform]).inc();
    if let Some(up) = &route.upstream {
        let out = up.ack(body.to_vec(), state.limits.attempt).await;
        if let send::Outcome::Fail(e) | send::Outcome::Retry(e) = out {
            return answer(200, &Answer::Fail(e));
        }
    }
    answer(200, &Answer::Ok)
}

#[async_trait]
impl BackgroundService for PushService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let relay = self.relay.clone();
        let metrics = self.relay.metrics.clone();
        crate::listen::serve(listener, shutdown, "push", &metrics, move |peer, req| {
            handle(relay.clone(), peer.ip(), req)
        })
        .await;
    }
}
