//! What a sync would change, computed from the source's users and Mattermost's current state
//! without touching either: `--dry-run` prints it, a real run applies it (`sync.rs`). Being a pure
//! function, every rule (skips, normalisation, the first admin, who gets deactivated) is tested
//! here without a server.

use std::collections::{HashMap, HashSet};

use super::rules;

/// One user as the source (LDAP entry, CSV line) gives it, before Mattermost's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUser {
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub disabled: bool,
}

/// A Mattermost account as the API returns it (the fields the plan needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub roles: String,
    /// `delete_at == 0`.
    pub active: bool,
    pub is_bot: bool,
    /// `""`/`"email"` for password accounts; `"ldap"`, `"saml"`, `"gitlab"`... for others.
    pub auth_service: String,
}

impl MmUser {
    pub fn is_system_admin(&self) -> bool {
        self.roles.split_whitespace().any(|r| r == "system_admin")
    }
}

/// Mattermost's side, as read before planning.
#[derive(Debug, Default)]
pub struct State {
    pub team_exists: bool,
    /// Source usernames (normalised) that exist in Mattermost, active or not.
    pub existing: HashMap<String, MmUser>,
    /// User ids in the team.
    pub team_members: HashSet<String>,
    /// Whether an active system admin that is a person (not a bot) exists.
    pub human_admin_exists: bool,
    /// Every account, read only for `--deactivate-missing`.
    pub all_users: Vec<MmUser>,
    /// The account the token belongs to: never deactivated.
    pub caller_id: String,
}

/// A user to create (values as Mattermost will store them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// Who joins the team: an existing account (by id) or one this run creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    Existing { id: String, username: String },
    New { username: String },
}

impl Member {
    pub fn username(&self) -> &str {
        match self {
            Member::Existing { username, .. } | Member::New { username } => username,
        }
    }
}

/// A user the run cannot handle, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub username: String,
    pub reason: String,
}

/// Everything a sync would do, in the order it does it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create_team: bool,
    pub create: Vec<NewUser>,
    pub skipped_disabled: Vec<String>,
    pub skipped_existing: Vec<String>,
    pub add_to_team: Vec<Member>,
    /// The user made system admin because no person is one yet.
    pub make_admin: Option<Member>,
    /// Accounts to deactivate (id, username).
    pub deactivate: Vec<(String, String)>,
    pub failed: Vec<Failure>,
}

impl Plan {
    /// Whether applying the plan writes anything.
    pub fn changes_nothing(&self) -> bool {
        !self.create_team
            && self.create.is_empty()
            && self.add_to_team.is_empty()
            && self.make_admin.is_none()
            && self.deactivate.is_empty()
    }
}

