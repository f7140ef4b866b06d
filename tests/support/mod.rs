//! Test fixtures: a real vestibule process on loopback ports, and stand-in upstream servers that speak
//! real HTTP/1.1 and websockets (Mattermost itself cannot run here).

#![allow(dead_code)]

pub mod config;
pub mod hello;
pub mod mattermost;
pub mod mm_users;
pub mod pebble;
pub mod push_peers;
pub mod slapd;
pub mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use config::*;

/// How long to wait for something that should happen promptly (readiness, health-check flips): 60 s,
/// generous because the whole suite shares two cores; `VESTIBULE_TEST_PATIENCE_MS` sets another (a
/// slower machine, or a quicker verdict while debugging). `eventually` returns as soon as the
/// condition holds.
pub fn patience() -> Duration {
    static PATIENCE: OnceLock<Duration> = OnceLock::new();
    *PATIENCE.get_or_init(|| match std::env::var("VESTIBULE_TEST_PATIENCE_MS") {
        Ok(ms) => Duration::from_millis(ms.trim().parse().unwrap_or_else(|e| {
            panic!("VESTIBULE_TEST_PATIENCE_MS={ms:?}: {e} (a number of milliseconds, e.g. 120000)")
        })),
        Err(_) => Duration::from_secs(60),
    })
}

/// A free loopback port for a listener vestibule (or a peer) will bind later: pingora listeners cannot
/// report a `:0` bind. Ports come from below the kernel's ephemeral range (32768+), so that outgoing
/// connections made meanwhile cannot take them, and from a counter, so no two tests get the same one;
/// each is checked free for TCP and UDP (pebble's DNS) before it is handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let mut p = NEXT.fetch_add(1, Ordering::SeqCst);
        if p >= 32_000 {
            NEXT.store(20_000, Ordering::SeqCst);
            p = 20_000;
        }
        let tcp = std::net::TcpListener::bind(("127.0.0.1", p));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", p));
        if tcp.is_ok() && udp.is_ok() {
            return p;
        }
    }
}

/// Retry `check` until it returns `Some` or [`patience`] runs out (explicit eventual assertion).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(patience(), what, check).await
}

/// [`eventually`] with a bound of the test's own (a wait that is long by design: a renewal, a
/// queue of 10,000 messages).
pub async fn eventually_within<T, F, Fut>(bound: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + bound;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn client() -> reqwest::Client {
    tls::init_crypto();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

// ---------------------------------------------------------------------------------------------
// Stand-in upstream

/// A stand-in application server. Dropping it closes the listener and every open connection.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub hits: Arc<AtomicUsize>,
    /// Requests whose body arrived whole (a body cut off mid-way is not counted).
    pub complete: Arc<AtomicUsize>,
    /// Accepted TCP connections (to observe keep-alive).
    pub conns: Arc<AtomicUsize>,
    /// `/stream` sends its second chunk only when this is notified.
    pub release: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Answers:
    /// - websocket upgrades: echoes every text message as `<name>:<message>`;
    /// - `/slow`: answers after 5 s (to provoke timeouts);
    /// - `/stream`: sends `first;`, waits for `release`, then sends `second`;
    /// - anything else: reads the whole body, answers 200 with `upstream=<name>`, the method, path,
    ///   body length and every request header as `h:<name>=<value>` lines.
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        Self::serve(listener, name)
    }

    /// Start on a given address (to bring a "dead" server back on its old port).
    pub async fn start_on(addr: SocketAddr, name: &'static str) -> Upstream {
        let listener = eventually("the old port is free again", || async {
            TcpListener::bind(addr).await.ok()
        })
        .await;
        Self::serve(listener, name)
    }

    /// Dies like a crashed server, and returns once it has: its port refuses connections and every
    /// connection it accepted is closed. (Dropping only starts that: the server may still answer a
    /// request that arrives meanwhile.)
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    fn serve(listener: TcpListener, name: &'static str) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let complete = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (h, r, c, done) = (hits.clone(), release.clone(), conns.clone(), complete.clone());
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut stopped => break,
                };
                let Ok((stream, _)) = accepted else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (h, r, done) = (h.clone(), r.clone(), done.clone());
                tasks.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(name, req, h.clone(), r.clone(), done.clone())
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .with_upgrades()
                        .await;
                });
            }
            drop(listener);
            tasks.shutdown().await;
        });
        Upstream {
            addr,
            name,
            hits,
            complete,
            conns,
            release,
            task,
            stop: Some(stop),
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

async fn handle(
    name: &'static str,
    req: Request<hyper::body::Incoming>,
    hits: Arc<AtomicUsize>,
    release: Arc<Notify>,
    complete: Arc<AtomicUsize>,
) -> Result<Response<Body>, std::convert::Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    if req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .cloned()
            .unwrap_or(hyper::header::HeaderValue::from_static(""));
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let io = hyper_util::rt::TokioIo::new(upgraded);
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                io,
                tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            use futures_util::{SinkExt, StreamExt};
            while let Some(Ok(msg)) = ws.next().await {
                let reply = match msg {
                    tungstenite::Message::Text(t) => tungstenite::Message::text(format!("{name}:{t}")),
                    tungstenite::Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-accept", accept)
            .body(full(""))
            .unwrap());
    }
    match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(Response::new(full("slow")))
        }
        "/stream" => {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"first;")).await;
                release.notified().await;
                let _ = tx.send_data(Bytes::from_static(b"second")).await;
            });
            Ok(Response::new(body.boxed()))
        }
        _ => {
            // Test control: `x-echo-status: 401` sets the status, each `x-echo-response: Name: value`
            // adds a response header (to play Mattermost's real headers back through the proxy).
            let status: u16 = req
                .headers()
                .get("x-echo-status")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(200);
            let extra: Vec<(String, Vec<u8>)> = req
                .headers()
                .get_all("x-echo-response")
                .iter()
                .filter_map(|v| {
                    let (n, val) = v
                        .as_bytes()
                        .split_at(v.as_bytes().iter().position(|&b| b == b':')?);
                    Some((
                        String::from_utf8_lossy(n).trim().to_string(),
                        val[1..].trim_ascii().to_vec(),
                    ))
                })
                .collect();
            let mut out = format!("upstream={name}\nmethod={}\npath={}\n", req.method(), req.uri());
            let headers: Vec<String> = req
                .headers()
                .iter()
                .map(|(k, v)| format!("h:{}={}\n", k, String::from_utf8_lossy(v.as_bytes())))
                .collect();
            let body = match req.into_body().collect().await {
                Ok(b) => {
                    complete.fetch_add(1, Ordering::SeqCst);
                    b.to_bytes().len()
                }
                Err(_) => 0,
            };
            out.push_str(&format!("body_bytes={body}\n"));
            for h in headers {
                out.push_str(&h);
            }
            let mut resp = Response::builder().status(status).header("x-upstream", name);
            for (n, v) in extra {
                resp = resp.header(n, v);
            }
            Ok(resp.body(full(out)).unwrap())
        }
    }
}

