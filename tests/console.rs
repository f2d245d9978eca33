//! The console's executions pages over HTTP, against a runtime that really ran the
//! workflow: the list (status filter, counts, pagination, newest first, refused query
//! parameters) and one execution (states coloured from its history, panel data, events).

mod common;

use common::*;
use orders::client::{Connection, Reply};
use std::time::Duration;

fn body(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

async fn place(c: &mut Connection, customer: &str) -> String {
    let r = post(c, "/orders", &[], &order(customer)).await;
    assert_eq!(r.status, 201, "{}", body(&r));
    json(&r)["order_id"].as_str().expect("id").to_string()
}

/// Waits (bounded) until every execution has ended, and returns their count.
async fn all_ended(s: &Served, expected: usize, timeout: Duration) {
    let db = s.runtime.workflow().expect("workflow").db.clone();
    until("the executions to end", timeout, || {
        let done = db
            .list(None, 0)
            .expect("list")
            .iter()
            .filter(|r| r.status != asl::ExecutionStatus::Running)
            .count();
        (done == expected).then_some(())
    })
    .await;
}

/// The execution names in the list's rows, in page order.
fn rows(html: &str) -> Vec<String> {
    html.split(r#"<tr class="execution" data-name=""#)
        .skip(1)
        .map(|s| s.split('"').next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn the_list_filters_by_status_pages_newest_first_and_refuses_bad_parameters() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let mut placed = Vec::new();
    for i in 0..27 {
        placed.push(place(&mut c, &format!("c-{i}")).await);
    }
    all_ended(&s, 27, Duration::from_secs(30)).await;

    let first = get(&mut c, "/console/executions").await;
    assert_eq!(first.status, 200);
    let html = body(&first);
    assert!(html.contains(r#"data-status="ALL">All (27)</a>"#), "{html}");
    assert!(html.contains(r#"data-status="SUCCEEDED">Succeeded (27)</a>"#));
    assert!(html.contains(r#"data-status="FAILED">Failed (0)</a>"#));
    assert!(html.contains("Page 1 of 2"));
    // Newest first: the order ids (= execution names) are placed in increasing order.
    let page1 = rows(&html);
    assert_eq!(page1.len(), 25);
    let newest: Vec<String> = placed.iter().rev().take(25).cloned().collect();
    assert_eq!(page1, newest);
    assert!(html.contains(r#"rel="next" href="/console/executions?page=2""#));

    let second = body(&get(&mut c, "/console/executions?page=2").await);
    assert_eq!(rows(&second), vec![placed[1].clone(), placed[0].clone()]);
    assert!(second.contains("Page 2 of 2") && !second.contains(r#"rel="next""#));
    assert!(second.contains(r#"rel="prev" href="/console/executions""#));

    // Filters keep their status across pages; a status with nothing says so.
    let ok = body(&get(&mut c, "/console/executions?status=succeeded&page=2").await);
    assert_eq!(rows(&ok).len(), 2);
    assert!(
        ok.contains(r#"class="active" href="/console/executions?status=SUCCEEDED""#),
        "{ok}"
    );
    assert!(ok.contains(r#"rel="prev" href="/console/executions?status=SUCCEEDED""#));
    let failed = get(&mut c, "/console/executions?status=FAILED").await;
    assert_eq!(failed.status, 200);
    assert!(rows(&body(&failed)).is_empty());
    assert!(body(&failed).contains("No executions with status Failed."));

    // Bad query parameters: a 400 page naming the parameter.
    for (query, param) in [
        ("status=DONE", "status"),
        ("page=0", "page"),
        ("page=two", "page"),
        ("sort=name", "sort"),
    ] {
        let r = get(&mut c, &format!("/console/executions?{query}")).await;
        assert_eq!(r.status, 400, "{query}");
        assert!(
            header(&r, "content-type")
                .unwrap_or("")
                .starts_with("text/html"),
            "{query}"
        );
        assert!(
            body(&r).contains(&format!("<code>{param}</code>")),
            "{query}: {}",
            body(&r)
        );
    }
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_detail_colours_each_state_from_what_the_history_says() {
    // The email is rejected (unverified sender): retried, then caught by its branch.
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        sender_verified: false,
        ..workflow_options()
    })
    .await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-9").await;
    all_ended(&s, 1, Duration::from_secs(30)).await;

    let r = get(&mut c, &format!("/console/executions/{id}")).await;
    assert_eq!(r.status, 200);
    let html = body(&r);
    let class_of = |state: &str| -> String {
        let needle = format!(r#"" data-state="{state}""#);
        let at = html
            .find(&needle)
            .unwrap_or_else(|| panic!("no state {state} in the graph"));
        let start = html[..at].rfind("class=\"").expect("class") + 7;
        html[start..at].to_string()
    };
    assert_eq!(
        class_of("Notify customer and request fulfilment"),
        "state container succeeded"
    );
    assert_eq!(
        class_of("Publish order placed notification"),
        "state succeeded"
    );
    assert_eq!(class_of("Request fulfilment"), "state succeeded");
    assert_eq!(class_of("Send confirmation email"), "state caught");
    assert_eq!(class_of("Confirmation email failed"), "state succeeded");
    assert_eq!(class_of("Order notification failed"), "state not-reached");
    assert_eq!(class_of("Record outcome"), "state succeeded");

    // The panel's data: the caught state's error and its attempts.
    let data = html
        .split(r#"<script id="state-data" type="application/json">"#)
        .nth(1)
        .and_then(|s| s.split("</script>").next())
        .expect("state data");
    let data: serde_json::Value = serde_json::from_str(data).expect("state data is JSON");
    let email = &data["Send confirmation email"];
    assert_eq!(email["status"], "caught");
    assert_eq!(email["error"], "SesV2.MessageRejectedException");
    assert_eq!(email["failures"], 3, "one attempt and two retries");
    assert!(email["input"].as_str().unwrap_or("").contains(&id));
    let handler = &data["Confirmation email failed"];
    let out: serde_json::Value =
        serde_json::from_str(handler["output"].as_str().expect("output")).expect("JSON output");
    assert_eq!(out["status"], "FAILED");

    // The history: AWS's event types, failed attempts flagged, the resource named.
    assert_eq!(html.matches(r#"data-type="TaskFailed""#).count(), 3);
    assert!(html.contains(r#"<tr class="event succeeded" data-type="ExecutionSucceeded">"#));
    assert!(html.contains(r#"<tr class="event failed" data-type="TaskFailed">"#));
    assert!(html.contains("<code>aws-sdk:sesv2:sendEmail</code>"));
    // The no-script table has a row per state with the same status.
    assert!(html.contains(r#"<tr data-state="Send confirmation email" class="caught">"#));

    // By ARN too; unknown executions are a 404 page.
    let db = s.runtime.workflow().expect("workflow").db.clone();
    let arn = db
        .find_execution(&id)
        .expect("read")
        .expect("execution")
        .execution_arn;
    let by_arn = get(&mut c, &format!("/console/executions/{arn}")).await;
    assert_eq!(by_arn.status, 200);
    assert!(body(&by_arn).contains(&arn));
    let missing = get(&mut c, "/console/executions/no-such-execution").await;
    assert_eq!(missing.status, 404);
    assert!(body(&missing).contains("No execution named no-such-execution."));
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_running_execution_shows_the_state_in_progress_and_what_is_not_reached_yet() {
    // The email task waits 2 s before its effect: long enough to look at it mid-run.
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        delays: vec![("sendEmail".into(), 2_000)],
        ..workflow_options()
    })
    .await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-8").await;
    let path = format!("/console/executions/{id}");
    let running = eventually(&mut c, &path, |r| {
        body(r).contains(r#"class="state running" data-state="Send confirmation email""#)
    })
    .await;
    let html = body(&running);
    assert!(
        html.contains(r#"class="state running" data-state="Send confirmation email""#),
        "{html}"
    );
    assert!(html.contains(
        r#"class="state container running" data-state="Notify customer and request fulfilment""#
    ));
    assert!(html.contains(r#"class="state not-reached" data-state="Record outcome""#));
    assert!(html.contains(r#"<span class="status badge RUNNING">Running</span>"#));
    let list = body(&get(&mut c, "/console/executions?status=RUNNING").await);
    assert_eq!(rows(&list), vec![id.clone()]);
    assert!(list.contains(r#"data-status="RUNNING">Running (1)</a>"#));

    all_ended(&s, 1, Duration::from_secs(20)).await;
    let done = body(&get(&mut c, &path).await);
    assert!(done.contains(r#"class="state succeeded" data-state="Send confirmation email""#));
    assert!(done.contains(r#"class="state succeeded" data-state="Record outcome""#));
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn without_the_workflow_the_pages_say_so() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    for path in ["/console/executions", "/console/executions/x"] {
        let r = get(&mut c, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(body(&r).contains("The workflow is not running"), "{path}");
    }
    s.runtime.shutdown().await.expect("shutdown");
}
