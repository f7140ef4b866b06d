//! Covered: the access log as nginx's "combined" format byte for byte, in its own file
//! (`[log] access_log = "<path>"`), HTTP/1.1 and HTTP/2 (origin-form target) alike; fail2ban's stock
//! nginx filters (Debian's fail2ban, `fail2ban-regex`) match the lines they should; requests the HTTP
//! parser answers before the proxy sees them (malformed head 400, CONNECT 405, head too large 431)
//! are logged too; the file is
//! reopened on SIGUSR1 after a rotation; rustls's "Illegal SNI" warnings stay out of the log.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn chat(upstream: std::net::SocketAddr) -> Vhost {
    Vhost::new("chat.example.org")
        .upstream(upstream)
        .self_signed()
        .no_redirect()
}

/// `[log] access_log = <path>`.
fn access_log(path: &std::path::Path) -> Table {
    Table::new("log").set("access_log", path)
}

/// A combined line, whole: `$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent"`, nothing before or after.
fn combined() -> regex::Regex {
    regex::Regex::new(
        r#"^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "(GET|POST|HEAD|CONNECT) \S+ HTTP/(1\.1|2\.0)" \d{3} \d+ "[^"]*" "[^"]*"$"#,
    )
    .unwrap()
}

/// `fail2ban-regex <log> <stock filter>`: how many lines the filter matched.
fn fail2ban_matches(log: &Path, filter: &str) -> (u64, String) {
    let out = std::process::Command::new("fail2ban-regex")
        .arg(log)
        .arg(format!("/etc/fail2ban/filter.d/{filter}.conf"))
        .output()
        .unwrap_or_else(|e| panic!("fail2ban-regex is required ({e}): run `bash .ci/prereqs test`"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fail2ban-regex failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Lines: 6 lines, 0 ignored, 2 matched, 4 missed"
    let matched = regex::Regex::new(r"Lines: \d+ lines, \d+ ignored, (\d+) matched")
        .unwrap()
        .captures(&text)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no summary in fail2ban-regex's output:\n{text}"));
    (matched, text)
}

async fn lines_in(path: &Path, at_least: usize) -> Vec<String> {
    eventually(&format!("{at_least} lines in {}", path.display()), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= at_least).then_some(lines)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_file_is_combined_and_fail2ban_reads_it() {
    let a = Upstream::start("a").await;
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let cfg = MainConfig::new()
        .https()
        .table(access_log(&path))
        .vhost(chat(a.addr));
    let v = Vestibule::start(cfg).await;
    let get = |path: &'static str, status: u16, agent: &'static str| {
        client()
            .get(v.url(path))
            .header("host", "chat.example.org")
            .header("user-agent", agent)
            .header("x-echo-status", status.to_string())
    };
    assert_eq!(
        get("/ok?q=1", 200, "probe/1.0").send().await.unwrap().status(),
        200
    );
    assert_eq!(
        get("/wp-login.php", 404, "scanner")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        get("/api/v4/users/me", 401, "app \"quoted\"")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(get("/bad", 400, "probe/1.0").send().await.unwrap().status(), 400);
    // HTTP/2 over TLS: the line shows the origin-form target, as nginx's does.
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .resolve("chat.example.org", v.https_addr())
        .build()
        .unwrap();
    let port = v.https_addr().port();
    for (p, status) in [("/wp-login.php?via=h2", 404), ("/h2?x=1", 200)] {
        let r = h2
            .get(format!("https://chat.example.org:{port}{p}"))
            .header("x-echo-status", status.to_string())
            .header("user-agent", "h2probe")
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status().as_u16(), status);
    }

    // Answered by the HTTP parser before the proxy sees them, logged all the same: a malformed head
    // (400), CONNECT (405), a head over max_header_size (431).
    let too_large = format!(
        "GET /too-large HTTP/1.1\r\nHost: chat.example.org\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    for (request, status) in [
        (
            &b"GET /malformed HTTP/1.1\r\nHost: chat.example.org\r\nno colon here\r\n\r\n"[..],
            "400",
        ),
        (
            &b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"[..],
            "405",
        ),
        (too_large.as_bytes(), "431"),
    ] {
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", v.cfg.http_port))
            .await
            .unwrap();
        let _ = raw.write_all(request).await;
        let mut answer = Vec::new();
        let _ = raw.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
    }

    let lines = lines_in(&path, 9).await;
    let re = combined();
    for l in &lines {
        assert!(re.is_match(l), "not a combined line: {l:?}");
    }
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle} in {lines:#?}"))
    };
    assert!(find("/ok?q=1").contains("\"GET /ok?q=1 HTTP/1.1\" 200 "));
    assert!(find("/api/v4/users/me").ends_with("\"app \\x22quoted\\x22\""));
    assert!(find("/h2?x=1").contains("\"GET /h2?x=1 HTTP/2.0\" 200 "));
    assert!(find("?via=h2").contains("\"GET /wp-login.php?via=h2 HTTP/2.0\" 404 "));
    assert!(find("/malformed").ends_with("\"GET /malformed HTTP/1.1\" 400 0 \"-\" \"-\""));
    assert!(find("CONNECT").ends_with("\"CONNECT example.org:443 HTTP/1.1\" 405 0 \"-\" \"-\""));
    assert!(find("/too-large").ends_with("\"GET /too-large HTTP/1.1\" 431 0 \"-\" \"-\""));
    // Nothing but access lines in the file: the daemon's own log stays on stderr.
    assert!(!v.log().contains("/wp-login.php"), "{}", v.log());

    // nginx-botsearch: the two 404s for wp-login.php (HTTP/1.1 and HTTP/2); not the 401, 400 or 200s.
    let (bots, out) = fail2ban_matches(&path, "nginx-botsearch");
    assert_eq!(bots, 2, "{out}");
    // nginx-bad-request: the 400s, the upstream's and the parser's (each logged once).
    let (bad, out) = fail2ban_matches(&path, "nginx-bad-request");
    assert_eq!(bad, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_file_is_reopened_on_sigusr1() {
    let a = Upstream::start("a").await;
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let rotated = logs.path().join("access.log.1");
    let cfg = MainConfig::new().table(access_log(&path)).vhost(chat(a.addr));
    let mut v = Vestibule::start(cfg).await;
    assert_eq!(v.get("chat.example.org", "/before-rotation").await.0, 200);
    lines_in(&path, 1).await;
    // What logrotate does: move the file away, then signal (nginx's `postrotate` sends USR1 too).
    std::fs::rename(&path, &rotated).unwrap();
    v.signal(libc::SIGUSR1);
    eventually("a new access.log with the new requests", || async {
        assert_eq!(v.get("chat.example.org", "/after-rotation").await.0, 200);
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| t.contains("/after-rotation"))
            .map(|_| ())
    })
    .await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/before-rotation"), "{old}");
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("/before-rotation"));
    assert!(
        v.exit_within(std::time::Duration::ZERO).await.is_none(),
        "SIGUSR1 killed vestibule"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_format_change_applies_on_reload() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(chat(a.addr)).await;
    v.cfg
        .update(|tree| tree.table(Table::new("log").set("format", "json")));
    v.signal(libc::SIGHUP);
    // The daemon's own lines switch too, not only access lines.
    eventually("the reload logged as JSON", || async {
        v.log()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"message\":\"configuration reloaded\""))
            .then_some(())
    })
    .await;
    assert_eq!(v.get("chat.example.org", "/after-reload").await.0, 200);
    let line = eventually("a JSON access line", || async {
        v.log()
            .lines()
            .find(|l| l.contains("/after-reload"))
            .map(str::to_string)
    })
    .await;
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(parsed["fields"]["status"], 200, "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn illegal_sni_is_not_a_warning() {
    let a = Upstream::start("a").await;
    let v = Vestibule::start(MainConfig::new().https().vhost(chat(a.addr))).await;
    let connect = v.https_addr().to_string();
    // An IP literal and an invalid name as SNI: rustls warns about both through `log`.
    for sni in ["127.0.0.1", "bad!name"] {
        let out = crate::support::tls::openssl(&["s_client", "-connect", &connect, "-servername", sni], "");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("CONNECTED"),
            "no TLS connection with SNI {sni}: {text}"
        );
    }
    // A request after the handshakes: their log lines, if any, were written before it.
    assert_eq!(v.get("chat.example.org", "/after-handshakes").await.0, 200);
    let log = v.log();
    assert!(
        !log.lines().any(|l| l.contains("WARN") && l.contains("SNI")),
        "{log}"
    );
}

#[test]
fn access_log_path_is_checked() {
    let relative = Table::new("log").set("access_log", "access.log");
    let cfg = MainConfig::new().table(relative).build();
    let (code, _, err) = check(&cfg);
    assert_ne!(code, 0);
    assert!(
        err.contains("vestibule.toml:")
            && err.contains("`access_log` in [log] must be true, false or an absolute file path"),
        "{err}"
    );
    // An absolute path in a directory that does not exist: `run` says so and does not start.
    let missing = cfg.path().join("no-such-dir/access.log");
    let cfg = MainConfig::new().table(access_log(&missing)).build();
    let out = cfg.vestibule(&["run"]);
    let err = out.stderr;
    assert_eq!(out.code, 1, "{err}");
    assert!(
        err.contains("cannot open the access log") && err.contains("no-such-dir/access.log"),
        "{err}"
    );
}
