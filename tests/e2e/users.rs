//! `vestibule users sync`, run as the real binary against a real OpenLDAP (Debian's slapd, see
//! support/slapd.rs) and the Mattermost users API stand-in (support/mm_users.rs).
//!
//! Covered: 1,500 directory users (over slapd's 1,000-entry limit, so only a paged search gets
//! them all) imported with the disabled ones and the existing ones skipped, everyone in the team,
//! the first user made system admin because no person was, generated passwords that pass the
//! strictest password settings printed once; a 429 and a 503 retried; `--dry-run` writes nothing;
//! a second run writes nothing and says so; `--deactivate-missing` deactivates (never deletes) a
//! user removed from the directory; Active Directory's attributes and userAccountControl over
//! LDAPS and StartTLS with a private CA, and no admin made when a person is one; the CSV source
//! with a passwords file (mode 600), a creation whose answer was lost, a common password; a username Mattermost would refuse and a password its policy
//! refuses are reported and exit 3; an OpenLDAP attribute marking users disabled; `vestibule
//! check` refuses a token or bind password file that others can read, names bad `[users]` values
//! where they are, and warns of a bind password sent in clear.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::config::{MainConfig, Table};
use crate::support::mm_users::{MmUsers, PasswordSettings};
use crate::support::slapd::{Slapd, READER_DN, READER_PASSWORD};
use crate::support::tls::TestCa;
use crate::support::*;

const TOKEN: &str = "users-sync-token";

