use super::*;
use crate::policy::remote_cluster;

/// Every way a client can spell `target` that Go's router treats as `target`: each character
/// percent-encoded (upper and lower hex), each slash doubled, encoded, or padded with `.` and
/// `x/..` segments (plain and encoded), and the same at the root.
fn variants(target: &str) -> Vec<String> {
    assert!(target.starts_with('/'));
    let mut out = Vec::new();
    for (i, c) in target.char_indices() {
        let (head, tail) = (&target[..i], &target[i + c.len_utf8()..]);
        if c == '/' {
            for slash in [
                "//",
                "///",
                "/./",
                "/x/../",
                "/%2e/",
                "/%2E/",
                "/x/%2e%2e/",
                "/x/%2E%2E/",
                "/.//",
            ] {
                out.push(format!("{head}{slash}{tail}"));
            }
            if i > 0 {
                for slash in ["%2F", "%2f", "/%2F", "%2f%2f"] {
                    out.push(format!("{head}{slash}{tail}"));
                }
            }
        } else {
            out.push(format!("{head}%{:02X}{tail}", c as u32));
            out.push(format!("{head}%{:02x}{tail}", c as u32));
        }
    }
    // Everything encoded at once, and climbing above the root.
    out.push(
        target
            .bytes()
            .map(|b| format!("%{b:02x}"))
            .collect::<String>()
            .replacen("%2f", "/", 1),
    );
    out.push(format!("/../..{target}"));
    out.push(format!("/%2e%2e{target}"));
    out
}

fn assert_all_normalise(target: &str, matches: impl Fn(&str) -> bool) {
    assert!(matches(target), "the policy must match {target} itself");
    let all = variants(target);
    assert!(all.len() >= 40, "{} variants of {target}", all.len());
    for v in &all {
        let n = normalize(v);
        assert_eq!(n, target, "{v}");
        assert!(matches(&n), "{v} escapes the policy");
    }
}

#[test]
fn remote_cluster_guard_sees_every_spelling() {
    let guard = remote_cluster::Guard::new(Vec::new());
    for target in [
        "/api/v4/remotecluster/ping",
        "/api/v4/remotecluster/msg",
        "/api/v4/remotecluster/confirm_invite",
        "/api/v4/remotecluster/upload/up1",
        "/api/v4/remotecluster/user1/image",
    ] {
        assert_all_normalise(target, |p| guard.is_peer_route(p));
    }
}

#[test]
fn onlyoffice_paths_see_every_spelling() {
    let re = regex::Regex::new(crate::policy::onlyoffice::DEFAULT_PATHS).unwrap();
    for target in [
        "/plugins/com.onlyoffice.mattermost/api/download",
        "/plugins/com.onlyoffice.mattermost/api/callback",
    ] {
        assert_all_normalise(target, |p| re.is_match(p));
    }
}

#[test]
fn route_patterns_see_every_spelling() {
    // The Mattermost template's websocket route and a push route.
    let ws = regex::Regex::new(r"^/api/v[0-9]+/(users/)?websocket$").unwrap();
    assert_all_normalise("/api/v4/websocket", |p| ws.is_match(p));
    assert_all_normalise("/api/v4/users/websocket", |p| ws.is_match(p));
    let push = regex::Regex::new(r"^/push/").unwrap();
    assert_all_normalise("/push/api/v1/send_push", |p| push.is_match(p));
}

#[test]
fn normal_paths_are_borrowed() {
    for p in [
        "/",
        "/api/v4/users/me",
        "/a/b/",
        "/a.b/.c/..d",
        "/static/main.js",
        "/a/b...",
        "/~user",
    ] {
        assert!(matches!(normalize(p), Cow::Borrowed(_)), "{p}");
        assert_eq!(normalize(p), p);
    }
}

#[test]
fn go_clean_path_equivalents() {
    for (raw, want) in [
        ("", "/"),
        ("//", "/"),
        ("/.", "/"),
        ("/..", "/"),
        ("/a/b/..", "/a"),
        ("/a/b/../", "/a/"),
        ("/a//b///c/", "/a/b/c/"),
        ("/a/./b/.", "/a/b"),
        ("a/b", "/a/b"),
        ("/%2e%2e/%2e%2e/etc", "/etc"),
        // Only one decoding: a doubly encoded character stays encoded, as in Go's URL.Path.
        ("/api/v4/%2572emotecluster/ping", "/api/v4/%2572emotecluster/ping"),
        ("/a%252fb", "/a%252fb"),
        // Escapes of reserved characters stay escaped, hex upper-cased; invalid escapes stay as sent.
        ("/a%3fb", "/a%3Fb"),
        ("/a%20b", "/a%20b"),
        ("/a%zz/%4", "/a%zz/%4"),
        ("/%", "/%"),
        // Case-sensitive, as Go's router.
        ("/API/V4/RemoteCluster/Ping", "/API/V4/RemoteCluster/Ping"),
    ] {
        assert_eq!(normalize(raw), want, "{raw:?}");
    }
}

#[test]
fn upper_case_and_double_encoding_are_not_the_guarded_route() {
    let guard = remote_cluster::Guard::new(Vec::new());
    for p in [
        "/API/v4/remotecluster/ping",
        "/api/v4/%2572emotecluster/ping",
        "/api/v4/remotecluster/pingx",
    ] {
        assert!(!guard.is_peer_route(&normalize(p)), "{p}");
    }
}
