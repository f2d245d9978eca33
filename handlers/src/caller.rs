//! Who calls the API, and which orders that caller may see and change: the one place for
//! the API's access rules.
//!
//! On AWS the HTTP API has verified the caller before the function runs: a customer's JWT
//! (the `CustomerJwt` authorizer; its claims arrive in the request context) or, for
//! shipping, a SigV4 signature (the IAM authorizer). The function then lets a customer
//! touch only the orders whose `customer.id` is the customer id claim of the token.
//! `orders serve` is open, as a development server is, unless started with `--auth`: then
//! its stand-in authorizer leaves the same request context (`verified_token`, `signed_call`).

use crate::problem::Problem;
use aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerIamDescription,
    ApiGatewayRequestAuthorizerJwtDescription, ApiGatewayV2httpRequestContext,
};
use axum::http::{Extensions, StatusCode};
use lambda_http::request::RequestContext;

/// The environment variable that turns the checks on (the api function's, from the
/// template's `CustomerIdClaim`): the claim holding the customer id, such as `sub`.
pub const CLAIM_ENV: &str = "CUSTOMER_ID_CLAIM";

/// How the API knows its callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerAuth {
    /// Everyone may do everything (the local server, tests).
    Open,
    /// Behind API Gateway's authorizers; the named claim of a customer's token is their id.
    Claim(String),
}

impl CustomerAuth {
    /// From [`CLAIM_ENV`]; unset or empty is [`CustomerAuth::Open`].
    pub fn from_env() -> Self {
        match std::env::var(CLAIM_ENV) {
            Ok(claim) if !claim.trim().is_empty() => CustomerAuth::Claim(claim.trim().to_string()),
            _ => CustomerAuth::Open,
        }
    }

    /// The caller of a request, from what API Gateway's authorizer left in its context;
    /// refused (401) when checks are on and nothing verified says who it is.
    pub fn caller(&self, extensions: &Extensions) -> Result<Caller, Problem> {
        let CustomerAuth::Claim(claim) = self else {
            return Ok(Caller::Anyone);
        };
        let authorizer = extensions
            .get::<RequestContext>()
            .and_then(|context| match context {
                RequestContext::ApiGatewayV2(c) => c.authorizer.as_ref(),
                #[allow(unreachable_patterns)]
                _ => None,
            });
        if let Some(jwt) = authorizer.and_then(|a| a.jwt.as_ref()) {
            let id = match jwt.claims.get(claim).map(|c| c.trim()) {
                Some(id) if !id.is_empty() => id.to_string(),
                _ => return Err(unauthorized(&format!("the token has no `{claim}` claim"))),
            };
            let verified_email = jwt
                .claims
                .get("email")
                .filter(|_| jwt.claims.get("email_verified").map(String::as_str) == Some("true"))
                .map(|e| e.trim().to_string());
            return Ok(Caller::Customer(SignedIn { id, verified_email }));
        }
        if authorizer.is_some_and(|a| a.iam.is_some()) {
            return Ok(Caller::Warehouse);
        }
        Err(unauthorized("the request carries no verified token"))
    }
}

/// A customer as their verified token describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub id: String,
    /// The token's `email` when it also says `email_verified`: the address the customer
    /// proved is theirs.
    pub verified_email: Option<String>,
}

/// One request's caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No checks: the API is open.
    Anyone,
    /// A signed-in customer.
    Customer(SignedIn),
    /// A SigV4-signed principal: the warehouse, which reports shipments, or the back
    /// office, which reads the sales report (on AWS each principal's IAM policy names the
    /// routes it may call).
    Warehouse,
}

impl Caller {
    /// Whether the caller may see and act on the orders of `customer_id` (others' orders
    /// are answered as not found: their ids are nobody else's business).
    pub fn sees(&self, customer_id: &str) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Customer(me) => me.id == customer_id,
            Caller::Warehouse => false,
        }
    }

    /// [`Caller::sees`] for a customer id the request names (in `field`): another
    /// customer's is forbidden.
    pub fn acts_for(&self, customer_id: &str, field: &str) -> Result<(), Problem> {
        if self.sees(customer_id) {
            return Ok(());
        }
        Err(Problem::field(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            field,
            match self {
                Caller::Customer(_) => "is not the customer you are signed in as",
                _ => "only a signed-in customer may name a customer",
            },
        ))
    }

    /// Whether the caller may place an order for `customer`: their own id, and their own
    /// address when the token proves one (the confirmation email goes there, so a customer
    /// cannot make the shop mail strangers).
    pub fn may_order_as(&self, customer: &orders_domain::order::Customer) -> Result<(), Problem> {
        self.acts_for(&customer.id, "customer.id")?;
        match self {
            Caller::Customer(SignedIn {
                verified_email: Some(mine),
                ..
            }) if !mine.eq_ignore_ascii_case(customer.email.trim()) => Err(Problem::field(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                "customer.email",
                "is not the verified e-mail address you are signed in with",
            )),
            _ => Ok(()),
        }
    }

    /// Shipping is the warehouse's call, never a customer's.
    pub fn may_ship(&self) -> Result<(), Problem> {
        self.not_a_customer("only the warehouse reports shipments")
    }

    /// The sales report is the back office's (on AWS, a SigV4-signed principal whose
    /// policy allows the route), never a customer's.
    pub fn may_read_sales(&self) -> Result<(), Problem> {
        self.not_a_customer("the sales report is the back office's, not a customer's")
    }

    /// A signed principal's call (on AWS its IAM policy says which), refused to a customer
    /// with `why`.
    fn not_a_customer(&self, why: &str) -> Result<(), Problem> {
        match self {
            Caller::Anyone | Caller::Warehouse => Ok(()),
            Caller::Customer(_) => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                why,
            )),
        }
    }

    /// What an idempotency key's request hash includes about the caller, so that one
    /// customer's key never answers another's request. Empty when the API is open (as
    /// keys stored before the checks existed were hashed).
    pub fn hash_part(&self) -> String {
        match self {
            Caller::Anyone => String::new(),
            Caller::Customer(me) => format!("customer:{}", me.id),
            Caller::Warehouse => "warehouse".into(),
        }
    }
}

