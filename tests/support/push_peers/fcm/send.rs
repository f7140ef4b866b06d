//! FCM HTTP v1 `messages:send`: the body checked field by field as FCM does.

use super::*;

/// Google's error body: `{"error":{"code","message","status","details"?}}`.
pub(super) fn google_error(code: u16, status: &str, message: &str, fcm_code: Option<&str>) -> Value {
    let mut error = json!({ "code": code, "message": message, "status": status });
    if let Some(fcm_code) = fcm_code {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": fcm_code,
        }]);
    }
    json!({ "error": error })
}

const MESSAGE_FIELDS: &[&str] = &[
    "name",
    "data",
    "notification",
    "android",
    "webpush",
    "apns",
    "fcm_options",
    "fcmOptions",
    "token",
    "topic",
    "condition",
];
const ANDROID_FIELDS: &[&str] = &[
    "collapse_key",
    "collapseKey",
    "priority",
    "ttl",
    "restricted_package_name",
    "restrictedPackageName",
    "data",
    "notification",
    "fcm_options",
    "fcmOptions",
    "direct_boot_ok",
    "directBootOk",
    "bandwidth_constrained_ok",
    "bandwidthConstrainedOk",
    "restricted_satellite_ok",
    "restrictedSatelliteOk",
];

fn unknown_field(obj: &serde_json::Map<String, Value>, known: &[&str], at: &str) -> Result<(), String> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
        )),
        None => Ok(()),
    }
}

/// FCM's validation of a send request: Err(message) answers 400 INVALID_ARGUMENT.
fn validate_fcm_body(body: &Value) -> Result<(), String> {
    let top = body
        .as_object()
        .ok_or("Invalid JSON payload received. Expected an object.")?;
    unknown_field(top, &["message", "validate_only", "validateOnly"], "")?;
    let msg = top
        .get("message")
        .and_then(Value::as_object)
        .ok_or("Invalid JSON payload received. 'message' must be an object.")?;
    unknown_field(msg, MESSAGE_FIELDS, "message")?;
    let targets: Vec<&str> = ["token", "topic", "condition"]
        .into_iter()
        .filter(|t| msg.contains_key(*t))
        .collect();
    match targets[..] {
        [] => return Err("Recipient of the message is not set.".into()),
        [_] => {}
        [..] => {
            return Err(format!(
                "Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot set '{}'",
                targets[1]
            ))
        }
    }
    if let Some(t) = msg.get("token") {
        if t.as_str().is_none_or(str::is_empty) {
            return Err("The registration token is not a valid FCM registration token".into());
        }
    }
    let check_data = |data: Option<&Value>, at: &str| -> Result<usize, String> {
        let Some(data) = data else { return Ok(0) };
        let map = data
            .as_object()
            .ok_or_else(|| format!("Invalid value at '{at}' (map), {data}"))?;
        let mut size = 0;
        for (i, (k, v)) in map.iter().enumerate() {
            let Some(v) = v.as_str() else {
                return Err(format!("Invalid value at '{at}[{i}].value' (TYPE_STRING), {v}"));
            };
            let reserved = ["from", "notification", "message_type"].contains(&k.as_str())
                || k.starts_with("google.")
                || k.starts_with("gcm.");
            if reserved {
                return Err(format!("Invalid data payload key: {k}"));
            }
            size += k.len() + v.len();
        }
        Ok(size)
    };
    let mut size = check_data(msg.get("data"), "message.data")?;
    if let Some(android) = msg.get("android") {
        let android = android
            .as_object()
            .ok_or("Invalid value at 'message.android': must be an object")?;
        unknown_field(android, ANDROID_FIELDS, "message.android")?;
        if let Some(p) = android.get("priority") {
            let ok = p
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case("normal") || p.eq_ignore_ascii_case("high"));
            if !ok {
                return Err(format!(
                    "Invalid value at 'message.android.priority' \
                     (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {p}"
                ));
            }
        }
        size += check_data(android.get("data"), "message.android.data")?;
    }
    if size > 4096 {
        return Err("Android message is too big".into());
    }
    Ok(())
}