/// The values of header `name` as the upstream saw them (from its echo body).
pub fn seen_header<'a>(echo: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("h:{name}=");
    echo.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// vestibule under test

/// A configuration tree in a temporary directory, written from a [`MainConfig`]. Every listener
/// of vestibule's own is on port 0; [`Vestibule::start`] fills in the ports the kernel chose.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    pub admin_port: u16,
    /// Set when the tree has an HTTPS listener (see [`MainConfig::https`]).
    pub https_port: Option<u16>,
    /// What the files say: the ports of `vestibule.toml` (0 unless [`fixed_ports`](Self::fixed_ports))
    /// and the builder that wrote them, for [`update`](Self::update).
    written: std::cell::RefCell<(Ports, MainConfig)>,
}

/// The admin, HTTP and HTTPS ports written into `vestibule.toml`.
#[derive(Clone, Copy, Default)]
struct Ports {
    admin: u16,
    http: u16,
    https: Option<u16>,
}

impl ConfigDir {
    fn from_main(main: MainConfig) -> ConfigDir {
        let ports = Ports {
            https: main.https.then_some(0),
            ..Ports::default()
        };
        let cfg = ConfigDir {
            dir: tempfile::tempdir().expect("tempdir"),
            http_port: 0,
            admin_port: 0,
            https_port: ports.https,
            written: std::cell::RefCell::new((ports, main)),
        };
        cfg.write_all();
        cfg
    }

    /// Change the tree (for a reload, an upgrade, a restart): every file the builder wrote is
    /// written again from `change(builder)`, with the same listener ports.
    pub fn update(&self, change: impl FnOnce(MainConfig) -> MainConfig) {
        {
            let mut written = self.written.borrow_mut();
            let main = std::mem::take(&mut written.1);
            written.1 = change(main);
        }
        self.write_all();
    }

    fn write_all(&self) {
        let (ports, main) = &*self.written.borrow();
        // An HTTPS listener added by `update` is on port 0 too.
        let https = main.https.then(|| ports.https.unwrap_or(0));
        let text = main.render_main(&self.state_dir(), ports.admin, ports.http, https);
        self.write("vestibule.toml", &text);
        main.write_rest(self);
    }

