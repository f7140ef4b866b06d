//! Request framing: one `Content-Length` value, whatever the client sent.
//!
//! RFC 9110 section 8.6 lets a recipient accept `Content-Length: 5, 5` or the header twice with the
//! same value, as one length. pingora frames the body that way, but would forward the header as sent,
//! and an upstream that reads the list differently (the first value, the last, or an error) is how
//! request smuggling starts. So the proxy sends exactly one value upstream, and refuses (400) a
//! request whose values disagree or are not numbers.

use http::header::CONTENT_LENGTH;
use http::HeaderValue;
use pingora_http::RequestHeader;

/// The request's `Content-Length` framing is unusable: values that disagree, or not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ambiguous or invalid Content-Length")]
pub struct BadLength;

/// The declared body length: `None` without the header, one value for identical repeats.
pub fn content_length(req: &RequestHeader) -> Result<Option<u64>, BadLength> {
    let mut found = None;
    for value in req.headers.get_all(CONTENT_LENGTH) {
        let text = std::str::from_utf8(value.as_bytes()).map_err(|_| BadLength)?;
        for part in text.split(',') {
            let part = part.trim_matches([' ', '\t']);
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadLength);
            }
            let n: u64 = part.parse().map_err(|_| BadLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(BadLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Check the framing and leave exactly one canonical `Content-Length` on `req` (untouched, without
/// allocating, when it already is). Returns the length.
pub fn normalize_content_length(req: &mut RequestHeader) -> Result<Option<u64>, BadLength> {
    let n = content_length(req)?;
    if let Some(n) = n {
        let mut values = req.headers.get_all(CONTENT_LENGTH).iter();
        let canonical = match (values.next(), values.next()) {
            (Some(v), None) => v.as_bytes().iter().all(u8::is_ascii_digit),
            _ => false,
        };
        if !canonical {
            req.insert_header(CONTENT_LENGTH, HeaderValue::from(n))
                .map_err(|_| BadLength)?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(values: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for v in values {
            r.append_header(CONTENT_LENGTH, *v).unwrap();
        }
        r
    }

    fn wire(r: &RequestHeader) -> Vec<String> {
        r.headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn repeated_identical_values_become_one() {
        for values in [&["5, 5"][..], &["5", "5"], &["5,5", "5"], &[" 5 ,\t5 "], &["5"]] {
            let mut r = req(values);
            assert_eq!(normalize_content_length(&mut r), Ok(Some(5)), "{values:?}");
            assert_eq!(wire(&r), ["5"], "{values:?}");
        }
    }

    #[test]
    fn disagreeing_or_invalid_values_are_refused() {
        for values in [
            &["5, 6"][..],
            &["5", "6"],
            &["5,"],
            &[",5"],
            &["-5"],
            &["+5"],
            &["0x5"],
            &["5 5"],
            &["99999999999999999999999"],
            &[""],
        ] {
            assert_eq!(
                normalize_content_length(&mut req(values)),
                Err(BadLength),
                "{values:?}"
            );
        }
    }

    #[test]
    fn absent_is_none_and_untouched() {
        let mut r = req(&[]);
        assert_eq!(normalize_content_length(&mut r), Ok(None));
        assert!(wire(&r).is_empty());
    }
}
