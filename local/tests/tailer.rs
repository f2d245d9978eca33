//! The stream tailer against a scripted handler: Lambda-shaped records, batch item
//! failures, retries, parking, checkpoints, restarts and shutdown.

#[path = "contract/mod.rs"]
mod contract;

use aws_lambda_events::event::dynamodb::{Event, EventRecord, StreamViewType};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use orders_domain::ports::EventStore;
use orders_local::store::LocalStores;
use orders_local::tailer::{
    self, Handled, StreamHandler, TailerConfig, TailerHandle, sequence_number,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

/// Fails the records it is told to, the way the projector does: the failed record and
/// everything after it are reported as batch item failures (or the call fails).
#[derive(Default)]
struct Scripted {
    /// seq → deliveries still to fail.
    fail: Mutex<HashMap<u64, u32>>,
    /// Fail with `Err` (a function error) instead of batch item failures.
    function_error: bool,
    /// Fail by panicking.
    panic: bool,
    delay: Duration,
    batches: Mutex<Vec<Vec<u64>>>,
    handled: Mutex<Vec<u64>>,
    events: Mutex<Vec<Event>>,
    started: tokio::sync::Notify,
}

impl Scripted {
    fn failing(seq: u64, times: u32) -> Self {
        Scripted {
            fail: Mutex::new(HashMap::from([(seq, times)])),
            ..Default::default()
        }
    }
    fn batches(&self) -> Vec<Vec<u64>> {
        self.batches.lock().unwrap().clone()
    }
    fn handled(&self) -> Vec<u64> {
        self.handled.lock().unwrap().clone()
    }
}

fn seq_of(r: &EventRecord) -> u64 {
    r.change
        .sequence_number
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

impl StreamHandler for Scripted {
    async fn handle(&self, event: Event) -> Result<Handled, String> {
        self.started.notify_one();
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let seqs: Vec<u64> = event.records.iter().map(seq_of).collect();
        self.batches.lock().unwrap().push(seqs.clone());
        self.events.lock().unwrap().push(event);
        let mut response = DynamoDbEventResponse::default();
        for (i, seq) in seqs.iter().enumerate() {
            let fails = match self.fail.lock().unwrap().get_mut(seq) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            if fails {
                if self.panic {
                    panic!("handler bug at {seq}");
                }
                if self.function_error {
                    return Err(format!("boom at {seq}"));
                }
                for s in &seqs[i..] {
                    let mut f = DynamoDbBatchItemFailure::default();
                    f.item_identifier = Some(sequence_number(*s));
                    response.batch_item_failures.push(f);
                }
                return Ok(Handled {
                    response,
                    reason: Some(format!("scripted failure at {seq}")),
                });
            }
            self.handled.lock().unwrap().push(*seq);
        }
        Ok(response.into())
    }
}

fn fast(name: &str) -> TailerConfig {
    TailerConfig {
        name: name.into(),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        ..TailerConfig::default()
    }
}

/// Places `n` orders, one event each; returns their ids.
async fn place_orders(stores: &LocalStores, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = contract::unique("order");
        contract::place(&stores.events, &id).await;
        ids.push(id);
    }
    ids
}

/// The tailer over `stores`' log and checkpoints.
fn tail<H: StreamHandler>(stores: &LocalStores, handler: H, config: TailerConfig) -> TailerHandle {
    tailer::spawn(
        stores.events.clone(),
        stores.read_models.clone(),
        handler,
        config,
    )
}

fn open(dir: &tempfile::TempDir) -> LocalStores {
    LocalStores::open(dir.path()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_real_dynamodb_stream_records_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let ids = place_orders(&stores, 3).await;
    let id = &ids[0];
    let more = contract::wrap(id, 1, &[contract::cancelled()], contract::T0 + 5);
    stores
        .events
        .append(contract::request(id, 1, more))
        .await
        .unwrap();

    let handler = Arc::new(Scripted::default());
    let t = tail(&stores, handler.clone(), fast("projector"));
    timeout(WAIT, t.wait_for(4)).await.unwrap();
    t.shutdown().await;

    assert_eq!(handler.handled(), vec![1, 2, 3, 4]);
    let event = handler.events.lock().unwrap()[0].clone();
    let logged = stores.events.read_from(0, 10).await.unwrap();
    for (record, (seq, envelope)) in event.records.iter().zip(&logged) {
        assert_eq!(record.event_name, "INSERT");
        assert_eq!(record.event_source.as_deref(), Some("aws:dynamodb"));
        assert_eq!(record.aws_region, "local");
        assert!(
            record
                .event_source_arn
                .as_deref()
                .unwrap()
                .starts_with("arn:aws:dynamodb:")
        );
        let change = &record.change;
        assert_eq!(change.stream_view_type, Some(StreamViewType::NewImage));
        assert_eq!(change.sequence_number, Some(sequence_number(*seq)));
        assert!(change.size_bytes > 100);
        assert_eq!(change.keys.len(), 2);
        assert_eq!(
            change.keys["aggregate_id"],
            change.new_image["aggregate_id"]
        );
        assert_eq!(change.keys["version"], change.new_image["version"]);
        assert_eq!(
            change.approximate_creation_date_time.timestamp(),
            envelope.occurred_at.millis() / 1000
        );
        // The image decodes with the one codec, back to exactly what was appended.
        let decoded = orders_aws::codec::envelope_from_image(change.new_image.clone()).unwrap();
        assert_eq!(&decoded, envelope);
    }
    // Sequence numbers sort as strings the way they do as numbers.
    assert!(sequence_number(9) < sequence_number(10));

    // The Lambda wire format, as the projector's runtime would receive it.
    let json = serde_json::to_value(&event).unwrap();
    let r0 = &json["Records"][0];
    assert_eq!(r0["eventName"], "INSERT");
    assert_eq!(r0["eventSource"], "aws:dynamodb");
    assert!(r0["eventSourceARN"].is_string());
    assert_eq!(r0["dynamodb"]["StreamViewType"], "NEW_IMAGE");
    assert_eq!(
        r0["dynamodb"]["NewImage"]["aggregate_id"]["S"],
        ids[0].as_str()
    );
    assert_eq!(r0["dynamodb"]["Keys"]["version"]["N"], "1");
    assert!(r0["dynamodb"]["SequenceNumber"].is_string());
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_keeps_failing_is_retried_then_parked() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let ids = place_orders(&stores, 5).await;
    let handler = Arc::new(Scripted::failing(3, u32::MAX));
    let t = tail(&stores, handler.clone(), fast("projector"));
    timeout(WAIT, t.wait_for(5)).await.unwrap();
    t.shutdown().await;

    // 1 and 2 once, 3 three times (then parked), 4 and 5 once after it.
    assert_eq!(
        handler.batches(),
        vec![
            vec![1, 2, 3, 4, 5],
            vec![3, 4, 5],
            vec![3, 4, 5],
            vec![4, 5]
        ]
    );
    assert_eq!(
        handler.handled(),
        vec![1, 2, 4, 5],
        "nothing skipped, nothing twice"
    );

    let rm = &stores.read_models;
    assert_eq!(rm.checkpoint("projector").await.unwrap(), 5);
    assert_eq!(
        rm.count_dead_letters(Some("stream:projector"))
            .await
            .unwrap(),
        1
    );
    let parked = rm.dead_letters(None, 0, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    let letter = &parked[0];
    assert_eq!(letter.source, "stream:projector");
    assert_eq!(letter.key, sequence_number(3));
    assert!(
        letter.reason.contains("batch item failure"),
        "{}",
        letter.reason
    );
    assert!(letter.reason.contains("3 attempts"), "{}", letter.reason);
    assert!(
        letter.reason.contains("scripted failure at 3"),
        "the handler's own reason: {}",
        letter.reason
    );
    let record: EventRecord = serde_json::from_str(&letter.record).unwrap();
    assert_eq!(seq_of(&record), 3);
    let envelope = orders_aws::codec::envelope_from_image(record.change.new_image).unwrap();
    assert_eq!(envelope.aggregate_id, ids[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_batch_redelivers_from_that_record_only() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    place_orders(&stores, 5).await;
    let handler = Arc::new(Scripted::failing(3, 1));
    let t = tail(&stores, handler.clone(), fast("projector"));
    timeout(WAIT, t.wait_for(5)).await.unwrap();
    t.shutdown().await;
    assert_eq!(handler.batches(), vec![vec![1, 2, 3, 4, 5], vec![3, 4, 5]]);
    assert_eq!(handler.handled(), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        stores.read_models.count_dead_letters(None).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_fails_the_batch_and_parks_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    place_orders(&stores, 3).await;
    let handler = Arc::new(Scripted {
        function_error: true,
        ..Scripted::failing(2, u32::MAX)
    });
    let config = TailerConfig {
        batch_size: 1,
        ..fast("projector")
    };
    let t = tail(&stores, handler.clone(), config);
    timeout(WAIT, t.wait_for(3)).await.unwrap();
    t.shutdown().await;
    assert_eq!(
        handler.batches(),
        vec![vec![1], vec![2], vec![2], vec![2], vec![3]]
    );
    assert_eq!(handler.handled(), vec![1, 3]);
    let parked = stores.read_models.dead_letters(None, 0, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].key, sequence_number(2));
    assert!(
        parked[0].reason.contains("boom at 2"),
        "{}",
        parked[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let stores = open(&dir);
        place_orders(&stores, 3).await;
        let first = Arc::new(Scripted::default());
        let t = tail(&stores, first.clone(), fast("projector"));
        timeout(WAIT, t.wait_for(3)).await.unwrap();
        t.shutdown().await;
        assert_eq!(first.handled(), vec![1, 2, 3]);
        place_orders(&stores, 2).await;
    }
    // A new process: stores reopened from disk.
    let stores = open(&dir);
    place_orders(&stores, 1).await;
    let second = Arc::new(Scripted::default());
    let t = tail(&stores, second.clone(), fast("projector"));
    timeout(WAIT, t.wait_for(6)).await.unwrap();
    assert_eq!(t.checkpoint(), 6);
    t.shutdown().await;
    assert_eq!(
        second.handled(),
        vec![4, 5, 6],
        "skipping nothing, nothing twice"
    );

    // Another consumer with its own checkpoint starts from the beginning.
    let other = Arc::new(Scripted::default());
    let t = tail(&stores, other.clone(), fast("audit"));
    timeout(WAIT, t.wait_for(6)).await.unwrap();
    t.shutdown().await;
    assert_eq!(other.handled(), vec![1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakes_on_commit_without_polling() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let handler = Arc::new(Scripted::default());
    let config = TailerConfig {
        poll_interval: Duration::from_secs(3600),
        ..fast("projector")
    };
    let t = tail(&stores, handler.clone(), config);
    tokio::time::sleep(Duration::from_millis(50)).await; // let it go idle
    let started = std::time::Instant::now();
    place_orders(&stores, 1).await;
    timeout(Duration::from_secs(5), t.wait_for(1))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    t.shutdown().await;
    assert_eq!(handler.handled(), vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_batch_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    place_orders(&stores, 3).await;
    let handler = Arc::new(Scripted {
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let t = tail(&stores, handler.clone(), fast("projector"));
    timeout(WAIT, handler.started.notified()).await.unwrap();
    timeout(WAIT, t.shutdown()).await.unwrap();
    assert_eq!(handler.handled(), vec![1, 2, 3]);
    assert_eq!(stores.read_models.checkpoint("projector").await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_row_is_parked_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    place_orders(&stores, 1).await;
    {
        // Damage written behind the store's back (say, by hand in a sqlite3 shell).
        let conn = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
        conn.execute(
            "INSERT INTO events (aggregate_id, version, event_id, event_type, schema_version,
                                 occurred_at, correlation_id, causation_id, payload)
             VALUES ('broken', 1, 'e-broken', 'OrderPlaced', 1, 'yesterday', 'c', 'c', '{')",
            [],
        )
        .unwrap();
    }
    place_orders(&stores, 1).await;
    let handler = Arc::new(Scripted::default());
    let config = TailerConfig {
        poll_interval: Duration::from_millis(20),
        ..fast("projector")
    };
    let t = tail(&stores, handler.clone(), config);
    timeout(WAIT, t.wait_for(3)).await.unwrap();
    t.shutdown().await;
    assert_eq!(handler.handled(), vec![1, 3]);
    let parked = stores
        .read_models
        .dead_letters(Some("stream:projector"), 0, 10)
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].key, sequence_number(2));
    assert!(
        parked[0].reason.starts_with("undecodable"),
        "{}",
        parked[0].reason
    );
    assert!(parked[0].record.contains("broken"), "{}", parked[0].record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_the_batch_but_not_the_tailer() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    place_orders(&stores, 3).await;
    let handler = Arc::new(Scripted {
        panic: true,
        ..Scripted::failing(2, 1)
    });
    let t = tail(&stores, handler.clone(), fast("projector"));
    timeout(WAIT, t.wait_for(3)).await.unwrap();
    t.shutdown().await;
    // The panicking delivery recorded nothing; the whole batch came again.
    assert_eq!(handler.handled(), vec![1, 1, 2, 3]);
    assert_eq!(
        stores.read_models.count_dead_letters(None).await.unwrap(),
        0
    );
}

/// The projector from `orders-handlers` behind the tailer: views appear, and the batch's
/// writes commit with the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_the_real_projector() {
    use orders_domain::ports::ReadModels;
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    let ids = place_orders(&stores, 250).await;
    let projector = orders_handlers::projector::Projector::replay(stores.read_models.clone());
    let t = tail(&stores, projector, fast("projector"));
    timeout(WAIT, t.wait_for(250)).await.unwrap();
    for id in &ids {
        let view = stores.read_models.order(id).await.unwrap();
        assert_eq!(view.map(|v| v.version), Some(1), "{id}");
    }
    // Later appends are projected as they come.
    let more = place_orders(&stores, 1).await;
    timeout(WAIT, t.wait_for(251)).await.unwrap();
    t.shutdown().await;
    assert!(stores.read_models.order(&more[0]).await.unwrap().is_some());
    assert_eq!(
        stores.read_models.checkpoint("projector").await.unwrap(),
        251
    );
    assert_eq!(
        stores.read_models.count_dead_letters(None).await.unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_record_redriven_after_the_fix_is_processed_alone_and_leaves_the_dead_letters() {
    use orders_local::redrive::{RedriveError, Redriven, redrive};
    let dir = tempfile::tempdir().unwrap();
    let stores = open(&dir);
    place_orders(&stores, 5).await;
    // Three deliveries park seq 3; the fourth failure stands for the bug not fixed yet.
    let handler = Arc::new(Scripted::failing(3, 4));
    let config = fast("projector");
    let t = tail(&stores, handler.clone(), config.clone());
    timeout(WAIT, t.wait_for(5)).await.unwrap();
    let rm = &stores.read_models;
    let letter = rm.dead_letters(None, 0, 10).await.unwrap().remove(0);
    assert_eq!(letter.key, sequence_number(3));

    let again = redrive(&stores.events, rm, handler.clone(), &config, &letter)
        .await
        .unwrap();
    let reason = match again {
        Redriven::Failed(reason) => reason,
        other => panic!("expected a failure, got {other:?}"),
    };
    assert!(
        reason.contains("batch item failure: scripted failure at 3"),
        "{reason}"
    );
    // The letter stays as it was parked, with the failed redrive counted and explained.
    let kept = rm.dead_letter(letter.id).await.unwrap().expect("kept");
    assert_eq!(letter.failed_redrives, 0);
    assert_eq!(kept.failed_redrives, 1);
    assert_eq!(
        kept.last_failure.as_ref().map(|(_, why)| why),
        Some(&reason)
    );
    assert_eq!(
        (&kept.reason, &kept.record, kept.parked_at),
        (&letter.reason, &letter.record, letter.parked_at)
    );

    let fixed = redrive(&stores.events, rm, handler.clone(), &config, &letter)
        .await
        .unwrap();
    assert_eq!(fixed, Redriven::Processed);
    assert_eq!(rm.count_dead_letters(None).await.unwrap(), 0);
    assert_eq!(
        handler.batches().last(),
        Some(&vec![3]),
        "alone in its batch"
    );
    assert_eq!(handler.handled(), vec![1, 2, 4, 5, 3]);
    assert_eq!(rm.checkpoint("projector").await.unwrap(), 5, "unmoved");

    // Only the stream's own letters go back to it.
    let id = rm
        .park(
            orders_local::store::NewDeadLetter {
                source: "replay".into(),
                key: "o-1#v1 (seq 1)".into(),
                reason: "undecodable".into(),
                record: "{}".into(),
            },
            None,
        )
        .await
        .unwrap();
    let other = rm.dead_letter(id).await.unwrap().unwrap();
    let refused = redrive(&stores.events, rm, handler.clone(), &config, &other).await;
    assert!(
        matches!(refused, Err(RedriveError::OtherSource { .. })),
        "{refused:?}"
    );
    t.shutdown().await;
}
