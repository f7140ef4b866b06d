//! Every problem in `[mail]` is reported where it was written.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::source::{self, SourceFile, Value};

/// Read `[mail]` from `text`; the diagnostics as `place: message`.
fn read(text: &str) -> (Option<MailConfig>, Vec<String>) {
    let root = source::parse(Arc::new(SourceFile::new("m.toml", text))).expect("valid TOML");
    let Value::Table(entries) = &root.value else {
        panic!("a table")
    };
    let mail = &entries.iter().find(|e| e.key == "mail").expect("[mail]").node;
    let mut diags = Diagnostics::default();
    let cfg = read_mail(mail, Duration::from_secs(10), &mut diags);
    let shown = diags
        .iter()
        .map(|d| format!("{}: {}", d.place, d.message))
        .collect();
    (cfg, shown)
}

#[test]
fn a_bad_hostname_is_reported_at_its_value() {
    let (_, d) = read("[mail]\nhostname = \"bad name\"\n");
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("m.toml:2:12: [mail] hostname `bad name`:"),
        "{d:?}"
    );
}

#[test]
fn a_bad_smarthost_is_reported_at_its_value() {
    let (_, d) = read("[mail]\nsmarthost = \"http://relay\"\n");
    assert_eq!(d, ["m.toml:2:13: [mail] smarthost: `http` is not smtp or smtps"]);
}

#[test]
fn a_password_in_clear_is_reported_at_the_auth_file() {
    let text = "[mail]\nsmarthost = \"smtp://127.0.0.1:25\"\nsmarthost_tls = \"none\"\nsmarthost_auth_file = \"/x\"\n";
    let (_, d) = read(text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("m.toml:4:23: [mail] smarthost_auth_file with smarthost_tls"),
        "{d:?}"
    );
}

#[test]
fn an_auth_file_without_smarthost_is_reported_at_the_auth_file() {
    let (_, d) = read("[mail]\nsmarthost_auth_file = \"/x\"\n");
    assert_eq!(
        d,
        ["m.toml:2:23: [mail] smarthost_auth_file is set but there is no smarthost"]
    );
}

#[test]
fn a_bad_domain_is_reported_at_its_list() {
    let (_, d) = read(
        "[mail]\nsender_domains = [\"example.org\", \"bad domain\"]\nrecipient_domains = [\"ok.org\"]\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].starts_with("m.toml:2:18: [mail] sender_domains: `bad domain` is not a domain"),
        "{d:?}"
    );
}

#[test]
fn values_are_typed_once_and_keep_their_place() {
    let text = "[mail]\nhostname = \"Relay.example.org\"\nsmarthost = \"smtps://relay.example.org\"\nrecipient_domains = [\".Example.org\"]\n";
    let (cfg, d) = read(text);
    assert!(d.is_empty(), "{d:?}");
    let m = cfg.expect("read");
    assert_eq!(m.hostname.value.as_str(), "Relay.example.org");
    assert_eq!(m.hostname.loc.to_string(), "m.toml:2:12");
    let s = m.smarthost.expect("smarthost");
    assert_eq!(
        (s.value.target.port, s.value.target.security),
        (465, smarthost::Security::Implicit)
    );
    assert_eq!(s.value.url, "smtps://relay.example.org");
    assert!(m
        .recipient_domains
        .expect("domains")
        .value
        .matches("mx.example.org"));
}

#[test]
fn an_absent_hostname_is_localhost() {
    let (cfg, d) = read("[mail]\n");
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(cfg.expect("read").hostname.value.as_str(), "localhost");
}
