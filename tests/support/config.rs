//! The configuration trees the e2e tests start vestibule with, built by what the scenario needs
//! (`Vhost::new("chat.test").upstream(a.addr)`), rendered to TOML here once: quoting, table order
//! and vestibule's own `:0` listeners are no test's concern.
//!
//! The rendering is compact (no blank lines, a vhost's keys before its tables, tables in the order
//! given), so the line numbers a test asserts in a diagnostic can be counted from the builder calls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::ConfigDir;

/// A value as TOML text: strings, paths and addresses quoted, numbers and booleans bare, arrays of
/// any of them; [`raw`] for what is written as is (an inline table, a literal string).
pub trait Toml {
    fn toml(&self) -> String;
}

impl Toml for str {
    fn toml(&self) -> String {
        let mut out = String::with_capacity(self.len() + 2);
        out.push('"');
        for c in self.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

impl Toml for String {
    fn toml(&self) -> String {
        self.as_str().toml()
    }
}

impl Toml for Path {
    fn toml(&self) -> String {
        self.display().to_string().toml()
    }
}

impl Toml for PathBuf {
    fn toml(&self) -> String {
        self.as_path().toml()
    }
}

impl Toml for SocketAddr {
    fn toml(&self) -> String {
        self.to_string().toml()
    }
}

impl Toml for bool {
    fn toml(&self) -> String {
        self.to_string()
    }
}

macro_rules! bare {
    ($($t:ty),*) => {$(
        impl Toml for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
bare!(u16, u32, u64, usize, i64);

impl<T: Toml + ?Sized> Toml for &T {
    fn toml(&self) -> String {
        (**self).toml()
    }
}

impl<T: Toml> Toml for [T] {
    fn toml(&self) -> String {
        let items: Vec<String> = self.iter().map(Toml::toml).collect();
        format!("[{}]", items.join(", "))
    }
}

impl<T: Toml, const N: usize> Toml for [T; N] {
    fn toml(&self) -> String {
        self[..].toml()
    }
}

impl<T: Toml> Toml for Vec<T> {
    fn toml(&self) -> String {
        self[..].toml()
    }
}

/// TOML text written as it is.
pub struct Raw(String);

pub fn raw(text: impl Into<String>) -> Raw {
    Raw(text.into())
}

impl Toml for Raw {
    fn toml(&self) -> String {
        self.0.clone()
    }
}

/// An inline table: `{ cert = "…", key = "…" }`.
pub fn inline(pairs: &[(&str, &dyn Toml)]) -> Raw {
    let items: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {}", v.toml())).collect();
    Raw(format!("{{ {} }}", items.join(", ")))
}

/// Where vestibule's own listeners go: a port the kernel picks, reported in `<state_dir>/listening`.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// One TOML table (`[name]`) or array-of-tables entry (`[[name]]`) and its keys.
#[derive(Clone)]
pub struct Table {
    text: String,
}

impl Table {
    pub fn new(name: &str) -> Table {
        Table {
            text: format!("[{name}]\n"),
        }
    }

    /// One entry of an array of tables (`[[push.route]]`).
    pub fn array(name: &str) -> Table {
        Table {
            text: format!("[[{name}]]\n"),
        }
    }

    pub fn set(mut self, key: &str, value: impl Toml) -> Table {
        self.text.push_str(&format!("{key} = {}\n", value.toml()));
        self
    }

    /// Lines as written (a sub-table, a key spelled wrong on purpose).
    pub fn raw(mut self, lines: &str) -> Table {
        self.text.push_str(lines);
        if !lines.ends_with('\n') {
            self.text.push('\n');
        }
        self
    }
}

/// A file in `vhosts/`: `server_names` first, then its keys, then its tables (routes included) in
/// the order given.
#[derive(Clone)]
pub struct Vhost {
    file: String,
    names: Vec<String>,
    keys: String,
    tables: Vec<Table>,
}

impl Vhost {
    /// A vhost serving `name`, in a file named after its first label (`chat.test` -> `chat.toml`,
    /// so the vhost is called `chat`).
    pub fn new(name: &str) -> Vhost {
        let file = name.split('.').next().unwrap_or(name).replace('*', "wild");
        Vhost {
            file,
            names: vec![name.to_string()],
            keys: String::new(),
            tables: Vec::new(),
        }
    }

    /// The file's stem (the vhost's name), when not the first label.
    pub fn file(mut self, stem: &str) -> Vhost {
        self.file = stem.to_string();
        self
    }

    /// Another name it serves.
    pub fn also(mut self, name: &str) -> Vhost {
        self.names.push(name.to_string());
        self
    }

    pub fn set(mut self, key: &str, value: impl Toml) -> Vhost {
        self.keys.push_str(&format!("{key} = {}\n", value.toml()));
        self
    }

    /// Its upstream: one server.
    pub fn upstream(self, server: impl Toml) -> Vhost {
        self.set("upstream", [server])
    }

    /// Its upstream: one defined in the main file's `[upstream.<name>]`.
    pub fn upstream_named(self, name: &str) -> Vhost {
        self.set("upstream", name)
    }

    pub fn self_signed(self) -> Vhost {
        self.set("tls", "self-signed")
    }

    /// A certificate and key from files.
    pub fn cert(self, cert: &Path, key: &Path) -> Vhost {
        self.set("tls", inline(&[("cert", &cert), ("key", &key)]))
    }

    /// Plain HTTP is served, not redirected to HTTPS.
    pub fn no_redirect(self) -> Vhost {
        self.set("redirect", false)
    }

    pub fn max_body(self, size: &str) -> Vhost {
        self.set("max_body", size)
    }

    /// A table of its own (`[embed]`, `[onlyoffice]`, `[upstream]`).
    pub fn table(mut self, table: Table) -> Vhost {
        self.tables.push(table);
        self
    }

    /// `[remote_cluster] allow = [...]`: who may reach Mattermost's shared-channel endpoints.
    pub fn remote_cluster(self, allow: &[&str]) -> Vhost {
        self.table(Table::new("remote_cluster").set("allow", allow))
    }

    /// A `[[route]]` for the paths matching `path`, with what `with` sets on it.
    pub fn route(self, path: &str, with: impl FnOnce(Table) -> Table) -> Vhost {
        self.table(with(Table::array("route").set("path", path)))
    }

    pub fn stem(&self) -> &str {
        &self.file
    }

    /// The file's contents.
    pub fn render(&self) -> String {
        let mut out = format!("server_names = {}\n{}", self.names.toml(), self.keys);
        for t in &self.tables {
            out.push_str(&t.text);
        }
        out
    }
}

/// `vestibule.toml` and everything else in the tree. vestibule's HTTP and admin listeners (and HTTPS
/// with [`https`](Self::https)) are on ports the kernel picks, with 2 threads and a 1 s grace period.
#[derive(Clone, Default)]
pub struct MainConfig {
    pub(super) https: bool,
    grace_period: Option<String>,
    proxy: String,
    tables: Vec<Table>,
    vhosts: Vec<Vhost>,
    files: Vec<(String, String)>,
}

impl MainConfig {
    pub fn new() -> MainConfig {
        MainConfig::default()
    }

    /// An HTTPS listener (h2 on).
    pub fn https(mut self) -> MainConfig {
        self.https = true;
        self
    }

    /// A key in `[proxy]`.
    pub fn proxy(mut self, key: &str, value: impl Toml) -> MainConfig {
        self.proxy.push_str(&format!("{key} = {}\n", value.toml()));
        self
    }

    /// How long a stop may wait for requests in flight (1 s unless set).
    pub fn grace_period(mut self, period: &str) -> MainConfig {
        self.grace_period = Some(period.to_string());
        self
    }

    /// A table after `[proxy]` (`[log]`, `[dns]`, `[upstream.mm]`, …).
    pub fn table(mut self, table: Table) -> MainConfig {
        self.tables.push(table);
        self
    }

    /// The SMTP relay on a port the kernel picks, with what `with` sets in `[mail]`.
    pub fn mail(self, with: impl FnOnce(Table) -> Table) -> MainConfig {
        self.table(with(Table::new("mail").set("listen", [ANY_PORT])))
    }

    /// The push relay on a port the kernel picks, with what `with` sets in `[push]`.
    pub fn push(self, with: impl FnOnce(Table) -> Table) -> MainConfig {
        self.table(with(Table::new("push").set("listen", ANY_PORT)))
    }

    /// A `[[push.route]]` for `platforms`, with what `with` sets on it.
    pub fn push_route(self, platforms: &[&str], with: impl FnOnce(Table) -> Table) -> MainConfig {
        self.table(with(Table::array("push.route").set("platforms", platforms)))
    }

    /// A file in `vhosts/` (in place of the one of the same name, if any).
    pub fn vhost(mut self, vhost: Vhost) -> MainConfig {
        self.vhosts.retain(|v| v.file != vhost.file);
        self.vhosts.push(vhost);
        self
    }

    /// Another file of the tree, as written (`conf.d/…`, a broken vhost).
    pub fn file(mut self, rel: &str, text: &str) -> MainConfig {
        self.files.push((rel.to_string(), text.to_string()));
        self
    }

    /// The tree in a new temporary directory.
    pub fn build(self) -> ConfigDir {
        ConfigDir::from_main(self)
    }

    /// Write every file but `vestibule.toml` into `dir`.
    pub(super) fn write_rest(&self, dir: &ConfigDir) {
        std::fs::create_dir_all(dir.path().join("vhosts")).expect("create vhosts/");
        for v in &self.vhosts {
            dir.write(&format!("vhosts/{}.toml", v.stem()), &v.render());
        }
        for (rel, text) in &self.files {
            dir.write(rel, text);
        }
    }

    /// `vestibule.toml` with these ports (0: the kernel picks).
    pub(super) fn render_main(&self, state_dir: &Path, admin: u16, http: u16, https: Option<u16>) -> String {
        let mut out = format!(
            "state_dir = {}\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[proxy]\nlisten = [\"127.0.0.1:{http}\"]\nthreads = 2\ngrace_period = {}\n",
            state_dir.toml(),
            self.grace_period.as_deref().unwrap_or("1s").toml(),
        );
        if let Some(p) = https {
            out.push_str(&format!("listen_tls = [\"127.0.0.1:{p}\"]\n"));
        }
        out.push_str(&self.proxy);
        for t in &self.tables {
            out.push('\n');
            out.push_str(&t.text);
        }
        out
    }
}

impl From<MainConfig> for ConfigDir {
    fn from(main: MainConfig) -> ConfigDir {
        main.build()
    }
}

/// A tree with just this vhost.
impl From<Vhost> for ConfigDir {
    fn from(vhost: Vhost) -> ConfigDir {
        MainConfig::new().vhost(vhost).build()
    }
}

#[test]
fn renders_compact_toml_in_the_order_given() {
    let v = Vhost::new("chat.test")
        .upstream("127.0.0.1:9".parse::<SocketAddr>().unwrap())
        .max_body("1KiB")
        .remote_cluster(&["10.0.0.0/8"])
        .route("^/api/v4/websocket$", |r| r.set("read_timeout", "600s"));
    assert_eq!(v.stem(), "chat");
    assert_eq!(
        v.render(),
        "server_names = [\"chat.test\"]\nupstream = [\"127.0.0.1:9\"]\nmax_body = \"1KiB\"\n[remote_cluster]\nallow = [\"10.0.0.0/8\"]\n[[route]]\npath = \"^/api/v4/websocket$\"\nread_timeout = \"600s\"\n"
    );
    assert_eq!(Vhost::new("*.example.org").stem(), "wild");
    assert_eq!(r"^/a\.b".toml(), r#""^/a\\.b""#);
    assert_eq!(
        inline(&[("cert", &"/c"), ("n", &2u16)]).toml(),
        "{ cert = \"/c\", n = 2 }"
    );
}

/// The tree `ConfigDir::new` wrote from raw pieces (for tests not yet written with the builder).
pub(super) fn legacy(
    https: bool,
    extra_proxy: &str,
    extra_main: &str,
    vhosts: &[(&str, String)],
) -> MainConfig {
    let mut main = MainConfig {
        https,
        proxy: format!("{extra_proxy}\n"),
        tables: vec![Table {
            text: format!("{extra_main}\n"),
        }],
        ..MainConfig::default()
    };
    for (stem, text) in vhosts {
        main = main.file(&format!("vhosts/{stem}.toml"), text);
    }
    main
}
