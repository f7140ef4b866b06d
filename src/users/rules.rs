//! Mattermost's own rules for what it stores (server/public/model/user.go, team.go), checked before
//! asking it, so that a refused name is reported with its reason instead of as a 400 from the API.

/// Mattermost's usernames: 1 to 64 of `a-z 0-9 . - _`, none of its reserved names (it lower-cases
/// a username before checking it, and so does [`username`]).
const RESERVED_USERNAMES: &[&str] = &["all", "channel", "matterbot", "system"];

/// Names a team URL cannot take (they are the web app's own routes).
const RESERVED_TEAM_NAMES: &[&str] = &[
    "admin",
    "api",
    "channel",
    "claim",
    "error",
    "files",
    "help",
    "landing",
    "login",
    "mfa",
    "oauth",
    "plug",
    "plugins",
    "post",
    "signup",
    "boards",
    "playbooks",
];

/// The longest first or last name Mattermost stores (in characters).
pub const NAME_MAX_CHARS: usize = 64;

/// The username Mattermost would store for `raw` (trimmed, lower-cased), or why it would refuse it.
/// Lower-casing is what Mattermost does itself; anything else (spaces, accents, `@`) is refused
/// rather than rewritten, since a rewritten name would no longer match the person's login.
pub fn username(raw: &str) -> Result<String, String> {
    let name = raw.trim().to_lowercase();
    if name.is_empty() {
        return Err("the username is empty".into());
    }
    if name.len() > 64 {
        return Err(format!("`{name}` is longer than Mattermost's 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "`{}` contains `{c}`: Mattermost's usernames are letters a-z, digits, `.`, `-` and `_`",
            raw.trim()
        ));
    }
    if RESERVED_USERNAMES.contains(&name.as_str()) {
        return Err(format!("`{name}` is a name Mattermost reserves"));
    }
    Ok(name)
}

/// The email address Mattermost would store (trimmed, lower-cased), or why it would refuse it:
/// one `@` with something on both sides, no spaces, at most 128 bytes.
pub fn email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err("no email address".into());
    }
    if email.len() > 128 {
        return Err(format!(
            "email `{email}` is longer than Mattermost's 128 characters"
        ));
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.contains(|c: char| c.is_whitespace() || c == '<' || c == '>') =>
        {
            Ok(email)
        }
        _ => Err(format!("`{}` is not an email address", raw.trim())),
    }
}

/// A team's URL name: 2 to 64 of `a-z 0-9 -`, starting and ending with a letter or digit, and
/// none of the web app's routes.
pub fn team_name(name: &str) -> Result<(), String> {
    if !(2..=64).contains(&name.len()) {
        return Err("must be 2 to 64 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("may only hold lowercase letters a-z, digits and `-`".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must start and end with a letter or a digit".into());
    }
    if RESERVED_TEAM_NAMES.contains(&name) {
        return Err("is one of the web app's own paths".into());
    }
    Ok(())
}

/// Whether Mattermost takes `p` as a password under its default policy (8 to 72 bytes; bcrypt
/// reads no further than 72).
pub fn password(p: &str) -> Result<(), String> {
    match p.len() {
        0..=7 => Err("is shorter than 8 characters".into()),
        73.. => Err("is longer than 72 bytes".into()),
        _ => Ok(()),
    }
}

/// `s` cut to Mattermost's longest first/last name.
pub fn name_part(s: &str) -> String {
    s.trim().chars().take(NAME_MAX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_or_refused_with_the_reason() {
        assert_eq!(username(" Alice.Smith ").as_deref(), Ok("alice.smith"));
        assert!(username("john doe").unwrap_err().contains("contains ` `"));
        assert!(username("jörg").unwrap_err().contains("`ö`"));
        assert!(username("ALL").unwrap_err().contains("reserves"));
        assert!(username(&"a".repeat(65)).is_err());
        assert!(username("").is_err());
    }

    #[test]
    fn emails_and_team_names() {
        assert_eq!(email("Bob@Example.ORG").as_deref(), Ok("bob@example.org"));
        assert!(email("bob").is_err());
        assert!(email("a b@example.org").is_err());
        assert!(team_name("example").is_ok());
        assert!(team_name("Example").is_err());
        assert!(team_name("x").is_err());
        assert!(team_name("admin").is_err());
        assert!(team_name("-a").is_err());
    }
}
