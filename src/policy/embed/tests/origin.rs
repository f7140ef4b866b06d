//! Parsing [`Origin`]: what is accepted and how it is written back, and what each refusal says.

use super::super::Origin;
use super::origin;
#[test]
fn valid_origins() {
    let table = [
        ("https://webapp.example.org", "https://webapp.example.org"),
        ("HTTPS://WebApp.Example.ORG", "https://webapp.example.org"),
        ("https://webapp.example.org/", "https://webapp.example.org"),
        ("http://localhost:8065", "http://localhost:8065"),
        ("https://webapp.example.org:443", "https://webapp.example.org:443"),
        ("http://webapp.example.org:80", "http://webapp.example.org:80"),
        (
            "https://webapp.example.org:08443",
            "https://webapp.example.org:8443",
        ),
        ("https://*.example.org", "https://*.example.org"),
        ("https://*.Example.org:8443/", "https://*.example.org:8443"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ("https://a-b.c0.example", "https://a-b.c0.example"),
        ("https://123.example", "https://123.example"),
        ("http://192.0.2.10", "http://192.0.2.10"),
        ("http://192.0.2.10:8080", "http://192.0.2.10:8080"),
        ("http://[::1]", "http://[::1]"),
        ("https://[2001:DB8:0:0::1]:8443", "https://[2001:db8::1]:8443"),
    ];
    for (input, expected) in table {
        let o = origin(input);
        assert_eq!(o.as_str(), expected, "{input:?}");
        assert_eq!(o.to_string(), expected);
    }
}

#[test]
fn invalid_origins_say_what_and_how() {
    let table = [
        (
            "",
            "origin is empty: write it like \"https://webapp.example.org\"",
        ),
        (
            "webapp.example.org",
            "`webapp.example.org` has no scheme: write it with https:// or http://, like \
             \"https://webapp.example.org\"",
        ),
        (
            "webapp.example.org:8443",
            "`webapp.example.org:8443` has no scheme: write it with https:// or http://, like \
             \"https://webapp.example.org:8443\"",
        ),
        (
            "https:webapp.example.org",
            "`https:webapp.example.org` is missing `//` after `https:`: write it like \
             \"https://webapp.example.org\"",
        ),
        (
            "http:/localhost:8065",
            "`http:/localhost:8065` is missing `//` after `http:`: write it like \
             \"http://localhost:8065\"",
        ),
        (
            "/webapp",
            "`/webapp` has no scheme: write it with https:// or http://, like \
             \"https://webapp.example.org\"",
        ),
        (
            "ftp://webapp.example.org",
            "`ftp://webapp.example.org` has scheme `ftp`: only http and https pages can frame \
             Mattermost, write it like \"https://webapp.example.org\"",
        ),
        (
            "://webapp.example.org",
            "`://webapp.example.org` has no scheme: only http and https pages can frame Mattermost, \
             write it like \"https://webapp.example.org\"",
        ),
        (
            "https://webapp.example.org/path",
            "`https://webapp.example.org/path` has a path: write the origin only, like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://webapp.example.org//",
            "`https://webapp.example.org//` has a path: write the origin only, like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://webapp.example.org\\x",
            "`https://webapp.example.org\\x` has a path: write the origin only, like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://webapp.example.org?a=b",
            "`https://webapp.example.org?a=b` has a query: write the origin only, like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://webapp.example.org/?a=b",
            "`https://webapp.example.org/?a=b` has a query: write the origin only, like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://webapp.example.org#top",
            "`https://webapp.example.org#top` has a fragment: write the origin only, like \
             \"https://webapp.example.org\"",
        ),
        // The password never appears in the message.
        (
            "ftp://admin:s3cret@webapp.example.org",
            "`ftp://***@webapp.example.org` has scheme `ftp`: only http and https pages can frame \
             Mattermost, write it like \"https://webapp.example.org\"",
        ),
        (
            "https://admin:s3 cret@webapp.example.org",
            "`https://***@webapp.example.org` contains whitespace or a control character: write the \
             origin alone, like \"https://webapp.example.org\"",
        ),
        (
            "https://admin:s3cret@webapp.example.org",
            "`https://***@webapp.example.org` has user info before `@`: write the origin only, like \
             \"https://webapp.example.org\"",
        ),
        (
            " https://webapp.example.org",
            "` https://webapp.example.org` contains whitespace or a control character: write the \
             origin alone, like \"https://webapp.example.org\"",
        ),
        (
            "https://a.example https://b.example",
            "`https://a.example https://b.example` contains whitespace or a control character: write \
             the origin alone, like \"https://webapp.example.org\"",
        ),
        (
            "https://webapp.example.org\n",
            "`https://webapp.example.org\\n` contains whitespace or a control character: write the \
             origin alone, like \"https://webapp.example.org\"",
        ),
        (
            "https://bücher.example",
            "`https://bücher.example` contains the non-ASCII character `ü`: write an internationalised \
             host in its punycode form, like \"https://xn--bcher-kva.example\"",
        ),
        // Characters that could break out of the directive are host errors.
        (
            "https://a.example;script-src",
            "`https://a.example;script-src` has `;` in its host: a host is letters, digits, `-` and \
             `.`, like \"https://webapp.example.org\"",
        ),
        (
            "https://a.example,b",
            "`https://a.example,b` has `,` in its host: a host is letters, digits, `-` and `.`, like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://'self'",
            "`https://'self'` has `'` in its host: a host is letters, digits, `-` and `.`, like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://web_app.example.org",
            "`https://web_app.example.org` has `_` in its host: a host is letters, digits, `-` and \
             `.`, like \"https://webapp.example.org\"",
        ),
        (
            "https://",
            "`https://` has no host: write it like \"https://webapp.example.org\"",
        ),
        (
            "https://:8443",
            "`https://:8443` has no host: write it like \"https://webapp.example.org\"",
        ),
        (
            "https://.example.org",
            "`https://.example.org` has an empty label (`..` or a leading dot) in its host: write it \
             like \"https://webapp.example.org\"",
        ),
        (
            "https://a..example",
            "`https://a..example` has an empty label (`..` or a leading dot) in its host: write it \
             like \"https://webapp.example.org\"",
        ),
        (
            "https://example.org.",
            "`https://example.org.` has a host ending in a dot: write it without, like \
             \"https://example.org\"",
        ),
        (
            "https://-a.example",
            "`https://-a.example` has a host label starting or ending with `-`: write it like \
             \"https://webapp.example.org\"",
        ),
        (
            "https://*",
            "`https://*` would let every site frame Mattermost: list the origins, or a subdomain \
             wildcard like \"https://*.example.org\"",
        ),
        (
            "https://*.org",
            "`https://*.org` is too broad: a wildcard needs at least two labels after `*.`, like \
             \"https://*.example.org\"",
        ),
        (
            "https://a.*.example.org",
            "`https://a.*.example.org` has a `*` inside the host: a wildcard must be the whole first \
             label, like \"https://*.example.org\"",
        ),
        (
            "https://*webapp.example.org",
            "`https://*webapp.example.org` has a `*` inside the host: a wildcard must be the whole \
             first label, like \"https://*.example.org\"",
        ),
        (
            "https://*.192.0.2.10",
            "`https://*.192.0.2.10` puts a wildcard on an IP address: a wildcard needs a DNS name, \
             like \"https://*.example.org\"",
        ),
        (
            "http://192.0.2.256",
            "`http://192.0.2.256` has host `192.0.2.256`, which ends in a number but is not an IPv4 \
             address: write four numbers from 0 to 255 like \"http://192.0.2.10\", or a DNS name",
        ),
        (
            "http://010.0.0.1",
            "`http://010.0.0.1` has host `010.0.0.1`, which ends in a number but is not an IPv4 \
             address: write four numbers from 0 to 255 like \"http://192.0.2.10\", or a DNS name",
        ),
        (
            "https://webapp.example.org:",
            "`https://webapp.example.org:` has an empty port: drop the `:` or write a port, like \
             \"https://webapp.example.org:8443\"",
        ),
        (
            "https://webapp.example.org:0",
            "`https://webapp.example.org:0` has port `0`, not a number from 1 to 65535: write it like \
             \"https://webapp.example.org:8443\"",
        ),
        (
            "https://webapp.example.org:65536",
            "`https://webapp.example.org:65536` has port `65536`, not a number from 1 to 65535: write \
             it like \"https://webapp.example.org:8443\"",
        ),
        (
            "https://webapp.example.org:+443",
            "`https://webapp.example.org:+443` has port `+443`, not a number from 1 to 65535: write it \
             like \"https://webapp.example.org:8443\"",
        ),
        (
            "https://webapp.example.org:*",
            "`https://webapp.example.org:*` has a wildcard port: list each port as its own origin, \
             like \"https://webapp.example.org:8443\"",
        ),
        (
            "https://2001:db8::1",
            "`https://2001:db8::1` has more than one `:`: write an IPv6 address in brackets, like \
             \"https://[2001:db8::1]\"",
        ),
        (
            "https://[2001:db8::1",
            "`https://[2001:db8::1` has an unclosed `[`: write an IPv6 address like \
             \"https://[2001:db8::1]\"",
        ),
        (
            "https://[fe80::1%25eth0]",
            "`https://[fe80::1%25eth0]` has `[fe80::1%25eth0]`, not a valid IPv6 address: write it \
             like \"https://[2001:db8::1]\"",
        ),
        (
            "https://[::1]x",
            "`https://[::1]x` has `x` after the IPv6 address: write a port as `]:port`, like \
             \"https://[::1]:8443\"",
        ),
    ];
    for (input, expected) in table {
        match input.parse::<Origin>() {
            Ok(o) => panic!("{input:?} should be rejected, got {o}"),
            Err(e) => assert_eq!(e, expected, "input: {input:?}"),
        }
    }
}

#[test]
fn long_hosts_are_rejected() {
    let label = "a".repeat(64);
    let err = format!("https://{label}.example").parse::<Origin>().unwrap_err();
    assert!(err.contains("label longer than 63"), "{err}");
    let host = vec!["a".repeat(63); 4].join(".");
    let err = format!("https://{host}").parse::<Origin>().unwrap_err();
    assert!(err.contains("longer than 253"), "{err}");
    let ok = vec!["a".repeat(63); 3].join(".") + ".example";
    assert!(format!("https://{ok}").parse::<Origin>().is_ok());
}
