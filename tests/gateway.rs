//! The api Lambda's edge with the real router: API Gateway HTTP API events (payload 2.0)
//! through `orders_handlers::gateway`, on the local stores, as the api function runs them.

use lambda_runtime::{Context, LambdaEvent};
use orders_handlers::api::{self, Api};
use orders_handlers::caller::CustomerAuth;
use orders_handlers::commands::Commands;
use orders_handlers::gateway;
use orders_handlers::links::ConsoleLinks;
use orders_handlers::system::SystemClock;
use orders_local::store::LocalStores;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::Arc;

fn event(
    method: &str,
    path: &str,
    headers: Value,
    body: Option<&str>,
) -> LambdaEvent<Box<RawValue>> {
    event_by(None, method, path, headers, body)
}

/// An event whose request context holds what an authorizer verified (`None`: no authorizer).
fn event_by(
    authorizer: Option<Value>,
    method: &str,
    path: &str,
    headers: Value,
    body: Option<&str>,
) -> LambdaEvent<Box<RawValue>> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": 1_795_719_600_000_i64
        },
        // JSON is text to API Gateway: passed as is (base64 bodies: the handlers' unit tests).
        "body": body,
        "isBase64Encoded": false
    });
    if let Some(a) = authorizer {
        event["requestContext"]["authorizer"] = a;
    }
    // API Gateway sends the query both raw and parsed (our tests' queries need no decoding).
    if !query.is_empty() {
        let parsed: serde_json::Map<String, Value> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(parsed);
    }
    let raw = RawValue::from_string(event.to_string()).expect("JSON");
    LambdaEvent::new(raw, Context::default())
}

/// What API Gateway's JWT authorizer passes on for a customer's verified token.
fn token_of(sub: &str) -> Option<Value> {
    Some(json!({"jwt": {
        "claims": {"sub": sub, "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_x",
                   "token_use": "id"},
        "scopes": null
    }}))
}

/// What API Gateway's IAM authorizer passes on for a SigV4-signed call.
fn signed() -> Option<Value> {
    Some(json!({"iam": {
        "accessKey": "AKIAEXAMPLE", "accountId": "123456789012", "callerId": "AROAEXAMPLE:warehouse",
        "principalOrgId": null, "userArn": "arn:aws:sts::123456789012:assumed-role/warehouse/w",
        "userId": "AROAEXAMPLE:warehouse"
    }}))
}

/// The api function's router over a fresh store, as its Lambda binary builds it.
fn api_function(customers: CustomerAuth) -> (tempfile::TempDir, LocalStores, axum::Router) {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = LocalStores::open(dir.path()).expect("stores");
    let router = api::router(Arc::new(Api {
        commands: Commands::live(stores.events.clone()),
        reads: stores.read_models.clone(),
        links: ConsoleLinks::Off,
        customers,
    }));
    (dir, stores, router)
}

