//! Covered: `vestibule check` exit codes (0 valid, 1 invalid) and its summary; errors carry
//! file:line:col, the offending key and a hint, and all of them are reported at once: unknown key
//! with "did you mean", bad values, TOML syntax errors, a vhost naming no upstream or a missing one,
//! two vhosts claiming one server name, a bad regex, conf.d overrides merged in name order;
//! `--version`; the embedded default; 50,000 unknown keys are reported as the first 100 plus a count;
//! dangling symlinks, symlink loops, directories, fifos, sockets and devices named `*.toml` in conf.d/
//! and vhosts/ are errors naming the entry (a fifo does not hang `check`); vhost file names are
//! limited to `[A-Za-z0-9._-]`; `[mail]` errors, including files it names that cannot be read, carry
//! file:line:col too.

use crate::support::*;

/// `[upstream.mattermost]`: one server.
fn mattermost() -> Table {
    Table::new("upstream.mattermost").set("servers", ["127.0.0.1:8065"])
}

fn chat() -> Vhost {
    Vhost::new("chat.example.org").upstream("127.0.0.1:8065")
}

#[test]
fn valid_tree_prints_summary() {
    let cfg = MainConfig::new()
        .table(mattermost())
        .vhost(
            Vhost::new("chat.example.org")
                .also("*.chat.example.org")
                .upstream_named("mattermost"),
        )
        .build();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("vhost chat: chat.example.org, *.chat.example.org"),
        "{out}"
    );
    assert!(
        out.contains(&format!("listen http://127.0.0.1:{}", cfg.http_port)),
        "{out}"
    );
    assert!(out.contains("configuration is valid"), "{out}");
}

#[test]
fn typo_in_vhost_is_pinpointed() {
    let cfg = MainConfig::new()
        .file(
            "vhosts/chat.toml",
            "server_names = [\"chat.example.org\"]\n\nupstrem = [\"127.0.0.1:8065\"]\n",
        )
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    let file = cfg.path().join("vhosts/chat.toml");
    assert!(
        err.contains(&format!(
            "{}:3:1: error: unknown key `upstrem` in vhost `chat`",
            file.display()
        )),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `upstream`?"), "{err}");
    // The missing upstream is reported too, in the same run.
    assert!(err.contains("vhost `chat` names no upstream"), "{err}");
}

#[test]
fn every_error_is_reported_at_once() {
    let cfg = MainConfig::new()
        .proxy("unknown_host_status", 500u16)
        .proxy("trusted_proxies", ["10.0.0.0/33"])
        .vhost(
            Vhost::new("chat.example.org")
                .file("a")
                .upstream_named("mattermots")
                .max_body("lots")
                .set("read_timeout", "ten")
                .route("^(/api", |r| r),
        )
        .vhost(
            Vhost::new("chat.example.org")
                .file("b")
                .also("bad name")
                .upstream("127.0.0.1:notaport"),
        )
        .file(
            "vhosts/c.toml",
            "server_names = [\"c.example.org\"\nupstream = 1\n",
        )
        .file("conf.d/50-admin.toml", "[admin]\nlisten = \"localhost\"\n")
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    let expect = [
        "`unknown_host_status` in [proxy] must be 404 or 421, found 500",
        "`trusted_proxies` in [proxy]: `10.0.0.0/33` is not a network",
        "`listen` in [admin]: `localhost` is not an IP address and port",
        "`max_body` in vhost `a` is not a valid size",
        "`read_timeout` in vhost `a` is not a valid duration",
        "invalid regular expression",
        "`bad name` is not a valid server name",
        "`127.0.0.1:notaport` is not a server address",
        "c.toml:2:1: error: invalid TOML",
        "invalid TOML",
    ];
    for e in expect {
        assert!(err.contains(e), "missing `{e}` in:\n{err}");
    }
    assert!(
        err.contains("vestibule: configuration is invalid (10 errors)"),
        "{err}"
    );
}

#[test]
fn cross_checks_between_files() {
    let cfg = MainConfig::new()
        .proxy("default_vhost", "chta")
        .table(mattermost())
        .vhost(Vhost::new("chat.example.org").upstream_named("mattermots"))
        .vhost(
            Vhost::new("www.example.org")
                .file("dup")
                .also("Chat.Example.org")
                .upstream_named("mattermost"),
        )
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    assert!(
        err.contains("names upstream `mattermots`, which is not defined"),
        "{err}"
    );
    assert!(err.contains("did you mean `mattermost`?"), "{err}");
    assert!(err.contains("dup.toml:1:36: error: server name `chat.example.org` of vhost `dup` is already claimed by vhost `chat`"), "{err}");
    assert!(err.contains("default_vhost `chta` is not a vhost"), "{err}");
    assert!(err.contains("did you mean `chat`?"), "{err}");
}

#[test]
fn conf_d_overrides_in_name_order() {
    let cfg = MainConfig::new()
        .vhost(chat())
        .file(
            "conf.d/10-listen.toml",
            "[proxy]\nlisten = [\"127.0.0.1:1111\"]\n",
        )
        .file(
            "conf.d/20-listen.toml",
            "[proxy]\nlisten = [\"127.0.0.1:2222\"]\n",
        )
        .build();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("listen http://127.0.0.1:2222") && !out.contains("1111"),
        "{out}"
    );

    cfg.write("conf.d/30-bad.toml", "[proxy]\nthreds = 2\n");
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    assert!(
        err.contains("30-bad.toml:2:1: error: unknown key `threds` in [proxy]"),
        "{err}"
    );
    assert!(err.contains("did you mean `threads`?"), "{err}");
}

