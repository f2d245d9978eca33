//! The console's order, mailbox, topic and queue pages, black-box over HTTP against a
//! runtime with the workflow; and `workflow.console_url` in `GET /orders/{id}`. Every wait
//! is a bounded poll on the state reached.

mod common;

use common::*;
use orders::client::{Connection, Reply};
use orders_domain::ports::{EventStore, ReadModels};
use orders_local::workflow::services;
use serde_json::Value;
use std::time::Duration;

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Each query of `cases` on the page at `path` is a 400 page naming its parameter.
async fn bad_params(c: &mut Connection, path: &str, cases: &[(&str, &str)]) {
    for (query, param) in cases {
        let r = get(c, &format!("{path}?{query}")).await;
        assert_eq!(r.status, 400, "{query}");
        assert!(
            text(&r).contains(&format!("<code>{param}</code>")),
            "{}",
            text(&r)
        );
    }
}

async fn page(c: &mut Connection, path: &str) -> String {
    let r = get(c, path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", text(&r));
    assert_eq!(
        header(&r, "content-type"),
        Some("text/html; charset=utf-8"),
        "GET {path}"
    );
    text(&r)
}

/// A console form posted as the browser does (same origin: no cross-site headers).
async fn post_form(c: &mut Connection, path: &str, body: &str) -> Reply {
    let form = [("content-type", "application/x-www-form-urlencoded")];
    c.send(
        http::Method::POST,
        path,
        &form,
        Some(body.to_string().into()),
    )
    .await
    .expect("post")
}

/// Posts a form that starts a console job (a replay, verify or switch back). Refused at
/// once (400, 409), that reply; started, 303 to the job's page, which answers 202 while the
/// job runs: then the job's page as it ended (its outcome, or 303 to the page showing it).
async fn job(c: &mut Connection, path: &str, body: &str) -> Reply {
    let r = post_form(c, path, body).await;
    let Some(at) = header(&r, "location")
        .filter(|l| l.starts_with("/console/jobs/"))
        .map(str::to_string)
    else {
        return r;
    };
    assert_eq!(r.status, 303, "{}", text(&r));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let r = get(c, &at).await;
        if r.status != 202 {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{at} still runs: {}",
            text(&r)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A console replay with the form's `fields` that ends well: its outcome page.
async fn replayed(c: &mut Connection, fields: &str) -> String {
    let r = job(c, "/console/projections/replay", fields).await;
    let html = text(&r);
    assert_eq!(r.status, 200, "{html}");
    html
}

/// The log's first event, as if it were the first of `order_id` (to append or project
/// as another order's).
async fn first_event_as(
    events: &orders_local::store::SqliteEventStore,
    order_id: &str,
) -> orders_domain::EventEnvelope {
    let mut e = events.read_from(0, 1).await.expect("read").remove(0).1;
    e.aggregate_id = order_id.into();
    e.event_id = format!("{order_id}-e");
    e
}

async fn place(c: &mut Connection, customer: &str) -> String {
    let r = post(c, "/orders", &[], &order(customer)).await;
    assert_eq!(r.status, 201, "{}", text(&r));
    json(&r)["order_id"].as_str().expect("id").to_string()
}

/// Waits until the workflow has run for the order: confirmed, fulfilment requested, the
/// email notification recorded. Returns the view.
async fn settled(c: &mut Connection, id: &str) -> Value {
    let r = eventually(c, &format!("/orders/{id}"), |r| {
        r.status == 200
            && json(r)["status"] == "FULFILMENT_REQUESTED"
            && json(r)["notifications"]
                .as_array()
                .is_some_and(|n| n.len() == 3)
    })
    .await;
    let v = json(&r);
    assert_eq!(v["status"], "FULFILMENT_REQUESTED", "{v}");
    v
}

fn notification<'a>(v: &'a Value, channel: &str) -> &'a str {
    v["notifications"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["channel"] == channel))
        .and_then(|n| n["message_id"].as_str())
        .unwrap_or_else(|| panic!("no {channel} message id in {v}"))
}

/// The href of the first link whose target starts with `prefix`.
fn link(html: &str, prefix: &str) -> Option<String> {
    let at = html.find(&format!("href=\"{prefix}"))?;
    let rest = &html[at + 6..];
    rest.split('"').next().map(|h| h.replace("&amp;", "&"))
}

