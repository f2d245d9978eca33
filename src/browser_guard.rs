//! What a web page in the user's browser may ask of the local server. `orders serve`
//! listens on the user's own machine, so any page the user visits can send it requests:
//! - **DNS rebinding**: a page on `evil.example`, whose name then resolves to 127.0.0.1,
//!   would read the API and the console as its own origin. Refused by the `Host` check: an
//!   IP address, `localhost` (or a name under it), or a name given with `--allowed-host`.
//! - **Cross-site request forgery**: a page posting a console form (a redrive) or an API
//!   command from another origin. Refused by `tower_http::csrf` (`Sec-Fetch-Site`, then
//!   `Origin` against `Host`), the scheme Go 1.25 introduced; no tokens to keep.
//!
//! Clients that are not browsers (curl, the CLI, the SDKs, newman) send neither
//! `Sec-Fetch-Site` nor `Origin` and use the address they were given, so they pass.
//! Only the local server has this guard: on AWS, API Gateway is the edge.
//!
//! A web front-end in development (a shop served on `http://localhost:5173`, say) is
//! another origin: `--allow-origin` trusts it past the CSRF check and answers its
//! requests with CORS headers, as the template's `AllowedOrigin` does on AWS.

use axum::Router;
use axum::extract::Request;
use axum::http::header::HOST;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orders_handlers::problem::Problem;
use std::net::IpAddr;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::csrf::{CsrfLayer, ProtectionError, ProtectionErrorKind};

/// What the API lets a browser page of an allowed origin send and read: the headers of
/// the API's contract (openapi.yaml).
pub const CORS_REQUEST_HEADERS: [&str; 6] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "x-correlation-id",
    "x-request-id",
];
pub const CORS_RESPONSE_HEADERS: [&str; 4] = [
    "etag",
    "location",
    "x-correlation-id",
    "idempotent-replayed",
];
/// How long a browser may reuse a preflight answer.
const CORS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// An origin as browsers send it (`scheme://host[:port]`, lowercase, no path), from what a
/// user typed (a trailing `/` is forgiven).
pub fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let uri = origin
        .parse::<axum::http::Uri>()
        .map_err(|e| format!("`{text}` is not an origin: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    if !scheme_ok || uri.host().is_none() || !bare || origin.contains('?') {
        return Err(format!(
            "`{text}` is not an origin: give scheme, host and port only, such as http://localhost:5173"
        ));
    }
    Ok(origin)
}

/// Wraps the local server's router in its checks: the `Host` check first, then CORS for
/// the `allowed_origins` (preflights are answered there), then the CSRF check, which
/// trusts those origins.
pub fn guard(
    router: Router,
    allowed_hosts: &[String],
    allowed_origins: &[String],
) -> anyhow::Result<Router> {
    let allowed: Arc<[String]> = allowed_hosts.iter().map(|h| normalise(h)).collect();
    let mut csrf = CsrfLayer::new();
    for origin in allowed_origins {
        csrf = csrf
            .add_trusted_origin(origin)
            .map_err(|e| anyhow::anyhow!("--allow-origin {origin}: {e}"))?;
    }
    let router = router.layer(csrf.with_rejection_response(cross_origin_refused));
    let router = if allowed_origins.is_empty() {
        router
    } else {
        let values = allowed_origins
            .iter()
            .map(|o| HeaderValue::from_str(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--allow-origin: {e}"))?;
        router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(values))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers(CORS_REQUEST_HEADERS.map(HeaderName::from_static))
                .expose_headers(CORS_RESPONSE_HEADERS.map(HeaderName::from_static))
                .max_age(CORS_MAX_AGE),
        )
    };
    Ok(router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let allowed = allowed.clone();
            async move {
                match refused_host(&req, &allowed) {
                    Some(problem) => problem.into_response(),
                    None => next.run(req).await,
                }
            }
        },
    )))
}

/// The problem for a request whose `Host` names another site, if it does.
fn refused_host(req: &Request, allowed: &[String]) -> Option<Problem> {
    // HTTP/2 and absolute-form requests carry the authority in the target.
    let authority = match req.uri().authority() {
        Some(a) => a.as_str().to_string(),
        None => {
            // No Host at all (HTTP/1.0): not a browser.
            let value = req.headers().get(HOST)?;
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        }
    };
    let host = authority
        .parse::<axum::http::uri::Authority>()
        .map(|a| a.host().to_string())
        .unwrap_or_else(|_| authority.clone());
    if host_allowed(&host, allowed) {
        return None;
    }
    let shown = host.trim();
    Some(Problem::field(
        StatusCode::FORBIDDEN,
        "host-not-allowed",
        "Host not allowed",
        "Host",
        format!(
            "`{shown}` is not a name this local server answers to (a web page could reach it \
             by DNS rebinding); use 127.0.0.1 or localhost, or start it with --allowed-host {shown}"
        ),
    ))
}

/// An IP address, `localhost` or a name under it, or one of `allowed` (case and a
/// trailing dot aside). An IP address in `Host` means the browser was given the address,
/// so no DNS answer can have been swapped under it.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = normalise(host);
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host.as_str());
    bare.parse::<IpAddr>().is_ok()
        || host == "localhost"
        || host.ends_with(".localhost")
        || allowed.contains(&host)
}

fn normalise(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The problem for a cross-origin request that would change something.
fn cross_origin_refused(error: ProtectionError) -> Response {
    let field = match error.kind() {
        ProtectionErrorKind::CrossOriginRequest => "Sec-Fetch-Site",
        _ => "Origin",
    };
    Problem::field(
        StatusCode::FORBIDDEN,
        "cross-origin-request",
        "Cross-origin request refused",
        field,
        "a page from another origin cannot change anything on this local server (CSRF \
         protection); send the request from the console itself, or without Origin and \
         Sec-Fetch-Site headers (curl, the CLI), or start the server with --allow-origin \
         <that page's origin>",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::{host_allowed, parse_origin};

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_origin("http://LocalHost:5173/"),
            Ok("http://localhost:5173".to_string())
        );
        assert_eq!(
            parse_origin("https://shop.example"),
            Ok("https://shop.example".to_string())
        );
        for bad in [
            "localhost:5173",
            "ftp://shop.example",
            "https://shop.example/app",
            "https://shop.example?x=1",
            "",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn addresses_and_localhost_pass_and_other_names_only_when_allowed() {
        let allowed = vec!["orders.internal".to_string()];
        for ok in [
            "127.0.0.1",
            "10.1.2.3",
            "[::1]",
            "localhost",
            "LocalHost.",
            "app.localhost",
            "orders.internal",
            "Orders.Internal.",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok} should pass");
        }
        for refused in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "orders.internal.evil.example",
            "",
            "[not-an-ip]",
        ] {
            assert!(
                !host_allowed(refused, &allowed),
                "{refused} should be refused"
            );
        }
    }
}