fn body(r: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> Value {
    let wire = serde_json::to_value(r).expect("serializable");
    assert_eq!(wire["isBase64Encoded"], false, "{wire}");
    serde_json::from_str(wire["body"].as_str().expect("a text body")).expect("a JSON body")
}

#[tokio::test]
async fn the_api_answers_api_gateway_events() {
    let (_dir, stores, router) = api_function(CustomerAuth::Open);

    let order = orders::sample::order("c-7").to_string();
    let headers = json!({"content-type": "application/json", "x-correlation-id": "corr-gw"});
    let call = |event| async {
        gateway::handle(router.clone(), event)
            .await
            .expect("an answer")
    };
    let placed = call(event("POST", "/orders", headers, Some(&order))).await;
    assert_eq!(placed.status_code, 201);
    let id = body(&placed)["order_id"]
        .as_str()
        .expect("order_id")
        .to_string();
    assert_eq!(placed.headers["location"], format!("/orders/{id}").as_str());
    assert_eq!(placed.headers["x-correlation-id"], "corr-gw");
    let events = stores.events.read_stream(0, 10).await.expect("log");
    assert_eq!(events.len(), 1, "one OrderPlaced appended");

    // Bad input: a problem document naming the field, as text, and nothing appended.
    let bad = json!({"customer": {"id": "c-7"}}).to_string();
    let headers = json!({"content-type": "application/json"});
    let refused = call(event("POST", "/orders", headers, Some(&bad))).await;
    assert_eq!(refused.status_code, 422);
    assert_eq!(refused.headers["content-type"], "application/problem+json");
    assert_eq!(body(&refused)["field"], "customer.email");
    assert_eq!(
        stores.events.read_stream(0, 10).await.expect("log").len(),
        1
    );

    // A view at a version comes from the log: there before any projector ran.
    let v1 = call(event(
        "GET",
        &format!("/orders/{id}?version=1"),
        json!({}),
        None,
    ))
    .await;
    assert_eq!(v1.status_code, 200, "{}", body(&v1));
    assert_eq!(body(&v1)["status"], "PLACED");
    assert_eq!(v1.headers["etag"], "\"1\"");
    let projected = call(event("GET", &format!("/orders/{id}"), json!({}), None)).await;
    assert_eq!(projected.status_code, 404, "no projector runs here");
    let bad = call(event(
        "GET",
        &format!("/orders/{id}?version=0"),
        json!({}),
        None,
    ))
    .await;
    assert_eq!(bad.status_code, 400);
    assert_eq!(body(&bad)["field"], "version");

    let health = call(event("GET", "/health", json!({}), None)).await;
    assert_eq!(health.status_code, 200);
    assert_eq!(body(&health)["status"], "ok");
}

/// On AWS the api function sees who calls (the template's authorizers): a customer reads,
/// lists, places and cancels their own orders only, another customer's order is not found,
/// shipping is the warehouse's (SigV4), and a call without a verified caller is refused.
#[tokio::test]
async fn behind_the_authorizers_a_customer_touches_only_their_own_orders() {
    let (_dir, stores, router) = api_function(CustomerAuth::Claim("sub".into()));
    let call = |event| async {
        gateway::handle(router.clone(), event)
            .await
            .expect("an answer")
    };
    let json_headers = || json!({"content-type": "application/json"});
    let appended = || async { stores.events.read_stream(0, 100).await.expect("log").len() };
    let project = || async {
        let projector = orders_handlers::projector::Projector::replay(stores.read_models.clone());
        for e in stores.events.read_stream(0, 100).await.expect("log") {
            let envelope = e.envelope.expect("decodable");
            projector
                .process_envelope(&envelope)
                .await
                .expect("projected");
        }
    };

    let order = orders::sample::order("c-7").to_string();
    let placed = call(event_by(
        token_of("c-7"),
        "POST",
        "/orders",
        json_headers(),
        Some(&order),
    ))
    .await;
    assert_eq!(placed.status_code, 201, "{:?}", placed.body);
    let id = body(&placed)["order_id"]
        .as_str()
        .expect("order_id")
        .to_string();

    // Another customer's id in the order, or (the confirmation goes to the order's address)
    // an address other than the token's verified one: forbidden, naming the field.
    let verified_elsewhere = Some(json!({"jwt": {"claims": {
        "sub": "c-7", "email": "grace@example.com", "email_verified": "true"
    }}}));
    for (caller, field) in [
        (token_of("c-8"), "customer.id"),
        (verified_elsewhere, "customer.email"),
    ] {
        let refused = call(event_by(
            caller,
            "POST",
            "/orders",
            json_headers(),
            Some(&order),
        ))
        .await;
        assert_eq!(refused.status_code, 403, "{field}");
        assert_eq!(refused.headers["content-type"], "application/problem+json");
        assert_eq!(body(&refused)["field"], field);
    }
    // No verified caller (a route left without its authorizer): 401, nothing appended.
    let anonymous = call(event("POST", "/orders", json_headers(), Some(&order))).await;
    assert_eq!(anonymous.status_code, 401);
    assert_eq!(
        anonymous.headers["content-type"],
        "application/problem+json"
    );
    assert_eq!(appended().await, 1);
    project().await;

    // Reading: the owner sees the order, its events and their list; another customer
    // gets the same 404 as for an order that does not exist, and may not list c-7's.
    for path in [format!("/orders/{id}"), format!("/orders/{id}/events")] {
        let mine = call(event_by(token_of("c-7"), "GET", &path, json!({}), None)).await;
        assert_eq!(mine.status_code, 200, "{path}");
        let other = call(event_by(token_of("c-8"), "GET", &path, json!({}), None)).await;
        assert_eq!(other.status_code, 404, "{path}");
        let missing = call(event_by(
            token_of("c-8"),
            "GET",
            &path.replace(&id, "01NOSUCHORDER"),
            json!({}),
            None,
        ))
        .await;
        assert_eq!(body(&other)["title"], body(&missing)["title"], "{path}");
    }
    let list_of_c7_as = |who: &str| {
        call(event_by(
            token_of(who),
            "GET",
            "/orders?customer_id=c-7",
            json!({}),
            None,
        ))
    };
    let list = list_of_c7_as("c-7").await;
    assert_eq!(list.status_code, 200);
    assert_eq!(body(&list)["items"][0]["order_id"], id.as_str());
    let snoop = list_of_c7_as("c-8").await;
    assert_eq!(snoop.status_code, 403);
    assert_eq!(body(&snoop)["field"], "customer_id");

    // Commands: another customer cannot cancel (not found), nor can a customer ship.
    let if_match = json!({"if-match": "1"});
    let cancel = format!("/orders/{id}/cancel");
    let other = call(event_by(
        token_of("c-8"),
        "POST",
        &cancel,
        if_match.clone(),
        None,
    ))
    .await;
    assert_eq!(other.status_code, 404);
    let ship = format!("/orders/{id}/ship");
    let parcel = json!({"carrier": "DHL", "tracking_number": "JD0001"}).to_string();
    let by_customer = call(event_by(
        token_of("c-7"),
        "POST",
        &ship,
        json_headers(),
        Some(&parcel),
    ))
    .await;
    assert_eq!(by_customer.status_code, 403);
    assert_eq!(appended().await, 1, "refused commands append nothing");
    // The warehouse (SigV4) reaches the domain: the order is not in fulfilment yet.
    let by_warehouse = call(event_by(
        signed(),
        "POST",
        &ship,
        json_headers(),
        Some(&parcel),
    ))
    .await;
    assert_eq!(by_warehouse.status_code, 409, "{:?}", by_warehouse.body);
    // The owner cancels.
    let mine = call(event_by(token_of("c-7"), "POST", &cancel, if_match, None)).await;
    assert_eq!(mine.status_code, 200, "{:?}", mine.body);
    assert_eq!(body(&mine)["status"], "CANCELLED");
    assert_eq!(appended().await, 2);

    // The sales report is the back office's: a signed principal reads the placement and
    // the cancellation; a customer's token is refused.
    project().await;
    let today = orders_domain::ports::Clock::now(&SystemClock).date();
    let report = format!("/sales/daily?from={today}");
    let by_customer = call(event_by(token_of("c-7"), "GET", &report, json!({}), None)).await;
    assert_eq!(by_customer.status_code, 403, "{:?}", by_customer.body);
    let signed_report = call(event_by(signed(), "GET", &report, json!({}), None)).await;
    assert_eq!(signed_report.status_code, 200, "{:?}", signed_report.body);
    let totals = &body(&signed_report)["totals"][0];
    assert_eq!(
        (
            totals["orders_placed"].as_i64(),
            totals["orders_cancelled"].as_i64(),
            totals["net_amount"].as_i64()
        ),
        (Some(1), Some(1), Some(0)),
        "{:?}",
        signed_report.body
    );

    // An idempotency key answers only the caller that used it.
    let keyed = json!({"content-type": "application/json", "idempotency-key": "k-1"});
    let place_keyed_as = |who: &str| {
        call(event_by(
            token_of(who),
            "POST",
            "/orders",
            keyed.clone(),
            Some(&order),
        ))
    };
    let first = place_keyed_as("c-7").await;
    assert_eq!(first.status_code, 201);
    let again = place_keyed_as("c-7").await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = place_keyed_as("c-8").await;
    assert_eq!(
        other.status_code, 422,
        "another caller's key is not theirs to replay"
    );
    assert_eq!(appended().await, 3);

    // /health stays public.
    let health = call(event("GET", "/health", json!({}), None)).await;
    assert_eq!(health.status_code, 200);
}
