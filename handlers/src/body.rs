//! The request-body codec: content type, size limit and JSON decoding with the path of
//! the offending field, so a wrong type or an unknown field is reported by name.

use crate::problem::Problem;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

/// Bodies above this size are refused before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn require_json_content_type(headers: &HeaderMap) -> Result<(), Problem> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(Problem::field(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "Content-Type",
            if ct.is_empty() {
                "must be application/json (it is missing)".to_string()
            } else {
                format!("must be application/json, not `{ct}`")
            },
        ))
    }
}

pub fn too_large() -> Problem {
    Problem::field(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        "body",
        format!("must be at most {MAX_BODY_BYTES} bytes"),
    )
}

/// Decodes JSON, naming the field on a type error or unknown field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    match result {
        Ok(v) => Ok(v),
        Err(e) => {
            let inner = e.inner();
            let path = e.path().to_string();
            match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    Err(Problem::field(
                        StatusCode::BAD_REQUEST,
                        "malformed-json",
                        "Malformed JSON",
                        "body",
                        format!("is not valid JSON: {inner}"),
                    ))
                }
                _ => {
                    let message = strip_position(&inner.to_string());
                    let field = field_of(&path, &message);
                    Err(Problem::field(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-field",
                        "The request is not valid",
                        &field,
                        message,
                    ))
                }
            }
        }
    }
}

/// serde names an unknown field in its message; the path stops at its parent.
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(name) = rest.split('`').next()
    {
        return if parent.is_empty() {
            name.to_string()
        } else if parent.ends_with(name) {
            parent.to_string()
        } else {
            format!("{parent}.{name}")
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(name) = rest.split('`').next()
    {
        return if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        };
    }
    if parent.is_empty() {
        "body".to_string()
    } else {
        parent.to_string()
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        items: Vec<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        quantity: i64,
    }

    fn field(body: &str) -> (u16, Option<String>) {
        let p = decode::<Outer>(body.as_bytes()).unwrap_err();
        (p.status, p.field.clone())
    }

    #[test]
    fn names_the_field_of_each_kind_of_error() {
        assert_eq!(field("{"), (400, Some("body".into())));
        assert_eq!(
            field(r#"{"items":[{"quantity":"2"}]}"#),
            (422, Some("items[0].quantity".into()))
        );
        assert_eq!(
            field(r#"{"items":[{"quantity":1.5}]}"#),
            (422, Some("items[0].quantity".into()))
        );
        assert_eq!(
            field(r#"{"items":[{"quantity":1,"colour":"red"}]}"#),
            (422, Some("items[0].colour".into()))
        );
        assert_eq!(
            field(r#"{"items":[{}]}"#),
            (422, Some("items[0].quantity".into()))
        );
        assert_eq!(field(r#"{}"#), (422, Some("items".into())));
        assert_eq!(field(r#"[]"#), (422, Some("body".into())));
    }
}
