//! The pingora `ProxyHttp` implementation: thin glue between pingora's phases and the pure parts
//! (router, policies, pools). Everything it reads comes from one `Arc<Snapshot>` loaded per request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, STRICT_TRANSPORT_SECURITY};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use crate::metrics::Metrics;
use crate::policy::{forwarded, remote_cluster};

use super::gauge::GaugeGuard;
use super::pages;
use super::snapshot::{Route, Snapshot};

pub struct Proxy {
    pub state: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    /// The push relay, for routes with `push = true`.
    pub push: Option<Arc<crate::push::Relay>>,
}

pub struct Ctx {
    pub(crate) snap: Arc<Snapshot>,
    /// The request came over TLS.
    tls: bool,
    pub(crate) vhost: Option<usize>,
    route: Option<usize>,
    pub(crate) start: Instant,
    pub(crate) upstream: Option<std::net::SocketAddr>,
    tries: usize,
    body_bytes: u64,
    upgrade: bool,
    /// `X-RemoteCluster-Id` of a peer ping from an allowed network, recorded if Mattermost accepts it.
    ping_id: Option<http::HeaderValue>,
    _active: GaugeGuard,
    pub(crate) websocket: Option<GaugeGuard>,
    /// The connection went to a websocket tunnel (super::tunnel), which logs it when it closes.
    pub(crate) tunneled: bool,
}

impl Ctx {
    pub(crate) fn route(&self) -> Option<&Route> {
        let v = &self.snap.vhosts[self.vhost?];
        Some(match self.route {
            Some(i) => &v.routes[i],
            None => &v.fallback,
        })
    }
}

