//! The api Lambda's edge: API Gateway HTTP API events (payload format 2.0) in, the axum
//! `Router` in between, API Gateway responses out.
//!
//! Requests are decoded by lambda_http (path, query string, headers, cookies, base64
//! bodies, the Lambda context as an extension). Responses are encoded here:
//! lambda_http's own response side decodes every textual body through encoding_rs to
//! honour any `charset`, which links every legacy charset's tables into the binary
//! (~155 KB of the api's 6 MB budget) for bodies this API always writes as UTF-8.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as GatewayBody;
use axum::Router;
use axum::body::Body;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, Response};
use lambda_http::RequestExt;
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use tower::ServiceExt;

/// The largest response body the API produces is a page of orders; API Gateway itself
/// refuses anything over 6 MB.
const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("not an API Gateway HTTP API event: {0}")]
    Event(#[from] serde_json::Error),
    #[error("reading the response body: {0}")]
    Body(String),
}

impl From<GatewayError> for lambda_runtime::Diagnostic {
    fn from(e: GatewayError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: "GatewayError".into(),
            error_message: e.to_string(),
        }
    }
}

/// Serves the api Lambda: `lambda_runtime::run(service_fn(|e| gateway::handle(router.clone(), e)))`.
pub async fn handle(
    router: Router,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<ApiGatewayV2httpResponse, GatewayError> {
    let request = lambda_http::request::from_str(event.payload.get())?
        .with_lambda_context(event.context)
        .map(Body::new);
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    encode(response).await
}

/// An axum response as API Gateway expects it: textual UTF-8 bodies as text, anything
/// else base64; `Set-Cookie` in `cookies` (payload 2.0 has no multi-value headers; other
/// repeated headers are joined with commas by the encoder).
pub async fn encode(response: Response<Body>) -> Result<ApiGatewayV2httpResponse, GatewayError> {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| GatewayError::Body(e.to_string()))?;
    let cookies = parts
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    parts.headers.remove(SET_COOKIE);
    let (body, is_base64_encoded) = if bytes.is_empty() {
        (None, false)
    } else if is_textual(&parts.headers) {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => (Some(GatewayBody::Text(text)), false),
            Err(e) => (Some(GatewayBody::Binary(e.into_bytes())), true),
        }
    } else {
        (Some(GatewayBody::Binary(bytes.to_vec())), true)
    };
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    out.body = body;
    out.is_base64_encoded = is_base64_encoded;
    out.cookies = cookies;
    Ok(out)
}