/// The plan for `source` against `state`. `deactivate_missing`: also deactivate active password
/// accounts that are not enabled in the source (never bots, system admins, accounts of another
/// login service such as LDAP or SAML, or the token's own account).
pub fn plan(source: &[SourceUser], state: &State, deactivate_missing: bool) -> Plan {
    let mut p = Plan {
        create_team: !state.team_exists,
        ..Plan::default()
    };
    let mut seen_names = HashSet::new();
    let mut seen_emails = HashSet::new();
    // Normalised usernames of the source's enabled users (kept from deactivation).
    let mut enabled = HashSet::new();
    for u in source {
        let username = match rules::username(&u.username) {
            Ok(n) => n,
            Err(reason) => {
                p.failed.push(Failure {
                    username: u.username.trim().to_string(),
                    reason,
                });
                continue;
            }
        };
        if !seen_names.insert(username.clone()) {
            p.failed.push(Failure {
                username,
                reason: "listed twice in the source (the first one counts)".into(),
            });
            continue;
        }
        if u.disabled {
            p.skipped_disabled.push(username);
            continue;
        }
        enabled.insert(username.clone());
        if let Some(existing) = state.existing.get(&username) {
            // Usernames are matched: an account of that name with another email may be someone
            // else (a local account, a GitLab login): it gets neither the team nor the admin role.
            let mail = u.email.trim();
            if !mail.is_empty() && !existing.email.eq_ignore_ascii_case(mail) {
                p.failed.push(Failure {
                    username,
                    reason: format!(
                        "Mattermost already has an account of that name with another email ({}, the source says {mail}): \
                         left alone; if it is the same person, make the emails agree",
                        existing.email
                    ),
                });
                continue;
            }
            p.skipped_existing.push(username.clone());
            if !existing.active {
                continue;
            }
            let member = Member::Existing {
                id: existing.id.clone(),
                username: username.clone(),
            };
            if p.make_admin.is_none() && !state.human_admin_exists && !existing.is_bot {
                p.make_admin = Some(member.clone());
            }
            if !state.team_members.contains(&existing.id) {
                p.add_to_team.push(member);
            }
            continue;
        }
        let email = match rules::email(&u.email) {
            Ok(e) => e,
            Err(reason) => {
                p.failed.push(Failure { username, reason });
                continue;
            }
        };
        if !seen_emails.insert(email.clone()) {
            p.failed.push(Failure {
                username,
                reason: format!("email {email} is already another source user's"),
            });
            continue;
        }
        let member = Member::New {
            username: username.clone(),
        };
        if p.make_admin.is_none() && !state.human_admin_exists {
            p.make_admin = Some(member.clone());
        }
        p.add_to_team.push(member);
        p.create.push(NewUser {
            username,
            email,
            first_name: rules::name_part(&u.first_name),
            last_name: rules::name_part(&u.last_name),
        });
    }
    if deactivate_missing {
        p.deactivate = state
            .all_users
            .iter()
            .filter(|m| {
                m.active
                    && !m.is_bot
                    && !m.is_system_admin()
                    && m.id != state.caller_id
                    && (m.auth_service.is_empty() || m.auth_service == "email")
                    && !enabled.contains(&m.username)
            })
            .map(|m| (m.id.clone(), m.username.clone()))
            .collect();
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, disabled: bool) -> SourceUser {
        SourceUser {
            username: name.into(),
            email: format!("{}@example.org", name.to_lowercase()),
            first_name: "First".into(),
            last_name: "Last".into(),
            disabled,
        }
    }

    fn mm(id: &str, name: &str) -> MmUser {
        MmUser {
            id: id.into(),
            username: name.into(),
            email: format!("{name}@example.org"),
            roles: "system_user".into(),
            active: true,
            is_bot: false,
            auth_service: String::new(),
        }
    }

    #[test]
    fn creates_the_new_skips_disabled_and_existing_and_makes_the_first_admin() {
        let mut state = State {
            team_exists: true,
            ..State::default()
        };
        state.existing.insert("bob".into(), mm("id-bob", "bob"));
        let p = plan(
            &[
                src("Alice", false),
                src("bob", false),
                src("carol", true),
                src("dave", false),
            ],
            &state,
            false,
        );
        assert!(!p.create_team);
        assert_eq!(
            p.create.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
            ["alice", "dave"]
        );
        assert_eq!(p.skipped_disabled, ["carol"]);
        assert_eq!(p.skipped_existing, ["bob"]);
        assert_eq!(
            p.add_to_team.iter().map(Member::username).collect::<Vec<_>>(),
            ["alice", "bob", "dave"]
        );
        assert_eq!(
            p.make_admin,
            Some(Member::New {
                username: "alice".into()
            })
        );
        assert!(p.failed.is_empty());
    }

    #[test]
    fn no_admin_is_made_when_a_person_is_one() {
        let state = State {
            human_admin_exists: true,
            ..State::default()
        };
        let p = plan(&[src("alice", false)], &state, false);
        assert!(p.create_team);
        assert_eq!(p.make_admin, None);
    }

    #[test]
    fn a_second_run_plans_nothing() {
        let mut state = State {
            team_exists: true,
            human_admin_exists: true,
            ..State::default()
        };
        for (id, n) in [("1", "alice"), ("2", "bob")] {
            state.existing.insert(n.into(), mm(id, n));
            state.team_members.insert(id.into());
        }
        let p = plan(
            &[src("alice", false), src("bob", false), src("carol", true)],
            &state,
            true,
        );
        assert!(p.changes_nothing(), "{p:?}");
        assert_eq!(p.skipped_existing, ["alice", "bob"]);
    }

    #[test]
    fn refused_names_duplicates_and_bad_emails_fail_with_reasons() {
        let mut bad_mail = src("erin", false);
        bad_mail.email = "not-an-address".into();
        let mut dup_mail = src("frank", false);
        dup_mail.email = "alice@example.org".into();
        let p = plan(
            &[
                src("alice", false),
                src("ALICE", false),
                src("john doe", false),
                bad_mail,
                dup_mail,
            ],
            &State::default(),
            false,
        );
        let failed: Vec<_> = p.failed.iter().map(|f| f.username.as_str()).collect();
        assert_eq!(failed, ["alice", "john doe", "erin", "frank"]);
        assert!(p.failed[0].reason.contains("twice"));
        assert!(p.failed[1].reason.contains("contains ` `"));
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn deactivates_only_missing_password_accounts_of_people() {
        let mut state = State {
            team_exists: true,
            human_admin_exists: true,
            caller_id: "me".into(),
            ..State::default()
        };
        state.existing.insert("alice".into(), mm("1", "alice"));
        let mut admin = mm("2", "root");
        admin.roles = "system_user system_admin".into();
        let mut bot = mm("3", "bot");
        bot.is_bot = true;
        let mut ldap = mm("4", "ldapuser");
        ldap.auth_service = "ldap".into();
        let mut gone = mm("6", "gone");
        gone.active = false;
        state.all_users = vec![
            mm("1", "alice"),
            admin,
            bot,
            ldap,
            mm("5", "left"),
            gone,
            mm("me", "caller"),
            mm("7", "carol"),
        ];
        state.team_members.insert("1".into());
        let p = plan(&[src("alice", false), src("carol", true)], &state, true);
        // carol is disabled in the source: she goes too.
        assert_eq!(
            p.deactivate,
            [
                ("5".to_string(), "left".to_string()),
                ("7".to_string(), "carol".to_string())
            ]
        );
        let p = plan(&[src("alice", false)], &state, false);
        assert!(p.deactivate.is_empty());
    }

    #[test]
    fn an_account_of_the_same_name_with_another_email_is_left_alone() {
        let mut state = State {
            team_exists: true,
            ..State::default()
        };
        state.existing.insert(
            "alice".into(),
            MmUser {
                id: "a1".into(),
                username: "alice".into(),
                email: "alice@gitlab.example.net".into(),
                roles: "system_user".into(),
                active: true,
                is_bot: false,
                auth_service: "gitlab".into(),
            },
        );
        let source = [SourceUser {
            username: "Alice".into(),
            email: "alice@example.org".into(),
            first_name: "Alice".into(),
            last_name: "A".into(),
            disabled: false,
        }];
        let p = plan(&source, &state, false);
        assert!(p.add_to_team.is_empty() && p.make_admin.is_none() && p.create.is_empty());
        assert_eq!(p.failed.len(), 1);
        assert!(
            p.failed[0]
                .reason
                .contains("another email (alice@gitlab.example.net"),
            "{:?}",
            p.failed
        );
    }
}
