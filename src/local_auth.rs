//! `orders serve --auth`: the local stand-in for the deployed stack's API Gateway
//! authorizers, so that the API's access rules (`orders_handlers::caller`) can be tried
//! before deploying. Tokens are HS256 JWTs signed with a key kept in the data dir
//! (`auth.key`, made on first use) and minted by `orders token`. A customer's token says
//! who they are in `sub` (and, with `--email`, a verified address, as Cognito's ID tokens
//! do); a warehouse or back-office token stands in for a SigV4 signature by that IAM
//! principal, and like its IAM policy on AWS (`WarehousePolicy`, `ReportsPolicy`) it
//! reaches one route: the ship route, or the sales report. What the API sees is what API
//! Gateway would hand it: the claims (as strings) or the signing principal in the request
//! context; what it refuses, it refuses with API Gateway's own answers.

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const KEY_FILE: &str = "auth.key";
const ISSUER: &str = "orders-serve";
const AUDIENCE: &str = "orders-api";
/// The claim that makes a token a signed principal's: the warehouse's or the back office's.
const ROLE_CLAIM: &str = "orders:role";

/// An IAM principal a token can stand for, and the one route its policy allows.
struct Role {
    claim: &'static str,
    /// What `userArn` would hold on AWS.
    principal: &'static str,
    method: Method,
    /// The route's path, `*` for one segment.
    route: &'static str,
}

const ROLES: [Role; 2] = [
    Role {
        claim: "warehouse",
        principal: "arn:aws:iam::123456789012:role/orders-warehouse",
        method: Method::POST,
        route: "/orders/*/ship",
    },
    Role {
        claim: "back-office",
        principal: "arn:aws:iam::123456789012:role/orders-back-office",
        method: Method::GET,
        route: "/sales/daily",
    },
];

impl Role {
    fn allows(&self, method: &Method, path: &str) -> bool {
        let (mut want, mut got) = (self.route.split('/'), path.split('/'));
        method == self.method
            && loop {
                match (want.next(), got.next()) {
                    (None, None) => break true,
                    (Some("*"), Some(seg)) if !seg.is_empty() => {}
                    (Some(w), Some(g)) if w == g => {}
                    _ => break false,
                }
            }
    }
}

/// Who a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    Customer {
        id: String,
        email: Option<String>,
    },
    /// Stands in for the warehouse's IAM principal: the ship route only.
    Warehouse,
    /// Stands in for the back office's IAM principal: the sales report only.
    BackOffice,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(rename = "orders:role", skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// The data dir's signing key.
pub struct Key(Vec<u8>);

impl Key {
    /// Reads `<data_dir>/auth.key`, or makes one (readable by its owner only).
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Key> {
        let path = data_dir.join(KEY_FILE);
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut file) => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
                file.write_all(hex.as_bytes())
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            // Made before (or by a concurrent first use): read it.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let text = text.trim();
        anyhow::ensure!(
            text.len() >= 32,
            "{} holds no signing key: remove it to make a new one",
            path.display()
        );
        Ok(Key(text.as_bytes().to_vec()))
    }

    /// A token for `holder`, valid for `ttl`.
    pub fn mint(&self, holder: &Holder, ttl: Duration) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        let (sub, email, role) = match holder {
            Holder::Customer { id, email } => (id.clone(), email.clone(), None),
            Holder::Warehouse => role_claims(&ROLES[0]),
            Holder::BackOffice => role_claims(&ROLES[1]),
        };
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub,
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            email_verified: email.as_ref().map(|_| true),
            email,
            role,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.0),
        )
        .context("signing the token")
    }

    /// The verified claims of a token, or why it is refused.
    fn verify(&self, token: &str) -> Result<Map<String, Value>, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        // One process's clock signs and checks: no skew to forgive.
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &DecodingKey::from_secret(&self.0),
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
    }
}

/// Puts the authorizers in front of the API's order routes (`/health` stays public, as
/// on AWS). A request without a valid token gets API Gateway's own answer: 401
/// `{"message":"Unauthorized"}`.
pub fn guard(api: Router, key: Arc<Key>) -> Router {
    api.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let key = key.clone();
            async move { authorize(&key, req, next).await }
        },
    ))
}

