//! [`rewrite_csp`] on the headers Mattermost sends, on odd but valid values and on garbage.

use super::super::csp::{is_frame_ancestors, token_range};
use super::super::{rewrite_csp, FrameAncestors};
use super::{origin, webapp};

fn rewrite(value: &str, fa: &FrameAncestors) -> String {
    match String::from_utf8(rewrite_csp(value.as_bytes(), fa)) {
        Ok(s) => s,
        Err(e) => panic!("output of {value:?} is not UTF-8: {e}"),
    }
}

fn check_table(fa: &FrameAncestors, table: &[(&str, &str)]) {
    for (input, expected) in table {
        assert_eq!(&rewrite(input, fa), expected, "input: {input:?}");
    }
}

#[test]
fn mattermost_headers() {
    check_table(
        &webapp(),
        &[
            // v5/v6 (web/handlers.go): fixed 'self', rudderlabs telemetry.
            (
                "frame-ancestors 'self'; script-src 'self' cdn.rudderlabs.com",
                "frame-ancestors 'self' https://webapp.example.org; script-src 'self' cdn.rudderlabs.com",
            ),
            // v5/v6 with a Cloud licence, a subpath (/mattermost) and a dev build.
            (
                "frame-ancestors 'self'; script-src 'self' cdn.rudderlabs.com js.stripe.com/v3 \
                 'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w=' 'unsafe-eval' 'unsafe-inline'",
                "frame-ancestors 'self' https://webapp.example.org; script-src 'self' cdn.rudderlabs.com \
                 js.stripe.com/v3 'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w=' 'unsafe-eval' \
                 'unsafe-inline'",
            ),
            // v7 and later: "frame-ancestors 'self' %s" with ServiceSettings.FrameAncestors empty
            // (the default) leaves a space before ';', which must survive.
            (
                "frame-ancestors 'self' ; script-src 'self' cdn.rudderlabs.com",
                "frame-ancestors 'self' https://webapp.example.org ; script-src 'self' cdn.rudderlabs.com",
            ),
            // ServiceSettings.FrameAncestors set by an admin for Teams.
            (
                "frame-ancestors 'self' teams.microsoft.com; script-src 'self' cdn.rudderlabs.com",
                "frame-ancestors 'self' https://webapp.example.org; script-src 'self' cdn.rudderlabs.com",
            ),
            // Current (rudderlabs dropped), with the subpath script hash.
            (
                "frame-ancestors 'self' ; script-src 'self' 'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w='",
                "frame-ancestors 'self' https://webapp.example.org ; script-src 'self' \
                 'sha256-v8G7NQp0cUTkL+hkNrHt5IFFphUUJBpQFNAYKlP9m+w='",
            ),
            // Current, dev build with DeveloperFlags.
            (
                "frame-ancestors 'self' ; script-src 'self' 'unsafe-eval' 'unsafe-inline'",
                "frame-ancestors 'self' https://webapp.example.org ; script-src 'self' 'unsafe-eval' \
                 'unsafe-inline'",
            ),
        ],
    );
}

#[test]
fn several_origins_in_order_without_duplicates() {
    let fa = FrameAncestors::new(&[
        origin("https://webapp.example.org"),
        origin("https://*.example.net"),
        origin("HTTPS://WebApp.Example.org/"),
        origin("http://deskapp.example.org:8080"),
    ]);
    assert_eq!(
        fa.directive(),
        "frame-ancestors 'self' https://webapp.example.org https://*.example.net http://deskapp.example.org:8080"
    );
    assert_eq!(
        rewrite("frame-ancestors 'none'; default-src 'self'", &fa),
        "frame-ancestors 'self' https://webapp.example.org https://*.example.net \
         http://deskapp.example.org:8080; default-src 'self'"
    );
    assert_eq!(FrameAncestors::new(&[]).directive(), "frame-ancestors 'self'");
}

#[test]
fn directive_name_case_position_and_duplicates() {
    check_table(
        &webapp(),
        &[
            (
                "FRAME-ANCESTORS 'none'",
                "frame-ancestors 'self' https://webapp.example.org",
            ),
            (
                "script-src 'self'; Frame-Ancestors *; img-src data:",
                "script-src 'self'; frame-ancestors 'self' https://webapp.example.org; img-src data:",
            ),
            // Later duplicates go, with the ';' before them; other directives stay in order.
            (
                "frame-ancestors 'self'; script-src 'self'; frame-ancestors *; img-src data:",
                "frame-ancestors 'self' https://webapp.example.org; script-src 'self'; img-src data:",
            ),
            (
                "frame-ancestors a;frame-ancestors b;FRAME-ANCESTORS c",
                "frame-ancestors 'self' https://webapp.example.org",
            ),
            (
                "default-src 'self'; frame-ancestors 'none'; frame-ancestors *;",
                "default-src 'self'; frame-ancestors 'self' https://webapp.example.org;",
            ),
            // A bare directive (value 'none') and a tab after the name.
            (
                "frame-ancestors; img-src *",
                "frame-ancestors 'self' https://webapp.example.org; img-src *",
            ),
            (
                "frame-ancestors\t'none'",
                "frame-ancestors 'self' https://webapp.example.org",
            ),
            // Not the same name: a prefix, a suffix, another directive's value.
            (
                "frame-ancestors-x 'none'",
                "frame-ancestors-x 'none'; frame-ancestors 'self' https://webapp.example.org",
            ),
            (
                "frame-src frame-ancestors",
                "frame-src frame-ancestors; frame-ancestors 'self' https://webapp.example.org",
            ),
            // Duplicates of other directives are not ours to fix.
            (
                "script-src a; script-src b",
                "script-src a; script-src b; frame-ancestors 'self' https://webapp.example.org",
            ),
        ],
    );
}