    /// The tree from raw TOML pieces, for tests not yet written with [`MainConfig`] (prefer it):
    /// `extra_proxy` is added to `[proxy]`, `extra_main` after it, `vhosts` are (file stem, contents).
    pub fn new(extra_proxy: &str, extra_main: &str, vhosts: &[(&str, String)]) -> ConfigDir {
        config::legacy(false, extra_proxy, extra_main, vhosts).build()
    }

    fn placeholder() -> ConfigDir {
        ConfigDir {
            dir: tempfile::tempdir().unwrap(),
            http_port: 0,
            admin_port: 0,
            https_port: None,
            written: Default::default(),
        }
    }

    /// Like [`new`](Self::new) with an HTTPS listener (h2 on).
    pub fn with_tls(extra_proxy: &str, extra_main: &str, vhosts: &[(&str, String)]) -> ConfigDir {
        config::legacy(true, extra_proxy, extra_main, vhosts).build()
    }

    /// Reserve the HTTP and HTTPS ports now, for a peer that must know them before vestibule starts
    /// (pebble validates challenges on them).
    pub fn fixed_ports(mut self) -> ConfigDir {
        let ports = Ports {
            admin: 0,
            http: free_port(),
            https: self.https_port.map(|_| free_port()),
        };
        (self.http_port, self.https_port) = (ports.http, ports.https);
        self.written.borrow_mut().0 = ports;
        self.write_all();
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn main_file(&self) -> PathBuf {
        self.path().join("vestibule.toml")
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
}

/// The listeners a running vestibule reports in `<state_dir>/listening` (`kind address` lines), or
/// `None` while the file is not there (not yet serving).
pub fn listening(state_dir: &Path) -> Option<Vec<(String, SocketAddr)>> {
    let text = std::fs::read_to_string(state_dir.join("listening")).ok()?;
    let parsed = text
        .lines()
        .map(|l| {
            let (kind, addr) = l.split_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                kind.to_string(),
                addr.parse().unwrap_or_else(|e| panic!("{l:?}: {e}")),
            )
        })
        .collect();
    Some(parsed)
}

/// The one address of `kind` in a `listening` report.
pub fn listener(report: &[(String, SocketAddr)], kind: &str) -> SocketAddr {
    let mut found = report.iter().filter(|(k, _)| k == kind).map(|(_, a)| *a);
    let addr = found
        .next()
        .unwrap_or_else(|| panic!("no {kind} listener in {report:?}"));
    assert!(found.next().is_none(), "several {kind} listeners in {report:?}");
    addr
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vestibule")
}

/// How a `vestibule` command ended and what it printed.
pub struct Cli {
    /// The exit code; -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl ConfigDir {
    /// Run `vestibule <args> --config <main file>` to its end.
    pub fn vestibule(&self, args: &[&str]) -> Cli {
        let out = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(self.main_file())
            .output()
            .unwrap_or_else(|e| panic!("run vestibule {args:?}: {e}"));
        Cli {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Run `vestibule check --config <main>`: (exit code, stdout, stderr).
pub fn check(cfg: &ConfigDir) -> (i32, String, String) {
    let out = cfg.vestibule(&["check"]);
    (out.code, out.stdout, out.stderr)
}

/// A running vestibule; killed on drop.
pub struct Vestibule {
    child: Child,
    pub cfg: ConfigDir,
    log: PathBuf,
    /// What it reported in `<state_dir>/listening` once it served.
    listeners: Vec<(String, SocketAddr)>,
}

impl Drop for Vestibule {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vestibule {
    /// Start, wait until it reports its bound addresses in `<state_dir>/listening` (filling in the
    /// ports of `cfg`) and the admin `/healthz` answers.
    pub async fn start(cfg: impl Into<ConfigDir>) -> Vestibule {
        Vestibule::start_with_env(cfg, &[]).await
    }

    /// [`start`](Self::start) with extra environment variables (`NOTIFY_SOCKET`, ...).
    pub async fn start_with_env(cfg: impl Into<ConfigDir>, env: &[(&str, &str)]) -> Vestibule {
        let cfg = cfg.into();
        let log = cfg.path().join("vestibule.log");
        // A report left by a killed predecessor names ports nobody listens on any more.
        let _ = std::fs::remove_file(cfg.state_dir().join("listening"));
        let child = Command::new(bin())
            .args(["run", "--config"])
            .arg(cfg.main_file())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(cfg.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn vestibule");
        let mut v = Vestibule {
            child,
            cfg,
            log,
            listeners: Vec::new(),
        };
        let state_dir = v.cfg.state_dir();
        let listeners = eventually("vestibule reports its listeners", || {
            if let Some(status) = v.child.try_wait().unwrap() {
                panic!("vestibule exited during start ({status}):\n{}", v.log());
            }
            std::future::ready(listening(&state_dir))
        })
        .await;
        v.listeners = listeners;
        v.cfg.http_port = v.port("http");
        v.cfg.admin_port = v.port("admin");
        let https = v.listeners.iter().any(|(kind, _)| kind == "https");
        v.cfg.https_port = https.then(|| v.port("https"));
        let health = format!("http://127.0.0.1:{}/healthz", v.cfg.admin_port);
        eventually("the admin /healthz answers", || async {
            let r = client().get(&health).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        v
    }

    /// The address of the one listener of `kind` (`http`, `https`, `admin`, `smtp`, `smtps`, `push`).
    pub fn addr(&self, kind: &str) -> SocketAddr {
        listener(&self.listeners, kind)
    }

    pub fn port(&self, kind: &str) -> u16 {
        self.addr(kind).port()
    }

    /// Stop the process and hand back its configuration tree (to start it again).
    pub fn stop(mut self) -> ConfigDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Move the tree out; Drop then has nothing left to kill.
        std::mem::replace(&mut self.cfg, ConfigDir::placeholder())
    }

    pub fn https_addr(&self) -> SocketAddr {
        SocketAddr::from((
            [127, 0, 0, 1],
            self.cfg.https_port.expect("the tree has an HTTPS listener"),
        ))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.cfg.http_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status once the process has exited on its own (reaped here).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// Wait for the process to exit by itself, at most `bound`: its exit status, or `None` if it
    /// was still running then.
    pub async fn exit_within(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for vestibule") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        client()
            .get(format!("http://127.0.0.1:{}/metrics", self.cfg.admin_port))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .unwrap()
    }

    /// GET `path` with the given Host: (status, body).
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let r = client()
            .get(self.url(path))
            .header("host", host)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}\n{}", self.log()));
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The value of the sample of metric `name` whose labels are exactly `labels` (in any order) in a
/// Prometheus text page; `&[]` for a metric without labels.
pub fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (sample, value) = l.rsplit_once(' ')?;
        let (n, found) = match sample.split_once('{') {
            Some((n, rest)) => (n, sample_labels(rest.strip_suffix('}')?)?),
            None => (sample, Vec::new()),
        };
        let same = n == name
            && found.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v));
        same.then(|| value.trim().parse().ok()).flatten()
    })
}

/// `a="x",b="y"` (the text between the braces of a sample) as (name, unescaped value) pairs.
fn sample_labels(mut text: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key, value));
        text = rest[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A peer process (smtp-sink, dnsmasq): killed and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn metric_matches_labels_in_any_order_and_exactly() {
    let page = "# HELP x_total X\n# TYPE x_total counter\nx_total{a=\"1\",b=\"say \\\"hi\\\"\"} 3\nx_total{a=\"1\"} 4\ny 5\n";
    assert_eq!(
        metric(page, "x_total", &[("b", "say \"hi\""), ("a", "1")]),
        Some(3.0)
    );
    assert_eq!(metric(page, "x_total", &[("a", "1")]), Some(4.0));
    assert_eq!(metric(page, "x_total", &[("a", "2")]), None);
    assert_eq!(metric(page, "x_total", &[]), None);
    assert_eq!(metric(page, "y", &[]), Some(5.0));
    assert_eq!(metric(page, "x", &[]), None);
}

// ---------------------------------------------------------------------------------------------
// Raw TCP clients (a hostile client does what real clients would not)

/// A connection from `ip` (any 127/8 address is local on Linux).
pub async fn connect_from(ip: &str, port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .unwrap_or_else(|e| panic!("connect from {ip}: {e}"))
}

/// Everything the server sends until it closes the connection; fails if it does not within the patience.
pub async fn until_closed(s: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tokio::io::AsyncReadExt::read(s, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(patience(), read).await.is_err() {
        panic!(
            "the server kept the connection open for {:?}; it sent {:?}",
            patience(),
            String::from_utf8_lossy(&seen)
        );
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// An HTTP stand-in's answer.
pub type Reply = Result<Response<Full<Bytes>>, std::convert::Infallible>;

/// Serve HTTP/1.1 on `listener`, every request answered by `handle(state, request)`, until the
/// returned task is aborted: the accept loop the API stand-ins (Mattermost's config and users APIs)
/// share.
pub fn serve_stand_in<S, F, Fut>(
    listener: TcpListener,
    state: Arc<S>,
    handle: F,
) -> tokio::task::JoinHandle<()>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<hyper::body::Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tasks.spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    })
}
