//! The push-proxy wire format (spec/push-relay.md): validating Mattermost's `PushNotification` JSON,
//! the answers it expects, and the privacy ceiling.
//!
//! The body is kept as a JSON object (field order preserved), not a struct: unknown fields must reach
//! an upstream push proxy untouched. Answers are maps of strings only: a number or `null` in them
//! breaks Mattermost's decoder.

use serde_json::{Map, Value};

/// Longest `message` the reference proxy forwards (it cuts at 2046 bytes when over 2047).
pub const MAX_MESSAGE: usize = 2046;
/// Longest `channel_name` forwarded.
pub const MAX_CHANNEL_NAME: usize = 64;

/// What the relay answers Mattermost (always HTTP 200 unless rate limited or malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ok,
    /// The device token is no longer valid: Mattermost forgets it.
    Remove,
    Fail(String),
}

impl Answer {
    pub fn to_json(&self) -> String {
        match self {
            Answer::Ok => r#"{"status":"OK"}"#.to_string(),
            Answer::Remove => r#"{"status":"REMOVE"}"#.to_string(),
            Answer::Fail(e) => serde_json::json!({ "status": "FAIL", "error": e }).to_string(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::Remove => "remove",
            Answer::Fail(_) => "fail",
        }
    }
}

/// How much of a notification may leave the site, whatever Mattermost was configured to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// As Mattermost sent it.
    Full,
    /// No message text: a generic sentence instead.
    Generic,
    /// Only ids: no message, sender or channel names; the app fetches the post itself.
    IdOnly,
}

/// The sentence that replaces message text under the `generic` ceiling.
pub const GENERIC_MESSAGE: &str = "You have a new message.";

/// A validated notification.
#[derive(Debug, Clone)]
pub struct Notification {
    pub fields: Map<String, Value>,
    /// `platform` with any `-vN` suffix removed, for routing.
    pub platform: String,
}

