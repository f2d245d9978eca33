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

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::header::HOST;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orders_handlers::problem::Problem;
use std::net::IpAddr;
use std::sync::Arc;
use tower_http::csrf::{CsrfLayer, ProtectionError, ProtectionErrorKind};

/// Wraps the local server's router in both checks (the `Host` check first).
pub fn guard(router: Router, allowed_hosts: &[String]) -> Router {
    let allowed: Arc<[String]> = allowed_hosts.iter().map(|h| normalise(h)).collect();
    router
        .layer(CsrfLayer::new().with_rejection_response(cross_origin_refused))
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let allowed = allowed.clone();
                async move {
                    match refused_host(&req, &allowed) {
                        Some(problem) => problem.into_response(),
                        None => next.run(req).await,
                    }
                }
            },
        ))
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
         Sec-Fetch-Site headers (curl, the CLI)",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

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
