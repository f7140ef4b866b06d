//! Covered (`vestibule sendmail`, and the binary run as `sendmail` through a link): cron-style
//! submissions, recipients from To:/Cc:/Bcc: with `-t -oi` and as arguments (a bare `root`
//! qualified with the relay's hostname), reach a smtp-sink smarthost through the relay with Bcc:
//! removed and CRLF line ends; with the relay down the message is refused with exit 75
//! (EX_TEMPFAIL) and a message saying it was not sent.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::mail::{relay_to, SmtpSink};
use crate::support::*;

/// Run `program args...` with `input` on stdin: (exit code, stderr).
fn run(program: &std::path::Path, args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sendmail(v: &Vestibule, args: &[&str], input: &str) -> (i32, String) {
    let main = v.cfg.main_file().display().to_string();
    let mut all = vec!["sendmail", "-C", main.as_str()];
    all.extend_from_slice(args);
    run(std::path::Path::new(bin()), &all, input)
}

/// The message with `marker` as the smarthost got it, once it has all of `expected` recipients
/// (the relay may deliver in one transaction per recipient: smtp-sink then writes one dump each,
/// with its `X-Rcpt-Args:` lines): the first dump.
async fn delivered(sink: &SmtpSink, marker: &str, expected: &[&str]) -> String {
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    eventually("the smarthost received it for every recipient", || {
        let dumps: Vec<String> = sink
            .messages()
            .into_iter()
            .filter(|d| d.contains(marker) && d.ends_with("\n\n"))
            .collect();
        let mut got: Vec<String> = dumps
            .iter()
            .flat_map(|d| d.lines().filter_map(|l| l.strip_prefix("X-Rcpt-Args: ")))
            .map(|r| r.trim().trim_matches(|c| c == '<' || c == '>').to_string())
            .collect();
        got.sort();
        assert!(got.len() <= want.len(), "{got:?} is more than {want:?}");
        std::future::ready((got == want).then(|| dumps[0].clone()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_style_submissions_reach_the_smarthost() {
    let sink = SmtpSink::start(free_port(), &[]).await;
    // sendmail finds the relay where the daemon published it (the port the kernel chose).
    let v = Vestibule::start(relay_to(sink.port, |m| m)).await;

    // unattended-upgrades, PHP: recipients from the headers.
    let (code, err) = sendmail(
        &v,
        &["-t", "-oi"],
        "To: alice@example.org\nCc: Carol <carol@example.org>\nBcc: hidden@example.org\nSubject: upgrades\n\nbody one\n.\nafter a lone dot\n",
    );
    assert_eq!(code, 0, "{err}\n{}", v.log());
    let dump = delivered(
        &sink,
        "body one",
        &["alice@example.org", "carol@example.org", "hidden@example.org"],
    )
    .await;
    assert!(
        dump.contains("after a lone dot"),
        "-oi keeps the lone dot's line: {dump}"
    );
    // The message itself (past smtp-sink's envelope lines and the Received: headers).
    let message = &dump[dump.find("\nFrom: ").unwrap_or_else(|| panic!("no From: {dump}"))..];
    assert!(!message.contains("Bcc:") && !message.contains("hidden"), "{dump}");
    // The invoking user at the relay's hostname.
    assert!(
        dump.contains("X-Mail-Args: <") && dump.contains("@relay.test>\n"),
        "{dump}"
    );

    // A script: recipients as arguments, a bare local name qualified.
    let (code, err) = sendmail(&v, &["-oi", "bob@example.org", "root"], "Subject: x\n\nbody two");
    assert_eq!(code, 0, "{err}");
    let dump = delivered(&sink, "body two", &["bob@example.org", "root@relay.test"]).await;
    assert!(
        dump.contains("From: ") && dump.contains("Date: ") && dump.contains("Message-ID: "),
        "{dump}"
    );

    // Debian's cron, through a link named sendmail (as /usr/sbin/sendmail), with -f.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let main = v.cfg.main_file().display().to_string();
    let (code, err) = run(
        &link,
        &[
            "-C",
            &main,
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "-f",
            "cron@relay.test",
            "dave@example.org",
        ],
        "Subject: Cron <root@host> backup\n\nbody three\n",
    );
    assert_eq!(code, 0, "{err}");
    let dump = delivered(&sink, "body three", &["dave@example.org"]).await;
    assert!(dump.contains("X-Mail-Args: <cron@relay.test>"), "{dump}");
    assert!(dump.contains("From: \"CronDaemon\" <"), "{dump}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_relay_down_the_message_is_refused_with_tempfail() {
    let v = Vestibule::start(relay_to(9, |m| m)).await;
    let cfg = v.stop();
    let main = cfg.main_file().display().to_string();
    let (code, err) = run(
        std::path::Path::new(bin()),
        &["sendmail", "-C", &main, "-t", "-oi"],
        "To: alice@example.org\nSubject: x\n\nbody",
    );
    assert_eq!(code, 75, "EX_TEMPFAIL expected: {err}");
    assert!(
        err.contains("NOT sent") && err.contains("Is vestibule running?"),
        "{err}"
    );
    // Nothing was spooled behind the daemon's back.
    let queue = cfg.state_dir().join("mail/queue");
    let left = std::fs::read_dir(&queue).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "files in {}", queue.display());
}
