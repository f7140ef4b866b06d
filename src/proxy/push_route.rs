//! Routes with `push = true`: the request goes to the push relay in process instead of upstream,
//! with the relay's own address check and body limit.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

use super::service::{client_ip, respond, Proxy};

impl Proxy {
    /// Hand a request on a `push = true` route to the push relay, in process.
    pub(super) async fn relay_push(&self, session: &mut Session, path: String) -> Result<bool> {
        let Some(relay) = &self.push else {
            respond(session, 503).await?;
            return Ok(true);
        };
        let peer = client_ip(session).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        // Refused from the headers: a client that may not send holds no body open.
        if !relay.allows(peer) {
            return self.push_answer(session, relay.forbidden()).await;
        }
        let limit = relay.max_body();
        let mut body = bytes::BytesMut::new();
        let mut too_large = false;
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > limit {
                too_large = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let method = session.req_header().method.clone();
        let body = if too_large {
            Err(crate::push::BodyTooLarge)
        } else {
            Ok(body.freeze())
        };
        let resp = relay.respond(&method, &path, peer, body).await;
        self.push_answer(session, resp).await
    }

    /// Send the push relay's answer to the client.
    async fn push_answer(
        &self,
        session: &mut Session,
        resp: hyper::Response<http_body_util::Full<Bytes>>,
    ) -> Result<bool> {
        let status = resp.status().as_u16();
        let ctype = resp.headers().get(CONTENT_TYPE).cloned();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = ResponseHeader::build(status, Some(3))?;
        if let Some(ct) = ctype {
            out.insert_header(CONTENT_TYPE, ct)?;
        }
        out.insert_header(CONTENT_LENGTH, bytes.len())?;
        session.write_response_header(Box::new(out), false).await?;
        session.write_response_body(Some(bytes), true).await?;
        Ok(true)
    }
}
