//! Loading the shared secret: only a file its owner alone can read, one trailing newline trimmed.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::super::{load_secret, Algorithm, SecretError, Verifier};
use super::*;

fn secret_file(contents: &[u8], mode: u32) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents).unwrap();
    file.flush().unwrap();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    file
}

#[test]
fn load_secret_refuses_a_group_or_world_readable_file() {
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
        let file = secret_file(b"secret\n", mode);
        let err = load_secret(file.path()).unwrap_err();
        assert!(matches!(err, SecretError::Permissions { .. }), "{mode:o}");
        let msg = err.to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&file.path().display().to_string()), "{msg}");
        assert!(
            !msg.contains("secret\n") && !format!("{err:?}").contains("\"secret"),
            "{msg}"
        );
    }
}

#[test]
fn load_secret_accepts_0600_and_trims_one_newline() {
    let file = secret_file(b"s3cr3t\n", 0o600);
    assert_eq!(load_secret(file.path()).unwrap(), b"s3cr3t");
    let file = secret_file(b"s3cr3t\r\n", 0o400);
    assert_eq!(load_secret(file.path()).unwrap(), b"s3cr3t");
    // Only one newline is trimmed: the rest is part of the secret as written.
    let file = secret_file(b"s3cr3t\n\n", 0o600);
    assert_eq!(load_secret(file.path()).unwrap(), b"s3cr3t\n");
    let file = secret_file(b" spaced ", 0o600);
    assert_eq!(load_secret(file.path()).unwrap(), b" spaced ");

    // And a verifier built from it checks tokens signed with it.
    let file = secret_file(&[SECRET, b"\n"].concat(), 0o600);
    let verifier = Verifier::from_secret_file(Algorithm::HS256, file.path()).unwrap();
    assert_eq!(
        verifier.verify(&valid_token(), now(), Some(&format!("id={FILE_ID}"))),
        Ok(())
    );
}

#[test]
fn load_secret_refuses_empty_and_unreadable() {
    for contents in [&b""[..], b"\n", b"\r\n"] {
        let file = secret_file(contents, 0o600);
        let err = load_secret(file.path()).unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{contents:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let err = load_secret(&missing).unwrap_err();
    assert!(matches!(err, SecretError::Read { .. }));
    assert!(err.to_string().contains("absent"));
}
