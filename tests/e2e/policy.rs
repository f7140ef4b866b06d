//! Covered: embedding (X-Frame-Options removed, only `frame-ancestors` rewritten in Mattermost's real
//! CSP headers, byte for byte; Report-Only too; added when absent; other vhosts untouched; applied to
//! websocket upgrades); header rules (request and response set/add/remove/replace, route rules after
//! vhost rules); remote-cluster guard (peer routes allowed from 127.0.0.1, refused from 127.0.0.2,
//! also as a websocket upgrade; other routes open), pings recorded only when Mattermost accepts them,
//! shown by metrics and `vestibule status`.

use crate::support::*;

async fn get_with(v: &Vestibule, host: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = client().get(v.url(path)).header("host", host);
    for (k, val) in headers {
        r = r.header(*k, *val);
    }
    r.send().await.unwrap()
}

fn all<'a>(r: &'a reqwest::Response, name: &str) -> Vec<&'a str> {
    r.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn embedding_rewrites_only_frame_ancestors() {
    let a = Upstream::start("a").await;
    let embed = Table::new("embed").set(
        "allow_origins",
        ["https://webapp.test", "https://desk.test:8443/"],
    );
    let cfg = MainConfig::new()
        .vhost(Vhost::new("chat.test").upstream(a.addr).table(embed))
        .vhost(Vhost::new("other.test").upstream(a.addr));
    let v = Vestibule::start(cfg).await;
    let fa = "frame-ancestors 'self' https://webapp.test https://desk.test:8443";

    // Mattermost 7+ with an empty FrameAncestors setting, and the older form.
    let cases = [
        (
            "frame-ancestors 'self' ; script-src 'self' cdn.rudderlabs.com",
            format!("{fa} ; script-src 'self' cdn.rudderlabs.com"),
        ),
        (
            "frame-ancestors 'self' teams.microsoft.com; script-src 'self' cdn.rudderlabs.com js.stripe.com/v3",
            format!("{fa}; script-src 'self' cdn.rudderlabs.com js.stripe.com/v3"),
        ),
        ("script-src 'self';  style-src 'unsafe-inline'", format!("script-src 'self';  style-src 'unsafe-inline'; {fa}")),
    ];
    for (sent, expected) in &cases {
        let r = get_with(
            &v,
            "chat.test",
            "/login",
            &[
                ("x-echo-response", "X-Frame-Options: SAMEORIGIN"),
                ("x-echo-response", &format!("Content-Security-Policy: {sent}")),
            ],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-frame-options").is_none());
        assert_eq!(all(&r, "content-security-policy"), [expected.as_str()]);
    }

    // Report-Only alone: rewritten, and an enforcing frame-ancestors is added.
    let r = get_with(
        &v,
        "chat.test",
        "/",
        &[(
            "x-echo-response",
            "Content-Security-Policy-Report-Only: default-src 'self'; frame-ancestors 'none'",
        )],
    )
    .await;
    assert_eq!(
        all(&r, "content-security-policy-report-only"),
        [format!("default-src 'self'; {fa}").as_str()]
    );
    assert_eq!(all(&r, "content-security-policy"), [fa]);

    // No CSP at all (API responses): only frame-ancestors is added.
    let r = get_with(&v, "chat.test", "/api/v4/users/me", &[]).await;
    assert_eq!(all(&r, "content-security-policy"), [fa]);

    // Another vhost is untouched.
    let r = get_with(
        &v,
        "other.test",
        "/",
        &[
            ("x-echo-response", "X-Frame-Options: SAMEORIGIN"),
            (
                "x-echo-response",
                "Content-Security-Policy: frame-ancestors 'self'",
            ),
        ],
    )
    .await;
    assert_eq!(all(&r, "x-frame-options"), ["SAMEORIGIN"]);
    assert_eq!(all(&r, "content-security-policy"), ["frame-ancestors 'self'"]);
}

#[test]
fn embed_origins_are_validated() {
    let embed = Table::new("embed").set("allow_origins", ["https://webapp.test/path", "ftp://x.test"]);
    let cfg = MainConfig::new()
        .vhost(Vhost::new("chat.test").upstream("127.0.0.1:9").table(embed))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    assert!(err.contains("chat.toml:4:18: error: `allow_origins` in [embed] of vhost `chat`: `https://webapp.test/path` has a path"), "{err}");
    assert!(err.contains("ftp://x.test"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn header_rules() {
    let a = Upstream::start("a").await;
    // Header rules as an administrator writes them.
    let chat = Vhost::new("chat.test")
        .upstream(a.addr)
        .table(Table::new("headers.request").raw(
            r#"set = { "X-Request-Source" = "vestibule" }
add = { "X-Multi" = "two" }
remove = ["X-Debug"]
replace = [{ name = "X-Tenant", regex = "^old-(.*)$", with = "new-$1" }]"#,
        ))
        .table(Table::new("headers.response").raw(
            r#"set = { "Referrer-Policy" = "strict-origin" }
remove = ["X-Powered-By"]
[[headers.response.replace]]
name = "Location"
regex = '^http://chat\.test/'
with = "https://chat.test/""#,
        ))
        .route("^/api/", |r| {
            r.raw(
                r#"[route.headers.response]
set = { "Cache-Control" = "no-store" }"#,
            )
        });
    let v = Vestibule::start(chat).await;
    let r = get_with(
        &v,
        "chat.test",
        "/x",
        &[
            ("x-debug", "1"),
            ("x-multi", "one"),
            ("x-tenant", "old-acme"),
            ("x-echo-response", "X-Powered-By: PHP"),
            ("x-echo-response", "Location: http://chat.test/next"),
        ],
    )
    .await;
    assert_eq!(r.headers()["referrer-policy"], "strict-origin");
    assert!(r.headers().get("x-powered-by").is_none());
    assert_eq!(r.headers()["location"], "https://chat.test/next");
    assert!(
        r.headers().get("cache-control").is_none(),
        "route rules only on the route"
    );
    let body = r.text().await.unwrap();
    assert_eq!(seen_header(&body, "x-request-source"), ["vestibule"]);
    assert_eq!(seen_header(&body, "x-multi"), ["one", "two"]);
    assert!(seen_header(&body, "x-debug").is_empty());
    assert_eq!(seen_header(&body, "x-tenant"), ["new-acme"]);

    let r = get_with(&v, "chat.test", "/api/v4/x", &[]).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        r.headers()["referrer-policy"],
        "strict-origin",
        "vhost rules apply on routes too"
    );
}

#[test]
fn header_rules_are_validated() {
    let rules = Table::new("headers.request")
        .raw(r#"set = { "Bad Name" = "x", "Content-Length" = "1" }"#)
        .set("remove", ["Transfer-Encoding"]);
    let cfg = MainConfig::new()
        .vhost(Vhost::new("chat.test").upstream("127.0.0.1:9").table(rules))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    assert!(err.contains("`Bad Name` is not a valid header name"), "{err}");
    assert!(
        err.contains("`Content-Length` cannot be changed by a header rule"),
        "{err}"
    );
    assert!(
        err.contains("`Transfer-Encoding` cannot be changed by a header rule"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_cluster_guard_and_peer_status() {
    let a = Upstream::start("a").await;
    let chat = Vhost::new("chat.test")
        .upstream(a.addr)
        .remote_cluster(&["127.0.0.1/32"]);
    let v = Vestibule::start(chat).await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let peer_routes = [
        "/api/v4/remotecluster/ping",
        "/api/v4/remotecluster/msg",
        "/api/v4/remotecluster/confirm_invite",
        "/api/v4/remotecluster/upload/up1",
        "/api/v4/remotecluster/user1/image",
    ];
    for path in peer_routes {
        for (ip, expected) in [([127, 0, 0, 1], 200), ([127, 0, 0, 2], 403)] {
            let r = from(ip)
                .post(v.url(path))
                .header("host", "chat.test")
                .header("x-remotecluster-id", "peer1")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), expected, "{path} from {ip:?}");
        }
    }
    // Not a peer route: open to everyone (Mattermost checks the user session).
    let r = from([127, 0, 0, 2])
        .get(v.url("/api/v4/remotecluster"))
        .header("host", "chat.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // An upgrade request gets no way around the guard.
    let r = from([127, 0, 0, 2])
        .get(v.url("/api/v4/remotecluster/msg"))
        .header("host", "chat.test")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A ping Mattermost refuses is not recorded; an accepted one is.
    let c = from([127, 0, 0, 1]);
    let r = c
        .post(v.url("/api/v4/remotecluster/ping"))
        .header("host", "chat.test")
        .header("x-remotecluster-id", "forged")
        .header("x-echo-status", "401")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let m = v.metrics().await;
    assert_eq!(
        metric(&m, "vestibule_remote_cluster_online", &[("id", "peer1")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "vestibule_remote_cluster_online", &[("id", "forged")]),
        None,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "vestibule_remote_cluster_last_ping_timestamp_seconds",
            &[("id", "peer1")]
        )
        .unwrap_or(0.0)
            > 1.7e9
    );

    // The CLI finds the daemon's admin listener (configured as `:0`) where the daemon published it.
    let out = v.cfg.vestibule(&["status"]);
    let text = &out.stdout;
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(
        text.contains("Connection ID") && text.contains("Last ping"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains("peer1"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("127.0.0.1") && line.contains(" yes "), "{line}");
    assert!(!text.contains("forged"));
}
