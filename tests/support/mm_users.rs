//! A stand-in for Mattermost's user and team API (Mattermost itself cannot run here), enforcing
//! the rules its handlers and model enforce (server/channels/api4/user.go, team.go;
//! server/public/model/user.go, team.go):
//! - every route needs `Authorization: Bearer <token>`; creating users, teams, memberships,
//!   roles and deactivating need the token's account to be a system admin (else 403);
//! - `POST /api/v4/users`: the username is lower-cased (PreSave), then must be 1-64 of
//!   `a-z0-9.-_` and not reserved (`all`, `channel`, `matterbot`, `system`); the email lower-cased
//!   and valid; username and email unique; first/last name at most 64 characters; the password
//!   meets [`PasswordSettings`] (8 to 72 by default) -> 201 with the user, no password;
//! - `POST /api/v4/users/usernames` (a non-empty JSON list) answers the accounts that exist;
//! - `GET /api/v4/users` pages (`page`, `per_page` up to 200, sorted by username) and filters by
//!   `role`; deactivated accounts included, with their `delete_at`;
//! - `GET /api/v4/teams/name/{name}` (404 when missing), `POST /api/v4/teams` (name rules, unique),
//!   `GET /api/v4/teams/{id}/members`, `POST /api/v4/teams/{id}/members/batch` (each user must
//!   exist, the body's team must be the path's, 1 to 256 members a batch);
//! - `PUT /api/v4/users/{id}/roles`: known role names only, never `system_admin` alone;
//! - `PUT /api/v4/users/{id}/active`.
//!
//! Failure injection: the next `throttle` requests are answered 429 with `Retry-After: 1` (the
//! body Mattermost's throttled limiter writes), the next `unavailable` ones 503, and the next
//! `lose_answers` successful writes are carried out but answered 502.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::mattermost::{app_error, reply};

/// Mattermost's `PasswordSettings` (defaults: 8 characters, no class required).
#[derive(Clone, Debug)]
pub struct PasswordSettings {
    pub minimum_length: usize,
    pub lowercase: bool,
    pub uppercase: bool,
    pub number: bool,
    pub symbol: bool,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        PasswordSettings {
            minimum_length: 8,
            lowercase: false,
            uppercase: false,
            number: false,
            symbol: false,
        }
    }
}

impl PasswordSettings {
    /// Every class required, 10 characters: the strictest settings admins pick.
    pub fn strict() -> Self {
        PasswordSettings {
            minimum_length: 10,
            lowercase: true,
            uppercase: true,
            number: true,
            symbol: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub roles: String,
    pub delete_at: i64,
    pub is_bot: bool,
    pub auth_service: String,
    pub password: String,
}

impl User {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "username": self.username, "email": self.email,
            "first_name": self.first_name, "last_name": self.last_name, "roles": self.roles,
            "delete_at": self.delete_at, "is_bot": self.is_bot, "auth_service": self.auth_service,
            "create_at": 1, "update_at": 1, "locale": "en",
        })
    }
}

#[derive(Default)]
struct Data {
    users: Vec<User>,
    /// name -> (id, display name)
    teams: BTreeMap<String, (String, String)>,
    /// (team id, user id)
    members: HashSet<(String, String)>,
    next_id: usize,
}

impl Data {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{:026}", self.next_id)
    }
}

struct State {
    token: String,
    caller: String,
    data: Mutex<Data>,
    password: Mutex<PasswordSettings>,
    writes: AtomicUsize,
    requests: AtomicUsize,
    throttle: AtomicUsize,
    unavailable: AtomicUsize,
    rejected: AtomicUsize,
    lose: AtomicUsize,
    /// `TeamSettings.MaxUsersPerTeam` (Mattermost's default: 50).
    max_users_per_team: AtomicUsize,
    /// Answer every page as the first (a caching proxy that ignores `?page=`).
    ignore_paging: std::sync::atomic::AtomicBool,
}

