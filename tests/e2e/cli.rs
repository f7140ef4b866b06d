//! Covered: every command that prints to stdout ends quietly with status 0 when stdout is a closed
//! pipe (`vestibule mail queue | head -1`), as ripgrep does, instead of panicking with status 101.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::*;

/// Run vestibule with `args` and stdout a pipe whose read end is already closed, so the first write
/// fails with EPIPE whatever the timing: (exit code, stderr).
fn with_closed_stdout(args: &[&str], cfg: Option<&ConfigDir>, stdin: &str) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = Command::new(bin());
    cmd.args(args);
    if let Some(cfg) = cfg {
        cmd.arg("--config").arg(cfg.main_file());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vestibule");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait for vestibule");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn closed_stdout_pipe_exits_quietly() {
    let cfg = (0..50)
        .fold(MainConfig::new(), |tree, i| {
            tree.vhost(Vhost::new(&format!("site{i}.example.org")).upstream("127.0.0.1:8065"))
        })
        .build();
    for args in [
        &["check"][..],
        &["check", "--dns"],
        &["vhost", "list"],
        &["mail", "queue"],
        &["cert", "status"],
    ] {
        let (code, err) = with_closed_stdout(args, Some(&cfg), "");
        assert_eq!(code, Some(0), "vestibule {args:?}: {err}");
        assert!(!err.contains("panicked"), "vestibule {args:?}: {err}");
        assert!(err.is_empty(), "vestibule {args:?} wrote to stderr: {err}");
    }
    // hash-password reads stdin and takes no --config.
    let (code, err) = with_closed_stdout(&["mail", "hash-password"], None, "secret\n");
    assert_eq!(code, Some(0), "mail hash-password: {err}");
    assert!(!err.contains("panicked"), "mail hash-password: {err}");
}

/// The packaged man pages and completions come from `vestibule generate`: they cover every command,
/// including those added after anyone last looked at them.
#[test]
fn generate_writes_the_man_pages_and_completions() {
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(bin())
            .arg("generate")
            .args(args)
            .output()
            .expect("run vestibule generate");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(&["man".as_ref(), dir.path().as_os_str()]).0, Some(0));
    let page = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    assert!(
        page("vestibule.1").contains(".TH vestibule 1"),
        "{}",
        page("vestibule.1")
    );
    for name in [
        "vestibule-run.1",
        "vestibule-check.1",
        "vestibule-vhost-new.1",
        "vestibule-sendmail.1",
    ] {
        assert!(page(name).contains(".SH NAME"), "no man page {name}");
    }
    assert!(
        !dir.path().join("vestibule-generate.1").exists(),
        "the hidden command has no page"
    );
    for (shell, marker) in [
        ("bash", "_vestibule()"),
        ("zsh", "#compdef vestibule"),
        ("fish", "complete -c vestibule"),
    ] {
        let (code, text) = run(&[shell.as_ref()]);
        assert_eq!(code, Some(0), "{shell}");
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(
            text.contains("sendmail") && text.contains("hash-password"),
            "{shell} completion: {text}"
        );
    }
    assert_eq!(run(&["tcsh".as_ref()]).0, Some(2));
    assert_eq!(run(&["man".as_ref()]).0, Some(2));
}