#[test]
fn missing_directive_is_appended() {
    check_table(
        &webapp(),
        &[
            (
                "script-src 'self' cdn.rudderlabs.com",
                "script-src 'self' cdn.rudderlabs.com; frame-ancestors 'self' https://webapp.example.org",
            ),
            (
                "default-src 'self';",
                "default-src 'self'; frame-ancestors 'self' https://webapp.example.org",
            ),
            (
                "default-src 'self' ;  ",
                "default-src 'self' ; frame-ancestors 'self' https://webapp.example.org  ",
            ),
            (
                "upgrade-insecure-requests",
                "upgrade-insecure-requests; frame-ancestors 'self' https://webapp.example.org",
            ),
        ],
    );
}

#[test]
fn policy_lists() {
    check_table(
        &webapp(),
        &[
            (
                "frame-ancestors 'none', script-src 'self'",
                "frame-ancestors 'self' https://webapp.example.org, script-src 'self'; frame-ancestors 'self' \
                 https://webapp.example.org",
            ),
            (
                "script-src a , frame-ancestors *;img-src b,default-src c",
                "script-src a; frame-ancestors 'self' https://webapp.example.org , frame-ancestors 'self' \
                 https://webapp.example.org;img-src b,default-src c; frame-ancestors 'self' \
                 https://webapp.example.org",
            ),
            // Empty list elements are no policy: copied as they are.
            (
                "script-src a,, ,",
                "script-src a; frame-ancestors 'self' https://webapp.example.org,, ,",
            ),
            (
                ", frame-ancestors *",
                ", frame-ancestors 'self' https://webapp.example.org",
            ),
            // A comma inside what looks like a URL still splits policies, as browsers do.
            (
                "img-src https://a.example/x,y; frame-ancestors 'none'",
                "img-src https://a.example/x; frame-ancestors 'self' https://webapp.example.org,y; \
                 frame-ancestors 'self' https://webapp.example.org",
            ),
        ],
    );
}

#[test]
fn whitespace_is_kept_byte_for_byte() {
    check_table(
        &webapp(),
        &[
            (
                "  frame-ancestors   'self'  ;   script-src  'self'\t;  ",
                "  frame-ancestors 'self' https://webapp.example.org  ;   script-src  'self'\t;  ",
            ),
            (
                "script-src  'self' ;\tframe-ancestors\t*\t; img-src x;;",
                "script-src  'self' ;\tframe-ancestors 'self' https://webapp.example.org\t; img-src x;;",
            ),
            (
                ";;script-src a;;",
                ";;script-src a;; frame-ancestors 'self' https://webapp.example.org",
            ),
        ],
    );
}

#[test]
fn empty_and_blank_values_get_the_directive_alone() {
    let fa = webapp();
    for input in ["", " ", "\t", ";", " ; ; ", ",", " , ; ,"] {
        assert_eq!(
            rewrite(input, &fa),
            "frame-ancestors 'self' https://webapp.example.org",
            "{input:?}"
        );
    }
}

