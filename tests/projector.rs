//! The stream projector over SQLite read models: batch item failures start at the first
//! record that cannot be processed, and only the live path starts workflows.

use orders_domain::envelope::{EventEnvelope, EventMeta};
use orders_domain::order::*;
use orders_domain::ports::{ReadModels, StartOutcome, WorkflowError, WorkflowStarter};
use orders_domain::workflow::WorkflowInput;
use orders_domain::{Timestamp, decide};
use orders_handlers::projector::Projector;
use orders_local::store::LocalStores;
use orders_local::tailer::{TailerConfig, stream_record};
use std::sync::Mutex;

#[derive(Default)]
struct CountingStarter(Mutex<Vec<String>>);

impl WorkflowStarter for &'static CountingStarter {
    async fn start(&self, input: &WorkflowInput) -> Result<StartOutcome, WorkflowError> {
        let mut started = self.0.lock().expect("lock");
        started.push(input.order_id.clone());
        Ok(StartOutcome::Started {
            execution_name: input.order_id.clone(),
        })
    }
}

fn placed(id: &str) -> Vec<EventEnvelope> {
    let request: PlaceOrderRequest =
        serde_json::from_value(orders::sample::order("c-1")).expect("sample");
    let events = decide(
        &Order::default(),
        &Command::Place {
            order_id: id.into(),
            request,
            placed_via: "test".into(),
        },
    )
    .expect("valid");
    wrap(id, 0, &events)
}

fn wrap(id: &str, version: u64, events: &[OrderEvent]) -> Vec<EventEnvelope> {
    let meta = EventMeta {
        occurred_at: Timestamp(1_795_706_525_000),
        correlation_id: format!("corr-{id}"),
        causation_id: "test".into(),
    };
    let mut n = 0;
    EventEnvelope::wrap(id, version, events, &meta, || {
        n += 1;
        format!("{id}-{version}-{n}")
    })
}

fn cancelled(id: &str, version: u64) -> Vec<EventEnvelope> {
    wrap(
        id,
        version,
        &[OrderEvent::Cancelled(OrderCancelled { reason: None })],
    )
}

fn batch(envelopes: &[EventEnvelope]) -> aws_lambda_events::event::dynamodb::Event {
    let config = TailerConfig::default();
    let mut event = aws_lambda_events::event::dynamodb::Event::default();
    event.records = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| stream_record(i as u64 + 1, e, &config).expect("record"))
        .collect();
    event
}

fn failures(r: &aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    r.batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn a_gap_fails_that_record_and_everything_after_it() {
    let dir = tempfile::tempdir().expect("dir");
    let stores = LocalStores::open(dir.path()).expect("open");
    let projector = Projector::replay(stores.read_models.clone());
    // o-a placed; o-b's second event without its first (a gap); o-c placed after it.
    let mut log = placed("o-a");
    log.extend(cancelled("o-b", 1));
    log.extend(placed("o-c"));
    let response = projector.handle(batch(&log)).await;
    assert_eq!(
        failures(&response),
        vec![
            orders_local::tailer::sequence_number(2),
            orders_local::tailer::sequence_number(3)
        ]
    );
    assert!(
        stores
            .read_models
            .order("o-a")
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        stores
            .read_models
            .order("o-b")
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn an_undecodable_record_fails_from_there_on() {
    let dir = tempfile::tempdir().expect("dir");
    let stores = LocalStores::open(dir.path()).expect("open");
    let projector = Projector::replay(stores.read_models.clone());
    let mut log = placed("o-a");
    let mut bad = placed("o-x").remove(0);
    bad.event_type = "OrderTeleported".into();
    log.push(bad);
    log.extend(placed("o-c"));
    let response = projector.handle(batch(&log)).await;
    assert_eq!(failures(&response).len(), 2);
    assert!(
        stores
            .read_models
            .order("o-a")
            .await
            .expect("read")
            .is_some()
    );
    assert!(
        stores
            .read_models
            .order("o-c")
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn the_live_path_starts_on_every_placed_delivery_and_replay_never_does() {
    static STARTER: std::sync::LazyLock<CountingStarter> =
        std::sync::LazyLock::new(CountingStarter::default);
    let dir = tempfile::tempdir().expect("dir");
    let stores = LocalStores::open(dir.path()).expect("open");
    let mut log = placed("o-a");
    log.extend(cancelled("o-a", 1));
    log.extend(placed("o-b"));

    let replay = Projector::replay(stores.read_models.clone());
    assert!(
        replay
            .handle(batch(&log))
            .await
            .batch_item_failures
            .is_empty()
    );

    let live = Projector::live(stores.read_models.clone(), &*STARTER);
    // Redelivered: the views do not change, but each OrderPlaced asks for its workflow
    // again (the execution name makes that a no-op downstream).
    assert!(
        live.handle(batch(&log))
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(*STARTER.0.lock().expect("lock"), vec!["o-a", "o-b"]);
    let view = stores
        .read_models
        .order("o-a")
        .await
        .expect("read")
        .expect("view");
    assert_eq!(view.version, 2);
}
