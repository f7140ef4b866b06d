//! Covered (what ships in packaging/prometheus and packaging/grafana): the alerting and recording
//! rules pass `promtool check rules` and their unit tests (`promtool test rules`), every alert has a
//! unit test and a line in the README, every recording rule is named there; Debian's
//! `prometheus`, scraping a running vestibule's admin listener with the shipped rules, sees the series
//! with their labels, evaluates every rule without error, holds "upstream pool without a healthy
//! server" and "mail queue growing" pending once the upstream stops and mail queues up behind a dead
//! smarthost, fires "configuration reload failed" (no `for`), and holds "vestibule down" pending when
//! the daemon dies; every expression and variable query of the Grafana dashboard returns data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::*;

fn packaging(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(rel)
}

/// Run promtool (Debian's `prometheus` package); a missing promtool fails the test, never skips it.
fn promtool(args: &[&str], file: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is required ({e}): run `bash .ci/prereqs test` (apt-get install prometheus)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} {}:\n{text}",
        file.display()
    );
    text
}

#[test]
fn shipped_rules_pass_promtool_check_and_their_unit_tests() {
    let rules = packaging("prometheus/vestibule-rules.yml");
    let out = promtool(&["check", "rules"], &rules);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(
        &["test", "rules"],
        &packaging("prometheus/vestibule-rules.test.yml"),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The names after `- alert: ` (or `- record: ` with `record`) in the shipped rules, in file order.
fn shipped_rules(record: bool) -> Vec<String> {
    let text = std::fs::read_to_string(packaging("prometheus/vestibule-rules.yml")).expect("rules file");
    let prefix = if record { "- record: " } else { "- alert: " };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
        .collect()
}

#[test]
fn every_alert_has_a_unit_test_and_a_readme_line() {
    let tests = std::fs::read_to_string(packaging("prometheus/vestibule-rules.test.yml")).expect("tests");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let alerts = shipped_rules(false);
    assert!(alerts.len() >= 15, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{alert} has no unit test in vestibule-rules.test.yml"
        );
        assert!(
            readme.contains(&format!("| `{alert}` |")),
            "{alert} is not in the README's Monitoring table"
        );
    }
    for record in shipped_rules(true) {
        assert!(
            readme.contains(&format!("`{record}`")),
            "{record} is not in the README"
        );
    }
}

/// Debian's `prometheus` on a loopback port, scraping `target` every second with the shipped rules
/// evaluated every second; killed on drop.
struct Prometheus {
    base: String,
    // Fields drop in order: the process goes before its storage directory.
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: vestibule\n    static_configs:\n      - targets: ['{target}']\n",
                rules = packaging("prometheus/vestibule-rules.yml").display(),
            ),
        )
        .expect("write prometheus.yml");
        // --web.listen-address takes no port 0.
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "prometheus is required ({e}): run `bash .ci/prereqs test` (apt-get install prometheus)"
                )
            });
        let p = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            _child: ChildGuard(child),
            _dir: dir,
        };
        let ready = format!("{}/-/ready", p.base);
        eventually("prometheus is ready", || async {
            let r = client().get(&ready).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with `params`: the `data` member of a `success` answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/{path}", self.base), params)
            .expect("valid URL");
        let r = client()
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /api/v1/{path}: {e}\n{}", self.log()));
        let text = r.text().await.expect("Prometheus answers");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert_eq!(body["status"], "success", "/api/v1/{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// The samples of an instant query (an invalid expression fails the test with Prometheus' error).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        match &data["result"] {
            Value::Array(samples) => samples.clone(),
            // A scalar or string result is one value.
            other => vec![other.clone()],
        }
    }

    /// Wait until `expr` returns a sample whose labels include `labels`; its value.
    async fn sample(&self, expr: &str, labels: &[(&str, &str)]) -> f64 {
        self.until(expr, labels, |_| true).await
    }

    /// Wait until `expr` returns a sample whose labels include `labels` and whose value passes `ok`.
    async fn until(&self, expr: &str, labels: &[(&str, &str)], ok: impl Fn(f64) -> bool) -> f64 {
        eventually(&format!("{expr} with {labels:?}"), || async {
            self.query(expr).await.iter().find_map(|s| {
                let m = &s["metric"];
                let value = s["value"][1].as_str()?.parse().ok()?;
                (labels.iter().all(|(k, v)| m[*k] == *v) && ok(value)).then_some(value)
            })
        })
        .await
    }

    /// Wait until alert `name` is active with `labels`; its state (`pending` or `firing`).
    async fn alert(&self, name: &str, labels: &[(&str, &str)]) -> String {
        eventually(&format!("alert {name} {labels:?}"), || async {
            let data = self.api("alerts", &[]).await;
            data["alerts"].as_array()?.iter().find_map(|a| {
                let l = &a["labels"];
                (l["alertname"] == name && labels.iter().all(|(k, v)| l[*k] == *v))
                    .then(|| a["state"].as_str().unwrap_or_default().to_string())
            })
        })
        .await
    }
}

