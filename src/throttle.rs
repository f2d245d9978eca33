//! `orders serve --throttle`: the deployed stage's request throttling, played locally. The
//! template gives the HttpApi `DefaultRouteSettings` of 100 requests/s with a burst of 200:
//! API Gateway keeps a token bucket per route and answers a request that finds its bucket
//! empty with `429 {"message":"Too Many Requests"}`, before the authorizer or the function
//! see it. Here the same: one bucket per route (method and path template), in front of the
//! API only (the console is not part of the deployed API).

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;

/// The template's `ThrottlingRateLimit` (requests per second, per route).
pub const RATE_PER_SECOND: u32 = 100;
/// The template's `ThrottlingBurstLimit` (the bucket's size).
pub const BURST: u32 = 200;

/// A limiter per route, keyed by `METHOD /path/{template}`.
type Buckets = RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    governor::clock::DefaultClock,
>;

/// Puts the stage's throttling in front of `api` (outermost: a throttled request reaches
/// neither the authorizer nor the handler).
pub fn guard(api: Router) -> Router {
    const RATE: NonZeroU32 = NonZeroU32::new(RATE_PER_SECOND).expect("a positive rate");
    const SIZE: NonZeroU32 = NonZeroU32::new(BURST).expect("a positive burst");
    let quota = Quota::per_second(RATE).allow_burst(SIZE);
    let buckets: Arc<Buckets> = Arc::new(RateLimiter::hashmap(quota));
    api.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let buckets = buckets.clone();
            async move { throttle(&buckets, req, next).await }
        },
    ))
}

async fn throttle(buckets: &Buckets, req: Request, next: Next) -> Response {
    // Unrouted requests have no route, and no bucket (API Gateway's 404 is not throttled
    // per route either).
    let Some(route) = req.extensions().get::<MatchedPath>() else {
        return next.run(req).await;
    };
    let key = format!("{} {}", req.method(), route.as_str());
    if buckets.check_key(&key).is_ok() {
        return next.run(req).await;
    }
    tracing::debug!(route = %key, "request throttled");
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Too Many Requests"}"#,
    )
        .into_response()
}
