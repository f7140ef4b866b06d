//! Secrets read from files: the ONLYOFFICE JWT secret, the smarthost password, the mail users.
//!
//! A secret file must be readable by its owner only (`chmod 600`); anything else is refused with a
//! message that says how to fix it. Messages never contain the secret itself.

use std::path::{Path, PathBuf};

/// Why the shared secret could not be loaded. Messages never contain the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be opened or read.
    #[error("cannot read secret file {}: {source}", path.display())]
    Read {
        /// The secret file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Group or others have some access to the file.
    #[error(
        "secret file {} is readable or writable by group or others (mode {mode:04o}): run `chmod 600 {}` \
         and make it owned by the user vestibule runs as",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The secret file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds nothing but, at most, one newline.
    #[error("secret file {} is empty: put the secret in it (for ONLYOFFICE, the Document Server's JWT_SECRET)", path.display())]
    Empty {
        /// The secret file.
        path: PathBuf,
    },
    /// [`Verifier::new`] was given an empty key.
    #[error("the JWT secret is empty: configure the Document Server's JWT secret (JWT_SECRET)")]
    EmptyKey,
}

/// Check that `path` is a secret file only its owner may read or write, without reading it: what
/// the daemon's configuration check does for secrets only a command (run as root) reads, so that a
/// root-owned token file neither stops the service nor sits in its memory.
pub fn check_private(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Read the shared JWT secret from `path`.
///
/// Refuses a file that group or others may read or write (`mode & 0o077 != 0`): the secret lets anyone
/// forge Document Server requests. Trims one trailing newline (`\n` or `\r\n`, as editors and
/// `echo` leave one) and refuses an empty secret. Called at config load, never on the request path.
pub fn load_secret(path: &Path) -> Result<Vec<u8>, SecretError> {
    let read_err = |source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    // Check the mode of the file actually opened (fstat), not of the path, so a swap between the
    // check and the read cannot slip a different file in.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let mut secret = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut secret).map_err(read_err)?;
    if secret.ends_with(b"\r\n") {
        secret.truncate(secret.len() - 2);
    } else if secret.ends_with(b"\n") {
        secret.truncate(secret.len() - 1);
    }
    if secret.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(secret)
}