#[tokio::test]
async fn order_pages_list_search_and_show_the_timeline_with_links() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let first = place(&mut c, "c-ada").await;
    let other = place(&mut c, "c-bob").await;
    let last = place(&mut c, "c-ada").await;
    let mut views = vec![];
    for id in [&first, &other, &last] {
        views.push(settled(&mut c, id).await);
    }

    // Every order, newest first.
    let all = page(&mut c, "/console/orders").await;
    let pos = |id: &str| all.find(id).unwrap_or_else(|| panic!("{id} not listed"));
    assert!(pos(&last) < pos(&other) && pos(&other) < pos(&first));

    // Search by customer id.
    let ada = page(&mut c, "/console/orders?customer=c-ada").await;
    assert!(ada.contains(&first) && ada.contains(&last), "{ada}");
    assert!(!ada.contains(&other));

    // Pages follow each other through the cursor.
    let one = page(&mut c, "/console/orders?limit=1").await;
    assert!(one.contains(&last) && !one.contains(&other));
    let next = link(&one, "/console/orders?limit=1&amp;cursor=")
        .or_else(|| link(&one, "/console/orders?limit=1&cursor="))
        .expect("a next page link");
    let two = page(&mut c, &next).await;
    assert!(two.contains(&other) && !two.contains(&last), "{two}");

    // Bad query parameters: 400 naming the parameter.
    for (q, param) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=zz", "cursor"),
        ("colour=red", "colour"),
    ] {
        let r = get(&mut c, &format!("/console/orders?{q}")).await;
        assert_eq!(r.status, 400, "{q}");
        assert!(text(&r).contains(&format!("<code>{param}</code>")), "{q}");
    }

    // One order: the timeline lists the log's events in version order.
    let detail = page(&mut c, &format!("/console/orders/{first}")).await;
    let events = json(&get(&mut c, &format!("/orders/{first}/events")).await);
    let logged: Vec<u64> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["version"].as_u64().expect("version"))
        .collect();
    assert!(logged.len() >= 3, "{events}");
    let shown: Vec<u64> = detail
        .split("data-version=\"")
        .skip(1)
        .map(|s| {
            s.split('"')
                .next()
                .unwrap_or("")
                .parse()
                .expect("a version")
        })
        .collect();
    assert_eq!(shown, logged);
    for e in events["events"].as_array().expect("events") {
        let t = e["event_type"].as_str().expect("type");
        assert!(detail.contains(t), "{t} missing from the timeline");
    }
    // Links to its execution, its email, and its topic and queue messages.
    let v = &views[0];
    assert!(detail.contains(&format!("href=\"/console/executions/{first}\"")));
    let mail_id = notification(v, "email");
    assert!(detail.contains(&format!("href=\"/console/mail/{mail_id}\"")));
    assert!(detail.contains(&format!(
        "href=\"/console/topic#m-{}\"",
        notification(v, "sns")
    )));
    assert!(detail.contains(&format!(
        "href=\"/console/queues#m-{}\"",
        notification(v, "sqs")
    )));
    assert!(detail.contains("BOOK-1"));

    // Each version links to the order as it stood then: at version 1, placed, with the
    // later events marked as later.
    let at_one =
        link(&detail, &format!("/console/orders/{first}?version=1")).expect("a link to version 1");
    let then = page(&mut c, &at_one).await;
    assert!(then.contains("As it stood at version"), "{then}");
    assert!(then.contains("status PLACED"), "{then}");
    assert!(!detail.contains("status PLACED"), "now it is further on");
    let later = then.matches("class=\"event later\"").count();
    assert_eq!(later, logged.len() - 1, "{then}");
    assert!(detail.matches("class=\"event later\"").next().is_none());
    for (q, code) in [
        ("version=0", 400),
        ("version=x", 400),
        ("v=1", 400),
        ("version=99", 404),
    ] {
        let r = get(&mut c, &format!("/console/orders/{first}?{q}")).await;
        assert_eq!(r.status, code, "{q}");
    }

    let r = get(&mut c, "/console/orders/01NOSUCHORDER0000000000000").await;
    assert_eq!(r.status, 404);
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn console_url_points_to_the_local_execution_page() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-url").await;
    let v = settled(&mut c, &id).await;
    let url = v["workflow"]["console_url"].as_str().expect("console_url");
    let path = format!("/console/executions/{id}");
    assert_eq!(url, format!("http://{}{path}", s.runtime.addr));
    // It resolves to a page that exists (the executions pages are another module's).
    let r = get(&mut c, &path).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    // A mistyped console address is a console page (with the navigation), not API JSON;
    // outside the console, a problem as before.
    let r = get(&mut c, "/console/executoins/x").await;
    assert_eq!(r.status, 404);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    assert!(
        text(&r).contains("The console has no page at /console/executoins/x.")
            && text(&r).contains(r#"href="/console/orders""#),
        "{}",
        text(&r)
    );
    let r = get(&mut c, "/consoles").await;
    assert_eq!(r.status, 404);
    assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
    s.runtime.shutdown().await.expect("shutdown");

    // Without the workflow there is no execution page to link to.
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-url").await;
    let r = eventually(&mut c, &format!("/orders/{id}"), |r| r.status == 200).await;
    let v = json(&r);
    assert_eq!(v["workflow"]["execution_name"], id.as_str());
    assert!(v["workflow"].get("console_url").is_none(), "{v}");
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn mailbox_topic_and_queue_pages_show_the_orders_messages() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-mail").await;
    let v = settled(&mut c, &id).await;
    let mail_id = notification(&v, "email");

    let mailbox = page(&mut c, "/console/mail").await;
    assert!(mailbox.contains(&format!("href=\"/console/mail/{mail_id}\"")));
    assert!(mailbox.contains(&id), "the subject names the order");

    let mail = page(&mut c, &format!("/console/mail/{mail_id}")).await;
    // The confirmation lists the order lines (text part, and the HTML part's source).
    assert!(mail.contains("BOOK-1"), "{mail}");
    assert!(mail.contains("ada@example.com"));
    // The HTML part only ever in a sandboxed frame, escaped into its srcdoc.
    assert!(
        mail.contains("<iframe class=\"mail-html\" sandbox=\"\""),
        "{mail}"
    );
    assert!(mail.contains("srcdoc=\"&lt;"), "{mail}");
    assert!(mail.contains(&format!("href=\"/console/orders/{id}\"")));

    let eml = get(&mut c, &format!("/console/mail/{mail_id}/eml")).await;
    assert_eq!(eml.status, 200);
    assert_eq!(header(&eml, "content-type"), Some("message/rfc822"));
    assert!(text(&eml).contains("Subject: "));
    assert!(
        header(&eml, "content-disposition").is_some_and(|d| d.contains(".eml")),
        "{:?}",
        eml.headers
    );
    assert_eq!(get(&mut c, "/console/mail/no-such-mail").await.status, 404);
    assert_eq!(
        get(&mut c, "/console/mail/no-such-mail/eml").await.status,
        404
    );

    let topic = page(&mut c, "/console/topic").await;
    assert!(topic.contains(&format!("id=\"m-{}\"", notification(&v, "sns"))));
    assert!(topic.contains(&format!("href=\"/console/orders/{id}\"")));

    // The fulfilment message: consumed by now, listed with consumed messages (the default).
    let sqs = notification(&v, "sqs");
    let queues = page(&mut c, "/console/queues").await;
    assert!(queues.contains(&format!("id=\"m-{sqs}\"")), "{queues}");
    assert!(queues.contains(&format!("href=\"/console/orders/{id}\"")));
    assert!(queues.contains("orders-fulfilment-dlq"));
    let waiting = page(&mut c, "/console/queues?consumed=hide").await;
    assert!(!waiting.contains(&format!("id=\"m-{sqs}\"")));

    for (path, param) in [
        ("/console/queues?consumed=maybe", "consumed"),
        ("/console/queues?limit=100000", "limit"),
        ("/console/topic?limit=-1", "limit"),
        ("/console/mail?page=2", "page"),
    ] {
        let r = get(&mut c, path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(
            text(&r).contains(&format!("<code>{param}</code>")),
            "{path}"
        );
    }
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_redrive_button_moves_a_dead_letter_back_to_the_queue() {
    // Two receives 2 s apart before a poison message is dead: after the redrive it stays
    // on the main queue for 2 s, long enough to see it there.
    let s = serve_workflow(orders_local::workflow::WorkflowOptions {
        max_receive_count: 2,
        visibility_timeout: Duration::from_secs(2),
        ..workflow_options()
    })
    .await;
    let mut c = connect(&s.runtime).await;
    let db = s.runtime.workflow().expect("workflow").db.clone();
    let poison = send_poison(&db).await;
    let in_queue = |queue: &'static str| {
        let db = db.clone();
        let poison = poison.clone();
        move || {
            db.read(|c| services::queue_messages(c, queue, false, 0))
                .expect("read")
                .into_iter()
                .find(|m| m.message_id == poison)
        }
    };
    until(
        "the poison message in the DLQ",
        Duration::from_secs(15),
        in_queue("orders-fulfilment-dlq"),
    )
    .await;

    let queues = page(&mut c, "/console/queues").await;
    let card = queues
        .split(&format!("id=\"m-{poison}\""))
        .nth(1)
        .expect("the dead letter is listed");
    assert!(
        card.contains("message body is not a fulfilment request"),
        "{card}"
    );
    assert!(card.contains("received 2 times"), "{card}");
    assert!(queues.contains("action=\"/console/queues/redrive\""));

    // Bad form input changes nothing.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let r = post_form(
        &mut c,
        "/console/queues/redrive",
        "message_id=no-such-message",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = post_form(&mut c, "/console/queues/redrive", "queue=main").await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("<code>queue</code>"));
    assert!(in_queue("orders-fulfilment-dlq")().is_some());

    let r = c
        .send(
            http::Method::POST,
            "/console/queues/redrive",
            &form,
            Some(format!("message_id={poison}").into()),
        )
        .await
        .expect("post");
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(header(&r, "location"), Some("/console/queues?moved=1"));
    let back = in_queue("orders-fulfilment")().expect("back on the fulfilment queue");
    assert_eq!(back.source_queue, None);
    assert!(in_queue("orders-fulfilment-dlq")().is_none());
    let notice = page(&mut c, "/console/queues?moved=1").await;
    assert!(notice.contains("Moved 1 message(s)"), "{notice}");
    s.runtime.shutdown().await.expect("shutdown");
}

