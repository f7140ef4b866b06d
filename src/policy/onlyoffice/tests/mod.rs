//! Unit tests of the ONLYOFFICE JWT relay, by area: moving the token between headers (`relay`),
//! verifying it (`verify`) and loading the shared secret (`secret`). The fixtures below sign real
//! tokens the way the Document Server does and build the requests it sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use pingora_http::RequestHeader;
use serde_json::Value;
use sha2::{Sha256, Sha384, Sha512};

use super::{Algorithm, RelayRule, Verifier};

mod relay;
mod secret;
mod verify;

const SECRET: &[u8] = b"s3cr3t-shared-with-the-document-server";
const FILE_ID: &str = "8bq3n1wdm7yr5jz6tk4e9xgahp";
const DOWNLOAD: &str = "/plugins/com.onlyoffice.mattermost/api/download";
const CALLBACK: &str = "/plugins/com.onlyoffice.mattermost/api/callback";
const NOW: u64 = 1_750_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sign `claims` with `alg` (any string, so tests can forge headers) and `secret`.
fn sign_with(alg: &str, secret: &[u8], claims: &Value) -> String {
    let header = serde_json::json!({ "alg": alg, "typ": "JWT" });
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = match alg {
        "HS384" => {
            let mut m = <Hmac<Sha384> as Mac>::new_from_slice(secret).unwrap();
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        "HS512" => {
            let mut m = <Hmac<Sha512> as Mac>::new_from_slice(secret).unwrap();
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        "none" => Vec::new(),
        _ => {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
    };
    format!("{input}.{}", b64(&sig))
}

/// The Document Server's outbox token for downloading `id`, expiring at `exp`.
fn download_token(id: &str, exp: u64) -> String {
    let url = format!("https://chat.example.com{DOWNLOAD}?id={id}");
    sign_with(
        "HS256",
        SECRET,
        &serde_json::json!({ "payload": { "url": url }, "exp": exp, "iat": exp - 300 }),
    )
}

fn valid_token() -> String {
    download_token(FILE_ID, NOW + 240)
}

fn verifying_rule() -> RelayRule {
    RelayRule::mattermost().with_verifier(Verifier::new(Algorithm::HS256, SECRET.to_vec()).unwrap())
}

fn request(method: &str, path_and_query: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, path_and_query.as_bytes(), None).unwrap();
    for (name, value) in headers {
        req.append_header(*name, *value).unwrap();
    }
    req
}

fn download_request(auth: &str) -> RequestHeader {
    request(
        "GET",
        &format!("{DOWNLOAD}?id={FILE_ID}"),
        &[("Authorization", auth)],
    )
}

fn header<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers.get(name).map(|v| v.to_str().unwrap())
}

fn wire(req: &RequestHeader) -> String {
    let mut buf = Vec::new();
    req.header_to_h1_wire(&mut buf);
    String::from_utf8(buf).unwrap()
}