#[test]
fn missing_config_file_is_an_error() {
    let out = std::process::Command::new(bin())
        .args(["check", "--config", "/nonexistent/vestibule.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/vestibule.toml: error: cannot read"),
        "{err}"
    );
}

#[test]
fn version_and_embedded_default() {
    let out = std::process::Command::new(bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vestibule {}", env!("CARGO_PKG_VERSION"))
    );

    if !std::path::Path::new("/etc/vestibule/vestibule.toml").exists() {
        let out = std::process::Command::new(bin()).arg("check").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("embedded default configuration"), "{text}");
        assert!(text.contains("listen http://127.0.0.1:8080"), "{text}");
        assert!(text.contains("listen http://127.0.0.1:9180"), "{text}");
    }
}

#[test]
fn shipped_configuration_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root.join("packaging/vestibule.toml"),
        dir.path().join("vestibule.toml"),
    )
    .unwrap();
    for (from, to) in [("conf.d", "conf.d")] {
        std::fs::create_dir_all(dir.path().join(to)).unwrap();
        for e in std::fs::read_dir(root.join(from)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&p, dir.path().join(to).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(dir.path().join("vestibule.toml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("listen http://0.0.0.0:80"), "{text}");
}

fn error_lines(err: &str) -> usize {
    err.lines().filter(|l| l.contains(": error: ")).count()
}

#[test]
fn many_unknown_keys_are_capped_at_a_hundred() {
    let cfg = MainConfig::new().build();
    let mut text = String::from("[proxy]\n");
    for i in 0..50_000 {
        text.push_str(&format!("no_such_key_{i} = {i}\n"));
    }
    cfg.write("conf.d/90-junk.toml", &text);
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1);
    assert_eq!(error_lines(&err), 100, "{err}");
    let file = cfg.path().join("conf.d/90-junk.toml");
    assert!(
        err.starts_with(&format!(
            "{}:2:1: error: unknown key `no_such_key_0` in [proxy]",
            file.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:101:1: error: unknown key `no_such_key_99` in [proxy]",
            file.display()
        )),
        "{err}"
    );
    assert!(!err.contains("no_such_key_100`"), "{err}");
    assert!(err.contains("\nand 49900 more errors\n"), "{err}");
    assert!(
        err.contains("vestibule: configuration is invalid (50000 errors)"),
        "{err}"
    );
}

#[test]
fn entries_that_are_not_regular_files_are_errors() {
    use std::os::unix::ffi::OsStrExt;
    let cfg = MainConfig::new().vhost(chat()).build();
    let p = cfg.path();
    std::fs::create_dir_all(p.join("conf.d")).unwrap();
    std::os::unix::fs::symlink(p.join("elsewhere/gone.toml"), p.join("vhosts/dangling.toml")).unwrap();
    std::os::unix::fs::symlink(p.join("conf.d/b.toml"), p.join("conf.d/a.toml")).unwrap();
    std::os::unix::fs::symlink(p.join("conf.d/a.toml"), p.join("conf.d/b.toml")).unwrap();
    std::fs::create_dir(p.join("vhosts/dir.toml")).unwrap();
    let fifo = std::ffi::CString::new(p.join("conf.d/fifo.toml").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(p.join("vhosts/socket.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/null", p.join("conf.d/device.toml")).unwrap();
    // Not *.toml: ignored as before.
    std::fs::create_dir(p.join("vhosts/old")).unwrap();

    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    for (entry, what) in [
        ("vhosts/dangling.toml", "is a dangling symlink: its target"),
        ("conf.d/a.toml", "is a symlink loop"),
        ("conf.d/b.toml", "is a symlink loop"),
        ("vhosts/dir.toml", "is a directory, not a regular file"),
        ("conf.d/fifo.toml", "is a named pipe (fifo), not a regular file"),
        ("vhosts/socket.toml", "is a socket, not a regular file"),
        ("conf.d/device.toml", "is a device, not a regular file"),
    ] {
        let line = format!("{}: error: {what}", p.join(entry).display());
        assert!(err.contains(&line), "missing `{line}` in:\n{err}");
    }
    assert_eq!(error_lines(&err), 7, "{err}");
    assert_eq!(err.matches("\n    hint: ").count(), 7, "{err}");
    assert!(err.contains("restore the target, or remove the link"), "{err}");
}

#[test]
fn vhost_file_names_are_limited() {
    let vhost = |name: &str, file: &str| Vhost::new(name).file(file).upstream("127.0.0.1:8065");
    let cfg = MainConfig::new()
        .vhost(vhost("x.example.org", "good_name-1.example"))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 0, "{err}");

    cfg.update(|tree| {
        tree.vhost(vhost("y.example.org", "bad name"))
            .vhost(vhost("z.example.org", "caf\u{e9}"))
    });
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    for name in ["bad name.toml", "caf\u{e9}.toml"] {
        let line = format!(
            "{}: error: `{name}` is not a valid vhost file name",
            cfg.path().join("vhosts").join(name).display()
        );
        assert!(err.contains(&line), "missing `{line}` in:\n{err}");
    }
    assert!(
        err.contains("hint: vhost file names may use only letters A-Z a-z, digits, `.`, `_` and `-`, followed by .toml"),
        "{err}"
    );

    // `vhost new` refuses such a name before writing anything.
    let out = cfg.vestibule(&[
        "vhost",
        "new",
        "--template",
        "mattermost",
        "--name",
        "../escape",
        "--upstream",
        "127.0.0.1:8065",
    ]);
    let err = out.stderr;
    assert_eq!(out.code, 1, "{err}");
    assert!(err.contains("`../escape` cannot be a vhost file name"), "{err}");
    assert!(!cfg.path().join("escape.toml").exists());
}

#[test]
fn mail_errors_carry_their_line_and_column() {
    // A file the section names is read at provision: its error still points at the key.
    let mail = Table::new("mail").set("users_file", "/nonexistent/users");
    let cfg = MainConfig::new().table(mail).build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    let main = cfg.main_file();
    assert!(
        err.contains(&format!("{}:12:14: error: [mail] users_file:", main.display())),
        "{err}"
    );
    // Values of the section itself are checked where they are read.
    let mail = Table::new("mail").set("hostname", "bad name");
    let cfg = MainConfig::new().table(mail).build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    let main = cfg.main_file();
    assert!(
        err.contains(&format!(
            "{}:12:12: error: [mail] hostname `bad name`:",
            main.display()
        )),
        "{err}"
    );
}
