//! Keeps `openapi.yaml` true from the Rust side, without network: the document's routes are
//! exactly the router's, every documented route is served (and nothing else on its path), the
//! answers of an in-process runtime carry documented statuses and content types and match the
//! documented schemas, and the documented example order is accepted with `201`.
//! (`scripts/api-contract` checks the same document against a served binary with schemathesis.)

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("openapi.yaml is readable");
    serde_norway::from_str(&text).expect("openapi.yaml is valid YAML")
}

/// Resolves a local `$ref` (`#/components/...`), following chains.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("non-local $ref {r}"));
                v = doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}"));
            }
            None => return v,
        }
    }
    panic!("$ref chain too long at {v}")
}

/// (METHOD, path template) of every operation in the document.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .chain(["head", "options", "trace"].iter())
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// (METHOD, path) of every `.route(…)` in the router's source: the routes it serves.
fn routed_in_source() -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/handlers/src/api.rs");
    let src = std::fs::read_to_string(path).expect("handlers/src/api.rs is readable");
    let mut routes = BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        let chunk = chunk
            .split(".fallback(")
            .next()
            .and_then(|c| c.split(".with_state(").next())
            .unwrap_or(chunk);
        let route = chunk
            .split('"')
            .nth(1)
            .expect("a route starts with its path literal");
        for method in METHODS {
            // `get(handler)` or `.get(handler)`, not `get_order`.
            let mut rest = chunk;
            while let Some(i) = rest.find(method) {
                let before = rest[..i].chars().last();
                let after = rest[i + method.len()..].trim_start();
                let standalone = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                if standalone && after.starts_with('(') {
                    routes.insert((method.to_uppercase(), route.to_string()));
                }
                rest = &rest[i + method.len()..];
            }
        }
    }
    routes
}

/// A concrete path for a template: every `{param}` becomes a probe value.
fn concrete(template: &str, id: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                id
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn content_type(r: &orders::client::Reply) -> String {
    header(r, "content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Whether the reply is the router's fallback: no route at all for this path.
fn is_unrouted(r: &orders::client::Reply) -> bool {
    if r.status != 404 {
        return false;
    }
    let p: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    p["type"].as_str().is_some_and(|t| t.ends_with("not-found"))
        && p["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no route for "))
}

/// A small JSON Schema check covering the keywords the document uses (patterns and formats
/// are left to schemathesis). Returns the first mismatch as `path: reason`.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|alt| check(doc, alt, v, at).is_ok())
    {
        return Err(format!("{at}: matches no alternative of anyOf"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return Err(format!("{at}: {v} is not {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return Err(format!("{at}: {v} is not one of the enum"));
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: {v} is not of type {t}"));
        }
    }
    if let (Some(min), Some(n)) = (s.get("minimum").and_then(Value::as_i64), v.as_i64())
        && n < min
    {
        return Err(format!("{at}: {n} < minimum {min}"));
    }
    if let (Some(max), Some(n)) = (s.get("maximum").and_then(Value::as_i64), v.as_i64())
        && n > max
    {
        return Err(format!("{at}: {n} > maximum {max}"));
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            return Err(format!("{at}: shorter than minLength"));
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            return Err(format!("{at}: longer than maxLength"));
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = req.as_str().unwrap_or_default();
            if !obj.contains_key(name) {
                return Err(format!("{at}: required property `{name}` is missing"));
            }
        }
        for (k, value) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => check(doc, sub, value, &format!("{at}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: property `{k}` is not documented"));
                }
                None => {}
            }
        }
    }
    if let Some(arr) = v.as_array() {
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (arr.len() as u64) < m)
        {
            return Err(format!("{at}: fewer than minItems"));
        }
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| (arr.len() as u64) > m)
        {
            return Err(format!("{at}: more than maxItems"));
        }
        if let Some(items) = s.get("items") {
            for (i, item) in arr.iter().enumerate() {
                check(doc, items, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    Ok(())
}

/// The reply is documented for the operation: its status, its content type, its required
/// headers, and its body against the documented schema.
fn assert_documented(doc: &Value, method: &str, template: &str, r: &orders::client::Reply) {
    let op = &doc["paths"][template][method.to_lowercase()];
    let what = format!("{method} {template} → {}", r.status);
    let response = op["responses"]
        .get(r.status.to_string())
        .or_else(|| op["responses"].get("default"))
        .map(|resp| resolve(doc, resp))
        .unwrap_or_else(|| {
            panic!(
                "{what} is not documented: {}",
                String::from_utf8_lossy(&r.body)
            )
        });
    for (name, h) in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let h = resolve(doc, h);
        if h["required"] == json!(true) {
            assert!(
                header(r, &name.to_lowercase()).is_some(),
                "{what}: required header {name} is missing"
            );
        }
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(r.body.is_empty(), "{what}: a body where none is documented");
        return;
    };
    let ct = content_type(r);
    let media = content
        .get(&ct)
        .unwrap_or_else(|| panic!("{what}: content type `{ct}` is not documented"));
    let body: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e})"));
    if let Err(e) = check(doc, &media["schema"], &body, "body") {
        panic!("{what}: {e}\n{body:#}");
    }
}