async fn authorize(key: &Key, mut req: Request, next: Next) -> Response {
    // The routes behind an authorizer on AWS: all but /health (and the console, which is
    // local only).
    let path = req.uri().path();
    if path != "/orders" && !path.starts_with("/orders/") && !path.starts_with("/sales/") {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let verified = match token {
        None => Err("no bearer token".to_string()),
        Some(t) => key.verify(t),
    };
    let claims = match verified {
        Ok(claims) => claims,
        Err(why) => {
            tracing::debug!(reason = %why, "request refused by the local authorizer");
            return unauthorized();
        }
    };
    let role = claims
        .get(ROLE_CLAIM)
        .and_then(Value::as_str)
        .map(|claim| ROLES.iter().find(|r| r.claim == claim));
    let context = match role {
        None => orders_handlers::caller::verified_token(as_strings(claims)),
        Some(Some(role)) if role.allows(req.method(), req.uri().path()) => {
            orders_handlers::caller::signed_call(role.principal)
        }
        // A route IAM guards, not in this principal's policy: API Gateway's 403.
        Some(Some(role))
            if ROLES
                .iter()
                .any(|r| r.allows(req.method(), req.uri().path())) =>
        {
            return not_authorized(role.principal, req.method(), req.uri().path());
        }
        // A customer's route wants a customer's token: a signature carries none. (An
        // unknown role is not one this server mints.)
        Some(_) => return unauthorized(),
    };
    req.extensions_mut().insert(context);
    next.run(req).await
}

/// A token's `sub` and role claim for a signed principal.
fn role_claims(role: &Role) -> (String, Option<String>, Option<String>) {
    (role.claim.to_string(), None, Some(role.claim.to_string()))
}

/// API Gateway's answer without a valid token: 401 `{"message":"Unauthorized"}`.
fn unauthorized() -> Response {
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Unauthorized"}"#,
    )
        .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// API Gateway's answer to a signed principal whose policy does not allow the route.
fn not_authorized(principal: &str, method: &Method, path: &str) -> Response {
    let message = format!(
        "User: {principal} is not authorized to perform: execute-api:Invoke on resource: \
         arn:aws:execute-api:us-east-1:123456789012:local/$default/{method}{path}"
    );
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static("x-amzn-errortype"),
                "AccessDeniedException",
            ),
        ],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// Claims as API Gateway passes them on: strings (`true` for a boolean true, numbers as
/// written).
fn as_strings(claims: Map<String, Value>) -> HashMap<String, String> {
    claims
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_allows_its_one_route_only() {
        let (warehouse, back_office) = (&ROLES[0], &ROLES[1]);
        assert!(warehouse.allows(&Method::POST, "/orders/01J/ship"));
        for (method, path) in [
            (Method::GET, "/orders/01J/ship"),
            (Method::POST, "/orders//ship"),
            (Method::POST, "/orders/01J/ship/more"),
            (Method::POST, "/orders/01J/cancel"),
            (Method::POST, "/orders/ship"),
            (Method::GET, "/sales/daily"),
        ] {
            assert!(!warehouse.allows(&method, path), "{method} {path}");
        }
        assert!(back_office.allows(&Method::GET, "/sales/daily"));
        for (method, path) in [
            (Method::POST, "/sales/daily"),
            (Method::GET, "/sales/daily/more"),
            (Method::GET, "/sales"),
            (Method::POST, "/orders/01J/ship"),
        ] {
            assert!(!back_office.allows(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn a_minted_token_verifies_with_its_key_only_and_not_once_expired() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = Key::load_or_create(dir.path()).expect("key");
        let again = Key::load_or_create(dir.path()).expect("the same key");
        let ada = Holder::Customer {
            id: "c-7".into(),
            email: Some("ada@example.com".into()),
        };
        let token = key.mint(&ada, Duration::from_secs(60)).expect("token");
        let claims = again.verify(&token).expect("verifies");
        assert_eq!(claims["sub"], "c-7");
        let strings = as_strings(claims);
        assert_eq!(strings["email_verified"], "true");
        assert_eq!(strings["email"], "ada@example.com");

        let other = tempfile::tempdir().expect("temp dir");
        let stranger = Key::load_or_create(other.path()).expect("another key");
        assert!(stranger.verify(&token).is_err(), "another data dir's key");
        let expired = key.mint(&ada, Duration::ZERO).expect("token");
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(key.verify(&expired).is_err(), "an expired token");
        assert!(key.verify("not.a.token").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is its owner's only: {mode:o}");
        }
    }
}
