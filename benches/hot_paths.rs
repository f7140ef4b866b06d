//! Micro-benchmarks of the pure functions on vestibule's hot paths: `cargo bench --bench hot_paths`.
//! (Whole-process load: benches/push-load.sh, benches/mail-load.sh.)

use std::hint::black_box;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use vestibule::host::{HostPattern, Router};
use vestibule::mail::address::Hostname;
use vestibule::mail::session::{Peer, Session, SessionConfig};
use vestibule::policy::embed::{rewrite_csp, FrameAncestors, Origin};
use vestibule::policy::forwarded;

fn router(c: &mut Criterion) {
    let mut r = Router::default();
    for i in 0..50 {
        r.insert(&HostPattern::Exact(format!("site{i}.example.org")), i);
    }
    r.insert(&HostPattern::Wildcard(".apps.example.org".into()), 50);
    c.bench_function("router: exact host with port", |b| {
        b.iter(|| r.lookup(black_box(b"Site42.example.org:443")))
    });
    c.bench_function("router: wildcard host", |b| {
        b.iter(|| r.lookup(black_box(b"a.b.apps.example.org")))
    });
}

fn csp(c: &mut Criterion) {
    let origins: Vec<Origin> = ["https://webapp.example.org", "https://desk.example.org"]
        .iter()
        .map(|o| o.parse().unwrap())
        .collect();
    let fa = FrameAncestors::new(&origins);
    let header = b"frame-ancestors 'self' ; script-src 'self' cdn.rudderlabs.com js.stripe.com/v3";
    c.bench_function("csp: rewrite Mattermost's header", |b| {
        b.iter(|| rewrite_csp(black_box(header), &fa))
    });
}

fn forwarded_headers(c: &mut Criterion) {
    let base = {
        let mut r = pingora_http::RequestHeader::build("GET", b"/api/v4/users/me", None).unwrap();
        r.append_header("host", "chat.example.org").unwrap();
        r.append_header("connection", "keep-alive").unwrap();
        r.append_header("x-forwarded-for", "198.51.100.9").unwrap();
        r
    };
    let ip = "192.0.2.7".parse().unwrap();
    c.bench_function("forwarded: strip hop-by-hop + set X-Forwarded-*", |b| {
        b.iter_batched(
            || base.clone(),
            |mut r| {
                forwarded::strip_hop_by_hop(&mut r, false);
                forwarded::apply(&mut r, Some(ip), false, "https");
                r
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn smtp(c: &mut Criterion) {
    let cfg = Arc::new(SessionConfig::new(Hostname::new("relay.example.org").unwrap()));
    let dialogue = b"EHLO chat.example.org\r\nMAIL FROM:<mattermost@example.org> BODY=8BITMIME\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n";
    c.bench_function("smtp: EHLO, MAIL, RCPT, DATA parsed", |b| {
        b.iter(|| {
            let (mut s, _) = Session::new(
                cfg.clone(),
                Peer {
                    ip: "127.0.0.1".parse().unwrap(),
                    trusted: true,
                },
                false,
            );
            s.feed(black_box(dialogue), SystemTime::UNIX_EPOCH)
        })
    });
}

criterion_group!(benches, router, csp, forwarded_headers, smtp);
criterion_main!(benches);