/// A running stand-in; stops when dropped.
pub struct MmUsers {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MmUsers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MmUsers {
    /// A server whose only account is a bot with the system admin role, owning `token`.
    pub async fn start(token: &str) -> MmUsers {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the Mattermost users stand-in");
        let addr = listener.local_addr().unwrap();
        let mut data = Data::default();
        let caller = data.id();
        data.users.push(User {
            id: caller.clone(),
            username: "vestibule-bot".into(),
            email: "vestibule-bot@localhost".into(),
            first_name: String::new(),
            last_name: String::new(),
            roles: "system_user system_admin".into(),
            delete_at: 0,
            is_bot: true,
            auth_service: String::new(),
            password: String::new(),
        });
        let state = Arc::new(State {
            token: token.to_string(),
            caller,
            data: Mutex::new(data),
            password: Mutex::new(PasswordSettings::default()),
            writes: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            throttle: AtomicUsize::new(0),
            unavailable: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            lose: AtomicUsize::new(0),
            max_users_per_team: AtomicUsize::new(50),
            ignore_paging: std::sync::atomic::AtomicBool::new(false),
        });
        let task = super::serve_stand_in(listener, state.clone(), handle);
        MmUsers { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every page of a listing as the first, as a cache in front of Mattermost that ignores
    /// `?page=` would.
    pub fn ignore_paging(&self) {
        self.state.ignore_paging.store(true, Ordering::SeqCst);
    }

    /// `TeamSettings.MaxUsersPerTeam`, as an admin raises it before a large import.
    pub fn set_max_users_per_team(&self, n: usize) {
        self.state.max_users_per_team.store(n, Ordering::SeqCst);
    }

    pub fn set_password_settings(&self, p: PasswordSettings) {
        *self.state.password.lock().unwrap() = p;
    }

    /// An existing account (a person; `roles` e.g. "system_user").
    pub fn add_user(&self, username: &str, roles: &str) -> String {
        let mut d = self.state.data.lock().unwrap();
        let id = d.id();
        d.users.push(User {
            id: id.clone(),
            username: username.into(),
            email: format!("{username}@example.org"),
            first_name: String::new(),
            last_name: String::new(),
            roles: roles.into(),
            delete_at: 0,
            is_bot: false,
            auth_service: String::new(),
            password: String::new(),
        });
        id
    }

    pub fn user(&self, username: &str) -> Option<User> {
        let d = self.state.data.lock().unwrap();
        d.users.iter().find(|u| u.username == username).cloned()
    }

    /// Accounts that are people (not the bot).
    pub fn people(&self) -> Vec<User> {
        let d = self.state.data.lock().unwrap();
        d.users.iter().filter(|u| !u.is_bot).cloned().collect()
    }

    /// Usernames of `team`'s members.
    pub fn team_members(&self, team: &str) -> HashSet<String> {
        let d = self.state.data.lock().unwrap();
        let Some((tid, _)) = d.teams.get(team) else {
            return HashSet::new();
        };
        d.users
            .iter()
            .filter(|u| d.members.contains(&(tid.clone(), u.id.clone())))
            .map(|u| u.username.clone())
            .collect()
    }

    pub fn team_display_name(&self, team: &str) -> Option<String> {
        let d = self.state.data.lock().unwrap();
        d.teams.get(team).map(|(_, n)| n.clone())
    }

    /// Write requests received (POST/PUT/DELETE except the `usernames` lookup), answered or not.
    pub fn writes(&self) -> usize {
        self.state.writes.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 429 or 503 by injection.
    pub fn rejected(&self) -> usize {
        self.state.rejected.load(Ordering::SeqCst)
    }

    /// Answer the next `n` requests 429.
    pub fn throttle(&self, n: usize) {
        self.state.throttle.store(n, Ordering::SeqCst);
    }

    /// Carry out the next `n` writes but answer them 502, as a proxy whose upstream answered too
    /// late does.
    pub fn lose_answers(&self, n: usize) {
        self.state.lose.store(n, Ordering::SeqCst);
    }

    /// Answer the next `n` requests 503.
    pub fn unavailable(&self, n: usize) {
        self.state.unavailable.store(n, Ordering::SeqCst);
    }
}

type Reply = Result<Response<Full<Bytes>>, std::convert::Infallible>;

fn error(status: u16, id: &str, message: &str) -> Reply {
    reply(status, &app_error(status, id, message))
}

/// Take one from an injection counter.
fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn valid_username(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
        && !["all", "channel", "matterbot", "system"].contains(&s)
}

fn valid_email(s: &str) -> bool {
    s.len() <= 128
        && matches!(s.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !s.contains(char::is_whitespace)
}

/// Mattermost's IsPasswordValidWithSettings.
fn password_error(p: &str, s: &PasswordSettings) -> Option<String> {
    let mut id = String::from("model.user.is_valid.pwd");
    let mut bad = p.len() < s.minimum_length || p.len() > 72;
    for (on, name, ok) in [
        (
            s.lowercase,
            "_lowercase",
            p.chars().any(|c| c.is_ascii_lowercase()),
        ),
        (
            s.uppercase,
            "_uppercase",
            p.chars().any(|c| c.is_ascii_uppercase()),
        ),
        (s.number, "_number", p.chars().any(|c| c.is_ascii_digit())),
        (
            s.symbol,
            "_symbol",
            // model.PasswordSpecialChars: no braces, no space.
            p.chars().any(|c| "!\"\\#$%&'()*+,-./:;<=>?@[]^_`|~".contains(c)),
        ),
    ] {
        if on {
            id.push_str(name);
            bad |= !ok;
        }
    }
    bad.then(|| id + ".app_error")
}

fn valid_team_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        && ![
            "admin", "api", "channel", "login", "signup", "plugins", "post", "error", "help",
        ]
        .contains(&s)
}

const ROLES: &[&str] = &[
    "system_user",
    "system_admin",
    "system_guest",
    "system_user_manager",
    "system_read_only_admin",
    "system_manager",
];

fn query(uri: &hyper::Uri, key: &str) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Reply {
    let write = req.method() != hyper::Method::GET && req.uri().path() != "/api/v4/users/usernames";
    let answer = serve(state.clone(), req).await;
    if write && answer.as_ref().is_ok_and(|r| r.status().is_success()) && take(&state.lose) {
        return error(502, "proxy", "Bad Gateway");
    }
    answer
}

async fn serve(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Reply {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let is_write = method != hyper::Method::GET && path != "/api/v4/users/usernames";
    if is_write {
        state.writes.fetch_add(1, Ordering::SeqCst);
    }
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(state.token.as_str());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if take(&state.throttle) {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        return Ok(Response::builder()
            .status(429)
            .header("retry-after", "1")
            .header("x-ratelimit-limit", "10")
            .header("x-ratelimit-remaining", "0")
            .body(Full::new(Bytes::from_static(b"limit exceeded\n")))
            .unwrap());
    }
    if take(&state.unavailable) {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        return error(503, "api.server.unavailable", "Service Unavailable");
    }
    if !authorized {
        return error(
            401,
            "api.context.session_expired.app_error",
            "Invalid or expired session, please login again.",
        );
    }
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut d = state.data.lock().unwrap();
    let caller_is_admin = d
        .users
        .iter()
        .any(|u| u.id == state.caller && u.roles.split_whitespace().any(|r| r == "system_admin"));
    if is_write && !caller_is_admin {
        return error(
            403,
            "api.context.permissions.app_error",
            "You do not have the appropriate permissions.",
        );
    }
    let segs: Vec<&str> = path.trim_start_matches("/api/v4/").split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        // The configuration (only what the stand-in keeps of it; the real one has every section).
        ("GET", ["config"]) => reply(
            200,
            &json!({
                "TeamSettings": {"MaxUsersPerTeam": state.max_users_per_team.load(Ordering::SeqCst)},
                "PasswordSettings": {"MinimumLength": state.password.lock().unwrap().minimum_length},
            }),
        ),
        ("GET", ["users", "me"]) => {
            let me = d.users.iter().find(|u| u.id == state.caller).unwrap().json();
            reply(200, &me)
        }
        ("GET", ["users"]) => {
            let page: usize = query(&uri, "page")
                .and_then(|p| p.parse().ok())
                .filter(|_| !state.ignore_paging.load(Ordering::SeqCst))
                .unwrap_or(0);
            let per_page: usize = query(&uri, "per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(60)
                .min(200);
            let role = query(&uri, "role");
            if role.as_ref().is_some_and(|r| !ROLES.contains(&r.as_str())) {
                return error(
                    400,
                    "api.context.invalid_param.app_error",
                    "Invalid role parameter.",
                );
            }
            let mut users: Vec<&User> = d
                .users
                .iter()
                .filter(|u| {
                    role.as_ref()
                        .is_none_or(|r| u.roles.split_whitespace().any(|x| x == r))
                })
                .collect();
            users.sort_by(|a, b| a.username.cmp(&b.username));
            let list: Vec<Value> = users
                .into_iter()
                .skip(page * per_page)
                .take(per_page)
                .map(User::json)
                .collect();
            reply(200, &Value::Array(list))
        }
        ("POST", ["users", "usernames"]) => {
            let Some(Value::Array(names)) = json else {
                return error(
                    400,
                    "api.context.invalid_body_param.app_error",
                    "Invalid or missing usernames in request body.",
                );
            };
            if names.is_empty() {
                return error(
                    400,
                    "api.context.invalid_body_param.app_error",
                    "Invalid or missing usernames in request body.",
                );
            }
            let names: HashSet<&str> = names.iter().filter_map(Value::as_str).collect();
            let list: Vec<Value> = d
                .users
                .iter()
                .filter(|u| names.contains(u.username.as_str()))
                .map(User::json)
                .collect();
            reply(200, &Value::Array(list))
        }
        ("POST", ["users"]) => {
            let Some(u) = json.filter(Value::is_object) else {
                return error(
                    400,
                    "api.context.invalid_body_param.app_error",
                    "Invalid or missing user in request body.",
                );
            };
            let s = |k: &str| u.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let username = s("username").to_lowercase();
            let email = s("email").trim().to_lowercase();
            let password = s("password");
            if !valid_username(&username) {
                return error(400, "model.user.is_valid.username.app_error", "Invalid username.");
            }
            if !valid_email(&email) {
                return error(400, "model.user.is_valid.email.app_error", "Invalid email.");
            }
            if s("first_name").chars().count() > 64 || s("last_name").chars().count() > 64 {
                return error(
                    400,
                    "model.user.is_valid.first_name.app_error",
                    "Invalid first name.",
                );
            }
            if let Some(id) = password_error(&password, &state.password.lock().unwrap()) {
                return error(400, &id, "Your password does not meet the password requirements.");
            }
            if d.users.iter().any(|x| x.username == username) {
                return error(
                    400,
                    "app.user.save.username_exists.app_error",
                    "An account with that username already exists.",
                );
            }
            if d.users.iter().any(|x| x.email == email) {
                return error(
                    400,
                    "app.user.save.email_exists.app_error",
                    "An account with that email already exists.",
                );
            }
            let id = d.id();
            let user = User {
                id,
                username,
                email,
                first_name: s("first_name"),
                last_name: s("last_name"),
                roles: "system_user".into(),
                delete_at: 0,
                is_bot: false,
                auth_service: String::new(),
                password,
            };
            let out = user.json();
            d.users.push(user);
            reply(201, &out)
        }
        ("PUT", ["users", id, "roles"]) => {
            let roles = json
                .as_ref()
                .and_then(|j| j.get("roles"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let list: Vec<&str> = roles.split_whitespace().collect();
            if list.is_empty() || !list.iter().all(|r| ROLES.contains(r)) || list == ["system_admin"] {
                return error(
                    400,
                    "api.context.invalid_body_param.app_error",
                    "Invalid or missing roles in request body.",
                );
            }
            let Some(u) = d.users.iter_mut().find(|u| u.id == *id) else {
                return error(404, "app.user.missing_account.const", "Unable to find the user.");
            };
            u.roles = list.join(" ");
            reply(200, &json!({"status": "OK"}))
        }
        ("PUT", ["users", id, "active"]) => {
            let Some(active) = json
                .as_ref()
                .and_then(|j| j.get("active"))
                .and_then(Value::as_bool)
            else {
                return error(
                    400,
                    "api.context.invalid_body_param.app_error",
                    "Invalid or missing active in request body.",
                );
            };
            let Some(u) = d.users.iter_mut().find(|u| u.id == *id) else {
                return error(404, "app.user.missing_account.const", "Unable to find the user.");
            };
            u.delete_at = if active { 0 } else { 1 };
            reply(200, &json!({"status": "OK"}))
        }
        ("GET", ["teams", "name", name]) => match d.teams.get(*name) {
            Some((id, display)) => reply(
                200,
                &json!({"id": id, "name": name, "display_name": display, "type": "O"}),
            ),
            None => error(
                404,
                "app.team.get_by_name.missing.app_error",
                "Unable to find the existing team.",
            ),
        },
        ("POST", ["teams"]) => {
            let s = |k: &str| {
                json.as_ref()
                    .and_then(|j| j.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (name, display, kind) = (s("name"), s("display_name"), s("type"));
            if !valid_team_name(&name) {
                return error(
                    400,
                    "model.team.is_valid.url.app_error",
                    "Invalid URL Identifier.",
                );
            }
            if display.is_empty() || display.chars().count() > 64 {
                return error(400, "model.team.is_valid.name.app_error", "Invalid name.");
            }
            if kind != "O" && kind != "I" {
                return error(400, "model.team.is_valid.type.app_error", "Invalid type.");
            }
            if d.teams.contains_key(&name) {
                return error(
                    400,
                    "app.team.save.existing.app_error",
                    "A team with that name already exists.",
                );
            }
            let id = d.id();
            d.teams.insert(name.clone(), (id.clone(), display.clone()));
            reply(
                201,
                &json!({"id": id, "name": name, "display_name": display, "type": kind}),
            )
        }
        ("GET", ["teams", tid, "members"]) => {
            let page: usize = query(&uri, "page").and_then(|p| p.parse().ok()).unwrap_or(0);
            let per_page: usize = query(&uri, "per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(60)
                .min(200);
            let mut ids: Vec<&String> = d
                .members
                .iter()
                .filter(|(t, _)| t == tid)
                .map(|(_, u)| u)
                .collect();
            ids.sort();
            let list: Vec<Value> = ids
                .into_iter()
                .skip(page * per_page)
                .take(per_page)
                .map(|u| json!({"team_id": tid, "user_id": u, "roles": "team_user", "delete_at": 0}))
                .collect();
            reply(200, &Value::Array(list))
        }
        ("POST", ["teams", tid, "members", "batch"]) => {
            let Some(Value::Array(items)) = json else {
                return error(
                    400,
                    "api.context.invalid_body_param.app_error",
                    "Invalid or missing members in request body.",
                );
            };
            // MaxAddMembersBatch.
            if items.is_empty() || items.len() > 256 {
                return error(
                    400,
                    "api.context.invalid_param.app_error",
                    "Invalid members parameter.",
                );
            }
            if !d.teams.values().any(|(id, _)| id == tid) {
                return error(
                    404,
                    "app.team.get.find.app_error",
                    "Unable to find the existing team.",
                );
            }
            let mut out = Vec::new();
            let mut add = Vec::new();
            for m in &items {
                let team = m.get("team_id").and_then(Value::as_str).unwrap_or_default();
                let user = m.get("user_id").and_then(Value::as_str).unwrap_or_default();
                if team != *tid {
                    return error(
                        400,
                        "api.team.add_user_to_team.invalid_team.app_error",
                        "Invalid team id in body.",
                    );
                }
                if !d.users.iter().any(|u| u.id == user) {
                    return error(400, "app.user.missing_account.const", "Unable to find the user.");
                }
                add.push((team.to_string(), user.to_string()));
                out.push(json!({"team_id": team, "user_id": user, "roles": "team_user", "delete_at": 0}));
            }
            // As Mattermost's JoinUserToTeam: a team at TeamSettings.MaxUsersPerTeam takes nobody more.
            let members = d.members.iter().filter(|(t, _)| t == tid).count();
            let new = add.iter().filter(|m| !d.members.contains(m)).count();
            if members + new > state.max_users_per_team.load(Ordering::SeqCst) {
                return error(
                    400,
                    "app.team.join_user_to_team.max_accounts.app_error",
                    "This team has reached the maximum number of allowed accounts. Contact your System Administrator to set a higher limit.",
                );
            }
            d.members.extend(add);
            reply(201, &Value::Array(out))
        }
        _ => error(
            404,
            "api.context.404.app_error",
            "Sorry, we could not find the page.",
        ),
    }
}