pub(super) async fn fcm_send(
    st: Arc<FcmShared>,
    closed: watch::Receiver<()>,
    project: String,
    parts: hyper::http::request::Parts,
    raw: Bytes,
) -> Response<Body> {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let msg = &body["message"];
    let token = msg["token"].as_str().unwrap_or("").to_string();
    let (mut data, mut data_all_strings) = (BTreeMap::new(), true);
    if let Some(map) = msg["data"].as_object() {
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s.clone(),
                other => {
                    data_all_strings = false;
                    other.to_string()
                }
            };
            data.insert(k.clone(), v);
        }
    }

    let account = auth_credentials(&parts.headers, "bearer").ok().and_then(|t| {
        let mut tokens = st.tokens.lock().unwrap();
        match tokens.get(t) {
            Some((email, expiry)) if *expiry > Instant::now() => Some(email.clone()),
            Some(_) => {
                tokens.remove(t);
                None
            }
            None => None,
        }
    });
    let authorized = account
        .as_ref()
        .is_some_and(|email| st.accounts.lock().unwrap().get(email) == Some(&project));

    let mut wait = None;
    let (status, answer) = if account.is_none() {
        let m = "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
                 cookie or other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project.";
        (401, google_error(401, "UNAUTHENTICATED", m, None))
    } else if !authorized {
        let m = format!(
            "Permission 'cloudmessaging.messages.create' denied on resource \
             '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
        );
        (403, google_error(403, "PERMISSION_DENIED", &m, None))
    } else if let Err(m) = validate_fcm_body(&body) {
        (
            400,
            google_error(400, "INVALID_ARGUMENT", &m, Some("INVALID_ARGUMENT")),
        )
    } else {
        let ok = || {
            let id = st.next_id.fetch_add(1, Ordering::SeqCst);
            (
                200,
                json!({ "name": format!("projects/{project}/messages/{id}") }),
            )
        };
        let mut behaviours = st.behaviours.lock().unwrap();
        match behaviours.get_mut(&token) {
            None | Some(FcmBehaviour::Ok) => ok(),
            Some(FcmBehaviour::Unregistered) => (
                404,
                google_error(
                    404,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                    Some("UNREGISTERED"),
                ),
            ),
            Some(FcmBehaviour::SenderIdMismatch) => (
                403,
                google_error(
                    403,
                    "PERMISSION_DENIED",
                    "SenderId mismatch",
                    Some("SENDER_ID_MISMATCH"),
                ),
            ),
            Some(FcmBehaviour::FailTimes(n, s)) if *n > 0 => {
                *n -= 1;
                let (status, code, m) = match *s {
                    503 => (
                        "UNAVAILABLE",
                        "UNAVAILABLE",
                        "The service is currently unavailable.",
                    ),
                    429 => (
                        "RESOURCE_EXHAUSTED",
                        "QUOTA_EXCEEDED",
                        "Quota exceeded for quota metric 'Send messages'.",
                    ),
                    _ => ("INTERNAL", "INTERNAL", "Internal error encountered."),
                };
                (*s, google_error(*s, status, m, Some(code)))
            }
            Some(FcmBehaviour::FailTimes(..)) => ok(),
            Some(FcmBehaviour::Delay(d)) => {
                wait = Some(*d);
                ok()
            }
        }
    };
    st.messages.lock().unwrap().push(FcmMessage {
        project,
        token,
        data,
        data_all_strings,
        android_priority: msg["android"]["priority"].as_str().map(str::to_string),
        body: body.clone(),
        headers: header_map(&parts.headers),
        authorized,
        status,
        error: answer["error"]["message"].as_str().map(str::to_string),
    });
    if let Some(d) = wait {
        if !delay(d, closed).await {
            let e = google_error(
                503,
                "UNAVAILABLE",
                "The service is shutting down.",
                Some("UNAVAILABLE"),
            );
            return json_response(503, &e);
        }
    }
    let mut resp = json_response(status, &answer);
    if status == 401 {
        resp.headers_mut().insert(
            "www-authenticate",
            "Bearer realm=\"https://accounts.google.com/\"".parse().unwrap(),
        );
    }
    resp
}