/// What API Gateway's JWT authorizer leaves in a request's context for a verified token
/// (its claims as strings): the local stand-in (`orders serve --auth`) leaves the same.
pub fn verified_token(claims: std::collections::HashMap<String, String>) -> RequestContext {
    let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
    jwt.claims = claims;
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    authorizer.jwt = Some(jwt);
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.authorizer = Some(authorizer);
    RequestContext::ApiGatewayV2(context)
}

/// What API Gateway's IAM authorizer leaves for a SigV4-signed call by `principal`.
pub fn signed_call(principal: &str) -> RequestContext {
    let mut iam = ApiGatewayRequestAuthorizerIamDescription::default();
    iam.user_arn = Some(principal.to_string());
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    authorizer.iam = Some(iam);
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.authorizer = Some(authorizer);
    RequestContext::ApiGatewayV2(context)
}

fn unauthorized(why: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Not signed in",
        format!("{why}: send a customer's token as `Authorization: Bearer <JWT>`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(authorizer: Option<ApiGatewayRequestAuthorizer>) -> Extensions {
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.authorizer = authorizer;
        let mut e = Extensions::new();
        e.insert(RequestContext::ApiGatewayV2(context));
        e
    }

    fn jwt(claims: &[(&str, &str)]) -> Extensions {
        let claims = claims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut e = Extensions::new();
        e.insert(verified_token(claims));
        e
    }

    fn customer(id: &str, email: Option<&str>) -> Caller {
        Caller::Customer(SignedIn {
            id: id.into(),
            verified_email: email.map(str::to_string),
        })
    }

    #[test]
    fn an_order_goes_to_the_verified_address_of_the_signed_in_customer() {
        let order_for = |id: &str, email: &str| orders_domain::order::Customer {
            id: id.into(),
            email: email.into(),
            name: "Ada".into(),
        };
        let ada = customer("c-7", Some("Ada@Example.com"));
        assert_eq!(
            ada.may_order_as(&order_for("c-7", "ada@example.com")),
            Ok(())
        );
        let stranger = ada
            .may_order_as(&order_for("c-7", "someone@example.org"))
            .expect_err("another address");
        assert_eq!(stranger.status, 403);
        assert_eq!(stranger.field.as_deref(), Some("customer.email"));
        let theirs = ada
            .may_order_as(&order_for("c-8", "ada@example.com"))
            .expect_err("another customer");
        assert_eq!(theirs.field.as_deref(), Some("customer.id"));
        // Without a verified address in the token, the address is the customer's call.
        let unverified = customer("c-7", None);
        assert_eq!(
            unverified.may_order_as(&order_for("c-7", "someone@example.org")),
            Ok(())
        );
        assert_eq!(
            Caller::Anyone.may_order_as(&order_for("c-8", "x@example.org")),
            Ok(())
        );
    }

    #[test]
    fn callers_come_from_the_authorizer_context_only_when_checks_are_on() {
        let claim = CustomerAuth::Claim("sub".into());
        let token = jwt(&[("sub", "c-7"), ("email", "ada@example.com")]);
        assert_eq!(claim.caller(&token), Ok(customer("c-7", None)));
        let verified = jwt(&[
            ("sub", "c-7"),
            ("email", "ada@example.com"),
            ("email_verified", "true"),
        ]);
        assert_eq!(
            claim.caller(&verified),
            Ok(customer("c-7", Some("ada@example.com")))
        );
        assert_eq!(CustomerAuth::Open.caller(&token), Ok(Caller::Anyone));
        let no_claim = CustomerAuth::Claim("custom:customer_id".into())
            .caller(&token)
            .expect_err("no such claim");
        assert_eq!(no_claim.status, 401);
        assert!(
            no_claim.detail.contains("`custom:customer_id`"),
            "{no_claim:?}"
        );
        for nothing in [Extensions::new(), with(None), jwt(&[("sub", " ")])] {
            assert_eq!(claim.caller(&nothing).map_err(|p| p.status), Err(401));
        }
        let mut iam = ApiGatewayRequestAuthorizer::default();
        iam.iam = Some(ApiGatewayRequestAuthorizerIamDescription::default());
        assert_eq!(claim.caller(&with(Some(iam))), Ok(Caller::Warehouse));
    }

    #[test]
    fn a_customer_sees_only_their_own_orders_and_never_ships() {
        let me = customer("c-7", None);
        assert!(me.sees("c-7"));
        assert!(!me.sees("c-8"));
        let refused = me.acts_for("c-8", "customer.id").expect_err("forbidden");
        assert_eq!(refused.status, 403);
        assert_eq!(refused.field.as_deref(), Some("customer.id"));
        assert_eq!(me.may_ship().map_err(|p| p.status), Err(403));
        assert_eq!(Caller::Warehouse.may_ship(), Ok(()));
        assert!(!Caller::Warehouse.sees("c-7"));
        assert!(Caller::Anyone.sees("c-8"));
        assert_eq!(
            Caller::Warehouse
                .acts_for("c-7", "customer_id")
                .map_err(|p| p.status),
            Err(403)
        );
        assert_ne!(me.hash_part(), customer("c-8", None).hash_part());
        assert_eq!(Caller::Anyone.hash_part(), "");
    }
}
