//! The floor under vestibule's proxy: pingora 0.9.1 with nothing of vestibule's, built the same way
//! (jemalloc, one current-thread runtime; pingora's own TLS listener with h2) and routing `/ws` to the
//! websocket upstream and everything else to the HTTP upstream. `benches/compare.py` runs it as the
//! system "pingora": what vestibule costs beyond it is vestibule's code; what it costs beyond nginx
//! is pingora's.
//!
//! Usage: bare_pingora PLAIN_ADDR TLS_ADDR CERT KEY HTTP_UPSTREAM WS_UPSTREAM

use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Bare {
    http: String,
    ws: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, s: &mut Session, _: &mut ()) -> pingora_core::Result<Box<HttpPeer>> {
        let addr = if s.req_header().uri.path() == "/ws" {
            &self.ws
        } else {
            &self.http
        };
        Ok(Box::new(HttpPeer::new(addr.as_str(), false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [plain, tls, cert, key, http, ws] = &args[..] else {
        eprintln!("usage: bare_pingora PLAIN_ADDR TLS_ADDR CERT KEY HTTP_UPSTREAM WS_UPSTREAM");
        std::process::exit(2);
    };
    let mut tls_settings = TlsSettings::intermediate(cert, key).expect("TLS settings");
    tls_settings.enable_h2();
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let bare = Bare {
        http: http.clone(),
        ws: ws.clone(),
    };
    let mut svc = pingora_proxy::http_proxy_service(&server.configuration, bare);
    svc.add_tcp(plain);
    svc.add_tls_with_settings(tls, None, tls_settings);
    server.add_service(svc);
    server.run_forever();
}