/// A pool with one server and a health check, a vhost with a self-signed certificate, a mail relay
/// whose smarthost is down (port 9) and a push route to a dead push proxy.
fn monitored(upstream: std::net::SocketAddr) -> MainConfig {
    let health = inline(&[("path", &"/ping"), ("interval", &"200ms"), ("timeout", &"500ms")]);
    MainConfig::new()
        .https()
        .table(
            Table::new("upstream.mm")
                .set("servers", [upstream])
                .set("health_check", health),
        )
        .mail(|m| crate::mail::relay_test(m).set("first_retry", "1s"))
        .push(|p| p.set("attempt_timeout", "500ms").set("total_timeout", "2s"))
        .push_route(&["apple_rn"], |r| r.set("upstream", "http://127.0.0.1:9"))
        .vhost(
            Vhost::new("chat.example.org")
                .upstream_named("mm")
                .self_signed()
                .no_redirect(),
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_sees_the_series_and_the_alerts_and_serves_the_dashboard() {
    let app = Upstream::start("mm").await;
    let app_addr = app.addr.to_string();
    let mut v = Vestibule::start(monitored(app.addr)).await;
    let target = v.addr("admin");
    let instance = target.to_string();
    let prom = Prometheus::start(target).await;
    let ours = [("job", "vestibule"), ("instance", instance.as_str())];
    prom.until("up", &ours, |v| v == 1.0).await;
    // Growth is a change between scrapes: the queue must be seen empty first.
    prom.until("vestibule_mail_queue_size", &ours, |v| v == 0.0).await;

    // Traffic of every kind the dashboard shows.
    for _ in 0..3 {
        assert_eq!(v.get("chat.example.org", "/").await.0, 200);
    }
    // A name vestibule does not serve: the handshake is refused, and counted.
    let refused = tls::handshake(v.https_addr(), "nobody.test", tls::client_config(&[], &[])).await;
    assert!(refused.is_err(), "{refused:?}");
    let reply = crate::mail::submit(v.port("smtp"), &["alice@example.org"], "Subject: t\r\n\r\nhi\r\n").await;
    assert!(reply.contains("250 2.0.0"), "{reply}");
    let push = client()
        .post(format!("http://127.0.0.1:{}/api/v1/send_push", v.port("push")))
        .body(crate::push::MM_BODY)
        .send()
        .await
        .expect("push request");
    assert_eq!(push.status(), 200);

    // The upstream goes away; requests meanwhile fail with 502.
    drop(app);
    eventually("requests to chat fail once the upstream is gone", || async {
        (v.get("chat.example.org", "/").await.0 == 502).then_some(())
    })
    .await;
    // A reload that is refused: the previous configuration keeps serving.
    v.cfg
        .write("vhosts/broken.toml", "server_names = [\"broken.example.org\"\n");
    v.signal(libc::SIGHUP);

    // The series, with the labels the rules and the dashboard select on.
    let pool = [("upstream", "mm"), ("server", app_addr.as_str())];
    prom.until("vestibule_upstream_healthy", &pool, |v| v == 0.0)
        .await;
    let chat_ok = [("vhost", "chat"), ("class", "2xx"), ("job", "vestibule")];
    prom.until("vestibule_http_requests_total", &chat_ok, |v| v >= 3.0)
        .await;
    let cert = [("vhost", "chat"), ("source", "self-signed")];
    assert!(
        prom.sample("vestibule_certificate_expiry_timestamp_seconds - time()", &cert)
            .await
            > 0.0
    );
    prom.until("vestibule_mail_queue_size", &ours, |v| v >= 1.0).await;
    let failed_push = [("platform", "apple_rn"), ("result", "fail")];
    prom.until("vestibule_push_notifications_total", &failed_push, |v| v >= 1.0)
        .await;
    assert!(prom.sample("process_open_fds", &ours).await > 0.0);
    assert!(prom.sample("process_max_fds", &ours).await > 0.0);
    let failure = [("result", "failure")];
    prom.until("vestibule_config_reloads_total", &failure, |v| v == 1.0)
        .await;
    let chat = [("vhost", "chat")];
    prom.sample("instance_vhost:vestibule_http_requests_5xx:ratio_rate5m", &chat)
        .await;

    // The alerts: the ones with a `for` wait pending, the one without fires.
    let mm = [("upstream", "mm"), ("instance", instance.as_str())];
    assert_eq!(prom.alert("VestibuleUpstreamPoolDown", &mm).await, "pending");
    assert_eq!(prom.alert("VestibuleMailQueueGrowing", &ours).await, "pending");
    let reload = [("instance", instance.as_str()), ("severity", "warning")];
    eventually("the failed reload fires", || async {
        (prom.alert("VestibuleConfigReloadFailed", &reload).await == "firing").then_some(())
    })
    .await;

    // Every shipped rule loaded and evaluates without error.
    every_rule_is_healthy(&prom).await;
    every_dashboard_query_returns_data(&prom, &instance).await;

    // The daemon dies: `up` drops to 0 and "vestibule down" waits out its minute.
    v.signal(libc::SIGKILL);
    let _ = v.exit_within(patience()).await;
    prom.until("up", &ours, |v| v == 0.0).await;
    assert_eq!(prom.alert("VestibuleDown", &ours).await, "pending");
}

/// Every alert of the shipped file is loaded (no group silently dropped) and its last evaluation
/// reported no error (a typo in a function or a many-to-many match would).
async fn every_rule_is_healthy(prom: &Prometheus) {
    let mut expected = shipped_rules(false);
    expected.extend(shipped_rules(true));
    let rules = eventually("every rule evaluated once", || async {
        let data = prom.api("rules", &[]).await;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules.iter().all(|r| r["health"] != "unknown").then_some(rules)
    })
    .await;
    let mut loaded: Vec<String> = rules
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    // The API lists groups in its own order.
    loaded.sort_unstable();
    expected.sort_unstable();
    assert_eq!(loaded, expected);
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "rule {} failed to evaluate: {}",
            r["name"], r["lastError"]
        );
    }
}

