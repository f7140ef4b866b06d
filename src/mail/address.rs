//! Mailbox addresses and domain names: what a client may put between `<` and `>` in MAIL and RCPT,
//! and the host name and domain allow-lists of the configuration.
//!
//! # What it owns
//! The address rules of the relay, stricter than RFC 5321 on purpose (no source routes, quoted local
//! parts, address literals, `%` or `!`: the open-relay tricks), the RFC length limits, and DNS name
//! syntax (LDH labels).
//!
//! # What it must never do
//! Hand out an unvalidated value: an [`Address`], a [`Hostname`] or a [`DomainList`] is safe to copy
//! into replies, headers and logs as is. It knows nothing of SMTP state, sockets or DNS lookups.

use std::fmt;

/// Longest local part of an address (RFC 5321 4.5.3.1.1).
pub(crate) const LOCAL_PART_MAX: usize = 64;
/// Longest domain (RFC 5321 4.5.3.1.2).
pub(crate) const DOMAIN_MAX: usize = 255;
/// Longest reverse- or forward-path, angle brackets included (RFC 5321 4.5.3.1.3).
pub(crate) const PATH_MAX: usize = 256;
/// Longest DNS label (RFC 1035 2.3.4).
const LABEL_MAX: usize = 63;

/// A domain name that failed validation (configuration input, not SMTP input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDomain {
    /// The rejected value.
    pub value: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl fmt::Display for InvalidDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid domain '{}': {}", self.value, self.reason)
    }
}

impl std::error::Error for InvalidDomain {}

/// Our own host name, validated once so it can go into the greeting and `Received:` unchecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostname(String);

impl Hostname {
    /// Validates `name` as a DNS name (letters, digits, hyphens; labels of 1 to 63 octets).
    pub fn new(name: &str) -> Result<Self, InvalidDomain> {
        check_domain(name).map_err(|reason| InvalidDomain {
            value: name.to_owned(),
            reason,
        })?;
        Ok(Hostname(name.to_owned()))
    }

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An allow-list of domains, lower-cased once. `example.com` matches exactly that domain;
/// `.example.com` matches any subdomain of it (not the domain itself), as in Postfix tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainList(Vec<String>);

impl DomainList {
    /// Validates and lower-cases every entry.
    pub fn new<I, S>(entries: I) -> Result<Self, InvalidDomain>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Vec::new();
        for entry in entries {
            let entry = entry.as_ref();
            let name = entry.strip_prefix('.').unwrap_or(entry);
            check_domain(name).map_err(|reason| InvalidDomain {
                value: entry.to_owned(),
                reason,
            })?;
            list.push(entry.to_ascii_lowercase());
        }
        Ok(DomainList(list))
    }

    /// The entries, lower-cased, as configured.
    pub fn entries(&self) -> &[String] {
        &self.0
    }

    /// Whether `domain` (already lower-case, as in [`Address::domain`]) is allowed.
    pub fn matches(&self, domain: &str) -> bool {
        self.0.iter().any(|entry| {
            if entry.starts_with('.') {
                domain.ends_with(entry.as_str())
            } else {
                domain == entry
            }
        })
    }
}

/// Why a mailbox address was refused. The `Display` text is sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressError {
    /// Longer than `PATH_MAX` with brackets.
    PathTooLong,
    /// Local part longer than `LOCAL_PART_MAX`.
    LocalPartTooLong,
    /// Domain longer than `DOMAIN_MAX`.
    DomainTooLong,
    /// A control character (or DEL).
    ControlCharacter,
    /// Non-ASCII octets: SMTPUTF8 is not offered.
    NonAscii,
    /// `@a,@b:user@c`: an open-relay trick, refused although RFC 5321 says to ignore it.
    SourceRoute,
    /// `user%host@relay`: the percent hack, an open-relay trick.
    PercentHack,
    /// `host!user`: a UUCP bang path, an open-relay trick.
    BangPath,
    /// More than one `@`.
    MultipleAt,
    /// No `@` at all.
    MissingAt,
    /// Nothing before the `@`.
    EmptyLocalPart,
    /// Nothing after the `@`.
    EmptyDomain,
    /// `"quoted"@local.parts`: legal but only used by tricks; refused.
    QuotedLocalPart,
    /// A character not allowed in a dot-atom local part, or misplaced dots.
    InvalidLocalPart,
    /// `user@[192.0.2.1]`: we relay by DNS name only.
    AddressLiteral,
    /// Not a valid DNS name.
    InvalidDomain,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressError::PathTooLong => "address longer than 256 octets",
            AddressError::LocalPartTooLong => "local part longer than 64 octets",
            AddressError::DomainTooLong => "domain longer than 255 octets",
            AddressError::ControlCharacter => "control character in address",
            AddressError::NonAscii => "non-ASCII address (SMTPUTF8 is not supported)",
            AddressError::SourceRoute => "source routes are not accepted",
            AddressError::PercentHack => "'%' is not accepted in addresses",
            AddressError::BangPath => "'!' is not accepted in addresses",
            AddressError::MultipleAt => "more than one '@'",
            AddressError::MissingAt => "missing '@domain'",
            AddressError::EmptyLocalPart => "empty local part",
            AddressError::EmptyDomain => "empty domain",
            AddressError::QuotedLocalPart => "quoted local parts are not accepted",
            AddressError::InvalidLocalPart => "invalid character or dot in local part",
            AddressError::AddressLiteral => "address literals are not accepted",
            AddressError::InvalidDomain => "invalid domain",
        })
    }
}

impl std::error::Error for AddressError {}

/// A validated mailbox `local@domain`. The local part is kept as sent (it is case-sensitive); the
/// domain is lower-cased (it is not), so comparisons and allow-lists need no further folding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parses the text between `<` and `>` of a path. Stricter than RFC 5321 on purpose: no source
    /// routes, quoted local parts, address literals, `%` or `!` (see [`AddressError`]).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.len() + 2 > PATH_MAX {
            return Err(AddressError::PathTooLong);
        }
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(AddressError::ControlCharacter);
        }
        if !s.is_ascii() {
            return Err(AddressError::NonAscii);
        }
        if s.starts_with('@') {
            return Err(AddressError::SourceRoute);
        }
        if s.starts_with('"') {
            return Err(AddressError::QuotedLocalPart);
        }
        if s.contains('%') {
            return Err(AddressError::PercentHack);
        }
        if s.contains('!') {
            return Err(AddressError::BangPath);
        }
        let (local, domain) = match s.split_once('@') {
            None => return Err(AddressError::MissingAt),
            Some((_, domain)) if domain.contains('@') => return Err(AddressError::MultipleAt),
            Some(parts) => parts,
        };
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart);
        }
        if domain.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        if local.len() > LOCAL_PART_MAX {
            return Err(AddressError::LocalPartTooLong);
        }
        if domain.len() > DOMAIN_MAX {
            return Err(AddressError::DomainTooLong);
        }
        let atoms_ok = local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
        if !atoms_ok {
            return Err(AddressError::InvalidLocalPart);
        }
        if domain.starts_with('[') {
            return Err(AddressError::AddressLiteral);
        }
        check_domain(domain).map_err(|_| AddressError::InvalidDomain)?;
        Ok(Address {
            local: local.to_owned(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    /// The local part, as sent.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain, lower-case.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// RFC 5322 `atext`. `%` and `!` are in it but were refused before this is called.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 5321 `Domain` (LDH labels), with lengths. Returns the reason on failure.
fn check_domain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > DOMAIN_MAX {
        return Err("longer than 255 octets");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > LABEL_MAX {
            return Err("label longer than 63 octets");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("label starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