/// A file with `text` at `mode`.
fn secret(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// `[users]` with the Mattermost stand-in and team `example`; `ldap` adds `[users.ldap]`.
fn config(
    mm: &MmUsers,
    secrets: &Path,
    ldap: Option<Table>,
    users: impl FnOnce(Table) -> Table,
) -> ConfigDir {
    let token = secret(secrets, "token", TOKEN, 0o600);
    let mut main = MainConfig::new().table(users(
        Table::new("users")
            .set("team", "example")
            .set("team_display_name", "Example Org")
            .set("rate_limit", 10_000u32),
    ));
    if let Some(l) = ldap {
        main = main.table(l);
    }
    main.table(
        Table::new("users.mattermost")
            .set("url", mm.url().as_str())
            .set("token_file", token.to_str().unwrap()),
    )
    .build()
}

/// `[users.ldap]` for `slapd` as the reader account.
fn ldap_table(url: &str, secrets: &Path) -> Table {
    let pw = secret(secrets, "bind", READER_PASSWORD, 0o600);
    Table::new("users.ldap")
        .set("url", url)
        .set("bind_dn", READER_DN)
        .set("bind_password_file", pw.to_str().unwrap())
        .set("base_dn", "ou=People,dc=example,dc=org")
}

/// `vestibule users sync --config <main> ARGS`, off the runtime (the stand-in runs on it).
async fn sync(cfg: &ConfigDir, args: &[&str]) -> Cli {
    let main = cfg.main_file();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(bin())
            .args(["users", "sync", "--config"])
            .arg(&main)
            .args(&args)
            .output()
            .expect("run vestibule users sync");
        Cli {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// `n` OpenLDAP people `user0000`...; those with `i % 30 == 7` are disabled (shadowExpire: 0).
fn people(n: usize) -> String {
    (0..n)
        .map(|i| {
            let disabled = if i % 30 == 7 { "shadowExpire: 0\n" } else { "" };
            format!(
                "dn: uid=user{i:04},ou=People,dc=example,dc=org\nobjectClass: inetOrgPerson\n\
                 objectClass: shadowAccount\nuid: user{i:04}\ncn: First{i} Last{i}\nsn: Last{i}\n\
                 givenName: First{i}\nmail: user{i:04}@example.org\n{disabled}\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_ldap_users_are_imported_once_with_skips_team_and_admin() {
    let slapd = Slapd::start(&people(1_500), None).await;
    let mm = MmUsers::start(TOKEN).await;
    mm.set_password_settings(PasswordSettings::strict());
    let existing = [
        mm.add_user("user0003", "system_user"),
        mm.add_user("user0004", "system_user"),
    ];
    let secrets = tempfile::tempdir().unwrap();
    let cfg = config(
        &mm,
        secrets.path(),
        Some(ldap_table(&slapd.url, secrets.path()).set("disabled_filter", "(shadowExpire=0)")),
        |t| t,
    );

    // Mattermost's default limit (50 members a team) would stop the import one batch in: refused
    // before anything is written, naming the setting to raise.
    let full = sync(&cfg, &[]).await;
    assert_eq!(full.code, 2, "{}", full.text());
    assert!(
        full.stderr.contains("team example would have 1450 members"),
        "{}",
        full.stderr
    );
    assert!(
        full.stderr.contains("TeamSettings.MaxUsersPerTeam"),
        "{}",
        full.stderr
    );
    assert_eq!(mm.writes(), 0, "written past a refusal");
    mm.set_max_users_per_team(2_000);

    // The dry run: the plan, and not one write.
    let dry = sync(&cfg, &["--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}{}", dry.text(), slapd.log());
    assert_eq!(mm.writes(), 0, "a dry run wrote");
    assert!(dry.stdout.contains("would create team example"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("would make user0000 system admin"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("dry run, nothing written: 1448 users to create, 1450 to add to team example"),
        "{}",
        dry.stdout.lines().last().unwrap_or_default()
    );
    assert_eq!(mm.people().len(), 2);

    // One 429 and one 503 on the way: both retried.
    mm.throttle(1);
    mm.unavailable(1);
    let run = sync(&cfg, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(mm.rejected(), 2);
    let people = mm.people();
    assert_eq!(people.len(), 1_450, "1,500 - 50 disabled, 2 of them existed");
    for i in (0..1_500).filter(|i| i % 30 == 7) {
        assert!(
            mm.user(&format!("user{i:04}")).is_none(),
            "disabled user{i:04} was created"
        );
        assert!(
            run.stdout.contains(&format!("skipped user{i:04}: disabled")),
            "user{i:04}"
        );
    }
    let members = mm.team_members("example");
    assert_eq!(members.len(), 1_450);
    assert!(members.contains("user0003") && members.contains("user0004"));
    assert_eq!(mm.team_display_name("example").as_deref(), Some("Example Org"));
    let admins: Vec<String> = people
        .iter()
        .filter(|u| u.roles.split_whitespace().any(|r| r == "system_admin"))
        .map(|u| u.username.clone())
        .collect();
    assert_eq!(admins, ["user0000"]);
    assert_eq!(mm.user("user0000").unwrap().roles, "system_user system_admin");
    // Each created user's password is printed once, and is the one Mattermost got.
    for name in ["user0000", "user0001", "user1499"] {
        let stored = mm.user(name).unwrap().password;
        let line = format!("created {name} <{name}@example.org> password {stored}");
        assert_eq!(run.stdout.matches(&line).count(), 1, "{name}");
        assert_eq!(run.stdout.matches(stored.as_str()).count(), 1);
    }
    assert!(!run.stdout.contains("created user0003"));
    assert!(existing.iter().all(|id| mm.people().iter().any(|u| &u.id == id)));
    let summary = run.stdout.lines().last().unwrap();
    assert!(
        summary.starts_with(
            "1448 users created, 1450 added to team example, 50 skipped as disabled, 2 already there"
        ),
        "{summary}"
    );

    // A second run: nothing to do, nothing written.
    let writes = mm.writes();
    let again = sync(&cfg, &[]).await;
    assert_eq!(again.code, 0, "{}", again.text());
    assert_eq!(mm.writes(), writes, "a second run wrote");
    assert!(
        again.stdout.contains(
            "nothing to change: 1450 users already in Mattermost and team example, 50 skipped as disabled"
        ),
        "{}",
        again.stdout
    );

    // A user leaves the directory: deactivated on request, never deleted.
    slapd.modify("dn: uid=user0010,ou=People,dc=example,dc=org\nchangetype: delete\n");
    let plain = sync(&cfg, &[]).await;
    assert_eq!(plain.code, 0);
    assert_eq!(
        mm.user("user0010").unwrap().delete_at,
        0,
        "deactivated without being asked"
    );
    let gone = sync(&cfg, &["--deactivate-missing", "--json"]).await;
    assert_eq!(gone.code, 0, "{}", gone.text());
    let doc: serde_json::Value = serde_json::from_str(&gone.stdout).expect("one JSON document");
    assert_eq!(doc["deactivated"], serde_json::json!(["user0010"]));
    assert_eq!(doc["failed"], serde_json::json!([]));
    let u = mm.user("user0010").expect("deactivated, not deleted");
    assert_ne!(u.delete_at, 0);
    assert_eq!(mm.people().iter().filter(|u| u.delete_at != 0).count(), 1);
}

/// Active Directory-shaped entries.
fn ad_people() -> String {
    [
        ("Jane.Doe", "jane@example.org", 512),
        ("Max.Power", "max@example.org", 514),
        ("old.account", "old@example.org", 0x10202),
        ("svc.print", "", 512),
    ]
    .iter()
    .map(|(sam, upn, uac)| {
        let upn = if upn.is_empty() {
            String::new()
        } else {
            format!("userPrincipalName: {upn}\n")
        };
        format!(
            "dn: cn={sam},ou=People,dc=example,dc=org\nobjectClass: user\nobjectCategory: person\n\
             sAMAccountName: {sam}\ncn: {sam}\nsn: Doe\ngivenName: Jane\n{upn}userAccountControl: {uac}\n\n"
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_over_ldaps_and_starttls_with_a_private_ca() {
    let ca = TestCa::new("vestibule test LDAP CA");
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let slapd = Slapd::start(&ad_people(), Some((&leaf.chain_pem, &leaf.key_pem))).await;
    let mm = MmUsers::start(TOKEN).await;
    mm.add_user("root", "system_user system_admin");
    let secrets = tempfile::tempdir().unwrap();
    let ca_file = secret(secrets.path(), "ca.pem", &ca.pem, 0o644);
    let ldaps = slapd.ldaps_url.clone().unwrap();
    let table = |url: &str| {
        ldap_table(url, secrets.path())
            .set("schema", "ad")
            .set("ca_file", ca_file.to_str().unwrap())
    };
    let cfg = config(&mm, secrets.path(), Some(table(&ldaps)), |t| t);
    let run = sync(&cfg, &[]).await;
    // svc.print has neither mail nor userPrincipalName: reported, exit 3.
    assert_eq!(run.code, 3, "{}{}", run.text(), slapd.log());
    assert!(
        run.stderr.contains("failed svc.print: no email address"),
        "{}",
        run.stderr
    );
    let jane = mm.user("jane.doe").expect("sAMAccountName lower-cased");
    assert_eq!(jane.email, "jane@example.org");
    assert_eq!(jane.roles, "system_user", "a person is admin already");
    assert!(mm.user("max.power").is_none() && mm.user("old.account").is_none());
    assert!(run.stdout.contains("skipped max.power: disabled"));

    // StartTLS on the plain port, same directory: nothing left to do but the refused one.
    let port = slapd.url.rsplit(':').next().unwrap();
    let cfg = config(
        &mm,
        secrets.path(),
        Some(table(&format!("ldap://localhost:{port}")).set("starttls", true)),
        |t| t,
    );
    let writes = mm.writes();
    let again = sync(&cfg, &[]).await;
    assert_eq!(again.code, 3, "{}", again.text());
    assert_eq!(mm.writes(), writes);

    // Without the private CA the certificate is refused, and nothing happens.
    let cfg = config(
        &mm,
        secrets.path(),
        Some(ldap_table(&ldaps, secrets.path()).set("schema", "ad")),
        |t| t,
    );
    let refused = sync(&cfg, &[]).await;
    assert_eq!(refused.code, 2, "{}", refused.text());
    assert!(
        refused.stderr.contains("cannot connect to ldaps://localhost"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_source_with_a_passwords_file() {
    let mm = MmUsers::start(TOKEN).await;
    let secrets = tempfile::tempdir().unwrap();
    let csv = secrets.path().join("users.csv");
    std::fs::write(
        &csv,
        "username,email,first,last,disabled\nAnna,anna@example.org,Anna,\"Smith, Jr.\"\n\
         ben,ben@example.org,Ben,Jones,yes\ncleo,cleo@example.org,Cleo,Park,\n",
    )
    .unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t);
    let passwords = secrets.path().join("passwords.txt");
    let args = [
        "--csv",
        csv.to_str().unwrap(),
        "--passwords-file",
        passwords.to_str().unwrap(),
    ];
    let dry = sync(&cfg, &[&args[..], &["--dry-run"]].concat()).await;
    assert_eq!(dry.code, 0, "{}", dry.text());
    assert_eq!(mm.writes(), 0);
    assert!(!passwords.exists(), "a dry run wrote the passwords file");

    // The team's and the first user's creations are carried out but their answers lost: the
    // retries find the team, and the account made with the password sent, and go on.
    mm.lose_answers(2);
    let run = sync(&cfg, &args).await;
    assert_eq!(run.code, 0, "{}", run.text());
    let anna = mm.user("anna").unwrap();
    assert_eq!(anna.last_name, "Smith, Jr.");
    assert!(mm.user("ben").is_none());
    let mode = std::fs::metadata(&passwords).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&passwords).unwrap();
    assert_eq!(
        text,
        format!(
            "anna\t{}\ncleo\t{}\n",
            anna.password,
            mm.user("cleo").unwrap().password
        )
    );
    assert!(!run.stdout.contains(&anna.password), "password on stdout too");
    assert!(run
        .stdout
        .contains(&format!("passwords written to {}", passwords.display())));
    assert_eq!(mm.team_members("example").len(), 2);
    // anna is the first: no person was admin.
    assert!(anna.roles.contains("system_admin"));

    // A common password: used as given, and no passwords file is written.
    std::fs::write(&csv, "dan,dan@example.org,Dan,Brown\n").unwrap();
    let unused = secrets.path().join("unused.txt");
    let common = sync(
        &cfg,
        &[
            "--csv",
            csv.to_str().unwrap(),
            "--password",
            "Common-Pass-1",
            "--passwords-file",
            unused.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(common.code, 0, "{}", common.text());
    assert_eq!(mm.user("dan").unwrap().password, "Common-Pass-1");
    assert!(!unused.exists());
    assert!(!common.stdout.contains("passwords written"), "{}", common.stdout);
    assert!(!common.stdout.contains("Common-Pass-1"), "{}", common.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_usernames_and_passwords_are_reported_and_exit_3() {
    let mm = MmUsers::start(TOKEN).await;
    mm.set_password_settings(PasswordSettings::strict());
    let secrets = tempfile::tempdir().unwrap();
    let csv = secrets.path().join("users.csv");
    std::fs::write(
        &csv,
        "john doe,john@example.org,John,Doe\nok.user,ok@example.org,Ok,User\nall,all@example.org,A,L\n",
    )
    .unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t.set("csv", csv.to_str().unwrap()));
    let run = sync(&cfg, &["--json"]).await;
    assert_eq!(run.code, 3, "{}", run.text());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let failed = doc["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0]["username"], "john doe");
    assert!(failed[0]["reason"].as_str().unwrap().contains("contains ` `"));
    assert!(failed[1]["reason"].as_str().unwrap().contains("reserves"));
    let ok = mm.user("ok.user").expect("the valid one is created");
    assert_eq!(doc["created"][0]["password"], ok.password.as_str());

    // A common password the server's policy refuses: every creation fails, with Mattermost's reason.
    let csv2 = secrets.path().join("more.csv");
    std::fs::write(&csv2, "dora,dora@example.org,Dora,E\n").unwrap();
    let run = sync(
        &cfg,
        &["--csv", csv2.to_str().unwrap(), "--password", "alllowercase"],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.text());
    assert!(
        run.stderr.contains("failed dora: Mattermost refused it: Your password does not meet the password requirements. (model.user.is_valid.pwd_lowercase_uppercase_number_symbol.app_error)"),
        "{}",
        run.stderr
    );
    assert!(mm.user("dora").is_none());
}

#[test]
fn check_refuses_secret_files_others_can_read() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secret(secrets.path(), "token", TOKEN, 0o644);
    let bind = secret(secrets.path(), "bind", READER_PASSWORD, 0o640);
    let cfg = MainConfig::new()
        .table(Table::new("users").set("team", "example"))
        .table(
            Table::new("users.ldap")
                .set("url", "ldaps://ldap.example.org")
                .set("bind_dn", READER_DN)
                .set("bind_password_file", bind.to_str().unwrap())
                .set("base_dn", "ou=People,dc=example,dc=org"),
        )
        .table(
            Table::new("users.mattermost")
                .set("url", "http://127.0.0.1:8065")
                .set("token_file", token.to_str().unwrap()),
        )
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("[users.mattermost] token_file: secret file"),
        "{err}"
    );
    assert!(
        err.contains("[users.ldap] bind_password_file: secret file"),
        "{err}"
    );
    assert!(
        err.contains("(mode 0644)") && err.contains("(mode 0640)"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");

    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&bind, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(!format!("{out}{err}").contains("unencrypted"), "{out}{err}");
    assert!(
        out.contains("source ldaps://ldap.example.org (OpenLDAP, base ou=People,dc=example,dc=org, filter (objectClass=inetOrgPerson))"),
        "{out}"
    );
}

#[test]
fn check_warns_of_a_bind_password_sent_in_clear() {
    let secrets = tempfile::tempdir().unwrap();
    let token = secret(secrets.path(), "token", TOKEN, 0o600);
    let cfg = MainConfig::new()
        .table(Table::new("users").set("team", "example"))
        .table(ldap_table("ldap://ldap.example.org", secrets.path()))
        .table(Table::new("users.mattermost").set("token_file", token.to_str().unwrap()))
        .build();
    let (code, out, err) = check(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(
        format!("{out}{err}").contains(
            "[users.ldap] url ldap://ldap.example.org without starttls sends the bind password unencrypted"
        ),
        "{out}{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openldap_attribute_can_mark_users_disabled() {
    let entries = "dn: uid=ann,ou=People,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: ann\ncn: Ann\nsn: A\n\
                   mail: ann@example.org\n\n\
                   dn: uid=lea,ou=People,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: lea\ncn: Lea\nsn: L\n\
                   mail: lea@example.org\nemployeeType: locked\n\n";
    let slapd = Slapd::start(entries, None).await;
    let mm = MmUsers::start(TOKEN).await;
    let secrets = tempfile::tempdir().unwrap();
    let ldap = ldap_table(&slapd.url, secrets.path()).set("disabled_attribute", "employeeType");
    let cfg = config(&mm, secrets.path(), Some(ldap), |t| t);
    let run = sync(&cfg, &[]).await;
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(mm.user("ann").is_some());
    assert!(mm.user("lea").is_none());
    assert!(
        run.stdout.contains("skipped lea: disabled in the source"),
        "{}",
        run.stdout
    );
}

#[test]
fn check_names_bad_users_values_where_they_are() {
    let cfg = MainConfig::new()
        .table(
            Table::new("users")
                .set("team", "Bad Team")
                .set("rate_limit", 0u32),
        )
        .table(
            Table::new("users.ldap")
                .set("url", "http://ldap.example.org")
                .set("starttls", true),
        )
        .table(Table::new("users.mattermost").set("url", "ftp://x"))
        .build();
    let (code, _, err) = check(&cfg);
    assert_eq!(code, 1, "{err}");
    for needle in [
        "[users] team `Bad Team`",
        "`rate_limit` in [users] must be between 1 and 100000",
        "[users.ldap] url `http://ldap.example.org` is not an ldap:// or ldaps:// URL",
        "[users.ldap] has no `base_dn`",
        "[users.mattermost] url `ftp://x` is not an http:// or https:// URL",
        "[users.mattermost] has no `token_file`",
    ] {
        assert!(err.contains(needle), "{needle}\n{err}");
    }
}

/// Without [users.mattermost], `users sync` reaches Mattermost as `integrate` and `doctor` do, through
/// [integrate] mattermost_url and mattermost_token_file: one token file for the three commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_integrate_sections_mattermost_access_serves_users_sync() {
    let mm = MmUsers::start(TOKEN).await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secret(secrets.path(), "token", TOKEN, 0o600);
    let csv = secrets.path().join("users.csv");
    std::fs::write(
        &csv,
        "username,email,first,last\ndora,dora@example.org,Dora,Lee\n",
    )
    .unwrap();
    let cfg = MainConfig::new()
        .table(
            Table::new("users")
                .set("team", "example")
                .set("csv", csv.to_str().unwrap()),
        )
        .table(
            Table::new("integrate")
                .set("mattermost_url", mm.url().as_str())
                .set("mattermost_token_file", token.to_str().unwrap()),
        )
        .build();
    let run = sync(&cfg, &[]).await;
    assert_eq!(run.code, 0, "{}", run.text());
    assert!(mm.user("dora").is_some());

    // Neither section names a token: the error says where to put one.
    let cfg = MainConfig::new()
        .table(Table::new("users").set("csv", csv.to_str().unwrap()))
        .build();
    let check = cfg.vestibule(&["check"]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert!(
        check.stderr.contains("[integrate] no mattermost_token_file"),
        "{}",
        check.stderr
    );
}

/// `--password -` takes the common password from standard input (out of `ps` and the shell's
/// history); every created account gets it, and it is not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_common_password_can_come_from_standard_input() {
    let mm = MmUsers::start(TOKEN).await;
    let secrets = tempfile::tempdir().unwrap();
    let csv = secrets.path().join("users.csv");
    std::fs::write(
        &csv,
        "eve,eve@example.org,Eve,Ng\nfinn,finn@example.org,Finn,Ray\n",
    )
    .unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t);
    let main = cfg.main_file();
    let csv_arg = csv.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut child = Command::new(bin())
            .args(["users", "sync", "--password", "-", "--csv", &csv_arg, "--config"])
            .arg(&main)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"Common-Start-2026\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    for name in ["eve", "finn"] {
        assert_eq!(mm.user(name).unwrap().password, "Common-Start-2026", "{name}");
    }
    assert!(
        !text.contains("Common-Start-2026"),
        "the password was printed: {text}"
    );
}

/// The daemon provisions [users] too, but only checks its secret files' modes: the token is read by
/// `users sync` (typically run as root) and never sits in the internet-facing daemon's memory, and a
/// file it could not read does not stop the service. A token that is not text is therefore found by
/// the command, not by `check`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_checks_secret_modes_and_only_the_command_reads_them() {
    let mm = MmUsers::start(TOKEN).await;
    let secrets = tempfile::tempdir().unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t);
    std::fs::write(secrets.path().join("token"), b"\xff\xfe not text").unwrap();
    let check = cfg.vestibule(&["check"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    let csv = secrets.path().join("users.csv");
    std::fs::write(&csv, "gus,gus@example.org,Gus,Hall\n").unwrap();
    let run = sync(&cfg, &["--csv", csv.to_str().unwrap()]).await;
    assert_eq!(run.code, 1, "{}", run.text());
    assert!(
        run.stderr.contains("token_file") && run.stderr.contains("not UTF-8"),
        "{}",
        run.stderr
    );
    assert_eq!(mm.requests(), 0);
}

/// A directory that accepts the bind and then never answers the search (overloaded, or a firewall
/// dropping the connection) is given up after [users.ldap] timeout: ldap3's own timeout is used up by
/// the bind, so every step of the paged search carries its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_stops_answering_after_the_bind_is_given_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let directory = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 512];
        let n = sock.read(&mut buf).await.unwrap();
        // The BindRequest: SEQUENCE (short or long length), then the messageID INTEGER.
        let mut p = 2;
        if buf[1] & 0x80 != 0 {
            p += usize::from(buf[1] & 0x7f);
        }
        assert!(
            n > p + 2 && buf[p] == 0x02,
            "not an LDAP message: {:?}",
            &buf[..n]
        );
        let id = &buf[p..p + 2 + usize::from(buf[p + 1])];
        // BindResponse: success, no matched DN, no message.
        let mut inner = id.to_vec();
        inner.extend([0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]);
        let mut msg = vec![0x30, inner.len() as u8];
        msg.extend(inner);
        sock.write_all(&msg).await.unwrap();
        // The search arrives and is never answered.
        let mut rest = Vec::new();
        let _ = sock.read_to_end(&mut rest).await;
    });
    let mm = MmUsers::start(TOKEN).await;
    let secrets = tempfile::tempdir().unwrap();
    let ldap = ldap_table(&format!("ldap://{addr}"), secrets.path()).set("timeout", "1s");
    let cfg = config(&mm, secrets.path(), Some(ldap), |t| t);
    let run = tokio::time::timeout(std::time::Duration::from_secs(20), sync(&cfg, &[]))
        .await
        .expect("users sync waited for a search the directory never answers");
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("did not answer the search"), "{}", run.stderr);
    assert!(run.stderr.contains("[users.ldap] timeout"), "{}", run.stderr);
    assert_eq!(mm.writes(), 0);
    directory.abort();
}

/// A passwords file from an earlier run that stopped halfway is appended to, not emptied: those
/// accounts exist now, and their generated passwords are nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passwords_file_of_an_earlier_run_is_appended_to() {
    let mm = MmUsers::start(TOKEN).await;
    let secrets = tempfile::tempdir().unwrap();
    let csv = secrets.path().join("users.csv");
    std::fs::write(&csv, "hana,hana@example.org,Hana,Ito\n").unwrap();
    let passwords = secrets.path().join("passwords.txt");
    let earlier = "gus\tEarlier-Run-Pass-1\n";
    let _ = secret(secrets.path(), "passwords.txt", earlier.trim_end(), 0o600);
    std::fs::write(&passwords, earlier).unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t);
    let run = sync(
        &cfg,
        &[
            "--csv",
            csv.to_str().unwrap(),
            "--passwords-file",
            passwords.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.text());
    let text = std::fs::read_to_string(&passwords).unwrap();
    assert_eq!(
        text,
        format!("{earlier}hana\t{}\n", mm.user("hana").unwrap().password)
    );
}

/// With --deactivate-missing, a source that gives no enabled user (a filter typo, a wrong base DN,
/// an empty file) would deactivate everybody: refused, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivate_missing_refuses_a_source_with_nobody_in_it() {
    let mm = MmUsers::start(TOKEN).await;
    mm.add_user("ivan", "system_user");
    let secrets = tempfile::tempdir().unwrap();
    let csv = secrets.path().join("users.csv");
    std::fs::write(&csv, "username,email,first,last,disabled\n").unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t);
    let run = sync(&cfg, &["--csv", csv.to_str().unwrap(), "--deactivate-missing"]).await;
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(run.stderr.contains("no enabled user"), "{}", run.stderr);
    assert_eq!(mm.writes(), 0);
    assert_eq!(mm.user("ivan").unwrap().delete_at, 0, "ivan was deactivated");
}

/// A server that asks for longer passwords than vestibule's 20 characters (PasswordSettings
/// MinimumLength, read from its configuration) gets them, with every class Mattermost's strictest
/// settings require.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_passwords_follow_the_servers_minimum_length() {
    let mm = MmUsers::start(TOKEN).await;
    mm.set_password_settings(PasswordSettings {
        minimum_length: 32,
        ..PasswordSettings::strict()
    });
    let secrets = tempfile::tempdir().unwrap();
    let csv = secrets.path().join("users.csv");
    std::fs::write(
        &csv,
        "jan,jan@example.org,Jan,Berg\nkim,kim@example.org,Kim,Lund\n",
    )
    .unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t);
    let run = sync(&cfg, &["--csv", csv.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{}", run.text());
    for name in ["jan", "kim"] {
        assert_eq!(mm.user(name).unwrap().password.len(), 32, "{name}");
    }
}

/// A cache in front of Mattermost that ignores `?page=` answers every page as the first: listing every
/// account (for --deactivate-missing) stops with an error naming the repeated page, instead of asking
/// forever and filling the memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_whose_pages_repeat_stops_with_an_error() {
    let mm = MmUsers::start(TOKEN).await;
    (0..250).for_each(|i| {
        mm.add_user(&format!("old{i:03}"), "system_user");
    });
    mm.ignore_paging();
    let secrets = tempfile::tempdir().unwrap();
    let csv = secrets.path().join("users.csv");
    std::fs::write(&csv, "old000,old000@example.org,Old,Zero\n").unwrap();
    let cfg = config(&mm, secrets.path(), None, |t| t);
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        sync(&cfg, &["--csv", csv.to_str().unwrap(), "--deactivate-missing"]),
    )
    .await
    .expect("users sync kept asking for pages that repeat");
    assert_eq!(run.code, 2, "{}", run.text());
    assert!(
        run.stderr.contains("the page repeats an earlier one"),
        "{}",
        run.stderr
    );
    assert_eq!(mm.writes(), 0);
}
