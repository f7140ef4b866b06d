//! Covered: per-name certificates (ECDSA, RSA made by openssl, Ed25519 wildcard) seen by a rustls
//! client and by `openssl s_client -servername`; unknown SNI refused or given the default vhost's
//! certificate; HTTP/2 multiplexing (one handshake for many concurrent requests; `curl --http2`);
//! wss through TLS; redirect to HTTPS preserving path and query (308, 301 for GET/HEAD), ACME path and
//! `redirect = false` exempt; HSTS only on HTTPS; SNI/Host mismatch -> 421; live certificate swap
//! observed by fingerprint with a websocket open across it; a bad replacement keeps the old
//! certificate; TLS 1.1 and non-AEAD suites refused; certificate errors and warnings in `check`;
//! `cert status`; handshake and expiry metrics.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::tls::*;
use crate::support::*;

const P256: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

/// `name` served by `upstream` with the certificate and key in these files.
fn site(name: &str, upstream: impl Toml, cert: &std::path::Path, key: &std::path::Path) -> Vhost {
    Vhost::new(name).upstream(upstream).cert(cert, key)
}

fn s_client(port: u16, extra: &[&str]) -> (bool, String) {
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec!["s_client", "-connect", connect.as_str()];
    args.extend_from_slice(extra);
    let out = openssl(&args, "");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = out.status.success() && text.contains("Cipher is") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_per_name_and_unknown_sni_refused() {
    let up = Upstream::start("a").await;
    let ca = TestCa::new("vestibule test CA");
    let certs = tempfile::tempdir().unwrap();
    let a = ca.leaf(&["a.test"], P256);
    let w = ca.leaf(&["*.wild.test"], &rcgen::PKCS_ED25519);
    let b = openssl_rsa_leaf(&ca, certs.path(), "b.test");
    let (ac, ak) = a.write(certs.path(), "a");
    let (wc, wk) = w.write(certs.path(), "w");
    let (bc, bk) = b.write(certs.path(), "b");
    let cfg = MainConfig::new()
        .https()
        .table(Table::new("tls").set("unknown_sni", "refuse"))
        .vhost(site("a.test", up.addr, &ac, &ak))
        .vhost(site("b.test", up.addr, &bc, &bk))
        .vhost(site("*.wild.test", up.addr, &wc, &wk));
    let v = Vestibule::start(cfg).await;
    let roots = client_config(&[&ca.der], &[b"h2", b"http/1.1"]);

    let h = handshake(v.https_addr(), "a.test", roots.clone())
        .await
        .expect("a.test handshake");
    assert_eq!(h.fingerprint, a.fingerprint);
    assert_eq!(h.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h.version, Some(rustls::ProtocolVersion::TLSv1_3));
    let h = handshake(v.https_addr(), "b.test", roots.clone())
        .await
        .expect("b.test handshake");
    assert_eq!(h.fingerprint, b.fingerprint, "RSA certificate for b.test");
    let h = handshake(v.https_addr(), "x.wild.test", roots.clone())
        .await
        .expect("wildcard handshake");
    assert_eq!(h.fingerprint, w.fingerprint, "Ed25519 wildcard certificate");
    assert!(
        handshake(v.https_addr(), "unknown.test", roots.clone())
            .await
            .is_err(),
        "unknown SNI is refused"
    );

    let (ok, text) = s_client(v.cfg.https_port.unwrap(), &["-servername", "b.test"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("CN = b.test") || text.contains("CN=b.test"),
        "{text}"
    );
    let (ok, _) = s_client(v.cfg.https_port.unwrap(), &["-servername", "nobody.test"]);
    assert!(!ok, "openssl: unknown SNI refused");

    let client = https_client(&[&ca.der], &["a.test"], v.https_addr());
    let r = client
        .get(format!("https://a.test:{}/hello", v.https_addr().port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=15768000");
    let body = r.text().await.unwrap();
    assert_eq!(seen_header(&body, "x-forwarded-proto"), ["https"], "{body}");
    assert_eq!(
        seen_header(&body, "host"),
        [format!("a.test:{}", v.https_addr().port()).as_str()],
        "{body}"
    );

    let m = v.metrics().await;
    assert!(
        metric(
            &m,
            "vestibule_tls_handshakes_total",
            &[("result", "unknown_sni"), ("version", "-")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "vestibule_tls_handshakes_total",
            &[("result", "ok"), ("version", "TLSv1_3")]
        )
        .unwrap_or(0.0)
            >= 4.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "vestibule_certificate_expiry_timestamp_seconds",
            &[("source", "file"), ("vhost", "a")]
        )
        .unwrap_or(0.0)
            > 1.7e9,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_certificate_for_unknown_sni_and_misdirected_requests() {
    let up = Upstream::start("a").await;
    let ca = TestCa::new("vestibule test CA");
    let certs = tempfile::tempdir().unwrap();
    let a = ca.leaf(&["a.test"], P256);
    let b = ca.leaf(&["b.test"], P256);
    let (ac, ak) = a.write(certs.path(), "a");
    let (bc, bk) = b.write(certs.path(), "b");
    let cfg = MainConfig::new()
        .https()
        .proxy("default_vhost", "a")
        .vhost(site("a.test", up.addr, &ac, &ak))
        .vhost(site("b.test", up.addr, &bc, &bk))
        .vhost(Vhost::new("plain.test").upstream(up.addr));
    let v = Vestibule::start(cfg).await;
    let port = v.cfg.https_port.unwrap();
    for extra in [&["-servername", "other.test"][..], &["-noservername"][..]] {
        let (ok, text) = s_client(port, extra);
        assert!(
            ok && (text.contains("CN = a.test") || text.contains("CN=a.test")),
            "{extra:?}: {text}"
        );
    }

    // HTTP/1.1 over TLS with SNI a.test but Host b.test (or a vhost without TLS): misdirected.
    let cfg = client_config(&[&ca.der], &[b"http/1.1"]);
    for host in ["b.test", "plain.test"] {
        let tcp = tokio::net::TcpStream::connect(v.https_addr()).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(rustls::pki_types::ServerName::try_from("a.test").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = String::new();
        let _ = tls.read_to_string(&mut resp).await;
        assert!(resp.starts_with("HTTP/1.1 421"), "{host}: {resp}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_multiplexing_and_curl() {
    let up = Upstream::start("a").await;
    let ca = TestCa::new("vestibule test CA");
    let certs = tempfile::tempdir().unwrap();
    let a = ca.leaf(&["a.test"], P256);
    let (ac, ak) = a.write(certs.path(), "a");
    std::fs::write(certs.path().join("ca.pem"), &ca.pem).unwrap();
    let v = Vestibule::start(MainConfig::new().https().vhost(site("a.test", up.addr, &ac, &ak))).await;
    let port = v.https_addr().port();
    let before = metric(
        &v.metrics().await,
        "vestibule_tls_handshakes_total",
        &[("result", "ok"), ("version", "TLSv1_3")],
    )
    .unwrap_or(0.0);
    let client = https_client(&[&ca.der], &["a.test"], v.https_addr());
    // One request first: concurrent requests racing an unestablished connection would each dial.
    let warm = client
        .get(format!("https://a.test:{port}/warm"))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.version(), reqwest::Version::HTTP_2);
    let reqs = (0..32).map(|i| {
        let c = client.clone();
        async move { c.get(format!("https://a.test:{port}/r{i}")).send().await.unwrap() }
    });
    let responses = futures_util::future::join_all(reqs).await;
    for r in &responses {
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
    }
    let after = metric(
        &v.metrics().await,
        "vestibule_tls_handshakes_total",
        &[("result", "ok"), ("version", "TLSv1_3")],
    )
    .unwrap_or(0.0);
    assert_eq!(
        after - before,
        1.0,
        "32 concurrent requests share one HTTP/2 connection"
    );

    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--http2",
            "--cacert",
        ])
        .arg(certs.path().join("ca.pem"))
        .args([
            "--resolve",
            &format!("a.test:{port}:127.0.0.1"),
            &format!("https://a.test:{port}/curl"),
        ])
        .output()
        .unwrap_or_else(|e| panic!("curl is required ({e}): run `bash .ci/prereqs test`"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
}

async fn wss(
    v: &Vestibule,
    ca: &TestCa,
    name: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tungstenite::client::IntoClientRequest;
    let tcp = tokio::net::TcpStream::connect(v.https_addr()).await.unwrap();
    let req = format!("wss://{name}:{}/api/v4/websocket", v.https_addr().port())
        .into_client_request()
        .unwrap();
    // Websockets need HTTP/1.1: offer no h2.
    let connector = tokio_tungstenite::Connector::Rustls(client_config(&[&ca.der], &[b"http/1.1"]));
    let (ws, resp) = tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector))
        .await
        .unwrap_or_else(|e| panic!("wss: {e}\n{}", v.log()));
    assert_eq!(resp.status(), 101);
    ws
}

async fn echo(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    msg: &str,
) -> String {
    ws.send(tungstenite::Message::text(msg)).await.unwrap();
    loop {
        if let tungstenite::Message::Text(t) = ws.next().await.expect("open").unwrap() {
            return t.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_swap_keeps_websocket_and_bad_file_keeps_old_certificate() {
    let up = Upstream::start("a").await;
    let ca = TestCa::new("vestibule test CA");
    let certs = tempfile::tempdir().unwrap();
    // Chain and key in one file, replaced by one rename: the swap is atomic for the watcher.
    let combined = certs.path().join("a.pem");
    let put = |leaf: &Leaf, key_pem: &str| {
        let tmp = certs.path().join("a.pem.tmp");
        std::fs::write(&tmp, format!("{}{}", leaf.chain_pem, key_pem)).unwrap();
        std::fs::rename(&tmp, &combined).unwrap();
    };
    let a1 = ca.leaf(&["a.test"], P256);
    put(&a1, &a1.key_pem);
    let cfg = MainConfig::new()
        .https()
        .table(Table::new("tls").set("watch_interval", "100ms"))
        .vhost(site("a.test", up.addr, &combined, &combined).route("^/api/v4/websocket$", |r| r));
    let v = Vestibule::start(cfg).await;
    let roots = client_config(&[&ca.der], &[b"h2", b"http/1.1"]);
    assert_eq!(
        handshake(v.https_addr(), "a.test", roots.clone())
            .await
            .unwrap()
            .fingerprint,
        a1.fingerprint
    );
    let mut ws = wss(&v, &ca, "a.test").await;
    assert_eq!(echo(&mut ws, "one").await, "a:one");

    let a2 = ca.leaf(&["a.test"], &rcgen::PKCS_ECDSA_P384_SHA384);
    put(&a2, &a2.key_pem);
    eventually("the new certificate is served", || async {
        let h = handshake(v.https_addr(), "a.test", roots.clone()).await.ok()?;
        (h.fingerprint == a2.fingerprint).then_some(())
    })
    .await;
    assert_eq!(
        echo(&mut ws, "two").await,
        "a:two",
        "the websocket survives the swap"
    );

    // A replacement whose key does not match: refused, the old certificate keeps serving.
    let a3 = ca.leaf(&["a.test"], P256);
    put(&a3, &a1.key_pem);
    eventually("the bad file is noticed", || async {
        (metric(
            &v.metrics().await,
            "vestibule_certificate_reloads_total",
            &[("result", "failure")],
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    assert_eq!(
        handshake(v.https_addr(), "a.test", roots.clone())
            .await
            .unwrap()
            .fingerprint,
        a2.fingerprint
    );
    assert!(
        v.log().contains("does not belong to the certificate"),
        "{}",
        v.log()
    );
    assert!(v.log().contains("still serving the previous certificate"));
    assert_eq!(echo(&mut ws, "three").await, "a:three");
    let m = v.metrics().await;
    assert_eq!(
        metric(
            &m,
            "vestibule_certificate_reloads_total",
            &[("result", "success")]
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_and_hsts() {
    let up = Upstream::start("a").await;
    let hsts = inline(&[
        ("max_age", &"365d"),
        ("include_subdomains", &true),
        ("preload", &true),
    ]);
    let cfg = MainConfig::new()
        .https()
        .proxy("redirect_status", 301u16)
        .vhost(
            Vhost::new("a.test")
                .upstream(up.addr)
                .self_signed()
                .set("hsts", hsts),
        )
        .vhost(
            Vhost::new("keep.test")
                .upstream(up.addr)
                .self_signed()
                .no_redirect(),
        );
    let v = Vestibule::start(cfg).await;
    // The HTTPS listener is configured as `:0`: the redirect names the port it was bound to.
    let port = v.https_addr().port();
    init_crypto();
    let c = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .get(v.url("/some/path?x=1&y=%20"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://a.test:{port}/some/path?x=1&y=%20").as_str()
    );
    assert!(
        r.headers().get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    let r = c
        .head(v.url("/h"))
        .header("host", "a.test:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    let r = c
        .post(v.url("/form"))
        .header("host", "a.test")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308, "non-GET keeps its method");
    assert_eq!(
        r.headers()["location"],
        format!("https://a.test:{port}/form").as_str()
    );

    let (s, body) = v.get("a.test", "/.well-known/acme-challenge/token123").await;
    assert_eq!(s, 200, "ACME challenges are never redirected");
    assert!(body.contains("path=/.well-known/acme-challenge/token123"));
    let r = c
        .get(v.url("/plain"))
        .header("host", "keep.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "redirect = false proxies plain HTTP");
    assert!(r.headers().get("strict-transport-security").is_none());

    // Over HTTPS the configured HSTS value is sent (self-signed here, hence curl -k).
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--resolve",
            &format!("a.test:{port}:127.0.0.1"),
        ])
        .arg(format!("https://a.test:{port}/"))
        .output()
        .expect("curl is required: run `bash .ci/prereqs test`");
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        headers.contains("strict-transport-security: max-age=31536000; includesubdomains; preload"),
        "{headers}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_protocols_and_suites_refused() {
    let up = Upstream::start("a").await;
    let a = Vhost::new("a.test").upstream(up.addr).self_signed();
    let v = Vestibule::start(MainConfig::new().https().vhost(a)).await;
    let port = v.cfg.https_port.unwrap();
    let (ok, text) = s_client(port, &["-servername", "a.test", "-tls1_3"]);
    assert!(ok, "TLS 1.3 works: {text}");
    let (ok, text) = s_client(
        port,
        &[
            "-servername",
            "a.test",
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    );
    assert!(ok, "TLS 1.2 with an AEAD suite works: {text}");
    let (ok, text) = s_client(
        port,
        &[
            "-servername",
            "a.test",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ],
    );
    assert!(!ok, "TLS 1.1 must be refused: {text}");
    let (ok, text) = s_client(
        port,
        &[
            "-servername",
            "a.test",
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:AES128-SHA:@SECLEVEL=0",
        ],
    );
    assert!(!ok, "CBC suites must be refused: {text}");
    // Stateless session tickets from rustls' rotating ticketer (new key every 6 h, tickets live 12 h).
    let out = openssl(
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "a.test",
            "-tls1_2",
        ],
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TLS session ticket lifetime hint: 43200 (seconds)"),
        "{text}"
    );
    let m = v.metrics().await;
    assert!(
        metric(
            &m,
            "vestibule_tls_handshakes_total",
            &[("result", "error"), ("version", "-")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{m}"
    );
}

#[test]
fn certificate_problems_in_check_and_cert_status() {
    let ca = TestCa::new("vestibule test CA");
    let certs = tempfile::tempdir().unwrap();
    let a = ca.leaf(&["a.test"], P256);
    let other = ca.leaf(&["a.test"], P256);
    let expired = ca.leaf_with(&["old.test"], P256, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (ac, _) = a.write(certs.path(), "a");
    let (_, ok_key) = other.write(certs.path(), "other");
    let (ec, ek) = expired.write(certs.path(), "old");
    let (good_c, good_k) = a.write(certs.path(), "good");
    let up = "127.0.0.1:9";
    let cfg = MainConfig::new()
        .https()
        .vhost(site("a.test", up, &ac, &ok_key).file("mismatch"))
        .vhost(site("old.test", up, &ec, &ek))
        .vhost(site("z.test", up, &good_c, &good_k).file("uncovered"))
        .vhost(site("m.test", up, &certs.path().join("nope.crt"), &good_k).file("missing"))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    for e in [
        "mismatch.toml:3:7: error: vhost `mismatch`: the private key in",
        "does not belong to the certificate in",
        "vhost `old`: the certificate in",
        "expired on 2021-01-01",
        "vhost `uncovered`: the certificate in",
        "does not cover z.test (it covers: a.test)",
        "vhost `missing`: cannot read",
    ] {
        assert!(err.contains(e), "missing `{e}` in:\n{err}");
    }

    let cfg = MainConfig::new()
        .https()
        .vhost(site("a.test", up, &good_c, &good_k).file("good"))
        .vhost(
            Vhost::new("chat.example.org")
                .file("public")
                .upstream(up)
                .self_signed(),
        )
        .build();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning: vhost `public` serves chat.example.org with a self-signed certificate: mobile apps and browsers refuse self-signed certificates"),
        "{out}"
    );
    let status = cfg.vestibule(&["cert", "status"]);
    assert_eq!(status.code, 0);
    let text = status.stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with("a.test"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("good") && line.contains("file") && line.contains("CN=vestibule test CA"),
        "{line}"
    );
    let pubs = text
        .lines()
        .find(|l| l.starts_with("chat.example.org"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(pubs.contains("self-signed") && pubs.contains(" 364 "), "{pubs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_resume_without_a_full_handshake() {
    let up = Upstream::start("a").await;
    let ca = TestCa::new("vestibule test CA");
    let certs = tempfile::tempdir().unwrap();
    let (ac, ak) = ca.leaf(&["a.test"], P256).write(certs.path(), "a");
    let v = Vestibule::start(MainConfig::new().https().vhost(site("a.test", up.addr, &ac, &ak))).await;
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        init_crypto();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der.clone()).unwrap();
        let cfg = std::sync::Arc::new(
            rustls::ClientConfig::builder_with_protocol_versions(versions)
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = tokio::net::TcpStream::connect(v.https_addr()).await.unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(rustls::pki_types::ServerName::try_from("a.test").unwrap(), tcp)
                .await
                .unwrap();
            // Reading the response also processes the TLS 1.3 session ticket sent after the handshake.
            tls.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut resp = Vec::new();
            let _ = tls.read_to_end(&mut resp).await;
            assert!(resp.starts_with(b"HTTP/1.1 200"));
            kinds.push(tls.get_ref().1.handshake_kind());
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ],
            "{versions:?}"
        );
    }
}
