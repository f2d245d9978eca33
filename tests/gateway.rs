//! The api Lambda's edge with the real router: API Gateway HTTP API events (payload 2.0)
//! through `orders_handlers::gateway`, on the local stores, as the api function runs them.

use lambda_runtime::{Context, LambdaEvent};
use orders_handlers::api::{self, Api};
use orders_handlers::commands::Commands;
use orders_handlers::gateway;
use orders_handlers::links::ConsoleLinks;
use orders_handlers::system::{SystemClock, UlidIds};
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
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
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
    let raw = RawValue::from_string(event.to_string()).expect("JSON");
    LambdaEvent::new(raw, Context::default())
}

fn body(r: &aws_lambda_events::apigw::ApiGatewayV2httpResponse) -> Value {
    let wire = serde_json::to_value(r).expect("serializable");
    assert_eq!(wire["isBase64Encoded"], false, "{wire}");
    serde_json::from_str(wire["body"].as_str().expect("a text body")).expect("a JSON body")
}

#[tokio::test]
async fn the_api_answers_api_gateway_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = LocalStores::open(dir.path()).expect("stores");
    let router = api::router(Arc::new(Api {
        commands: Commands::new(
            stores.events.clone(),
            Arc::new(SystemClock),
            Arc::new(UlidIds::new()),
        ),
        reads: stores.read_models.clone(),
        links: ConsoleLinks::Off,
    }));

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

    let health = call(event("GET", "/health", json!({}), None)).await;
    assert_eq!(health.status_code, 200);
    assert_eq!(body(&health)["status"], "ok");
}