#[test]
fn garbage_is_copied_and_the_origins_still_allowed() {
    let fa = webapp();
    let table: &[(&[u8], &[u8])] = &[
        // A non-ASCII token is ignored by browsers: kept, and our directive added.
        (
            b"script-src 'self' https://\xc3\xa9.example",
            b"script-src 'self' https://\xc3\xa9.example; frame-ancestors 'self' https://webapp.example.org",
        ),
        // A frame-ancestors token with non-ASCII bytes is still ours to replace.
        (
            b"frame-ancestors https://\xc3\xa9.example; script-src 'self'; frame-ancestors *",
            b"frame-ancestors 'self' https://webapp.example.org; script-src 'self'",
        ),
        // Invalid UTF-8 (obs-text) survives untouched.
        (
            b"\xff\xfe; frame-ancestors 'none'",
            b"\xff\xfe; frame-ancestors 'self' https://webapp.example.org",
        ),
        // A non-breaking space is not ASCII whitespace: the name is not frame-ancestors.
        (
            b"frame-ancestors\xc2\xa0'none'",
            b"frame-ancestors\xc2\xa0'none'; frame-ancestors 'self' https://webapp.example.org",
        ),
        // Control bytes are not ASCII whitespace either (vertical tab, NUL, DEL).
        (
            b"frame-ancestors\x0b'none'; x\x00y\x7f",
            b"frame-ancestors\x0b'none'; x\x00y\x7f; frame-ancestors 'self' https://webapp.example.org",
        ),
        // Form feed and CR/LF are ASCII whitespace to CSP (never valid in a header, but parsed
        // the way a browser would).
        (
            b"\x0cframe-ancestors\r\n'none'\x0c; img-src *",
            b"\x0cframe-ancestors 'self' https://webapp.example.org\x0c; img-src *",
        ),
        // Junk without any structure is one unknown directive.
        (b"%%%", b"%%%; frame-ancestors 'self' https://webapp.example.org"),
    ];
    for (input, expected) in table {
        assert_eq!(
            rewrite_csp(input, &fa),
            expected.to_vec(),
            "input: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn output_is_a_valid_header_value_when_the_input_was() {
    // http's HeaderValue accepts tab, visible ASCII, space and obs-text (0x80-0xFF).
    let valid = |v: &[u8]| {
        v.iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
    };
    let fa = FrameAncestors::new(&[origin("https://webapp.example.org"), origin("http://[::1]:8065")]);
    for input in [
        &b""[..],
        b"a",
        b"frame-ancestors x",
        b"\xff, ;",
        b"a\t,b;frame-ancestors c",
    ] {
        assert!(valid(input));
        assert!(valid(&rewrite_csp(input, &fa)), "{input:?}");
    }
}

#[test]
fn one_allocation_per_header() {
    let fa = webapp();
    for input in ["a", "a,b,c,d", "a;b;c", "frame-ancestors x", ",,,,,x"] {
        let out = rewrite_csp(input.as_bytes(), &fa);
        let policies = input.matches(',').count() + 1;
        // The buffer reserved up front was enough: it never had to grow.
        assert_eq!(
            out.capacity(),
            input.len() + policies * (fa.directive().len() + 2),
            "{input:?}"
        );
    }
}

#[test]
fn rewriting_twice_changes_nothing_more() {
    let fa = webapp();
    for input in [
        "frame-ancestors 'self' ; script-src 'self' cdn.rudderlabs.com",
        "a, b;",
        "",
    ] {
        let once = rewrite_csp(input.as_bytes(), &fa);
        assert_eq!(rewrite_csp(&once, &fa), once, "{input:?}");
    }
}

/// Random values built from CSP-ish pieces: the rewrite must keep every other token, in order, and
/// leave exactly one `frame-ancestors`, ours, in every policy.
#[test]
fn random_values_keep_other_directives() {
    const PIECES: &[&[u8]] = &[
        b"frame-ancestors",
        b"FRAME-ancestors",
        b"frame-ancestors-x",
        b"script-src",
        b"'self'",
        b"a",
        b" ",
        b"\t",
        b"  ",
        b";",
        b";",
        b",",
        b"\xc3\xa9",
        b"\xff",
        b"*",
        b"\x0c",
    ];
    fn tokens(policy: &[u8]) -> Vec<&[u8]> {
        policy
            .split(|&b| b == b';')
            .filter_map(|p| token_range(p).map(|r| &p[r]))
            .collect()
    }
    let fa = webapp();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let len = (next() % 12) as usize;
        let mut value = Vec::new();
        for _ in 0..len {
            value.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        let out = rewrite_csp(&value, &fa);
        let shown = String::from_utf8_lossy(&value).into_owned();
        let in_policies: Vec<&[u8]> = value.split(|&b| b == b',').collect();
        if in_policies.iter().all(|p| tokens(p).is_empty()) {
            assert_eq!(out, fa.directive().as_bytes(), "{shown:?}");
            continue;
        }
        let out_policies: Vec<&[u8]> = out.split(|&b| b == b',').collect();
        assert_eq!(in_policies.len(), out_policies.len(), "{shown:?}");
        for (before, after) in in_policies.iter().zip(&out_policies) {
            let (before, after) = (tokens(before), tokens(after));
            if before.is_empty() {
                assert!(after.is_empty(), "{shown:?}");
                continue;
            }
            let others = |t: &Vec<&[u8]>| -> Vec<Vec<u8>> {
                t.iter()
                    .filter(|t| !is_frame_ancestors(t))
                    .map(|t| t.to_vec())
                    .collect()
            };
            assert_eq!(others(&before), others(&after), "{shown:?}");
            let ours: Vec<&&[u8]> = after.iter().filter(|t| is_frame_ancestors(t)).collect();
            assert_eq!(ours, [&fa.directive().as_bytes()], "{shown:?}");
        }
    }
}