/// Switches readers of `orders` to a new, empty generation, retiring the active one
/// where the live projector stands; returns the new one's number.
async fn retire_orders_generation(reads: &orders_local::store::SqliteReadModels) -> u32 {
    let orders = orders_domain::projection::ProjectionName::Orders;
    let g = reads.create_generation(orders).await.expect("generation");
    reads
        .activate_generation(orders, g, "projector")
        .await
        .expect("switch");
    g
}

#[tokio::test]
async fn the_projections_page_shows_generations_consumers_and_pages_of_dead_letters() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    place(&mut c, "c-ada").await;
    place(&mut c, "c-bob").await;
    s.runtime.wait_projected().await;
    let reads = &s.runtime.stores.read_models;
    for i in 0..30 {
        reads
            .park(
                orders_local::store::NewDeadLetter {
                    source: "replay".into(),
                    key: format!("broken-{i}#v1"),
                    reason: format!("reason {i}"),
                    record: format!(r#"{{"n":{i}}}"#),
                },
                None,
            )
            .await
            .expect("park");
    }
    reads
        .park(
            orders_local::store::NewDeadLetter {
                source: "stream:projector".into(),
                key: "000000000000000000009".into(),
                reason: "the handler reported it as a batch item failure".into(),
                record: "not JSON".into(),
            },
            None,
        )
        .await
        .expect("park");

    let html = page(&mut c, "/console/projections").await;
    assert!(html.contains("href=\"/console/projections\""), "in the nav");
    let row = html
        .split("data-projection=\"orders\" data-generation=\"1\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the orders generation");
    assert!(
        row.contains("status active") && row.contains("<td>2</td>"),
        "{row}"
    );
    let projector = html
        .split("data-consumer=\"projector\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the projector");
    assert!(projector.contains("class=\"behind\">0<"), "{projector}");
    assert!(projector.contains("class=\"oldest\">-<"), "{projector}");
    assert!(html.contains("data-source=\"replay\""), "a chip per source");
    // The read models' file: its size (and nothing free to speak of yet).
    let space = reads.space().await.expect("space");
    let shown = html
        .split("class=\"muted file-space\">")
        .nth(1)
        .and_then(|r| r.split("</p>").next())
        .expect("the file's size");
    assert_eq!(
        shown,
        format!(
            "read_models.db: {}",
            orders::projections::megabytes(space.bytes)
        )
    );
    let rows = |h: &str| h.matches("<tr data-id=").count();
    assert_eq!(rows(&html), 25, "the first page");
    let next = link(&html, "/console/projections?after=").expect("a next page");
    let second = page(&mut c, &next).await;
    assert_eq!(rows(&second), 6);
    assert!(link(&second, "/console/projections?after=").is_none());

    let one = page(&mut c, "/console/projections?source=stream:projector").await;
    assert_eq!(rows(&one), 1);
    assert!(
        one.contains("the handler reported it as a batch item failure") && one.contains("not JSON"),
        "{one}"
    );

    // Only the live projector's letters have a redrive button. Its record is not in the
    // log (seq 9 of a 2-event log), so the redrive fails and the letter stays.
    assert_eq!(
        html.matches("class=\"redrive\"").count(),
        0,
        "none on page one"
    );
    assert_eq!(one.matches("class=\"redrive\"").count(), 1);
    assert!(html.contains("Redrive all 1 from"), "{html}");
    let mut posted = vec![];
    for body in [
        "all=1",
        "id=1",
        "id=999999",
        "id=x",
        "bogus=1",
        "id=31&all=1",
    ] {
        let r = post_form(&mut c, "/console/projections/redrive", body).await;
        posted.push((body, r.status, header(&r, "location").map(str::to_string)));
    }
    assert_eq!(
        posted[0],
        (
            "all=1",
            303,
            Some("/console/projections?redriven=0&failed=1".to_string())
        )
    );
    let statuses: Vec<u16> = posted[1..].iter().map(|p| p.1).collect();
    assert_eq!(statuses, [400, 404, 400, 400, 400], "{posted:?}");
    // A JSON client (the CLI) gets problem+json naming the field.
    let json_form = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
    ];
    let r = c
        .send(
            http::Method::POST,
            "/console/projections/redrive",
            &json_form,
            Some("id=x".into()),
        )
        .await
        .expect("post");
    assert_eq!(r.status, 400);
    assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
    assert_eq!(json(&r)["field"], "id", "{}", text(&r));
    let after = page(&mut c, "/console/projections?redriven=0&failed=1").await;
    assert!(
        after.contains("0 record(s) processed by the projector, 1 failed again"),
        "{after}"
    );
    assert!(after.contains("Redrive all 1 from"), "the letter stays");
    let one = page(&mut c, "/console/projections?source=stream:projector").await;
    assert!(
        one.contains("Redrive failed 1 time(s)") && one.contains("the log has no event at seq"),
        "the letter says its redrive failed, and why: {one}"
    );

    for (q, param) in [
        ("source=nowhere", "source"),
        ("after=x", "after"),
        ("limit=0", "limit"),
        ("sort=id", "sort"),
    ] {
        let r = get(&mut c, &format!("/console/projections?{q}")).await;
        assert_eq!(r.status, 400, "{q}");
        assert!(text(&r).contains(&format!("<code>{param}</code>")), "{q}");
    }

    // An append by another process (here: another store on the same files): the page
    // reads the log's head from the file, not from the server's own appends.
    // Opened off the test's thread: the server's tasks share it, and one of them may be
    // mid-batch holding the read-model write lock that opening waits for.
    let path = s.dir.path().to_path_buf();
    let other = tokio::task::spawn_blocking(move || orders_local::store::LocalStores::open(&path))
        .await
        .expect("open task")
        .expect("stores");
    let copy = first_event_as(&other.events, "01OTHERPROCESS000000000001").await;
    orders_domain::ports::EventStore::append(
        &other.events,
        orders_domain::ports::AppendRequest {
            aggregate_id: copy.aggregate_id.clone(),
            expected_version: 0,
            events: vec![copy],
            idempotency: None,
        },
    )
    .await
    .expect("append");
    let head = other.events.head_seq();
    let html = page(&mut c, "/console/projections").await;
    assert!(html.contains(&format!("(last seq {head})")), "{html}");
    assert!(!html.contains("switch-back"), "no retired generation yet");

    // A retired generation says how far behind it is, and how to switch back to it.
    let at = reads.checkpoint("projector").await.expect("checkpoint");
    let g = retire_orders_generation(reads).await;
    let html = page(&mut c, "/console/projections").await;
    let row = html
        .split("data-projection=\"orders\" data-generation=\"1\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the retired generation");
    assert!(row.contains("status retired"), "{row}");
    assert!(
        row.contains(&format!("class=\"behind\">{}<", head - at)),
        "{row}"
    );
    assert!(
        html.contains("orders projections activate &lt;projection&gt; &lt;generation&gt;"),
        "{html}"
    );
    // Its Switch back button: the form posts the generation's projection and number.
    assert!(
        row.contains("action=\"/console/projections/activate\"")
            && row.contains("name=\"projection\" value=\"orders\"")
            && row.contains("name=\"generation\" value=\"1\""),
        "{row}"
    );
    let mut post = async |body: &str| {
        let r = job(&mut c, "/console/projections/activate", body).await;
        (r.status, header(&r, "location").map(str::to_string))
    };
    // Refused, and nothing switched: bad fields, an unknown generation, the active one.
    for (body, status) in [
        ("projection=orders&generation=x", 400),
        ("projection=stock&generation=1", 400),
        ("projection=orders&generation=1&more=1", 400),
        ("projection=orders&generation=9", 404),
        ("projection=orders&generation=2", 409),
    ] {
        assert_eq!(post(body).await.0, status, "{body}");
    }
    let lock = orders::replay::ReplayLock::try_acquire(s.dir.path())
        .expect("lock file")
        .expect("free");
    assert_eq!(
        post("projection=orders&generation=1").await.0,
        409,
        "a replay runs"
    );
    drop(lock);
    assert_eq!(
        reads.active_targets().await.expect("targets").orders,
        Some(g),
        "nothing switched yet"
    );
    let (status, location) = post("projection=orders&generation=1").await;
    assert_eq!(status, 303);
    let location = location.expect("a redirect");
    assert!(
        location.starts_with("/console/projections?activated=orders&generation=1&caught_up="),
        "{location}"
    );
    assert_eq!(
        reads.active_targets().await.expect("targets").orders,
        Some(1)
    );
    let html = page(&mut c, &location).await;
    assert!(
        html.contains("Switched readers of <code>orders</code> back to generation 1"),
        "{html}"
    );
    let row = html
        .split(&format!(
            "data-projection=\"orders\" data-generation=\"{g}\""
        ))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the generation switched away from");
    assert!(
        row.contains("status retired") && row.contains("Switch back"),
        "{row}"
    );
    s.runtime.shutdown().await.expect("shutdown");
}

