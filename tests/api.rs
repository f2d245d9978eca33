//! Black-box tests of the HTTP API over TCP against an in-process runtime.

mod common;

use common::*;
use orders_domain::ports::EventStore;
use serde_json::json;

#[tokio::test]
async fn placing_an_order_answers_201_and_the_projection_follows() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let r = post(
        &mut c,
        "/orders",
        &[("x-correlation-id", "corr-123")],
        &order("c-42"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let body = json(&r);
    let id = body["order_id"].as_str().expect("order_id").to_string();
    assert_eq!(
        header(&r, "location"),
        Some(format!("/orders/{id}").as_str())
    );
    assert_eq!(body["status"], "PLACED");
    assert_eq!(body["version"], 1);
    assert_eq!(body["total"], json!({"amount": 2500, "currency": "EUR"}));
    assert_eq!(header(&r, "x-correlation-id"), Some("corr-123"));

    let view = eventually(&mut c, &format!("/orders/{id}"), |r| r.status == 200).await;
    assert_eq!(view.status, 200);
    let v = json(&view);
    assert_eq!(v["order_id"], id.as_str());
    assert_eq!(v["customer"]["id"], "c-42");
    assert_eq!(
        v["items"][0]["line_total"],
        json!({"amount": 2500, "currency": "EUR"})
    );
    assert_eq!(v["correlation_id"], "corr-123");
    assert_eq!(header(&view, "etag"), Some("\"1\""));

    let ev = get(&mut c, &format!("/orders/{id}/events")).await;
    assert_eq!(ev.status, 200);
    let ev = json(&ev);
    let events = ev["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["event_type"], "OrderPlaced");
    assert_eq!(e["version"], 1);
    assert_eq!(e["schema_version"], 2);
    assert_eq!(e["aggregate_id"], id.as_str());
    assert_eq!(e["correlation_id"], "corr-123");
    for k in ["event_id", "occurred_at", "causation_id", "payload"] {
        assert!(!e[k].is_null(), "{k} missing from the envelope");
    }
    assert_eq!(get(&mut c, "/health").await.status, 200);
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn customer_orders_page_newest_first() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let mut ids = vec![];
    for _ in 0..5 {
        let r = post(&mut c, "/orders", &[], &order("c-page")).await;
        ids.push(json(&r)["order_id"].as_str().expect("id").to_string());
        // ULIDs order by millisecond; keep placements in distinct milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    post(&mut c, "/orders", &[], &order("someone-else")).await;
    s.runtime.wait_projected().await;

    let mut seen = vec![];
    let mut path = "/orders?customer_id=c-page&limit=2".to_string();
    loop {
        let r = get(&mut c, &path).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let page = json(&r);
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["order_id"].as_str().expect("id").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cur) => path = format!("/orders?customer_id=c-page&limit=2&cursor={cur}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(
        seen, ids,
        "all of the customer's orders, newest first, once each"
    );
    s.runtime.shutdown().await.expect("shutdown");
}

/// Places the sample order for `customer`; its id.
async fn place(c: &mut orders::client::Connection, customer: &str) -> String {
    let r = post(c, "/orders", &[], &order(customer)).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    json(&r)["order_id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn cancel_needs_the_current_version() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-1").await;
    let path = format!("/orders/{id}/cancel");

    let missing = post(&mut c, &path, &[], &json!({})).await;
    assert_eq!(missing.status, 428);
    assert_eq!(json(&missing)["field"], "If-Match");

    let stale = post(&mut c, &path, &[("if-match", "7")], &json!({"reason": "x"})).await;
    assert_eq!(stale.status, 412);
    assert_eq!(
        header(&stale, "content-type"),
        Some("application/problem+json")
    );

    let ok = post(
        &mut c,
        &path,
        &[("if-match", "\"1\"")],
        &json!({"reason": "changed my mind"}),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(json(&ok)["status"], "CANCELLED");
    assert_eq!(json(&ok)["version"], 2);

    let again = post(&mut c, &path, &[("if-match", "2")], &json!({})).await;
    assert_eq!(again.status, 409);

    let unknown = post(
        &mut c,
        "/orders/nope/cancel",
        &[("if-match", "1")],
        &json!({}),
    )
    .await;
    assert_eq!(unknown.status, 404);

    let view = eventually(&mut c, &format!("/orders/{id}"), |r| {
        json(r)["status"] == "CANCELLED"
    })
    .await;
    assert_eq!(json(&view)["cancellation_reason"], "changed my mind");
    s.runtime.shutdown().await.expect("shutdown");
}

/// `GET /orders/{id}?version=N|at=T`: the view as it stood then, folded from the log
/// (so there right after the POST, before the projector has run).
#[tokio::test]
async fn an_order_reads_as_it_stood_at_a_version_or_a_moment() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-1").await;
    let v1 = get(&mut c, &format!("/orders/{id}?version=1")).await;
    assert_eq!(v1.status, 200, "{}", String::from_utf8_lossy(&v1.body));
    assert_eq!(json(&v1)["status"], "PLACED");
    assert_eq!(json(&v1)["version"], 1);
    assert_eq!(header(&v1, "etag"), Some("\"1\""));
    let placed_at = json(&v1)["placed_at"]
        .as_str()
        .expect("placed_at")
        .to_string();
    let cancel = post(
        &mut c,
        &format!("/orders/{id}/cancel"),
        &[("if-match", "1")],
        &json!({"reason": "changed my mind"}),
    )
    .await;
    assert_eq!(cancel.status, 200);
    let events = json(&get(&mut c, &format!("/orders/{id}/events")).await);
    let cancelled_at = events["events"][1]["occurred_at"]
        .as_str()
        .expect("the cancellation's time")
        .to_string();

    let v2 = get(&mut c, &format!("/orders/{id}?version=2")).await;
    assert_eq!(json(&v2)["status"], "CANCELLED");
    assert_eq!(json(&v2)["cancellation_reason"], "changed my mind");
    // The first version has not changed, and equals what the projector showed then.
    let again = get(&mut c, &format!("/orders/{id}?version=1")).await;
    assert_eq!(json(&again), json(&v1));
    // By moment: at the placement, the placed order; at the cancellation, the cancelled.
    let at = |t: &str| format!("/orders/{id}?at={t}");
    let then = get(&mut c, &at(&placed_at)).await;
    assert_eq!(
        (json(&then)["version"].clone(), then.status),
        (json!(1), 200)
    );
    let now = get(&mut c, &at(&cancelled_at)).await;
    assert_eq!(json(&now)["status"], "CANCELLED");
    // The latest version read from the log is the projected view.
    let projected = eventually(&mut c, &format!("/orders/{id}"), |r| {
        json(r)["version"] == 2
    })
    .await;
    assert_eq!(json(&projected), json(&v2));

    let before = get(&mut c, &at("2000-01-01T00:00:00Z")).await;
    assert_eq!(before.status, 404);
    assert!(
        json(&before)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("was not placed yet")),
        "{}",
        json(&before)
    );
    let future = get(&mut c, &format!("/orders/{id}?version=3")).await;
    assert_eq!(future.status, 404);
    assert!(
        json(&future)["detail"]
            .as_str()
            .is_some_and(|d| d.contains("its latest is 2")),
        "{}",
        json(&future)
    );
    assert_eq!(get(&mut c, "/orders/01UNKNOWN?version=1").await.status, 404);
    // The events up to a point: the same cut.
    let upto = |q: &str| format!("/orders/{id}/events?{q}");
    let first = get(&mut c, &upto("version=1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(header(&first, "etag"), Some("\"1\""));
    assert_eq!(json(&first)["version"], 1);
    assert_eq!(json(&first)["events"].as_array().map(Vec::len), Some(1));
    let by_then = json(&get(&mut c, &upto(&format!("at={cancelled_at}"))).await);
    assert_eq!(by_then["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(get(&mut c, &upto("version=3")).await.status, 404);
    assert_eq!(
        get(&mut c, &upto("at=2000-01-01T00:00:00Z")).await.status,
        404
    );
    let bad = get(&mut c, &upto("version=x")).await;
    assert_eq!(
        (bad.status, json(&bad)["field"].clone()),
        (400, json!("version"))
    );
    for (query, field) in [
        ("version=0", "version"),
        ("version=two", "version"),
        ("version=-1", "version"),
        ("at=yesterday", "at"),
        ("at=2026-11-04T15:30:00%2B01:00", "at"),
        ("version=1&at=2026-11-04T15:30:00Z", "at"),
        ("as_of=1", "as_of"),
    ] {
        let r = get(&mut c, &format!("/orders/{id}?{query}")).await;
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(
            header(&r, "content-type"),
            Some("application/problem+json"),
            "{query}"
        );
        assert_eq!(json(&r)["field"], field, "{query}");
    }

    // The CLI reads the same points of the local log.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orders"))
            .args(["events", &id, "--data-dir"])
            .arg(s.dir.path())
            .args(args)
            .output()
            .expect("orders events");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["--view", "--version", "1"]);
    assert!(ok, "{err}");
    let view: serde_json::Value = serde_json::from_str(&out).expect("a view");
    assert_eq!(view, json(&v1));
    let (ok, out, err) = cli(&["--at", &placed_at]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event per line"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["event_type"], "OrderPlaced");
    assert_eq!(cli(&[]).1.lines().count(), 2);
    let (ok, out, err) = cli(&["--view"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).expect("view"),
        json(&v2)
    );
    // Bad points: one line on stderr, nothing on stdout, a non-zero exit.
    for args in [
        &["--version", "3"][..],
        &["--view", "--at", "2000-01-01T00:00:00Z"],
        &["--version", "0"],
        &["--at", "yesterday"],
        &["--version", "1", "--at", "2000-01-01T00:00:00Z"],
        // The event table on AWS, or a data dir: not both.
        &["--aws"],
    ] {
        let (ok, out, err) = cli(args);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(!err.trim().is_empty(), "{args:?}");
    }
    let (_, _, err) = cli(&["--version", "3"]);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("its latest is 2"), "{err}");
    s.runtime.shutdown().await.expect("shutdown");
}

/// Without the workflow nothing takes the order into fulfilment: it cannot ship yet, and
/// the problem says why (the whole lifecycle is in tests/workflow.rs).
#[tokio::test]
async fn an_order_not_in_fulfilment_does_not_ship() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-1").await;
    let path = format!("/orders/{id}/ship");
    let parcel = json!({"carrier": "UPS", "tracking_number": "1Z"});
    let early = post(&mut c, &path, &[], &parcel).await;
    assert_eq!(
        early.status,
        409,
        "{}",
        String::from_utf8_lossy(&early.body)
    );
    assert_eq!(
        json(&early)["detail"],
        "order cannot be shipped: it is PLACED"
    );
    let plain = c
        .send(
            http::Method::POST,
            &path,
            &[("content-type", "text/plain")],
            Some(parcel.to_string().into()),
        )
        .await
        .expect("send");
    assert_eq!(plain.status, 415);
    assert_eq!(
        s.runtime.stores.events.load(&id).await.expect("load").len(),
        1
    );
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_idempotency_key_applies_a_command_once() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let key = [("idempotency-key", "key-1")];
    let first = post(&mut c, "/orders", &key, &order("c-idem")).await;
    let second = post(&mut c, "/orders", &key, &order("c-idem")).await;
    assert_eq!(first.status, 201);
    assert_eq!(second.status, 201);
    assert_eq!(json(&first), json(&second));
    assert_eq!(header(&second, "idempotent-replayed"), Some("true"));
    assert_eq!(header(&second, "location"), header(&first, "location"));
    assert_eq!(s.runtime.stores.events.count().await.expect("count"), 1);

    let other = post(&mut c, "/orders", &key, &order("someone-else")).await;
    assert_eq!(other.status, 422);
    assert_eq!(json(&other)["field"], "Idempotency-Key");
    assert_eq!(s.runtime.stores.events.count().await.expect("count"), 1);

    // Concurrent first uses of one key: one order, every answer the same.
    let mut tasks = vec![];
    for _ in 0..8 {
        let addr = s.runtime.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = orders::client::Connection::open(addr)
                .await
                .expect("connect");
            json(
                &post(
                    &mut c,
                    "/orders",
                    &[("idempotency-key", "key-2")],
                    &order("c-race"),
                )
                .await,
            )
        }));
    }
    let mut answers = vec![];
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    assert!(
        answers
            .iter()
            .all(|a| a["order_id"] == answers[0]["order_id"]),
        "{answers:?}"
    );
    assert_eq!(s.runtime.stores.events.count().await.expect("count"), 2);
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field_and_changes_nothing() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut o = order("c-bad");
        f(&mut o);
        o
    };
    let cases: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        (
            "wrong type",
            with(&|o| o["items"][0]["quantity"] = json!("2")),
            422,
            "items[0].quantity",
        ),
        (
            "unknown field",
            with(&|o| o["coupon"] = json!("FREE")),
            422,
            "coupon",
        ),
        (
            "unknown nested field",
            with(&|o| o["customer"]["age"] = json!(3)),
            422,
            "customer.age",
        ),
        (
            "missing field",
            with(&|o| {
                if let Some(m) = o["customer"].as_object_mut() {
                    m.remove("email");
                }
            }),
            422,
            "customer.email",
        ),
        ("no items", with(&|o| o["items"] = json!([])), 422, "items"),
        (
            "quantity zero",
            with(&|o| o["items"][0]["quantity"] = json!(0)),
            422,
            "items[0].quantity",
        ),
        (
            "quantity too big",
            with(&|o| o["items"][0]["quantity"] = json!(1001)),
            422,
            "items[0].quantity",
        ),
        (
            "too many lines",
            with(&|o| o["items"] = json!(vec![o["items"][0].clone(); 101])),
            422,
            "items",
        ),
        (
            "negative amount",
            with(&|o| o["items"][0]["unit_price"]["amount"] = json!(-1)),
            422,
            "items[0].unit_price.amount",
        ),
        (
            "fractional amount",
            with(&|o| o["items"][0]["unit_price"]["amount"] = json!(12.5)),
            422,
            "items[0].unit_price.amount",
        ),
        (
            "invalid currency",
            with(&|o| o["items"][0]["unit_price"]["currency"] = json!("EURO")),
            422,
            "items[0].unit_price.currency",
        ),
        (
            "mixed currencies",
            with(&|o| {
                let mut l = o["items"][0].clone();
                l["unit_price"]["currency"] = json!("USD");
                if let Some(a) = o["items"].as_array_mut() {
                    a.push(l);
                }
            }),
            422,
            "items[1].unit_price.currency",
        ),
        (
            "invalid email",
            with(&|o| o["customer"]["email"] = json!("ada-at-example")),
            422,
            "customer.email",
        ),
    ];
    for (name, body, status, field) in cases {
        let r = post(&mut c, "/orders", &[], &body).await;
        assert_eq!(
            r.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            header(&r, "content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        let p = json(&r);
        assert_eq!(p["field"], field, "{name}: {p}");
        assert_eq!(p["status"], status, "{name}");
        assert!(p["title"].is_string() && p["type"].is_string(), "{name}");
    }

    let malformed = c
        .send(
            http::Method::POST,
            "/orders",
            &[],
            Some(b"{\"customer\":".to_vec().into()),
        )
        .await
        .expect("request");
    assert_eq!(malformed.status, 400);
    assert_eq!(json(&malformed)["field"], "body");

    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    let too_big = c
        .send(
            http::Method::POST,
            "/orders",
            &[],
            Some(big.into_bytes().into()),
        )
        .await
        .expect("request");
    assert_eq!(too_big.status, 413);
    assert_eq!(json(&too_big)["field"], "body");

    let wrong_type = c
        .send(
            http::Method::POST,
            "/orders",
            &[("content-type", "text/plain")],
            None,
        )
        .await
        .expect("request");
    assert_eq!(wrong_type.status, 415);
    assert_eq!(json(&wrong_type)["field"], "Content-Type");

    let unknown = get(&mut c, "/orders/01UNKNOWN").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        header(&unknown, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(get(&mut c, "/orders/01UNKNOWN/events").await.status, 404);

    let no_customer = get(&mut c, "/orders").await;
    assert_eq!(
        (no_customer.status, json(&no_customer)["field"].clone()),
        (400, json!("customer_id"))
    );
    let bad_limit = get(&mut c, "/orders?customer_id=c&limit=0").await;
    assert_eq!(json(&bad_limit)["field"], "limit");
    let bad_cursor = get(&mut c, "/orders?customer_id=c&cursor=garbage").await;
    assert_eq!(
        (bad_cursor.status, json(&bad_cursor)["field"].clone()),
        (400, json!("cursor"))
    );
    assert_eq!(get(&mut c, "/nowhere").await.status, 404);

    assert_eq!(
        s.runtime.stores.events.count().await.expect("count"),
        0,
        "nothing was appended"
    );
    assert!(
        s.runtime
            .stores
            .events
            .load("01UNKNOWN")
            .await
            .expect("load")
            .is_empty()
    );
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn every_answer_carries_a_correlation_id_and_bad_paths_are_problems() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    for path in ["/orders/%FF", "/orders/%C0%AF/events"] {
        let r = get(&mut c, path).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(
            header(&r, "content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        assert_eq!(json(&r)["field"], "id", "{path}");
        assert!(
            header(&r, "x-correlation-id").is_some_and(|v| !v.is_empty()),
            "{path}"
        );
    }
    let missing = get(&mut c, "/orders/nope").await;
    assert!(header(&missing, "x-correlation-id").is_some());
    let echoed = c
        .send(
            http::Method::GET,
            "/health",
            &[("x-correlation-id", "mine-1")],
            None,
        )
        .await
        .expect("request");
    assert_eq!(header(&echoed, "x-correlation-id"), Some("mine-1"));
    s.runtime.shutdown().await.expect("shutdown");
}
