//! The HTTP API: one axum `Router`, generic over the ports, served by Lambda (see `gateway`)
//! on AWS and over TCP by `orders serve`.

use crate::body;
use crate::caller::{Caller, CustomerAuth};
use crate::commands::{CommandError, Commands, Executed, Expect, Idempotency, Trace};
use crate::links::ConsoleLinks;
use crate::problem::Problem;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orders_domain::Timestamp;
use orders_domain::order::PlaceOrderRequest;
use orders_domain::ports::{EventStore, ReadModelError, ReadModels, StoreError};
use orders_domain::projection::{AsOf, view_as_of};
use orders_domain::sales::{self, MAX_LISTED_DAYS, SalesFilter};
use orders_domain::{Command, DomainError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::Instrument;

pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// What the API needs: the command path over the event store, the read models, where an
/// order's workflow execution can be seen, and how it knows its callers.
pub struct Api<E, R> {
    pub commands: Commands<E>,
    pub reads: R,
    pub links: ConsoleLinks,
    pub customers: CustomerAuth,
}

/// A handler that takes a `Caller` refuses requests whose caller is not known (401).
impl<E: EventStore, R: ReadModels> FromRequestParts<Arc<Api<E, R>>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api<E, R>>) -> Result<Self, Problem> {
        api.customers.caller(&parts.extensions)
    }
}

pub fn router<E: EventStore, R: ReadModels>(api: Arc<Api<E, R>>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(
            "/orders",
            post(place_order::<E, R>).get(list_orders::<E, R>),
        )
        .route("/orders/{id}", get(get_order::<E, R>))
        .route("/orders/{id}/events", get(get_events::<E, R>))
        .route("/orders/{id}/cancel", post(cancel_order::<E, R>))
        .route("/orders/{id}/ship", post(ship_order::<E, R>))
        .route("/sales/daily", get(daily_sales::<E, R>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(correlate))
        .with_state(api)
}

/// Gives every request a correlation id (the caller's, when it sent a sane one) before a
/// handler sees it, and echoes it on every response, errors included.
async fn correlate(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let sane = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| {
            !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
        });
    if !sane && let Ok(v) = HeaderValue::from_str(&ulid::Ulid::new().to_string()) {
        req.headers_mut()
            .insert(HeaderName::from_static(CORRELATION_HEADER), v);
    }
    let id = req.headers().get(CORRELATION_HEADER).cloned();
    let mut resp = next.run(req).await;
    if let Some(id) = id {
        resp.headers_mut()
            .entry(HeaderName::from_static(CORRELATION_HEADER))
            .or_insert(id);
    }
    resp
}

