use super::*;

#[test]
fn domain_list_and_hostname_validation() {
    assert!(DomainList::new(["ok.test", ".sub.test"]).is_ok());
    assert_eq!(DomainList::new(["bad domain"]).unwrap_err().value, "bad domain");
    assert!(Hostname::new("mx.example.test").is_ok());
    assert!(Hostname::new("mx\r\nX-Evil: 1").is_err());
    assert!(Hostname::new("").is_err());
    assert!(Hostname::new("-a.test").is_err());
}

#[test]
fn address_lengths() {
    let local64 = "l".repeat(64);
    assert!(Address::parse(&format!("{local64}@d.test")).is_ok());
    assert_eq!(
        Address::parse(&format!("{local64}l@d.test")),
        Err(AddressError::LocalPartTooLong)
    );
    // 4 labels of 63 + 3 dots = 255 octets: legal domain, but the path would exceed 256.
    let domain255 = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
    assert_eq!(domain255.len(), 255);
    assert_eq!(
        Address::parse(&format!("x@{domain255}")),
        Err(AddressError::PathTooLong)
    );
    // Path exactly 256 with brackets: 254 inside.
    let domain = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(60)].join(".");
    let addr = format!("x@{domain}");
    assert_eq!(addr.len(), 254);
    assert!(Address::parse(&addr).is_ok());
    assert_eq!(
        Address::parse(&format!("x{addr}")),
        Err(AddressError::PathTooLong)
    );
    let long_label = format!("x@{}.test", "a".repeat(64));
    assert_eq!(Address::parse(&long_label), Err(AddressError::InvalidDomain));
}

#[test]
fn address_shapes() {
    assert_eq!(Address::parse("@d.test"), Err(AddressError::SourceRoute));
    assert_eq!(Address::parse("user"), Err(AddressError::MissingAt));
    assert_eq!(Address::parse("user@"), Err(AddressError::EmptyDomain));
    assert_eq!(Address::parse("a@b@c.test"), Err(AddressError::MultipleAt));
    assert_eq!(Address::parse("a\tb@c.test"), Err(AddressError::ControlCharacter));
    assert_eq!(
        Address::parse("a\u{7f}@c.test"),
        Err(AddressError::ControlCharacter)
    );
    assert_eq!(Address::parse("é@c.test"), Err(AddressError::NonAscii));
    assert_eq!(Address::parse(".a@c.test"), Err(AddressError::InvalidLocalPart));
    assert_eq!(Address::parse("a.@c.test"), Err(AddressError::InvalidLocalPart));
    assert_eq!(Address::parse("a..b@c.test"), Err(AddressError::InvalidLocalPart));
    assert_eq!(Address::parse("a b@c.test"), Err(AddressError::InvalidLocalPart));
    assert_eq!(Address::parse("a<b@c.test"), Err(AddressError::InvalidLocalPart));
    assert_eq!(Address::parse("a@c..test"), Err(AddressError::InvalidDomain));
    assert_eq!(Address::parse("a@-c.test"), Err(AddressError::InvalidDomain));
    assert_eq!(Address::parse("a@c.test."), Err(AddressError::InvalidDomain));
    assert_eq!(Address::parse("a@c_d.test"), Err(AddressError::InvalidDomain));
}

#[test]
fn address_domain_is_lower_cased_local_part_kept() {
    let a = Address::parse("First.Last+tag@Example.ORG").unwrap();
    assert_eq!(a.local_part(), "First.Last+tag");
    assert_eq!(a.domain(), "example.org");
    assert_eq!(a.to_string(), "First.Last+tag@example.org");
    assert!(Address::parse("noreply@localhost").is_ok());
}