pub(super) fn client_ip(session: &Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// Answer with one of our own small pages (and close the connection: its request body may be unread).
pub(crate) async fn respond(session: &mut Session, status: u16) -> Result<()> {
    let body = pages::body(status);
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    resp.insert_header(CACHE_CONTROL, "no-store")?;
    send_refusal(session, resp, Bytes::from_static(body)).await
}

/// A refused request's body is read and dropped, up to this much...
const DRAIN_MAX_BYTES: usize = 4 << 20;
/// ...and for this long, after the answer went out.
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Send one of our own answers to a request whose body may still be on its way, then read and drop
/// that body (bounded), as nginx does: an HTTP/2 stream then ends normally (curl and others report a
/// stream error for a RST_STREAM, even with NO_ERROR), and an HTTP/1 connection is not closed with
/// unread data, which would make the kernel send a TCP reset that can destroy the answer in flight.
async fn send_refusal(session: &mut Session, resp: ResponseHeader, body: Bytes) -> Result<()> {
    let downstream = session.as_mut();
    downstream.write_error_response(resp, body).await?;
    if downstream.is_body_done() {
        return Ok(());
    }
    let drain = async {
        let mut read = 0usize;
        while let Ok(Some(chunk)) = downstream.read_request_body().await {
            read += chunk.len();
            if read > DRAIN_MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, drain).await;
    Ok(())
}

/// Answer with a small JSON body (what the ONLYOFFICE plugin's peers expect on refusal).
async fn respond_json(session: &mut Session, status: u16, body: &'static [u8]) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(CONTENT_TYPE, "application/json")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    send_refusal(session, resp, Bytes::from_static(body)).await
}

/// The request's `Host` (HTTP/1) or `:authority` (HTTP/2), as sent.
fn host_of(req: &RequestHeader) -> &[u8] {
    req.headers
        .get(HOST)
        .map(|h| h.as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default()
}

/// Reserved for the ACME module's HTTP-01 answers: never redirected.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The port the first HTTPS listener got (the kernel's choice when configured as `:0`), for
/// redirects; 0 until it is bound.
static BOUND_HTTPS_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// Record an HTTPS listener's bound port; redirects name the first one's.
pub(crate) fn https_listener_bound(port: u16) {
    use std::sync::atomic::Ordering::Relaxed;
    let _ = BOUND_HTTPS_PORT.compare_exchange(0, port, Relaxed, Relaxed);
}

/// 308 (or 301 for GET/HEAD when configured) to the same host, path and query over HTTPS.
async fn redirect(session: &mut Session, snap: &Snapshot) -> Result<()> {
    let req = session.req_header();
    let host = host_of(req);
    let mut buf = [0u8; 262];
    let name = crate::host::normalize_host(host, &mut buf).unwrap_or("localhost");
    let bound = BOUND_HTTPS_PORT.load(std::sync::atomic::Ordering::Relaxed);
    let port = match snap
        .https_port
        .map(|configured| if bound == 0 { configured } else { bound })
    {
        Some(443) | None => String::new(),
        Some(p) => format!(":{p}"),
    };
    let pq = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let bracket = name.contains(':');
    let location = if bracket {
        format!("https://[{name}]{port}{pq}")
    } else {
        format!("https://{name}{port}{pq}")
    };
    let status = if snap.redirect_status == 301
        && (req.method == http::Method::GET || req.method == http::Method::HEAD)
    {
        301
    } else {
        308
    };
    let body: &'static [u8] = b"Moved to HTTPS.\n";
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::LOCATION, location)?;
    resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    session
        .as_mut()
        .write_error_response(resp, Bytes::from_static(body))
        .await
}

/// Map a proxy error to the status we answer with (0: the client is gone, answer nothing).
pub(crate) fn status_for(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

fn failure_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure => "connect",
        _ => "other",
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        // pingora parsed a request head: its deadline and size limit are done with.
        super::conn::head_complete();
        Ctx {
            snap: self.state.load_full(),
            tls: false,
            vhost: None,
            route: None,
            start: Instant::now(),
            upstream: None,
            tries: 0,
            body_bytes: 0,
            upgrade: false,
            ping_id: None,
            _active: GaugeGuard::new(&self.metrics.http_active),
            websocket: None,
            tunneled: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let req = session.req_header();
        let host = host_of(req);
        // ACME HTTP-01: answered here for the names being ordered, on plain HTTP only.
        if let Some(token) = req.uri.path().strip_prefix(ACME_CHALLENGE_PREFIX) {
            if session.digest().is_none_or(|d| d.ssl_digest.is_none()) {
                let mut buf = [0u8; 262];
                let name = crate::host::normalize_host(host, &mut buf).unwrap_or("");
                if let Some(key_auth) = ctx.snap.acme.key_auth(name, token) {
                    let mut resp = ResponseHeader::build(200, Some(2))?;
                    resp.insert_header(CONTENT_TYPE, "application/octet-stream")?;
                    resp.insert_header(CONTENT_LENGTH, key_auth.len())?;
                    session
                        .as_mut()
                        .write_error_response(resp, Bytes::from(key_auth))
                        .await?;
                    return Ok(true);
                }
            }
        }
        let req = session.req_header();
        let host = host_of(req);
        let Some(vi) = ctx.snap.router.lookup(host) else {
            let status = ctx.snap.unknown_host_status;
            respond(session, status).await?;
            return Ok(true);
        };
        let vhost = &ctx.snap.vhosts[vi];
        // Every path policy below matches this one normalised path (policy::path); the upstream
        // still gets the path as sent.
        let path = crate::policy::path::normalize(req.uri.path());
        let route = vhost
            .routes
            .iter()
            .position(|r| r.path.as_ref().is_some_and(|re| re.is_match(&path)));
        let guarded = vhost
            .remote_cluster
            .as_ref()
            .is_some_and(|g| g.is_peer_route(&path));
        let is_ping = guarded && path == remote_cluster::PING_PATH;
        let oo_match = vhost.onlyoffice.as_ref().and_then(|oo| oo.rule.matched(&path));
        let push_path = route
            .is_some_and(|i| vhost.routes[i].push)
            .then(|| path.clone().into_owned());
        let acme_path = path.starts_with(ACME_CHALLENGE_PREFIX);
        let ssl = session.digest().and_then(|d| d.ssl_digest.as_ref());
        ctx.tls = ssl.is_some();
        if let Some(ssl) = ssl {
            // A vhost without a certificate is not served over TLS, and a request whose Host belongs to
            // another vhost than the SNI it connected with was misdirected (HTTP/2 connection reuse):
            // 421 tells the client to open a new connection for that name.
            let sni_vhost = ssl
                .extension
                .get::<crate::tls::Sni>()
                .map(|sni| ctx.snap.router.lookup(sni.0.as_bytes()));
            if !vhost.tls || sni_vhost.is_some_and(|sv| sv != Some(vi)) {
                ctx.vhost = Some(vi);
                respond(session, 421).await?;
                return Ok(true);
            }
        } else if vhost.redirect && !acme_path {
            ctx.vhost = Some(vi);
            redirect(session, &ctx.snap).await?;
            return Ok(true);
        }
        ctx.vhost = Some(vi);
        ctx.route = route;
        ctx.upgrade = forwarded::is_upgrade(session.req_header());
        // Policies below apply whatever the method and whether or not the request upgrades: a
        // websocket handshake gets no way around them.
        if let Some(guard) = vhost.remote_cluster.as_ref().filter(|_| guarded) {
            if !guard.allows(client_ip(session)) {
                respond(session, 403).await?;
                return Ok(true);
            }
            if is_ping {
                ctx.ping_id = session.req_header().headers.get(X_REMOTECLUSTER_ID).cloned();
            }
        }
        if let (Some(oo), Some(m)) = (&vhost.onlyoffice, oo_match) {
            match oo
                .rule
                .apply_matched(session.req_header_mut(), m, std::time::SystemTime::now())
            {
                Ok(crate::policy::onlyoffice::Applied::Relayed) => oo.relayed.inc(),
                Ok(_) => {}
                Err(reject) => {
                    oo.rejected
                        .with_label_values(&[&*oo.vhost, reject.reason()])
                        .inc();
                    // The reason is logged, the token never is.
                    tracing::warn!(vhost = %oo.vhost, reason = reject.reason(), "ONLYOFFICE JWT refused");
                    respond_json(session, 403, crate::policy::onlyoffice::REJECT_BODY).await?;
                    return Ok(true);
                }
            }
        }
        if let Some(path) = push_path {
            return self.relay_push(session, path).await;
        }
        let max_body = ctx.route().map_or(u64::MAX, |r| r.max_body);
        // One Content-Length upstream (policy::framing); values that disagree were refused by
        // pingora's parser already, this is the last line.
        let declared = match crate::policy::framing::normalize_content_length(session.req_header_mut()) {
            Ok(n) => n,
            Err(_) => {
                respond(session, 400).await?;
                return Ok(true);
            }
        };
        if declared.is_some_and(|n| n > max_body) {
            respond(session, 413).await?;
            return Ok(true);
        }
        // Every request policy has run: a websocket handshake continues in vestibule's own tunnel.
        if ctx.upgrade && self.tunnels(session, ctx) {
            return self.take_over(session, ctx).await;
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            // A chunked body gives no length up front: stop it as soon as it is too large.
            if ctx.route().is_some_and(|r| ctx.body_bytes > r.max_body) {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body exceeds max_body");
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        let pool = &route.pool;
        pool.wait_primed(route.connect_timeout).await;
        // A retry (after a broken reused connection, or a refused connect) goes elsewhere if it can.
        let avoid = if ctx.tries > 0 { ctx.upstream } else { None };
        let addr = pool
            .select(avoid)
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no upstream server available"))?;
        // SNI only matters to TLS upstreams: no allocation for the usual plain-HTTP Mattermost.
        let sni = if pool.tls { pool.sni.clone() } else { String::new() };
        let mut peer = HttpPeer::new(addr, pool.tls, sni);
        peer.options.connection_timeout = Some(route.connect_timeout);
        peer.options.read_timeout = Some(route.read_timeout);
        peer.options.write_timeout = Some(route.write_timeout);
        peer.options.idle_timeout = Some(route.idle_timeout);
        ctx.upstream = Some(addr);
        ctx.tries += 1;
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let (Some(route), Some(addr)) = (ctx.route(), ctx.upstream) {
            route.pool.mark_failed(addr);
            self.metrics
                .upstream_failures
                .with_label_values(&[&*route.pool.name, failure_kind(&e)])
                .inc();
            tracing::warn!(upstream = %route.pool.name, server = %addr, error = %e, "upstream connect failed");
            // Nothing was sent yet: another server of the pool may take the request.
            if ctx.tries < route.pool.len() {
                e.set_retry(true);
            }
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if e.esource() == &ErrorSource::Upstream {
            if let Some(route) = ctx.route() {
                self.metrics
                    .upstream_failures
                    .with_label_values(&[&*route.pool.name, failure_kind(&e)])
                    .inc();
            }
        }
        // pingora's default policy: retry only idempotent requests whose body can be replayed.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let client = client_ip(session);
        let trusted = client.is_some_and(|ip| ctx.snap.is_trusted(ip));
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        forwarded::strip_hop_by_hop(upstream, ctx.upgrade);
        // HTTP/2 clients send :authority instead of Host; Mattermost needs Host to match Origin.
        if !upstream.headers.contains_key(HOST) {
            if let Some(a) = upstream.uri.authority().map(|a| a.as_str().to_owned()) {
                upstream.insert_header(HOST, a)?;
            }
        }
        forwarded::apply(upstream, client, trusted, if tls { "https" } else { "http" });
        if let Some(route) = ctx.route() {
            route.headers.request.apply(upstream);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.tls {
            if let Some(hsts) = ctx.vhost.and_then(|i| ctx.snap.vhosts[i].hsts.as_ref()) {
                resp.insert_header(STRICT_TRANSPORT_SECURITY, hsts.clone())?;
            }
        }
        if let Some(embed) = ctx.vhost.and_then(|i| ctx.snap.vhosts[i].embed.as_ref()) {
            embed.apply(resp);
        }
        if let Some(route) = ctx.route() {
            route.headers.response.apply(resp);
        }
        if resp.status == 101 && ctx.upgrade {
            ctx.websocket = Some(GaugeGuard::new(&self.metrics.websockets_active));
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let code = status_for(e);
        if code > 0 {
            if let Err(we) = respond(session, code).await {
                tracing::debug!(error = %we, "could not send the error page");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.tunneled {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.start.elapsed();
        let vhost = ctx.vhost.map(|i| &ctx.snap.vhosts[i]);
        let vm = vhost.map_or(&ctx.snap.unknown_metrics, |v| &v.metrics);
        vm.by_class[usize::from(status / 100).min(5)].inc();
        vm.duration.observe(elapsed.as_secs_f64());
        if ctx.snap.access_log {
            access_log(session, ctx, status, vhost.map_or("-", |v| &v.name), elapsed);
        }
        // A ping counts only once Mattermost accepted it (its token check is the authentication).
        if let (Some(id), 200, Some(ip)) = (&ctx.ping_id, status, client_ip(session)) {
            if let Ok(id) = id.to_str() {
                ctx.snap.peers.ping(id, ip, std::time::SystemTime::now());
            }
        }
    }
}

const X_REMOTECLUSTER_ID: http::header::HeaderName =
    http::header::HeaderName::from_static("x-remotecluster-id");

/// One line per request (see `super::access`).
fn access_log(session: &Session, ctx: &Ctx, status: u16, vhost: &str, elapsed: std::time::Duration) {
    let entry = super::access::Entry {
        client: client_ip(session),
        req: session.req_header(),
        status,
        body_bytes_sent: session.body_bytes_sent(),
        bytes_received: None,
        vhost,
        upstream: ctx.upstream,
        elapsed,
    };
    super::access::log(ctx.snap.log_format, &entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_statuses() {
        let timeout = Error::new_up(ErrorType::ReadTimedout);
        assert_eq!(status_for(&timeout), 504);
        let refused = Error::new_up(ErrorType::ConnectRefused);
        assert_eq!(status_for(&refused), 502);
        let too_big = Error::new(ErrorType::HTTPStatus(413));
        assert_eq!(status_for(&too_big), 413);
        let gone = Error::new_down(ErrorType::ConnectionClosed);
        assert_eq!(status_for(&gone), 0);
    }
}