/// Each panel target's expression and each variable's query, with the variables as Grafana would
/// substitute them, returns at least one sample from the Prometheus scraping vestibule.
async fn every_dashboard_query_returns_data(prom: &Prometheus, instance: &str) {
    let text = std::fs::read_to_string(packaging("grafana/vestibule.json")).expect("dashboard file");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    // The schema Grafana 12 writes (it migrates older dashboards when it loads them).
    assert_eq!(dash["schemaVersion"], 41);
    let vars = dash["templating"]["list"].as_array().expect("templating.list");
    assert_eq!(vars[0]["type"], "datasource", "the datasource is a variable");
    let substitute = |expr: &str| {
        expr.replace("$__rate_interval", "1m")
            .replace("$job", "vestibule")
            .replace("$instance", &regex_escape(instance))
            .replace("$vhost", ".+")
    };
    let mut exprs = Vec::new();
    for var in &vars[1..] {
        // label_values(SELECTOR, LABEL): Grafana asks for the selector's series.
        let q = var["query"]["query"].as_str().expect("variable query");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(sel, _)| sel)
            .unwrap_or_else(|| panic!("variable {}: not label_values(...): {q}", var["name"]));
        exprs.push((format!("variable {}", var["name"]), substitute(inner)));
    }
    let panels = dash["panels"].as_array().expect("panels");
    let mut targets = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {}", p["title"]);
            let expr = t["expr"].as_str().expect("expr");
            exprs.push((format!("panel {}", p["title"]), substitute(expr)));
            targets += 1;
        }
    }
    assert!(targets >= 20, "{targets} panel queries");
    for (what, expr) in &exprs {
        eventually(&format!("{what} returns data: {expr}"), || async {
            (!prom.query(expr).await.is_empty()).then_some(())
        })
        .await;
    }
}

/// `s` as a literal inside a PromQL regex matcher (the dots of an address).
fn regex_escape(s: &str) -> String {
    s.replace('.', "\\\\.")
}