/// What a web page on another site could try through the user's browser: a console form
/// posted cross-site (CSRF), and a name of its own rebound to 127.0.0.1 (DNS rebinding).
/// Both are refused with a problem naming the header, and change nothing; the console's
/// own form, curl-like clients and an `--allowed-host` name still work.
#[tokio::test]
async fn cross_site_posts_and_rebound_host_names_are_refused_and_change_nothing() {
    let s = serve_workflow_allowing(
        orders_local::workflow::WorkflowOptions {
            max_receive_count: 1,
            ..workflow_options()
        },
        &["orders.internal"],
    )
    .await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-guard").await;
    let db = s.runtime.workflow().expect("workflow").db.clone();
    let poison = dead_poison(&db).await;
    let in_dlq = || in_queue(&db, "orders-fulfilment-dlq", &poison);

    let own = format!("http://{}", s.runtime.addr);
    let form = format!("message_id={poison}");
    let redrive = async |c: &mut Connection, headers: &[(&str, &str)]| {
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        c.send(
            http::Method::POST,
            "/console/queues/redrive",
            &all,
            Some(form.clone().into()),
        )
        .await
        .expect("post")
    };
    for (headers, field) in [
        (vec![("sec-fetch-site", "cross-site")], "Sec-Fetch-Site"),
        (
            vec![
                ("sec-fetch-site", "same-site"),
                ("origin", "http://127.0.0.1:1"),
            ],
            "Sec-Fetch-Site",
        ),
        // An older browser: no Sec-Fetch-Site, an Origin of another site.
        (vec![("origin", "http://evil.example")], "Origin"),
    ] {
        let r = redrive(&mut c, &headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", text(&r));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        let p = json(&r);
        assert_eq!(p["field"], field, "{p}");
        assert!(
            p["type"]
                .as_str()
                .unwrap_or("")
                .ends_with("/cross-origin-request")
        );
        assert!(in_dlq(), "a refused redrive moved the message");
    }
    // The API's commands are guarded the same way.
    let r = post(
        &mut c,
        "/orders",
        &[("sec-fetch-site", "cross-site")],
        &order("c-forged"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", text(&r));

    // DNS rebinding: the browser would send the attacker's name as Host.
    for path in [format!("/orders/{id}"), "/console/executions".to_string()] {
        let r = c
            .send(
                http::Method::GET,
                &path,
                &[("host", "evil.example:3000")],
                None,
            )
            .await
            .expect("get");
        assert_eq!(r.status, 403, "{path}");
        let p = json(&r);
        assert_eq!(p["field"], "Host");
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or("")
                .contains("--allowed-host evil.example"),
            "{p}"
        );
        assert!(
            !text(&r).contains(&id),
            "a refused request showed the order"
        );
    }
    for host in [
        "localhost:3000",
        "orders.internal",
        "ORDERS.internal.:80",
        "[::1]:3000",
    ] {
        let r = c
            .send(
                http::Method::GET,
                &format!("/orders/{id}"),
                &[("host", host)],
                None,
            )
            .await
            .expect("get");
        assert_eq!(r.status, 200, "{host}: {}", text(&r));
    }

    // The console's own form (same origin) still redrives.
    let r = redrive(
        &mut c,
        &[("sec-fetch-site", "same-origin"), ("origin", &own)],
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert!(!in_dlq());
    // So is switching generations (here to a retired one that exists).
    let reads = &s.runtime.stores.read_models;
    let g = retire_orders_generation(reads).await;
    let cross_site = async |c: &mut Connection, path: &str, body: &str| {
        let form = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "cross-site"),
        ];
        c.send(
            http::Method::POST,
            path,
            &form,
            Some(body.to_string().into()),
        )
        .await
        .expect("post")
    };
    let r = cross_site(
        &mut c,
        "/console/projections/activate",
        "projection=orders&generation=1",
    )
    .await;
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(
        reads.active_targets().await.expect("targets").orders,
        Some(g),
        "a refused switch switched nothing"
    );
    // And a replay: no job, no generation.
    let generations = reads.generations().await.expect("generations");
    let r = cross_site(&mut c, "/console/projections/replay", "projection=all").await;
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(get(&mut c, "/console/jobs/1").await.status, 404);
    assert_eq!(reads.generations().await.expect("generations"), generations);
    s.runtime.shutdown().await.expect("shutdown");
}

/// A shop's front-end in development (another origin) calls the API from the browser when
/// the server is started with `--allow-origin`: its preflight is answered, its commands
/// pass the cross-site check, and it may read the headers of the API's contract. Any other
/// origin is still refused.
#[tokio::test]
async fn an_allowed_front_end_origin_calls_the_api_from_the_browser() {
    let front = "http://localhost:5173";
    let s = serve_workflow_for(workflow_options(), &[], &[front]).await;
    let mut c = connect(&s.runtime).await;

    let preflight = async |c: &mut Connection, origin: &str| {
        c.send(
            http::Method::OPTIONS,
            "/orders",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type,idempotency-key",
                ),
                ("sec-fetch-site", "cross-site"),
            ],
            None,
        )
        .await
        .expect("preflight")
    };
    let ok = preflight(&mut c, front).await;
    assert!(ok.status < 300, "{}: {}", ok.status, text(&ok));
    assert_eq!(header(&ok, "access-control-allow-origin"), Some(front));
    let methods = header(&ok, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = header(&ok, "access-control-allow-headers").unwrap_or_default();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    let refused = preflight(&mut c, "http://evil.example").await;
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    // The front-end's POST, as a browser sends it.
    let from_front = [("origin", front), ("sec-fetch-site", "same-site")];
    let placed = post(&mut c, "/orders", &from_front, &order("c-front")).await;
    assert_eq!(placed.status, 201, "{}", text(&placed));
    assert_eq!(header(&placed, "access-control-allow-origin"), Some(front));
    let exposed = header(&placed, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("location"), "{exposed}");
    let id = json(&placed)["order_id"].as_str().expect("id").to_string();
    let read = c
        .send(
            http::Method::GET,
            &format!("/orders/{id}/events"),
            &from_front,
            None,
        )
        .await
        .expect("get");
    assert_eq!(read.status, 200);
    assert_eq!(header(&read, "access-control-allow-origin"), Some(front));

    // Another origin: refused, nothing placed.
    let forged = [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ];
    let r = post(&mut c, "/orders", &forged, &order("c-forged")).await;
    assert_eq!(r.status, 403, "{}", text(&r));
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let orders = orders_in_log(&s.runtime).await;
    assert_eq!(
        orders,
        [id].into(),
        "only the front-end's order was appended"
    );
    s.runtime.shutdown().await.expect("shutdown");
}

