//! The local queue's SQS semantics and the task de-duplication, on a real workflows.db.

use orders_local::workflow::db::WorkflowDb;
use orders_local::workflow::services;
use serde_json::json;

const Q: &str = "orders-fulfilment";
const DLQ: &str = "orders-fulfilment-dlq";

#[tokio::test]
async fn visibility_receive_count_dead_letter_and_redrive() {
    let dir = tempfile::tempdir().expect("dir");
    let db = WorkflowDb::open(dir.path()).expect("open");
    let attrs = json!({"correlation_id": {"DataType": "String", "StringValue": "c-1"}});
    let attrs = attrs.as_object().expect("object").clone();
    let (id, md5) = db
        .write(move |c| services::send_message(c, Q, "hello", &attrs, None, 1_000))
        .await
        .expect("send");
    assert_eq!(
        md5, "5d41402abc4b2a76b9719d911017c592",
        "MD5 of the body, as SQS returns it"
    );

    // Received: hidden for the visibility timeout, receive count 1.
    let got = db
        .write(|c| services::receive(c, Q, 10, 500, 1_000))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, id);
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(got[0].correlation_id.as_deref(), Some("c-1"));
    let hidden = db
        .write(|c| services::receive(c, Q, 10, 500, 1_499))
        .await
        .expect("receive");
    assert!(hidden.is_empty(), "invisible until the timeout ends");

    // A failure below maxReceiveCount leaves it to come back.
    let h = got[0].receipt_handle.clone().expect("handle");
    let moved = db
        .write(move |c| services::fail(c, &h, "boom", 2, DLQ, 1_100))
        .await
        .expect("fail");
    assert!(!moved);
    let again = db
        .write(|c| services::receive(c, Q, 10, 500, 1_500))
        .await
        .expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    // The old receipt handle is stale now.
    let stale = got[0].receipt_handle.clone().expect("handle");
    assert!(
        !db.write(move |c| services::delete(c, &stale, 1_600))
            .await
            .expect("delete")
    );

    // The second failure reaches maxReceiveCount: to the DLQ, with the reason.
    let h = again[0].receipt_handle.clone().expect("handle");
    assert!(
        db.write(move |c| services::fail(c, &h, "boom", 2, DLQ, 1_600))
            .await
            .expect("fail")
    );
    let dead = db
        .read(|c| services::queue_messages(c, DLQ, false, 0))
        .expect("dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].source_queue.as_deref(), Some(Q));
    assert!(
        dead[0]
            .dead_reason
            .as_deref()
            .unwrap_or("")
            .starts_with("boom (received 2 times")
    );

    // Redrive: back on the source queue, visible, counted afresh; then deleted for good.
    let ids = db
        .write(|c| services::redrive(c, DLQ, None, 2_000))
        .await
        .expect("redrive");
    assert_eq!(ids, vec![id.clone()]);
    let back = db
        .write(|c| services::receive(c, Q, 10, 500, 2_000))
        .await
        .expect("receive");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].receive_count, 1);
    let h = back[0].receipt_handle.clone().expect("handle");
    assert!(
        db.write(move |c| services::delete(c, &h, 2_100))
            .await
            .expect("delete")
    );
    assert_eq!(
        db.read(|c| services::queue_counts(c, Q)).expect("counts"),
        (0, 1)
    );
    db.close();
}

#[tokio::test]
async fn a_task_invoked_again_with_the_same_key_has_its_effect_once() {
    let dir = tempfile::tempdir().expect("dir");
    let db = WorkflowDb::open(dir.path()).expect("open");
    let names = orders_local::workflow::Names::default();
    let registry =
        orders_local::workflow::resources::registry(orders_local::workflow::resources::Services {
            db: db.clone(),
            names: names.clone(),
            mail_dir: None,
            functions: Default::default(),
            delays: vec![],
            queue_notify: Default::default(),
        });
    let sns = registry
        .lookup("arn:aws:states:::sns:publish")
        .expect("sns");
    let ctx = asl::TaskContext {
        resource: "arn:aws:states:::sns:publish".into(),
        execution_arn: "arn:x".into(),
        execution_name: "o-1".into(),
        state_name: "Publish".into(),
        state_entered_event_id: 7,
        attempt: 0,
        invocation_key: "arn:x/7/0".into(),
        task_token: None,
    };
    let params = json!({"TopicArn": names.topic_arn(), "Message": "m"});
    let first = sns
        .invoke(params.clone(), ctx.clone())
        .await
        .expect("publish");
    let second = sns.invoke(params, ctx).await.expect("publish again");
    assert_eq!(first["MessageId"], second["MessageId"]);
    assert_eq!(
        db.read(|c| services::count(c, "topic_messages"))
            .expect("count"),
        1
    );
    db.close();
}