/// Text that API Gateway can pass through as is (the same media types lambda_http
/// treats as text); a content coding (gzip, …) makes any body binary.
fn is_textual(headers: &HeaderMap) -> bool {
    if headers.contains_key(CONTENT_ENCODING) {
        return false;
    }
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        // No type: a short text body such as a plain error.
        return true;
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media.starts_with("text/")
        || matches!(
            media.as_str(),
            "application/json" | "application/javascript" | "application/xml" | "application/yaml"
        )
        || ["+json", "+xml", "+yaml"]
            .iter()
            .any(|suffix| media.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Query;
    use axum::response::AppendHeaders;
    use axum::routing::{get, post};
    use http::{HeaderValue, StatusCode};
    use lambda_runtime::Context;
    use serde_json::{Value, json};
    use std::collections::HashMap;

    /// An API Gateway HTTP API event as the service sends it (payload format 2.0).
    fn event(method: &str, path: &str, query: &str, body: Option<(&str, bool)>) -> Value {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "cookies": ["session=abc", "theme=dark"],
            "headers": {
                "content-type": "application/json",
                "host": "abc123.execute-api.eu-west-1.amazonaws.com",
                "x-correlation-id": "corr-1"
            },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
                "domainPrefix": "abc123",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "192.0.2.1",
                    "userAgent": "test"
                },
                "requestId": "req-1",
                "routeKey": "$default",
                "stage": "$default",
                "time": "26/Nov/2026:19:00:00 +0000",
                "timeEpoch": 1_795_719_600_000_i64
            },
            "body": body.map(|(b, _)| b),
            "isBase64Encoded": body.is_some_and(|(_, b64)| b64)
        })
    }

    fn router() -> Router {
        Router::new()
            .route(
                "/orders/{id}",
                get(
                    |axum::extract::Path(id): axum::extract::Path<String>,
                     Query(q): Query<HashMap<String, String>>,
                     headers: HeaderMap| async move {
                        axum::Json(json!({
                            "id": id,
                            "query": q,
                            "cookie": headers.get("cookie").and_then(|v| v.to_str().ok()),
                            "correlation": headers.get("x-correlation-id").and_then(|v| v.to_str().ok()),
                        }))
                    },
                ),
            )
            .route(
                "/orders",
                post(|body: String| async move {
                    (
                        StatusCode::CREATED,
                        AppendHeaders([(SET_COOKIE, "a=1"), (SET_COOKIE, "b=2")]),
                        body,
                    )
                }),
            )
            .route(
                "/png",
                get(|| async { ([(CONTENT_TYPE, "image/png")], vec![0x89_u8, b'P', 0xff]) }),
            )
    }

    async fn call(event: Value) -> ApiGatewayV2httpResponse {
        let raw = RawValue::from_string(event.to_string()).expect("the test event is JSON");
        handle(router(), LambdaEvent::new(raw, Context::default()))
            .await
            .expect("the router answers")
    }

    fn text(r: &ApiGatewayV2httpResponse) -> &str {
        match &r.body {
            Some(GatewayBody::Text(t)) => t,
            other => panic!("expected a text body, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn path_query_headers_and_cookies_reach_the_router() {
        let r = call(event("GET", "/orders/o-1", "expand=lines&page=2", None)).await;
        assert_eq!(r.status_code, 200);
        assert!(!r.is_base64_encoded);
        let body: Value = serde_json::from_str(text(&r)).expect("JSON body");
        assert_eq!(body["id"], "o-1");
        assert_eq!(body["query"], json!({"expand": "lines", "page": "2"}));
        assert_eq!(body["cookie"], "session=abc; theme=dark");
        assert_eq!(body["correlation"], "corr-1");
        assert_eq!(r.headers[CONTENT_TYPE], "application/json");
    }

    #[tokio::test]
    async fn base64_request_bodies_are_decoded_and_set_cookie_goes_to_cookies() {
        // {"a":1} in base64.
        let r = call(event("POST", "/orders", "", Some(("eyJhIjoxfQ==", true)))).await;
        assert_eq!(r.status_code, 201);
        assert_eq!(text(&r), r#"{"a":1}"#);
        assert_eq!(r.cookies, vec!["a=1".to_string(), "b=2".to_string()]);
        assert!(r.headers.get(SET_COOKIE).is_none());
        let plain = call(event("POST", "/orders", "", Some((r#"{"b":2}"#, false)))).await;
        assert_eq!(text(&plain), r#"{"b":2}"#);
    }

    #[tokio::test]
    async fn binary_bodies_are_base64_and_unknown_routes_are_404() {
        let r = call(event("GET", "/png", "", None)).await;
        assert!(r.is_base64_encoded);
        assert!(matches!(&r.body, Some(GatewayBody::Binary(b)) if b == &[0x89, b'P', 0xff]));
        // The wire form API Gateway reads: base64 text.
        let wire = serde_json::to_value(&r).expect("serializable");
        assert_eq!(wire["body"], "iVD/");
        assert_eq!(wire["isBase64Encoded"], true);

        let missing = call(event("GET", "/nowhere", "", None)).await;
        assert_eq!(missing.status_code, 404);
        assert!(missing.body.is_none());
    }

    #[tokio::test]
    async fn events_of_other_services_are_refused() {
        let raw = RawValue::from_string(r#"{"Records":[]}"#.into()).expect("JSON");
        let err = handle(router(), LambdaEvent::new(raw, Context::default()))
            .await
            .expect_err("not an API Gateway event");
        assert!(err.to_string().contains("API Gateway"), "{err}");
        // What Lambda reports instead of a Rust type name.
        assert_eq!(
            lambda_runtime::Diagnostic::from(err).error_type,
            "GatewayError"
        );
    }

    #[test]
    fn text_media_types() {
        let headers = |ct: Option<&'static str>, enc: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            if let Some(enc) = enc {
                h.insert(CONTENT_ENCODING, HeaderValue::from_static(enc));
            }
            h
        };
        for ct in [
            "application/json",
            "application/problem+json",
            "text/html; charset=utf-8",
            "application/yaml",
            "image/svg+xml",
        ] {
            assert!(is_textual(&headers(Some(ct), None)), "{ct}");
        }
        assert!(is_textual(&headers(None, None)));
        for ct in ["image/png", "application/octet-stream", "application/zip"] {
            assert!(!is_textual(&headers(Some(ct), None)), "{ct}");
        }
        assert!(!is_textual(&headers(
            Some("application/json"),
            Some("gzip")
        )));
    }
}
