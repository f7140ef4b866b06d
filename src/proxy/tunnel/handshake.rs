//! A websocket handshake served by vestibule once pingora's request policies have run (see the
//! module above): the same `ProxyHttp` hooks pingora calls pick the upstream, shape the request,
//! count failures and apply the response policies; only the bytes are moved here.

use futures_util::FutureExt;
use pingora_core::protocols::http::ServerSession;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{ProxyHttp, Session};

use super::exchange;
use super::{CloseLog, Tunnel};
use crate::proxy::gauge::GaugeGuard;
use crate::proxy::service::{Ctx, Proxy};

/// Whether vestibule serves this request's upgrade itself: a websocket handshake over HTTP/1.1 on
/// a connection it can hand to a tunnel, to a plain-HTTP upstream pool (a TLS pool stays on
/// pingora's path).
fn takes_over(session: &Session, ctx: &Ctx) -> bool {
    let req = session.req_header();
    let websocket = req
        .headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    websocket
        && req.version == http::Version::HTTP_11
        && !session.as_ref().is_http2()
        && ctx.route().is_some_and(|r| !r.pool.tls)
        && crate::proxy::conn::can_hand_off()
}

/// The request line and the headers the access log shows, for the line written at close.
fn log_head(req: &RequestHeader) -> Result<RequestHeader> {
    let mut out = RequestHeader::build_no_case(req.method.clone(), req.raw_path(), Some(3))?;
    out.set_version(req.version);
    for name in [http::header::REFERER, http::header::USER_AGENT] {
        if let Some(v) = req.headers.get(&name) {
            let _ = out.insert_header(name, v.clone());
        }
    }
    // Only for `$remote_user`: a Basic user name, never a bearer token.
    if let Some(v) = req.headers.get(http::header::AUTHORIZATION).filter(|v| {
        v.as_bytes()
            .get(..6)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"basic "))
    }) {
        let _ = out.insert_header(http::header::AUTHORIZATION, v.clone());
    }
    Ok(out)
}

impl Proxy {
    /// Whether vestibule serves this request's upgrade itself (see [`takes_over`]).
    pub(in crate::proxy) fn tunnels(&self, session: &Session, ctx: &Ctx) -> bool {
        takes_over(session, ctx)
    }

    /// Serve the handshake (see [`takes_over`]): `Ok(true)` once an answer went out (or the client
    /// is gone), as `request_filter` reports it to pingora.
    pub(in crate::proxy) async fn take_over(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(route) = ctx.route() else {
            return Ok(false);
        };
        let (connect_timeout, read_timeout, write_timeout) =
            (route.connect_timeout, route.read_timeout, route.write_timeout);
        let mut req = session.req_header().clone();
        self.upstream_request_filter(session, &mut req, ctx).await?;
        // Connect as pingora would: another server of the pool after a failed connect.
        let (mut upstream, peer) = loop {
            let peer = match self.upstream_peer(session, ctx).await {
                Ok(p) => p,
                Err(e) => return self.refuse(session, &e).await,
            };
            let Some(addr) = ctx.upstream else {
                return self.refuse(session, &Error::new(ErrorType::InternalError)).await;
            };
            match exchange::connect(addr, connect_timeout).await {
                Ok(s) => break (s, peer),
                Err(e) => {
                    let e = self.fail_to_connect(session, &peer, ctx, e);
                    if e.retry() {
                        continue;
                    }
                    return self.refuse(session, &e).await;
                }
            }
        };
        let answer = match exchange::send_head(&mut upstream, &req, write_timeout).await {
            Ok(()) => exchange::read_head(&mut upstream, read_timeout).await,
            Err(e) => Err(e),
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let e = self.error_while_proxy(&peer, session, e, ctx, false);
                return self.refuse(session, &e).await;
            }
        };
        let mut head = answer.head;
        self.response_filter(session, &mut head, ctx).await?;
        if head.status != 101 {
            // Refused by the upstream: its answer goes to the client like any other.
            let body = match exchange::read_body(&mut upstream, &head, answer.rest, read_timeout).await {
                Ok(b) => b,
                Err(e) => {
                    let e = self.error_while_proxy(&peer, session, e, ctx, false);
                    return self.refuse(session, &e).await;
                }
            };
            head.remove_header(&http::header::TRANSFER_ENCODING);
            head.insert_header(http::header::CONTENT_LENGTH, body.len())?;
            session.write_response_header(Box::new(head), false).await?;
            session.write_response_body(Some(body), true).await?;
            return Ok(true);
        }
        session.write_response_header(Box::new(head), false).await?;
        // What the client sent past its request head is in pingora's buffer: it goes first.
        let mut early = Vec::new();
        while let Some(Ok(Some(b))) = session.as_mut().read_request_body().now_or_never() {
            early.extend_from_slice(&b);
        }
        let client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        // Take the connection out of pingora's session; what is left there is logged by nobody
        // (`logging` sees `tunneled`) and closes nothing.
        let mut placeholder = ServerSession::new_http1(Box::new(std::io::Cursor::new(Vec::new())));
        placeholder.set_keepalive(None);
        let client = match std::mem::replace(session.as_mut(), placeholder) {
            ServerSession::H1(s) => {
                super::Client::from(crate::proxy::conn::into_plain_socket(s.into_inner()))
            }
            _ => return Ok(true),
        };
        ctx.tunneled = true;
        let vhost = ctx.vhost.map(|i| &ctx.snap.vhosts[i]);
        let log = Box::new(CloseLog {
            req: log_head(&req)?,
            client: client_ip,
            vhost: vhost.map_or_else(|| "-".into(), |v| v.name.clone()),
            upstream: ctx.upstream,
            format: ctx.snap.access_log.then_some(ctx.snap.log_format),
            metrics: vhost.map_or_else(|| ctx.snap.unknown_metrics.clone(), |v| v.metrics.clone()),
            start: ctx.start,
        });
        let tunnel = Tunnel::new(
            client,
            upstream,
            answer.rest,
            early,
            read_timeout,
            log,
            ctx.websocket.take(),
            GaugeGuard::new(&self.metrics.http_active),
        );
        if !crate::proxy::conn::hand_off(tunnel) {
            tracing::warn!("websocket accepted on a connection that cannot be handed to a tunnel: closed");
        }
        Ok(true)
    }

    /// Answer a handshake that could not reach the upstream with the page pingora's path sends.
    async fn refuse(&self, session: &mut Session, e: &Error) -> Result<bool> {
        let code = crate::proxy::service::status_for(e);
        if code > 0 {
            crate::proxy::service::respond(session, code).await?;
        }
        Ok(true)
    }
}
