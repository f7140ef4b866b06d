//! Covered: /metrics content (requests by vhost and status class, duration histogram, upstream health,
//! active requests, build info), /healthz, admin 404, and one access-log line per request on stderr
//! in nginx's combined format (or JSON).

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_access_log() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(Vhost::new("chat.example.org").upstream(a.addr)).await;
    for _ in 0..3 {
        assert_eq!(v.get("chat.example.org", "/ok").await.0, 200);
    }
    assert_eq!(v.get("nobody.test", "/").await.0, 421);
    let r = client()
        .get(v.url("/with-agent?q=1"))
        .header("host", "chat.example.org")
        .header("user-agent", "probe/1.0")
        .header("referer", "https://ref.test/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let m = v.metrics().await;
    assert_eq!(
        metric(
            &m,
            "vestibule_http_requests_total",
            &[("class", "2xx"), ("vhost", "chat")]
        ),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "vestibule_http_requests_total",
            &[("class", "4xx"), ("vhost", "_unknown")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "vestibule_http_request_duration_seconds_count",
            &[("vhost", "chat")]
        ),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "vestibule_build_info", &[("version", "0.1.0")]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "vestibule_http_requests_active", &[]),
        Some(0.0),
        "{m}"
    );
    let server = a.addr.to_string();
    let healthy = [("server", server.as_str()), ("upstream", "chat")];
    eventually("upstream health exported", || async {
        (metric(&v.metrics().await, "vestibule_upstream_healthy", &healthy) == Some(1.0)).then_some(())
    })
    .await;

    let hz = client()
        .get(format!("http://127.0.0.1:{}/healthz", v.cfg.admin_port))
        .send()
        .await
        .unwrap();
    assert_eq!(hz.status(), 200);
    let nf = client()
        .get(format!("http://127.0.0.1:{}/nope", v.cfg.admin_port))
        .send()
        .await
        .unwrap();
    assert_eq!(nf.status(), 404);

    let log = eventually("access log written", || async {
        let log = v.log();
        log.contains("/with-agent").then_some(log)
    })
    .await;
    let line = log.lines().find(|l| l.contains("/with-agent")).unwrap();
    // nginx's "combined", byte for byte: the whole stderr line, no logger prefix or extra fields.
    let combined = regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /with-agent\?q=1 HTTP/1\.1" 200 \d+ "https://ref\.test/" "probe/1\.0"$"#,
    )
    .unwrap();
    assert!(combined.is_match(line), "{line}");
    assert!(
        log.lines()
            .any(|l| l.starts_with("127.0.0.1 - - [") && l.contains("\"GET / HTTP/1.1\" 421 ")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_log() {
    let a = Upstream::start("a").await;
    let cfg = MainConfig::new()
        .table(Table::new("log").set("format", "json"))
        .vhost(Vhost::new("chat.example.org").upstream(a.addr));
    let v = Vestibule::start(cfg).await;
    assert_eq!(v.get("chat.example.org", "/json-probe").await.0, 200);
    let line = eventually("json access line", || async {
        v.log()
            .lines()
            .find(|l| l.contains("/json-probe"))
            .map(str::to_string)
    })
    .await;
    for field in [
        "\"target\":\"vestibule::access\"",
        "\"uri\":\"/json-probe\"",
        "\"status\":200",
        "\"vhost\":\"chat\"",
        "\"remote_addr\":\"127.0.0.1\"",
    ] {
        assert!(line.contains(field), "missing {field} in {line}");
    }
}