#[test]
fn the_document_is_openapi_3_1_and_every_ref_resolves() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        doc["openapi"]
    );
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    resolve(doc, v);
                    assert!(r.starts_with("#/components/"), "{r}");
                }
                m.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    walk(&doc, &doc);
    let ids: Vec<&str> = documented_routes(&doc)
        .iter()
        .map(|(m, p)| {
            doc["paths"][p][m.to_lowercase()]["operationId"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    assert!(
        ids.iter().all(|i| !i.is_empty()),
        "every operation has an operationId"
    );
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "operationIds are unique");
}

#[test]
fn the_documented_routes_are_the_routers_routes() {
    let doc = document();
    let documented = documented_routes(&doc);
    let routed = routed_in_source();
    assert!(
        routed.len() >= 6,
        "parsing handlers/src/api.rs found too few routes: {routed:?}"
    );
    assert_eq!(
        documented, routed,
        "openapi.yaml (left) and the router in handlers/src/api.rs (right) disagree"
    );
}

/// (METHOD, path) of every `HttpApi` event in `template.yaml`: the routes API Gateway sends
/// to the api function (any other request gets API Gateway's own 404 on AWS).
fn routes_in_template() -> BTreeSet<(String, String)> {
    template_routes()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// [`routes_in_template`] with each route's authorizer (`None`: public).
fn template_routes() -> Vec<(String, String, Option<String>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml is readable");
    // serde_norway's own Value: CloudFormation's `!Ref`/`!Sub` tags stay tagged values.
    let template: serde_norway::Value =
        serde_norway::from_str(&text).expect("template.yaml is valid YAML");
    let resources = template["Resources"].as_mapping().expect("Resources");
    resources
        .values()
        .filter_map(|r| r["Properties"]["Events"].as_mapping())
        .flat_map(|events| events.values())
        .filter(|e| e["Type"].as_str() == Some("HttpApi"))
        .map(|e| {
            let p = &e["Properties"];
            (
                p["Method"].as_str().expect("Method").to_uppercase(),
                p["Path"].as_str().expect("Path").to_string(),
                p["Auth"]["Authorizer"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// On AWS every route wants a customer's JWT unless it says otherwise: shipping is the
/// warehouse's call and the sales report the back office's (IAM, and each policy the stack
/// hands out allows its route only), and /health is public. The api function is told which claim is the customer id, which
/// turns its ownership checks on (`orders_handlers::caller`).
#[test]
fn customers_need_a_token_on_aws_and_only_signed_principals_ship_or_read_sales() {
    let mut overridden: Vec<(String, String, Option<String>)> = template_routes()
        .into_iter()
        .filter(|(_, _, auth)| auth.is_some())
        .collect();
    overridden.sort();
    assert_eq!(
        overridden,
        [
            (
                "GET".to_string(),
                "/health".to_string(),
                Some("NONE".to_string())
            ),
            (
                "GET".to_string(),
                "/sales/daily".to_string(),
                Some("AWS_IAM".to_string())
            ),
            (
                "POST".to_string(),
                "/orders/{id}/ship".to_string(),
                Some("AWS_IAM".to_string())
            )
        ]
    );
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml");
    let template: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let auth = &template["Resources"]["HttpApi"]["Properties"]["Auth"];
    assert_eq!(auth["EnableIamAuthorizer"].as_bool(), Some(true));
    assert_eq!(auth["DefaultAuthorizer"].as_str(), Some("CustomerJwt"));
    let jwt = &auth["Authorizers"]["CustomerJwt"];
    assert_eq!(
        jwt["IdentitySource"].as_str(),
        Some("$request.header.Authorization")
    );
    assert!(!jwt["JwtConfiguration"]["issuer"].is_null(), "{jwt:?}");
    assert_eq!(
        jwt["JwtConfiguration"]["audience"]
            .as_sequence()
            .map(Vec::len),
        Some(1)
    );
    let env = &template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"];
    assert!(
        !env[orders_handlers::caller::CLAIM_ENV].is_null(),
        "the api function must know the customer id claim: {env:?}"
    );
    // Each signed principal's policy allows its one route.
    for (policy, route) in [
        ("WarehousePolicy", "/*/POST/orders/*/ship"),
        ("ReportsPolicy", "/*/GET/sales/daily"),
    ] {
        let document = &template["Resources"][policy]["Properties"]["PolicyDocument"];
        let statements = document["Statement"].as_sequence().expect("statements");
        assert_eq!(statements.len(), 1, "{policy}");
        assert_eq!(statements[0]["Action"].as_str(), Some("execute-api:Invoke"));
        let resource = format!("{:?}", statements[0]["Resource"]);
        assert!(resource.contains(route), "{policy}: {resource}");
    }
}

#[test]
fn api_gateway_routes_exactly_the_documented_routes() {
    let documented = documented_routes(&document());
    let deployed = routes_in_template();
    assert_eq!(
        documented, deployed,
        "openapi.yaml (left) and template.yaml's HttpApi events (right) disagree"
    );
}

#[tokio::test]
async fn every_documented_route_is_served_and_nothing_else_on_its_paths() {
    let doc = document();
    let s = serve().await;
    let mut c = connect(&s.runtime).await;

    // The fallback is recognisable, so "served" below means something.
    let nowhere = get(&mut c, "/orders/probe/nowhere").await;
    assert!(is_unrouted(&nowhere), "the fallback 404 changed");

    let documented = documented_routes(&doc);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for template in paths {
        let path = concrete(template, "01PROBE");
        for method in METHODS {
            let m = http::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = (method != "get").then(|| b"{}".to_vec().into());
            let r = c.send(m, &path, &[], body).await.expect("request");
            let key = (method.to_uppercase(), template.clone());
            if documented.contains(&key) {
                assert!(
                    !is_unrouted(&r) && r.status != 405,
                    "{method} {template} is documented but not served ({})",
                    r.status
                );
                assert_documented(&doc, method, template, &r);
            } else {
                assert_eq!(
                    r.status, 405,
                    "{method} {template} is not documented, yet answers {}",
                    r.status
                );
                assert!(header(&r, "allow").is_some(), "405 without Allow");
            }
        }
    }
    s.runtime.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn the_documented_example_order_is_placed_and_every_answer_matches_the_document() {
    let doc = document();
    let place = &doc["paths"]["/orders"]["post"];
    let examples = place["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .expect("POST /orders has request examples");
    let example = &examples.values().next().expect("an example")["value"];
    assert_eq!(
        example,
        &order("c-42"),
        "the documented example is the README's sample order"
    );
    let request_schema = &place["requestBody"]["content"]["application/json"]["schema"];
    check(&doc, request_schema, example, "example").expect("the example matches its schema");

    let s = serve().await;
    let mut c = connect(&s.runtime).await;
    let r = post(&mut c, "/orders", &[("idempotency-key", "doc-1")], example).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_documented(&doc, "POST", "/orders", &r);
    let placed = json(&r);
    let schema = resolve(
        &doc,
        &place["responses"]["201"]["content"]["application/json"]["schema"],
    );
    for required in schema["required"].as_array().expect("required") {
        let name = required.as_str().expect("name");
        assert!(
            !placed[name].is_null() || name == "total",
            "{name} in {placed}"
        );
    }
    let id = placed["order_id"].as_str().expect("order_id").to_string();
    assert_eq!(
        header(&r, "location"),
        Some(format!("/orders/{id}").as_str())
    );

    let replay = post(&mut c, "/orders", &[("idempotency-key", "doc-1")], example).await;
    assert_eq!(replay.status, 201);
    assert_documented(&doc, "POST", "/orders", &replay);
    assert_eq!(header(&replay, "idempotent-replayed"), Some("true"));

    let events = get(&mut c, &format!("/orders/{id}/events")).await;
    assert_documented(&doc, "GET", "/orders/{id}/events", &events);
    for query in ["version=1", "at=2000-01-01T00:00:00Z", "at=x"] {
        let r = get(&mut c, &format!("/orders/{id}/events?{query}")).await;
        assert_documented(&doc, "GET", "/orders/{id}/events", &r);
    }
    let view = eventually(&mut c, &format!("/orders/{id}"), |r| r.status == 200).await;
    assert_documented(&doc, "GET", "/orders/{id}", &view);
    for query in [
        "version=1",
        "at=2000-01-01T00:00:00Z",
        "version=x",
        "version=9",
    ] {
        let r = get(&mut c, &format!("/orders/{id}?{query}")).await;
        assert_documented(&doc, "GET", "/orders/{id}", &r);
    }
    let page = eventually(&mut c, "/orders?customer_id=c-42", |r| {
        json(r)["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    assert_documented(&doc, "GET", "/orders", &page);
    assert_documented(&doc, "GET", "/health", &get(&mut c, "/health").await);

    let cancel = format!("/orders/{id}/cancel");
    let reason = json!({"reason": "changed my mind"});
    for (headers, status) in [
        (vec![], 428),
        (vec![("if-match", "x")], 400),
        (vec![("if-match", "\"7\"")], 412),
        (vec![("if-match", "\"1\"")], 200),
        (vec![("if-match", "\"2\"")], 409),
    ] {
        let r = post(&mut c, &cancel, &headers, &reason).await;
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        assert_documented(&doc, "POST", "/orders/{id}/cancel", &r);
    }
    let unknown = post(
        &mut c,
        "/orders/01NOPE/cancel",
        &[("if-match", "1")],
        &reason,
    )
    .await;
    assert_documented(&doc, "POST", "/orders/{id}/cancel", &unknown);
    assert_eq!(unknown.status, 404);

    // The refusals of POST /orders are documented too.
    let mut bad = order("c-42");
    bad["items"][0]["quantity"] = json!(0);
    let refusals = [
        post(&mut c, "/orders", &[], &bad).await,
        post(&mut c, "/orders", &[], &json!({"coupon": 1})).await,
        post(&mut c, "/orders", &[("idempotency-key", "doc-1")], &bad).await,
        post(&mut c, "/orders", &[("idempotency-key", "a b")], &bad).await,
        c.send(
            http::Method::POST,
            "/orders",
            &[],
            Some(b"{".to_vec().into()),
        )
        .await
        .expect("request"),
        c.send(
            http::Method::POST,
            "/orders",
            &[("content-type", "text/plain")],
            // (the client adds `application/json` to any request with a body)
            None,
        )
        .await
        .expect("request"),
        c.send(
            http::Method::POST,
            "/orders",
            &[],
            Some(vec![b' '; 64 * 1024 + 1].into()),
        )
        .await
        .expect("request"),
    ];
    let statuses: Vec<u16> = refusals.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [422, 422, 422, 400, 400, 415, 413]);
    for r in &refusals {
        assert_documented(&doc, "POST", "/orders", r);
    }
    for q in [
        "",
        "?customer_id=c&limit=0",
        "?customer_id=c&cursor=zz",
        "?customer_id=c&x=1",
    ] {
        let r = get(&mut c, &format!("/orders{q}")).await;
        assert_eq!(r.status, 400, "{q}");
        assert_documented(&doc, "GET", "/orders", &r);
    }
    s.runtime.shutdown().await.expect("shutdown");
}

/// The browser front-end gets the same CORS answers on AWS (the template's
/// `CorsConfiguration`, when `AllowedOrigin` is given) as from `orders serve --allow-origin`.
#[test]
fn cors_on_aws_allows_what_the_local_server_allows() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml");
    let template: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let cors = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"];
    let serde_norway::Value::Tagged(tagged) = cors else {
        panic!("CorsConfiguration should be `!If [HasAllowedOrigin, …]`: {cors:?}");
    };
    assert_eq!(tagged.tag, "If");
    let branches = tagged.value.as_sequence().expect("!If's list");
    assert_eq!(branches[0].as_str(), Some("HasAllowedOrigin"));
    let names = |v: &serde_norway::Value| -> Vec<String> {
        v.as_sequence()
            .expect("a list of headers")
            .iter()
            .map(|h| h.as_str().expect("a header name").to_ascii_lowercase())
            .collect()
    };
    let local = |hs: &[&str]| hs.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(&branches[1]["AllowHeaders"]),
        local(&orders::browser_guard::CORS_REQUEST_HEADERS)
    );
    assert_eq!(
        names(&branches[1]["ExposeHeaders"]),
        local(&orders::browser_guard::CORS_RESPONSE_HEADERS)
    );
    assert_eq!(names(&branches[1]["AllowMethods"]), ["get", "post"]);
}

/// `orders serve --throttle` plays the stage's throttling with the template's figures.
#[test]
fn the_local_throttle_is_the_stages() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml");
    let template: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let settings = &template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(
        settings["ThrottlingRateLimit"].as_u64(),
        Some(u64::from(orders::throttle::RATE_PER_SECOND)),
        "{settings:?}"
    );
    assert_eq!(
        settings["ThrottlingBurstLimit"].as_u64(),
        Some(u64::from(orders::throttle::BURST)),
        "{settings:?}"
    );
}