/// The order id from the path; a malformed one is a problem like any other bad input.
fn order_id_of(path: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    path.map(|Path(id)| id).map_err(|e| {
        Problem::field(
            StatusCode::BAD_REQUEST,
            "invalid-path",
            "Invalid path parameter",
            "id",
            e.body_text(),
        )
    })
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(&format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Correlation and causation ids for one request: the caller's correlation id when it
/// sends a sane one, else a fresh one; the causation is the request itself.
fn trace_of(headers: &HeaderMap, ids: &dyn orders_domain::ports::IdGenerator) -> Trace {
    let correlation_id = headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| ids.next_id());
    let causation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(|s| format!("request:{s}"))
        .unwrap_or_else(|| format!("request:{}", ids.next_id()));
    Trace {
        correlation_id,
        causation_id,
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(s.to_string()))
        }
        _ => Err(Problem::field(
            StatusCode::BAD_REQUEST,
            "invalid-header",
            "Invalid header",
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// A digest of what the key stands for: the same key on another request, or from another
/// caller, is refused.
fn request_hash(method: &Method, path: &str, caller: &Caller, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str().as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    let who = caller.hash_part();
    if !who.is_empty() {
        h.update(who.as_bytes());
        h.update([0]);
    }
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn json_response(status: u16, body: String, trace: &Trace, replayed: bool) -> Response {
    let mut resp = (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&trace.correlation_id) {
        h.insert(HeaderName::from_static(CORRELATION_HEADER), v);
    }
    if replayed {
        h.insert(
            HeaderName::from_static(REPLAYED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// Adds what a stored response implies (Location, ETag) from its body.
fn decorate(mut resp: Response, order_id: &str, version: Option<u64>, created: bool) -> Response {
    let h = resp.headers_mut();
    if created && let Ok(v) = HeaderValue::from_str(&format!("/orders/{order_id}")) {
        h.insert(header::LOCATION, v);
    }
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[derive(Debug, Serialize, Deserialize)]
struct CommandAnswer {
    order_id: String,
    status: orders_domain::OrderStatus,
    version: u64,
    total: Option<orders_domain::Money>,
    correlation_id: String,
}

fn answer(e: &Executed, trace: &Trace) -> CommandAnswer {
    CommandAnswer {
        order_id: e.aggregate_id.clone(),
        status: e.state.status(),
        version: e.state.version,
        total: e.state.placed.as_ref().map(|p| p.total),
        correlation_id: trace.correlation_id.clone(),
    }
}

fn command_problem(e: CommandError) -> Problem {
    match e {
        CommandError::Domain(DomainError::Invalid(errors)) => Problem::validation(errors),
        CommandError::Domain(DomainError::NotFound) => Problem::not_found("order not found"),
        CommandError::Domain(d @ DomainError::AlreadyPlaced(_)) => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", d.to_string())
        }
        CommandError::Domain(d) => Problem::new(
            StatusCode::CONFLICT,
            "invalid-transition",
            "The order cannot do that now",
            d.to_string(),
        ),
        CommandError::VersionMismatch { expected, actual } => Problem::field(
            StatusCode::PRECONDITION_FAILED,
            "stale-version",
            "Stale version",
            "If-Match",
            format!("order is at version {actual}, not {expected}"),
        ),
        CommandError::Store(StoreError::Conflict { .. }) => Problem::new(
            StatusCode::CONFLICT,
            "concurrent-update",
            "Concurrent update",
            "the order changed concurrently; retry",
        ),
        CommandError::IdempotencyRace(_) => Problem::field(
            StatusCode::CONFLICT,
            "idempotency-in-flight",
            "Request in flight",
            "Idempotency-Key",
            "a request with this key is being processed; retry",
        ),
        CommandError::Store(StoreError::Unavailable(m)) => Problem::unavailable(m),
        other => {
            tracing::error!(error = %other, "command failed");
            Problem::internal("the command could not be completed")
        }
    }
}

/// Replays the stored answer for a repeated key, or refuses a key reused for another request.
async fn replay_if_seen<E: EventStore>(
    commands: &Commands<E>,
    key: &str,
    hash: &str,
    trace: &Trace,
) -> Result<Option<Response>, Problem> {
    let found = commands
        .events
        .idempotency(key)
        .await
        .map_err(|e| match e {
            StoreError::Unavailable(m) => Problem::unavailable(m),
            other => Problem::internal(other.to_string()),
        })?;
    match found {
        None => Ok(None),
        Some(r) if r.request_hash == hash => {
            let version = serde_json::from_str::<CommandAnswer>(&r.response)
                .ok()
                .map(|a| a.version);
            let resp = json_response(r.status, r.response, trace, true);
            Ok(Some(decorate(
                resp,
                &r.aggregate_id,
                version,
                r.status == 201,
            )))
        }
        Some(_) => Err(Problem::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency key reused",
            "Idempotency-Key",
            "was already used with a different request",
        )),
    }
}

async fn read_body(body: Body) -> Result<axum::body::Bytes, Problem> {
    axum::body::to_bytes(body, body::MAX_BODY_BYTES)
        .await
        .map_err(|_| body::too_large())
}

async fn run_command<E: EventStore, R: ReadModels>(
    api: &Api<E, R>,
    order_id: &str,
    expect: Expect,
    command: Command,
    trace: &Trace,
    key: Option<(String, String)>,
    created: bool,
) -> Result<Response, Problem> {
    let status = if created { 201 } else { 200 };
    let respond_trace = trace.clone();
    let respond = move |e: &Executed| {
        let body = serde_json::to_string(&answer(e, &respond_trace)).unwrap_or_default();
        (status, body)
    };
    let idem = key.as_ref().map(|(k, h)| Idempotency {
        key: k,
        request_hash: h,
        respond: &respond,
    });
    match api
        .commands
        .execute(order_id, expect, &command, trace, idem)
        .await
    {
        Ok(executed) => {
            let (status, body) = executed
                .response
                .clone()
                .unwrap_or_else(|| respond(&executed));
            let resp = json_response(status, body, trace, false);
            Ok(decorate(
                resp,
                order_id,
                Some(executed.state.version),
                created,
            ))
        }
        Err(CommandError::IdempotencyRace(k)) => {
            // Another request with this key won the race: answer as it did.
            let (_, hash) = key.unwrap_or_default();
            match replay_if_seen(&api.commands, &k, &hash, trace).await? {
                Some(resp) => Ok(resp),
                None => Err(command_problem(CommandError::IdempotencyRace(k))),
            }
        }
        Err(e) => Err(command_problem(e)),
    }
}

async fn place_order<E: EventStore, R: ReadModels>(
    State(api): State<Arc<Api<E, R>>>,
    caller: Caller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let trace = trace_of(&headers, api.commands.ids.as_ref());
    let order_id = api.commands.ids.next_id();
    let span = tracing::info_span!("place_order", order_id = %order_id, correlation_id = %trace.correlation_id);
    async move {
        let result: Result<Response, Problem> = async {
            body::require_json_content_type(&headers)?;
            let bytes = read_body(body).await?;
            let key = idempotency_key(&headers)?;
            let hash = request_hash(&method, uri.path(), &caller, &bytes);
            if let Some(k) = &key
                && let Some(resp) = replay_if_seen(&api.commands, k, &hash, &trace).await?
            {
                return Ok(resp);
            }
            let request: PlaceOrderRequest = body::decode(&bytes)?;
            caller.may_order_as(&request.customer)?;
            let command = Command::Place {
                order_id: order_id.clone(),
                request,
                placed_via: "api".into(),
            };
            let key = key.map(|k| (k, hash));
            run_command(&api, &order_id, Expect::Latest, command, &trace, key, true).await
        }
        .await;
        result.unwrap_or_else(IntoResponse::into_response)
    }
    .instrument(span)
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

fn if_match(headers: &HeaderMap) -> Result<u64, Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Err(Problem::field(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition-required",
            "Precondition required",
            "If-Match",
            "send the order version you saw, e.g. If-Match: 1",
        ));
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<u64>().map_err(|_| {
        Problem::field(
            StatusCode::BAD_REQUEST,
            "invalid-header",
            "Invalid header",
            "If-Match",
            "must be an order version such as 1 or \"1\"",
        )
    })
}

async fn cancel_order<E: EventStore, R: ReadModels>(
    State(api): State<Arc<Api<E, R>>>,
    caller: Caller,
    request: CommandRequest,
) -> Response {
    order_command(&api, "cancel", caller, request, |headers, bytes| {
        let expected = if_match(headers)?;
        let reason = if bytes.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            body::require_json_content_type(headers)?;
            let b: CancelBody = body::decode(bytes)?;
            if let Some(r) = &b.reason
                && r.chars().count() > 500
            {
                return Err(Problem::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "The request is not valid",
                    "reason",
                    "must be at most 500 characters",
                ));
            }
            b.reason
        };
        Ok((Expect::Version(expected), Command::Cancel { reason }))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShipBody {
    carrier: String,
    tracking_number: String,
}

/// The warehouse (or the carrier's callback) reports the parcel on its way. `If-Match` is
/// optional here: the sender rarely knows the version, and the domain's rules (only an
/// order in fulfilment ships; the same shipment again changes nothing) are checked against
/// the version the append is conditional on either way.
async fn ship_order<E: EventStore, R: ReadModels>(
    State(api): State<Arc<Api<E, R>>>,
    caller: Caller,
    request: CommandRequest,
) -> Response {
    if let Err(refused) = caller.may_ship() {
        return refused.into_response();
    }
    order_command(&api, "ship", caller, request, |headers, bytes| {
        let expect = match headers.get(header::IF_MATCH) {
            Some(_) => Expect::Version(if_match(headers)?),
            None => Expect::Latest,
        };
        body::require_json_content_type(headers)?;
        let b: ShipBody = body::decode(bytes)?;
        let command = Command::Ship {
            carrier: b.carrier,
            tracking_number: b.tracking_number,
        };
        Ok((expect, command))
    })
    .await
}

/// What a command on an existing order arrives with. A bad order id is kept as the
/// rejection, so it is answered as a problem in the command's span.
struct CommandRequest {
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
}

impl<S: Send + Sync> FromRequest<S> for CommandRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let path = Path::<String>::from_request_parts(&mut parts, state).await;
        Ok(CommandRequest {
            path,
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
        })
    }
}

/// What every command on an existing order shares: the order id from the path, a span
/// with the order and correlation ids, the `Idempotency-Key` (a repeat answers as the
/// first request did, before anything else is checked), another customer's order answered
/// as not found; `parse` turns the headers and body into what the append expects and the
/// command.
async fn order_command<E: EventStore, R: ReadModels>(
    api: &Api<E, R>,
    command_name: &'static str,
    caller: Caller,
    request: CommandRequest,
    parse: impl FnOnce(&HeaderMap, &[u8]) -> Result<(Expect, Command), Problem>,
) -> Response {
    let CommandRequest {
        path,
        method,
        uri,
        headers,
        body,
    } = request;
    let order_id = match order_id_of(path) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let trace = trace_of(&headers, api.commands.ids.as_ref());
    let span = tracing::info_span!(
        "order_command",
        command = command_name,
        order_id = %order_id,
        correlation_id = %trace.correlation_id
    );
    async move {
        let result: Result<Response, Problem> = async {
            let bytes = read_body(body).await?;
            let key = idempotency_key(&headers)?;
            let hash = request_hash(&method, uri.path(), &caller, &bytes);
            if let Some(k) = &key
                && let Some(resp) = replay_if_seen(&api.commands, k, &hash, &trace).await?
            {
                return Ok(resp);
            }
            // Only a customer's call costs the extra read (an order's customer never changes,
            // so checking before the command's own load is safe).
            if let Caller::Customer(_) = caller {
                let events = api
                    .commands
                    .events
                    .load(&order_id)
                    .await
                    .map_err(|e| command_problem(CommandError::Store(e)))?;
                if !caller.sees(&customer_in(&events).unwrap_or_default()) {
                    return Err(Problem::not_found(&format!("order {order_id} not found")));
                }
            }
            let (expect, command) = parse(&headers, &bytes)?;
            let key = key.map(|k| (k, hash));
            run_command(api, &order_id, expect, command, &trace, key, false).await
        }
        .await;
        result.unwrap_or_else(IntoResponse::into_response)
    }
    .instrument(span)
    .await
}

fn read_problem(e: ReadModelError) -> Problem {
    match e {
        ReadModelError::InvalidCursor => Problem::field(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query parameter",
            "cursor",
            "is not a cursor this API returned",
        ),
        ReadModelError::Unavailable(m) => Problem::unavailable(m),
        other => {
            tracing::error!(error = %other, "read failed");
            Problem::internal("the read could not be completed")
        }
    }
}

fn with_etag(value: &impl Serialize, version: u64) -> Response {
    let mut resp = axum::Json(value).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// `GET /orders/{id}`: the projected view; with `version` or `at`, the view as it stood
/// then, folded from the event log (immediately consistent: it does not wait for the
/// projector).
async fn get_order<E: EventStore, R: ReadModels>(
    State(api): State<Arc<Api<E, R>>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let order_id = match order_id_of(path) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    match as_of_in(&params) {
        Err(p) => p.into_response(),
        Ok(Some(as_of)) => view_from_log(&api, &caller, &order_id, as_of)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Ok(None) => match api.reads.order(&order_id).await {
            Ok(Some(view)) if caller.sees(&view.customer.id) => {
                with_etag(&rendered(&view, &api.links), view.version)
            }
            Ok(_) => Problem::not_found(&format!("order {order_id} not found")).into_response(),
            Err(e) => read_problem(e).into_response(),
        },
    }
}

/// The point of the history `GET /orders/{id}` (and `/events`) asks for: `None` when it
/// asks for none.
fn as_of_in(params: &HashMap<String, String>) -> Result<Option<AsOf>, Problem> {
    known_query(params, &["version", "at"])?;
    match (params.get("version"), params.get("at")) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(query_problem("at", "cannot be combined with version")),
        (Some(v), None) => AsOf::version_from(v)
            .map(Some)
            .ok_or_else(|| query_problem("version", "must be a version number of 1 or more")),
        (None, Some(t)) => t
            .parse::<Timestamp>()
            .map(|t| Some(AsOf::At(t)))
            .map_err(|_| {
                query_problem(
                    "at",
                    "must be a UTC date and time in RFC 3339, such as 2026-11-04T15:30:00Z",
                )
            }),
    }
}

/// An order's view at a point of its history, folded from its events by the projector's
/// fold. No cache header: the events at a version never change, but the fold may (a
/// projection fix, which a replay then applies to the read model too).
async fn view_from_log<E: EventStore, R: ReadModels>(
    api: &Api<E, R>,
    caller: &Caller,
    order_id: &str,
    as_of: AsOf,
) -> Result<Response, Problem> {
    let not_found = || Problem::not_found(&format!("order {order_id} not found"));
    let events = api
        .commands
        .events
        .load(order_id)
        .await
        .map_err(|e| match e {
            StoreError::Unavailable(m) => Problem::unavailable(m),
            e => Problem::internal(e.to_string()),
        })?;
    if !may_see(caller, &events) {
        return Err(not_found());
    }
    let view = view_as_of(&events, as_of).map_err(|e| {
        if e.is_not_found() {
            return Problem::not_found(&e.to_string());
        }
        tracing::error!(order_id, error = %e, "an order's events do not fold");
        Problem::internal("the order's events could not be folded into its view")
    })?;
    Ok(with_etag(&rendered(&view, &api.links), view.version))
}

/// Whether the caller may see an order, from its stored events: anyone sees what exists
/// when no customer is signed in; a customer sees only their own orders.
fn may_see(caller: &Caller, events: &[orders_domain::envelope::EventEnvelope]) -> bool {
    !events.is_empty()
        && (*caller == Caller::Anyone || caller.sees(&customer_in(events).unwrap_or_default()))
}

/// The view as `GET /orders/{id}` shows it: with `workflow.console_url` when there is a
/// console to link to.
fn rendered(
    view: &orders_domain::projection::OrderView,
    links: &ConsoleLinks,
) -> serde_json::Value {
    let mut v = serde_json::to_value(view).unwrap_or_default();
    if let Some(url) = links.execution_url(&view.workflow.execution_name)
        && let Some(w) = v
            .get_mut("workflow")
            .and_then(serde_json::Value::as_object_mut)
    {
        w.insert("console_url".into(), serde_json::Value::String(url));
    }
    v
}

/// The customer of an order from its stored events (its first event places it); `None`
/// for an order that does not exist, which is nobody's.
fn customer_in(events: &[orders_domain::envelope::EventEnvelope]) -> Option<String> {
    match events.first()?.decode().ok()? {
        orders_domain::OrderEvent::Placed(p) => Some(p.customer.id),
        _ => None,
    }
}

/// `GET /orders/{id}/events`: the order's events, all of them or (`version`, `at`) those up
/// to a point of its history.
async fn get_events<E: EventStore, R: ReadModels>(
    State(api): State<Arc<Api<E, R>>>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let order_id = match order_id_of(path) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    let as_of = match as_of_in(&params) {
        Ok(a) => a.unwrap_or(AsOf::Latest),
        Err(p) => return p.into_response(),
    };
    match api.commands.events.load(&order_id).await {
        Ok(events) if !may_see(&caller, &events) => {
            Problem::not_found(&format!("order {order_id} not found")).into_response()
        }
        Ok(events) => match as_of.events(&events) {
            Ok(events) => {
                let version = events.last().map_or(0, |e| e.version);
                with_etag(
                    &serde_json::json!({"order_id": order_id, "version": version, "events": events}),
                    version,
                )
            }
            // No such point in the history: a version past the last, or before the order.
            Err(e) => Problem::not_found(&e.to_string()).into_response(),
        },
        Err(StoreError::Unavailable(m)) => Problem::unavailable(m).into_response(),
        Err(e) => Problem::internal(e.to_string()).into_response(),
    }
}

pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;

/// Refuses a query parameter the route does not know, naming it (and the known ones).
fn known_query(params: &HashMap<String, String>, known: &[&str]) -> Result<(), Problem> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(query_problem(
            unknown,
            &format!("is not a known query parameter ({})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn query_problem(field: &str, detail: &str) -> Problem {
    Problem::field(
        StatusCode::BAD_REQUEST,
        "invalid-query",
        "Invalid query parameter",
        field,
        detail,
    )
}

async fn list_orders<E: EventStore, R: ReadModels>(
    State(api): State<Arc<Api<E, R>>>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let result: Result<Response, Problem> = async {
        known_query(&params, &["customer_id", "limit", "cursor"])?;
        let customer_id = params
            .get("customer_id")
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| query_problem("customer_id", "is required"))?;
        caller.acts_for(customer_id, "customer_id")?;
        let limit = match params.get("limit") {
            None => DEFAULT_PAGE,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    query_problem(
                        "limit",
                        &format!("must be an integer between 1 and {MAX_PAGE}"),
                    )
                })?,
        };
        let page = api
            .reads
            .customer_orders(customer_id, limit, params.get("cursor").map(String::as_str))
            .await
            .map_err(read_problem)?;
        Ok(axum::Json(serde_json::json!({
            "customer_id": customer_id,
            "items": page.items,
            "next_cursor": page.next_cursor,
        }))
        .into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /sales/daily?from=DAY[&to=DAY][&currency=EUR]`: the sales report (the `daily_sales`
/// read model) of those days, a year at most; `to` defaults to today (UTC). Each day is
/// read on its own, so the cost follows the range, not the shop's history.
async fn daily_sales<E: EventStore, R: ReadModels>(
    State(api): State<Arc<Api<E, R>>>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let result: Result<Response, Problem> = async {
        caller.may_read_sales()?;
        known_query(&params, &["from", "to", "currency"])?;
        let text = |k: &str| params.get(k).map(String::as_str);
        let from = text("from").ok_or_else(|| query_problem("from", "is required (YYYY-MM-DD)"))?;
        let mut filter = SalesFilter::parse(Some(from), text("to"), text("currency"))
            .map_err(|e| query_problem(e.field, &e.message))?;
        let today = api.commands.clock.now().date();
        if filter.to.is_none() {
            // Today, or the day asked for when that is later (a range never ends before
            // it starts). The report then says which days it covers.
            filter.to = Some(today.clone().max(from.to_string()));
        }
        let days = filter.days(&today).ok_or_else(|| {
            query_problem(
                if text("to").is_some() { "to" } else { "from" },
                &format!("the range is longer than {MAX_LISTED_DAYS} days"),
            )
        })?;
        let rows = api
            .reads
            .daily_sales_of(&days)
            .await
            .map_err(read_problem)?;
        Ok(axum::Json(sales::report(rows, &filter)).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