/// The sales report of the `daily_sales` read model: `orders sales` on the served data dir
/// (text and JSON, filtered, bad filters one line), `GET /sales/daily` and the console's
/// sales page agree with the orders placed and cancelled.
#[tokio::test]
async fn the_sales_report_shows_the_daily_sales_on_the_cli_over_http_and_in_the_console() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let mut placed = vec![];
    for (customer, currency) in [("c-s1", "EUR"), ("c-s2", "EUR"), ("c-s3", "USD")] {
        let mut body = order(customer);
        body["items"][0]["unit_price"]["currency"] = currency.into();
        let r = post(&mut c, "/orders", &[], &body).await;
        assert_eq!(r.status, 201, "{}", text(&r));
        let v = json(&r);
        placed.push((v["order_id"].as_str().expect("id").to_string(), v));
    }
    let eur_total = placed[0].1["total"]["amount"].as_i64().expect("amount");
    let usd_total = placed[2].1["total"]["amount"].as_i64().expect("amount");
    let cancel = format!("/orders/{}/cancel", placed[1].0);
    let r = post(
        &mut c,
        &cancel,
        &[("if-match", "1")],
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    for (id, _) in &placed {
        let r = eventually(&mut c, &format!("/orders/{id}"), |r| r.status == 200).await;
        assert_eq!(r.status, 200);
    }
    eventually(&mut c, &format!("/orders/{}", placed[1].0), |r| {
        json(r)["status"] == "CANCELLED"
    })
    .await;
    let day = orders_domain::ports::Clock::now(&orders_handlers::system::SystemClock).date();

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orders"))
            .arg("sales")
            .args(args)
            .arg("--data-dir")
            .arg(s.dir.path())
            .env_remove("ORDERS_STACK")
            .output()
            .expect("orders sales");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, out, err) = cli(&["--json"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).expect("report");
    let days = report["days"].as_array().expect("days");
    assert_eq!(days.len(), 2, "{report}");
    let eur = &days[0];
    assert_eq!(
        (
            eur["date"].as_str(),
            eur["currency"].as_str(),
            eur["orders_placed"].as_i64(),
            eur["orders_cancelled"].as_i64(),
            eur["net_amount"].as_i64()
        ),
        (
            Some(day.as_str()),
            Some("EUR"),
            Some(2),
            Some(1),
            Some(eur_total)
        ),
        "{report}"
    );
    assert_eq!(days[1]["amount_placed"].as_i64(), Some(usd_total));
    assert_eq!(report["totals"].as_array().map(Vec::len), Some(2));

    let (ok, out, err) = cli(&["--currency", "usd", "--from", &day, "--to", &day]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header, the day and the total: {out}");
    assert!(
        lines[1].starts_with(&day) && lines[1].contains("USD"),
        "{out}"
    );
    assert!(lines[2].starts_with("total"), "{out}");
    let (ok, out, _) = cli(&["--from", "2999-01-01"]);
    assert!(ok && out.starts_with("no sales from 2999-01-01"), "{out}");
    for (args, names) in [
        (&["--from", "2026-02-30"][..], "--from"),
        (&["--to", "yesterday"], "--to"),
        (&["--from", "2026-11-02", "--to", "2026-11-01"], "--to"),
        (&["--currency", "EURO"], "--currency"),
    ] {
        let (ok, out, err) = cli(args);
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(names), "{args:?}: {err}");
    }

    // GET /sales/daily answers the same report for the days asked for (`to`: today).
    let r = get(&mut c, &format!("/sales/daily?from={day}")).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let http = json(&r);
    assert_eq!(
        (&http["from"], &http["to"], &http["days"], &http["totals"]),
        (
            &Value::from(day.as_str()),
            &Value::from(day.as_str()),
            &report["days"],
            &report["totals"]
        ),
        "{http}"
    );
    let r = get(
        &mut c,
        &format!("/sales/daily?from={day}&to={day}&currency=usd"),
    )
    .await;
    assert_eq!(
        json(&r)["totals"][0]["amount_placed"].as_i64(),
        Some(usd_total)
    );
    assert_eq!(json(&r)["currency"], "USD");
    for (query, field) in [
        ("", "from"),
        ("from=2026-02-30", "from"),
        ("from=2026-11-02&to=2026-11-01", "to"),
        ("from=2020-01-01&to=2026-01-01", "to"),
        ("from=2000-01-01", "from"),
        ("from=2026-11-01&currency=EURO", "currency"),
        ("from=2026-11-01&shop=1", "shop"),
    ] {
        let r = get(&mut c, &format!("/sales/daily?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", text(&r));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        assert_eq!(json(&r)["field"], field, "{query}");
    }

    // The console shows the same report.
    let html = page(&mut c, "/console/sales").await;
    let eur_net = orders::sales::money(eur_total, "EUR");
    assert!(html.contains(&day) && html.contains(&eur_net), "{html}");
    assert!(html.contains("Total"), "{html}");
    let html = page(&mut c, "/console/sales?currency=JPY&from=&to=").await;
    assert!(html.contains("No sales."), "{html}");
    bad_params(
        &mut c,
        "/console/sales",
        &[("from=2026-13-01", "from"), ("shop=1", "shop")],
    )
    .await;
    s.runtime.shutdown().await.expect("shutdown");
}

/// The log page: every order's events in the order they were appended, newest by default,
/// filtered by time and type; bad parameters are a 400 naming them.
#[tokio::test]
async fn the_log_page_lists_every_orders_events_in_log_order() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let mut ids = vec![];
    for customer in ["c-l1", "c-l2"] {
        ids.push(place(&mut c, customer).await);
    }
    let cancel = format!("/orders/{}/cancel", ids[1]);
    let r = post(
        &mut c,
        &cancel,
        &[("if-match", "1")],
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let log = s
        .runtime
        .stores
        .events
        .read_from(0, usize::MAX)
        .await
        .expect("log");
    assert_eq!(log.len(), 3);

    let html = page(&mut c, "/console/log").await;
    // Each event, linked to its order, in log order.
    let at: Vec<usize> = log
        .iter()
        .map(|(_, e)| {
            let row = format!(
                "<td>{}</td><td><a href=\"/console/orders/{}\"><code>{}</code></a></td><td class=\"num\">{}</td><td>{}</td>",
                e.occurred_at, e.aggregate_id, e.aggregate_id, e.version, e.event_type
            );
            html.find(&row).unwrap_or_else(|| panic!("{row} in {html}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    // One type; from a moment on.
    let html = page(&mut c, "/console/log?type=OrderCancelled&since=&until=").await;
    assert!(
        html.contains(&ids[1]) && !html.contains(&ids[0]) && html.contains("selected"),
        "{html}"
    );
    let html = page(&mut c, "/console/log?since=2999-01-01T00:00:00Z").await;
    assert!(html.contains("No events."), "{html}");
    bad_params(
        &mut c,
        "/console/log",
        &[
            ("since=yesterday", "since"),
            ("type=OrderTeleported", "type"),
            (
                "since=2026-11-29T14:00:00Z&until=2026-11-29T13:00:00Z",
                "until",
            ),
            ("order=1", "order"),
        ],
    )
    .await;
    s.runtime.shutdown().await.expect("shutdown");
}

/// The Projections page's Verify button: the read models against the log, in the server's
/// process. As the log says first; then a view no event explains is named, with a link to
/// its order; a bad form and a running replay are refused; nothing is changed.
#[tokio::test]
async fn the_verify_button_compares_the_read_models_with_the_log() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-verify").await;
    s.runtime.wait_projected().await;
    let html = page(&mut c, "/console/projections").await;
    assert!(
        html.contains("action=\"/console/projections/verify\""),
        "{html}"
    );
    let mut post = async |body: &str| {
        let r = job(&mut c, "/console/projections/verify", body).await;
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    let (status, html) = post("").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("The read models are what the log says."),
        "{html}"
    );
    assert!(
        html.contains("1 orders in the log, 0 not as the log says."),
        "{html}"
    );

    // A view that no event in the log explains.
    let reads = &s.runtime.stores.read_models;
    let ghost = first_event_as(&s.runtime.stores.events, "01GHOSTORDER00000000000001").await;
    orders_handlers::projector::Projector::replay(reads.clone())
        .process_envelope(&ghost)
        .await
        .expect("projected");
    let (status, html) = post("projection=orders").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("The read models differ from the log"),
        "{html}"
    );
    assert!(html.contains("orders replay --projection orders"), "{html}");
    assert!(
        html.contains("href=\"/console/orders/01GHOSTORDER00000000000001\""),
        "{html}"
    );
    assert!(
        !html.contains("daily_sales"),
        "only orders was asked for: {html}"
    );
    assert!(!html.contains(&format!("data-order=\"{id}\"")), "{html}");

    assert!(
        html.contains("action=\"/console/projections/verify\"")
            && html.contains("name=\"repair\" value=\"1\""),
        "a Repair button: {html}"
    );
    for body in ["projection=stock", "shop=1", "repair=yes"] {
        assert_eq!(post(body).await.0, 400, "{body}");
    }
    let mut lock = orders::replay::ReplayLock::try_acquire(s.dir.path())
        .expect("lock file")
        .expect("free");
    // A replay of the command line: the refusal and the projections page say what it is
    // and how far, as it described itself.
    let holder = "`orders replay --projection all` (pid 99, since 2026-11-30T00:00:00.000Z): 5 of 10 events (50 %)";
    lock.describe(holder).expect("describe");
    let (status, html) = post("").await;
    assert_eq!(status, 409, "a replay runs: {html}");
    assert!(html.contains(&format!("Held by {holder}.")), "{html}");
    let mut other = connect(&s.runtime).await;
    let page = get(&mut other, "/console/projections").await;
    assert!(
        text(&page).contains(&format!("<span class=\"replay-holder\">{holder}</span>")),
        "{}",
        text(&page)
    );
    drop(lock);
    // Nothing changed: the ghost is still there, no scratch store is left.
    let (_, html) = post("").await;
    assert!(html.contains("01GHOSTORDER00000000000001"), "{html}");
    assert!(!s.dir.path().join("verify.tmp").exists());
    // The Repair button's form: the ghost view goes, and verify then agrees.
    let (status, html) = post("repair=1").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Repaired from the log")
            && html.contains(": 1 order views, 1 sales trackers and 1 days"),
        "{html}"
    );
    assert!(
        reads
            .order("01GHOSTORDER00000000000001")
            .await
            .expect("read")
            .is_none()
    );
    assert!(reads.order(&id).await.expect("read").is_some());
    let (_, html) = post("").await;
    assert!(
        html.contains("The read models are what the log says."),
        "{html}"
    );
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_replay_button_rebuilds_the_projections_as_a_job_and_fires_nothing() {
    let s = serve_workflow(workflow_options()).await;
    let mut c = connect(&s.runtime).await;
    let mut views = vec![];
    for customer in ["c-ada", "c-bob", "c-cy"] {
        let id = place(&mut c, customer).await;
        views.push((id.clone(), settled(&mut c, &id).await));
    }
    s.runtime.wait_projected().await;
    let before = side_effects(s.dir.path());
    assert_eq!(before[0], 3, "one execution per order: {before:?}");
    let html = page(&mut c, "/console/projections").await;
    assert!(
        html.contains("action=\"/console/projections/replay\"")
            && html.contains("<option value=\"all\">"),
        "{html}"
    );
    assert!(!html.contains("class=\"jobs\""), "no job yet: {html}");

    // Refused at once, starting nothing: bad fields, and a replay that already runs.
    for (body, field) in [
        ("projection=stock", "projection"),
        ("drop_old=yes", "drop_old"),
        ("shop=1", "shop"),
    ] {
        let r = post_form(&mut c, "/console/projections/replay", body).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(
            text(&r).contains(&format!("<code>{field}</code>")),
            "{body}"
        );
    }
    let lock = orders::replay::ReplayLock::try_acquire(s.dir.path())
        .expect("lock file")
        .expect("free");
    let r = post_form(&mut c, "/console/projections/replay", "projection=all").await;
    assert_eq!(r.status, 409, "{}", text(&r));
    drop(lock);
    let reads = &s.runtime.stores.read_models;
    let active = reads.active_targets().await.expect("targets");
    assert_eq!((active.orders, active.daily_sales), (Some(1), Some(1)));

    let html = replayed(&mut c, "projection=all&drop_old=1").await;
    let events = s.runtime.stores.events.count().await.expect("count");
    assert!(
        html.contains(&format!("Replayed {events} events and rebuilt 3 orders in")),
        "{html}"
    );
    assert!(
        html.contains("<code>orders</code>: readers switched from generation 1 to generation 2; the old generations were dropped."),
        "{html}"
    );
    let active = reads.active_targets().await.expect("targets");
    assert_eq!((active.orders, active.daily_sales), (Some(2), Some(2)));
    assert!(
        reads
            .generations()
            .await
            .expect("generations")
            .iter()
            .all(|g| g.generation == 2),
        "generation 1 dropped"
    );
    // Readers see the same orders, and nothing was fired again.
    for (id, view) in &views {
        let r = get(&mut c, &format!("/orders/{id}")).await;
        assert_eq!(json(&r)["status"], view["status"], "{id}");
        assert_eq!(json(&r)["version"], view["version"], "{id}");
        assert_eq!(json(&r)["total"], view["total"], "{id}");
    }
    assert_eq!(side_effects(s.dir.path()), before, "a replay fires nothing");
    // The live projector goes on in the generations switched to.
    let id = place(&mut c, "c-dee").await;
    settled(&mut c, &id).await;
    s.runtime.wait_projected().await;
    let r = job(&mut c, "/console/projections/verify", "").await;
    assert!(
        text(&r).contains("4 orders in the log, 0 not as the log says."),
        "{}",
        text(&r)
    );
    // The projections page lists the job, which keeps its outcome.
    let html = page(&mut c, "/console/projections").await;
    let row = html
        .split("<tr data-job=\"1\">")
        .nth(1)
        .expect("the job's row");
    assert!(
        row.contains("Replay of orders and daily_sales") && row.contains("finished"),
        "{row}"
    );
    // Without drop_old the old generation stays, retired, and the page says how back.
    let html = replayed(&mut c, "projection=orders").await;
    assert!(
        html.contains("generation 2 is retired: Switch back on the"),
        "{html}"
    );
    assert_eq!(
        reads.active_targets().await.expect("targets").orders,
        Some(3)
    );
    // Unknown jobs are 404 pages.
    for path in ["/console/jobs/99", "/console/jobs/x"] {
        assert_eq!(get(&mut c, path).await.status, 404, "{path}");
    }
    assert_eq!(
        post_form(&mut c, "/console/jobs/99/stop", "").await.status,
        404
    );
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_console_replay_shows_its_progress_stops_and_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    // A history long enough that the replay is still running when Stop arrives.
    let seeded =
        orders_cli_off_thread(&["seed", "--orders", "10000", "--data-dir", data_dir]).await;
    assert!(seeded.status.success(), "{seeded:?}");
    let runtime = start_in(dir.path()).await;
    let mut c = connect(&runtime).await;
    let events = runtime.stores.events.count().await.expect("count");
    let reads = &runtime.stores.read_models;
    let seeded = reads.active_targets().await.expect("targets");
    let (orders, sales) = (
        seeded.orders.expect("active"),
        seeded.daily_sales.expect("active"),
    );

    let r = post_form(&mut c, "/console/projections/replay", "projection=all").await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let at = header(&r, "location").expect("location").to_string();
    // Once it has read the log's length, its page says how far it is.
    let running = eventually(&mut c, &at, |r| {
        r.status != 202 || text(r).contains(&format!(" of {events} events"))
    })
    .await;
    assert_eq!(running.status, 202, "{}", text(&running));
    let html = text(&running);
    assert!(
        html.contains("<meta http-equiv=\"refresh\" content=\"1\">")
            && html.contains(&format!(" of {events} events"))
            && html.contains(&format!("action=\"{at}/stop\"")),
        "{html}"
    );
    // Verify and switch back wait for it; the projections page links to it.
    let r = post_form(&mut c, "/console/projections/verify", "").await;
    assert_eq!(r.status, 409);
    assert!(text(&r).contains(&format!("href=\"{at}\"")), "{}", text(&r));
    // A command refused meanwhile is told what holds the lock: this job, in this server.
    let holder = orders::replay::ReplayLock::holder(dir.path())
        .expect("lock file")
        .expect("described");
    assert!(
        holder.starts_with(&format!(
            "Replay of orders and daily_sales, a job of the console of `orders serve` (pid {}, since ",
            std::process::id()
        )),
        "{holder}"
    );
    let r = post_form(&mut c, &format!("{at}/stop"), "").await;
    assert_eq!(r.status, 303);
    assert_eq!(header(&r, "location"), Some(at.as_str()));
    let stopped = eventually(&mut c, &at, |r| r.status != 202).await;
    let html = text(&stopped);
    assert_eq!(stopped.status, 200, "{html}");
    assert!(html.contains("Stopped: nothing was switched"), "{html}");
    assert_eq!(reads.active_targets().await.expect("targets"), seeded);

    // The projections page offers to resume both generations the replay was building.
    let html = page(&mut c, "/console/projections").await;
    let card = html
        .split("class=\"card interrupted\"")
        .nth(1)
        .expect("an interrupted replay");
    assert!(
        card.contains("name=\"projection\" value=\"orders\"")
            && card.contains("name=\"projection\" value=\"daily_sales\"")
            && card.contains("name=\"resume\" value=\"1\""),
        "{card}"
    );
    // A fresh replay is refused by the interrupted one; Resume finishes it.
    let r = job(&mut c, "/console/projections/replay", "projection=all").await;
    assert_eq!(r.status, 409, "{}", text(&r));
    assert!(text(&r).contains("was interrupted"), "{}", text(&r));
    let html = replayed(&mut c, "projection=orders&projection=daily_sales&resume=1").await;
    assert!(
        html.contains("Replayed ") && html.contains("rebuilt 10000 orders"),
        "{html}"
    );
    let active = reads.active_targets().await.expect("targets");
    assert_eq!(
        (active.orders, active.daily_sales),
        (Some(orders + 1), Some(sales + 1))
    );
    let r = job(&mut c, "/console/projections/verify", "").await;
    assert!(
        text(&r).contains("The read models are what the log says."),
        "{}",
        text(&r)
    );
    // A server shutting down stops its replay after a chunk: nothing switched, the lock
    // free, the generations left to resume.
    let replayed = reads.active_targets().await.expect("targets");
    let r = post_form(&mut c, "/console/projections/replay", "projection=all").await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let stores = runtime.stores.clone();
    runtime.shutdown().await.expect("shutdown");
    assert!(
        orders::replay::ReplayLock::try_acquire(dir.path())
            .expect("lock file")
            .is_some(),
        "the replay ended with the server"
    );
    assert_eq!(
        stores.read_models.active_targets().await.expect("targets"),
        replayed
    );
    let building: Vec<_> = stores
        .read_models
        .generations()
        .await
        .expect("generations")
        .into_iter()
        .filter(|g| g.status == "building")
        .collect();
    assert_eq!(building.len(), 2, "{building:?}");
}

#[tokio::test]
async fn a_console_replay_at_an_undecodable_event_offers_to_park_it() {
    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let id = place(&mut c, "c-ada").await;
    // An event of a type no decoder knows, as the only event of its order.
    let events = &s.runtime.stores.events;
    let template = events.load(&id).await.expect("load").remove(0);
    append_undecodable(events, &template, "broken-order").await;
    s.runtime.wait_projected().await;
    let reads = &s.runtime.stores.read_models;
    let before = reads.active_targets().await.expect("targets");

    let r = job(&mut c, "/console/projections/replay", "projection=all").await;
    let html = text(&r);
    assert_eq!(r.status, 409, "{html}");
    assert!(
        html.contains("broken-order#v1") && html.contains("OrderTeleported"),
        "{html}"
    );
    assert_eq!(reads.active_targets().await.expect("targets"), before);
    // Its button resumes the replay, parking the event.
    let form = html
        .split("<form class=\"replay\"")
        .nth(1)
        .expect("a resume form");
    assert!(
        form.contains("name=\"resume\" value=\"1\"")
            && form.contains("name=\"skip_undecodable\" value=\"1\""),
        "{form}"
    );
    let html = replayed(
        &mut c,
        "projection=orders&projection=daily_sales&resume=1&skip_undecodable=1",
    )
    .await;
    assert!(
        html.contains("1 undecodable events were parked as dead letters")
            && html.contains("href=\"/console/projections?source=replay\""),
        "{html}"
    );
    assert_eq!(
        reads
            .count_dead_letters(Some("replay"))
            .await
            .expect("count"),
        1
    );
    let after_resume = reads.active_targets().await.expect("targets");
    assert_ne!(after_resume, before);
    // Parking asked for up front: the projections page's form has the box, and a fresh
    // replay with it ticked runs through the event at once.
    let page = get(&mut c, "/console/projections").await;
    let form = text(&page)
        .split("<form class=\"replay\"")
        .nth(1)
        .and_then(|f| f.split("</form>").next())
        .map(str::to_string)
        .expect("the replay form");
    assert!(
        form.contains("type=\"checkbox\" name=\"skip_undecodable\" value=\"1\""),
        "{form}"
    );
    let html = replayed(&mut c, "projection=all&skip_undecodable=1").await;
    assert!(
        html.contains("1 undecodable events were parked as dead letters"),
        "{html}"
    );
    assert_eq!(
        reads
            .count_dead_letters(Some("replay"))
            .await
            .expect("count"),
        2
    );
    assert_ne!(reads.active_targets().await.expect("targets"), after_resume);
    s.runtime.shutdown().await.expect("shutdown");
}