fn str_field<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `apple_rn-v2` -> `apple_rn`.
pub fn base_platform(p: &str) -> &str {
    match p.rsplit_once("-v") {
        Some((base, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => p,
    }
}

/// Why a `send_push` or `ack` body was refused (answered 400 with this text, which tells the
/// sender which field to fix).
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("missing {0}")]
    Missing(&'static str),
}

impl Notification {
    /// Parse and validate a `send_push` body (no Content-Type needed: it is JSON whatever it says).
    pub fn parse(body: &[u8]) -> Result<Notification, BadRequest> {
        let value: Value = serde_json::from_slice(body)?;
        let Value::Object(mut fields) = value else {
            return Err(BadRequest::NotAnObject);
        };
        if str_field(&fields, "server_id").is_empty() {
            return Err(BadRequest::Missing("server_id"));
        }
        if str_field(&fields, "device_id").is_empty() {
            return Err(BadRequest::Missing("device_id"));
        }
        let platform = base_platform(str_field(&fields, "platform")).to_string();
        if platform.is_empty() {
            return Err(BadRequest::Missing("platform"));
        }
        for (key, max) in [("message", MAX_MESSAGE), ("channel_name", MAX_CHANNEL_NAME)] {
            if let Some(Value::String(s)) = fields.get(key) {
                if s.len() > max {
                    let short = cut(s, max).to_string();
                    fields.insert(key.to_string(), Value::String(short));
                }
            }
        }
        Ok(Notification { fields, platform })
    }

    pub fn get(&self, k: &str) -> &str {
        str_field(&self.fields, k)
    }

    pub fn get_bool(&self, k: &str) -> bool {
        match self.fields.get(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            _ => false,
        }
    }

    pub fn get_int(&self, k: &str) -> Option<i64> {
        match self.fields.get(k) {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }

    /// The notification `type`, as a bounded metrics label.
    pub fn kind(&self) -> &'static str {
        match self.get("type") {
            "message" => "message",
            "clear" => "clear",
            "update_badge" => "update_badge",
            "session" => "session",
            "test" => "test",
            _ => "other",
        }
    }

    /// Apply the privacy ceiling. Never adds content; only removes it.
    pub fn limit(&mut self, contents: Contents) {
        let carries_text = !self.get("message").is_empty();
        match contents {
            Contents::Full => {}
            Contents::Generic => {
                if carries_text {
                    self.fields
                        .insert("message".into(), Value::String(GENERIC_MESSAGE.into()));
                }
            }
            Contents::IdOnly => {
                for k in [
                    "message",
                    "sender_name",
                    "channel_name",
                    "override_username",
                    "override_icon_url",
                ] {
                    self.fields.remove(k);
                }
                self.fields.insert("is_id_loaded".into(), Value::Bool(true));
            }
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fields).unwrap_or_default()
    }
}

/// Validate an ack body (`id`, `platform`, `type` required).
pub fn parse_ack(body: &[u8]) -> Result<Map<String, Value>, BadRequest> {
    let value: Value = serde_json::from_slice(body)?;
    let Value::Object(fields) = value else {
        return Err(BadRequest::NotAnObject);
    };
    for k in ["id", "platform", "type"] {
        if str_field(&fields, k).is_empty() {
            return Err(BadRequest::Missing(k));
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MM: &str = r#"{"ack_id":"a1","platform":"apple_rn-v2","server_id":"s1","device_id":"d1","post_id":"p1",
        "category":"CAN_REPLY","sound":"default","message":"hello","badge":3,"team_id":"t1","channel_id":"c1",
        "root_id":"","channel_name":"Town Square","type":"message","sender_id":"u1","sender_name":"alice",
        "version":"v2","is_crt_enabled":false,"is_id_loaded":false,"signature":"sig","future_field":{"x":1}}"#;

    #[test]
    fn parses_mattermost_body_and_keeps_unknown_fields() {
        let n = Notification::parse(MM.as_bytes()).unwrap();
        assert_eq!(n.platform, "apple_rn");
        assert_eq!(n.get("message"), "hello");
        assert_eq!(n.get_int("badge"), Some(3));
        let out: Value = serde_json::from_slice(&n.to_json()).unwrap();
        assert_eq!(out["future_field"]["x"], 1);
        // Field order preserved.
        let keys: Vec<&String> = n.fields.keys().take(3).collect();
        assert_eq!(keys, ["ack_id", "platform", "server_id"]);
    }

    #[test]
    fn validation_and_truncation() {
        assert_eq!(
            Notification::parse(b"{")
                .unwrap_err()
                .to_string()
                .split(':')
                .next(),
            Some("malformed JSON")
        );
        assert_eq!(
            Notification::parse(b"[]").unwrap_err().to_string(),
            "the body must be a JSON object"
        );
        assert_eq!(
            Notification::parse(br#"{"device_id":"d","platform":"apple"}"#)
                .unwrap_err()
                .to_string(),
            "missing server_id"
        );
        assert_eq!(
            Notification::parse(br#"{"server_id":"s","platform":"apple"}"#)
                .unwrap_err()
                .to_string(),
            "missing device_id"
        );
        let long = format!(
            r#"{{"server_id":"s","device_id":"d","platform":"apple","message":"{}","channel_name":"{}"}}"#,
            "é".repeat(1500),
            "x".repeat(100)
        );
        let n = Notification::parse(long.as_bytes()).unwrap();
        assert!(n.get("message").len() <= MAX_MESSAGE && n.get("message").len() >= MAX_MESSAGE - 1);
        assert_eq!(n.get("channel_name").len(), MAX_CHANNEL_NAME);
    }

    #[test]
    fn privacy_ceiling() {
        let mut n = Notification::parse(MM.as_bytes()).unwrap();
        n.limit(Contents::Generic);
        assert_eq!(n.get("message"), GENERIC_MESSAGE);
        assert_eq!(n.get("sender_name"), "alice");
        let mut n = Notification::parse(MM.as_bytes()).unwrap();
        n.limit(Contents::IdOnly);
        for k in ["message", "sender_name", "channel_name"] {
            assert!(!n.fields.contains_key(k), "{k}");
        }
        assert!(n.get_bool("is_id_loaded"));
    }

    #[test]
    fn answers_are_string_maps() {
        assert_eq!(Answer::Ok.to_json(), r#"{"status":"OK"}"#);
        assert_eq!(Answer::Remove.to_json(), r#"{"status":"REMOVE"}"#);
        let v: Map<String, Value> =
            serde_json::from_str(&Answer::Fail("bad \"x\"".into()).to_json()).unwrap();
        assert!(v.values().all(Value::is_string));
    }

    #[test]
    fn platform_suffix() {
        assert_eq!(base_platform("android_rn-v2"), "android_rn");
        assert_eq!(base_platform("apple"), "apple");
        assert_eq!(base_platform("apple-vx"), "apple-vx");
    }
}
