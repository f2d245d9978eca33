//! `orders serve --auth`: the deployed stack's authorizers played locally, with tokens from
//! `orders token`, so that the API's access rules can be tried before deploying.

mod common;

use common::*;
use orders::client::Connection;
use orders::runtime::{Runtime, RuntimeConfig};
use serde_json::json;

fn token(dir: &std::path::Path, args: &[&str]) -> String {
    let dir = dir.display().to_string();
    let mut all = vec!["token", "--data-dir", &dir];
    all.extend_from_slice(args);
    let out = orders_cli(&all);
    assert!(
        out.status.success(),
        "orders token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

async fn send(
    c: &mut Connection,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> orders::client::Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json"), ("if-match", "1")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    c.send(method, path, &headers, body.map(|b| b.to_string().into()))
        .await
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_the_local_api_wants_a_token_and_applies_the_access_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::start(RuntimeConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        observer: None,
        allowed_hosts: vec![],
        allowed_origins: vec![],
        auth: true,
        throttle: false,
    })
    .await
    .expect("runtime starts");
    let mut c = connect(&runtime).await;
    let ada = token(
        dir.path(),
        &["--customer", "c-7", "--email", "ada@example.com"],
    );
    let grace = token(dir.path(), &["--customer", "c-8"]);
    let warehouse = token(dir.path(), &["--warehouse"]);
    let back_office = token(dir.path(), &["--back-office"]);
    let other_dir = tempfile::tempdir().expect("temp dir");
    let forged = token(other_dir.path(), &["--customer", "c-7"]);

    // No token, or one this server did not sign: API Gateway's own 401, nothing placed.
    for t in [None, Some(forged.as_str()), Some("garbage")] {
        let r = send(&mut c, http::Method::POST, "/orders", t, Some(order("c-7"))).await;
        assert_eq!(r.status, 401, "{t:?}");
        assert_eq!(json(&r), json!({"message": "Unauthorized"}));
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer"));
    }

    // The owner places and reads; their verified address is the order's.
    let placed = send(
        &mut c,
        http::Method::POST,
        "/orders",
        Some(&ada),
        Some(order("c-7")),
    )
    .await;
    assert_eq!(
        placed.status,
        201,
        "{}",
        String::from_utf8_lossy(&placed.body)
    );
    let id = json(&placed)["order_id"].as_str().expect("id").to_string();
    let mut elsewhere = order("c-7");
    elsewhere["customer"]["email"] = json!("someone@example.org");
    let r = send(
        &mut c,
        http::Method::POST,
        "/orders",
        Some(&ada),
        Some(elsewhere),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(json(&r)["field"], "customer.email");
    runtime.wait_projected().await;
    let events = format!("/orders/{id}/events");
    let mine = send(&mut c, http::Method::GET, &events, Some(&ada), None).await;
    assert_eq!(mine.status, 200);

    // Another customer: the order does not exist for them, the list is not theirs.
    for path in [
        format!("/orders/{id}"),
        format!("/orders/{id}?version=1"),
        events.clone(),
    ] {
        let r = send(&mut c, http::Method::GET, &path, Some(&grace), None).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = send(
        &mut c,
        http::Method::GET,
        "/orders?customer_id=c-7",
        Some(&grace),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let cancel = format!("/orders/{id}/cancel");
    let r = send(&mut c, http::Method::POST, &cancel, Some(&grace), None).await;
    assert_eq!(r.status, 404);

    // Shipping: the warehouse's token reaches the domain (the order is not in fulfilment
    // yet), a customer's is refused.
    let ship = format!("/orders/{id}/ship");
    let parcel = json!({"carrier": "DHL", "tracking_number": "JD0001"});
    let r = send(
        &mut c,
        http::Method::POST,
        &ship,
        Some(&ada),
        Some(parcel.clone()),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = send(
        &mut c,
        http::Method::POST,
        &ship,
        Some(&warehouse),
        Some(parcel),
    )
    .await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));

    // The sales report: the back office's, not a customer's, and not without a token.
    let sales = "/sales/daily?from=2026-11-01";
    for (t, status) in [
        (None, 401),
        (Some(ada.as_str()), 403),
        (Some(back_office.as_str()), 200),
    ] {
        let r = send(&mut c, http::Method::GET, sales, t, None).await;
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    }
    // Each signed principal reaches the one route its IAM policy allows: the other IAM
    // route is API Gateway's 403 naming it, a customer's route its 401 (no JWT there).
    for (t, principal, method, path) in [
        (
            &warehouse,
            "orders-warehouse",
            http::Method::GET,
            "/sales/daily",
        ),
        (
            &back_office,
            "orders-back-office",
            http::Method::POST,
            ship.as_str(),
        ),
    ] {
        let r = send(&mut c, method.clone(), path, Some(t), None).await;
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            header(&r, "x-amzn-errortype"),
            Some("AccessDeniedException")
        );
        let message = json(&r)["message"].as_str().unwrap_or_default().to_string();
        assert!(
            message.contains(principal)
                && message.contains("is not authorized to perform: execute-api:Invoke")
                && message.contains(&format!("{method}{path}")),
            "{message}"
        );
    }
    for t in [&warehouse, &back_office] {
        for (method, path) in [
            (http::Method::GET, format!("/orders/{id}")),
            (http::Method::GET, "/orders?customer_id=c-7".to_string()),
            (http::Method::POST, cancel.clone()),
        ] {
            let r = send(&mut c, method, &path, Some(t), None).await;
            assert_eq!(r.status, 401, "{path}");
            assert_eq!(json(&r), json!({"message": "Unauthorized"}));
        }
    }

    // The owner cancels.
    let r = send(&mut c, http::Method::POST, &cancel, Some(&ada), None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    // /health and the console are not behind the authorizer.
    assert_eq!(get(&mut c, "/health").await.status, 200);
    assert_eq!(get(&mut c, "/console/orders").await.status, 200);

    // `orders submit --token` places an order through it.
    let url = format!("http://{}", runtime.addr);
    let out = orders_cli_off_thread(&["submit", "--url", &url, "--token", &grace]).await;
    assert!(
        !out.status.success(),
        "the sample order is c-42's, not c-8's"
    );
    let out = orders_cli_off_thread(&["submit", "--url", &url]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("orders token"), "{err}");
    let c42 = token(dir.path(), &["--customer", "c-42"]);
    let out = orders_cli_off_thread(&["submit", "--url", &url, "--token", &c42]).await;
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    runtime.shutdown().await.expect("shutdown");
}

#[test]
fn a_token_is_for_a_customer_the_warehouse_or_the_back_office() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display().to_string();
    let wrong: [&[&str]; 6] = [
        &[],
        &["--customer", "c-7", "--warehouse"],
        &["--customer", "c-7", "--back-office"],
        &["--warehouse", "--back-office"],
        &["--customer", " "],
        &["--customer", "c-7", "--hours", "0"],
    ];
    for extra in wrong {
        let mut bad = vec!["token", "--data-dir", &d];
        bad.extend_from_slice(extra);
        let out = orders_cli(&bad);
        assert!(!out.status.success(), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{bad:?}: {err}");
        assert!(out.stdout.is_empty(), "{bad:?} printed a token");
    }
}
