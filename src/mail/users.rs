//! Users who may relay after AUTH (over TLS only): `[mail] users_file`, one `name:hash` per line.
//!
//! The hash is an argon2 PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`), as printed by
//! `vestibule mail hash-password`. The file is a secret (0600) even though it holds only hashes: a
//! leaked hash can be attacked offline. Verification is deliberately slow (argon2), so it runs on a
//! blocking thread, never on the connection's async task.

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Default)]
pub struct Users {
    /// name -> PHC hash string (validated at load).
    hashes: HashMap<String, String>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} entries)", self.hashes.len())
    }
}

/// Why the users file cannot be used: unreadable, not text, or a line that is not `name:hash`.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error(transparent)]
    Read(#[from] crate::secret::SecretError),
    #[error("{} is not UTF-8", .0.display())]
    NotUtf8(std::path::PathBuf),
    /// `why` says how to fix the line.
    #[error("{}:{line}: {why}", path.display())]
    Line {
        path: std::path::PathBuf,
        line: usize,
        why: String,
    },
}

/// Why a password could not be hashed (`vestibule mail hash-password`).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("no randomness available for the salt: the system's random source failed")]
    NoRandomness,
    #[error("cannot hash the password: {0}")]
    Argon2(argon2::password_hash::Error),
}

impl Users {
    /// Read and validate the users file. Errors say which line and how to fix it.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let bytes = crate::secret::load_secret(path)?;
        let text = String::from_utf8(bytes).map_err(|_| UsersError::NotUtf8(path.to_path_buf()))?;
        Users::parse(&text).map_err(|(line, why)| UsersError::Line {
            path: path.to_path_buf(),
            line,
            why,
        })
    }

    pub fn parse(text: &str) -> Result<Users, (usize, String)> {
        let mut hashes = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected `name:$argon2id$...` (no `:` found)".into()));
            };
            if name.is_empty() || name.chars().any(|c| c.is_control() || c == ' ') {
                return Err((i + 1, format!("`{name}` is not a valid user name")));
            }
            if let Err(e) = PasswordHash::new(hash) {
                return Err((
                    i + 1,
                    format!("the hash of `{name}` is not an argon2 PHC string ({e}): create one with `vestibule mail hash-password`"),
                ));
            }
            if hashes.insert(name.to_string(), hash.to_string()).is_some() {
                return Err((i + 1, format!("user `{name}` is listed twice")));
            }
        }
        Ok(Users { hashes })
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `password` is `name`'s. Slow on purpose: call from a blocking thread. An unknown user
    /// costs the same as a wrong password (a dummy hash is verified) so that timing tells nothing.
    pub fn verify(&self, name: &str, password: &[u8]) -> bool {
        let hash = self.hashes.get(name).map(String::as_str).unwrap_or(DUMMY_HASH);
        let ok = PasswordHash::new(hash)
            .map(|h| Argon2::default().verify_password(password, &h).is_ok())
            .unwrap_or(false);
        ok && self.hashes.contains_key(name)
    }
}

/// The argon2id hash of a random password nobody knows, for unknown users.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$F6n+Ym7H9b+IZMmVvSwvXnN+2c+V0tXl3mP2wMqfD8A";

/// An argon2id PHC string for `password` with a fresh random salt (argon2's recommended parameters).
pub fn hash_password(password: &[u8]) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| HashError::NoRandomness)?;
    let salt = SaltString::encode_b64(&salt).map_err(HashError::Argon2)?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(HashError::Argon2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash_password(b"correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        let users = Users::parse(&format!("# comment\n\nmattermost:{h}\n")).unwrap();
        assert!(users.verify("mattermost", b"correct horse"));
        assert!(!users.verify("mattermost", b"correct horsE"));
        assert!(!users.verify("nobody", b"correct horse"));
    }

    #[test]
    fn bad_lines_are_located() {
        assert_eq!(Users::parse("a:b\n").unwrap_err().0, 1);
        assert_eq!(Users::parse("\n# x\nnocolon\n").unwrap_err().0, 3);
        let h = hash_password(b"x").unwrap();
        let err = Users::parse(&format!("a:{h}\na:{h}\n")).unwrap_err();
        assert!(err.1.contains("twice"), "{err:?}");
    }

    #[test]
    fn the_dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
