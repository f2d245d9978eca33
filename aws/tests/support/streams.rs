//! DynamoDB Streams, read with AWS's own client, turned into the Lambda event the
//! projector receives (`aws_lambda_events::event::dynamodb::Event`).
//!
//! Self-contained (needs aws-sdk-dynamodbstreams, aws_lambda_events, serde_dynamo with
//! `aws-sdk-dynamodbstreams+1`, serde_json) so the end-to-end tests can include it with
//! `#[path]` and feed the real projector handler.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every record of the table's stream (all shards, from TRIM_HORIZON), waiting up to
/// `timeout` until at least `at_least` records have arrived.
pub async fn read_all(
    client: &Client,
    stream_arn: &str,
    at_least: usize,
    timeout: Duration,
) -> Result<Vec<Record>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = read_once(client, stream_arn).await?;
        if records.len() >= at_least || Instant::now() >= deadline {
            return Ok(records);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_once(client: &Client, stream_arn: &str) -> Result<Vec<Record>, String> {
    let d = client
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .map_err(|e| format!("DescribeStream: {e:?}"))?;
    let shards = d
        .stream_description()
        .map(|s| s.shards().to_vec())
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let Some(shard_id) = shard.shard_id() else {
            continue;
        };
        let it = client
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| format!("GetShardIterator: {e:?}"))?;
        let mut iterator = it.shard_iterator().map(str::to_string);
        // An open shard always hands out a next iterator: stop on an empty page.
        while let Some(i) = iterator.take() {
            let page = client
                .get_records()
                .shard_iterator(i)
                .send()
                .await
                .map_err(|e| format!("GetRecords: {e:?}"))?;
            if page.records().is_empty() {
                break;
            }
            records.extend(page.records().iter().cloned());
            iterator = page.next_shard_iterator().map(str::to_string);
        }
    }
    Ok(records)
}

/// The records as one Lambda event, built through the JSON Lambda delivers, so the event
/// type's own deserializer checks the shape.
pub fn lambda_event(records: &[Record], stream_arn: &str, region: &str) -> Result<Event, String> {
    let records: Vec<Value> = records
        .iter()
        .map(|r| record_json(r, stream_arn, region))
        .collect::<Result<_, _>>()?;
    serde_json::from_value(json!({ "Records": records }))
        .map_err(|e| format!("the stream records do not make a Lambda event: {e}"))
}

fn image(
    map: Option<&std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>,
) -> Result<Value, String> {
    match map {
        None => Ok(json!({})),
        Some(m) => {
            let item = serde_dynamo::Item::from(m.clone());
            serde_json::to_value(&item).map_err(|e| e.to_string())
        }
    }
}

fn record_json(r: &Record, stream_arn: &str, region: &str) -> Result<Value, String> {
    let sr = r.dynamodb().ok_or("a stream record without `dynamodb`")?;
    let mut change = json!({
        "Keys": image(sr.keys.as_ref())?,
        "NewImage": image(sr.new_image.as_ref())?,
        "SequenceNumber": sr.sequence_number(),
        "SizeBytes": sr.size_bytes(),
        "StreamViewType": sr.stream_view_type().map(|v| v.as_str()),
    });
    if let Some(t) = sr.approximate_creation_date_time() {
        change["ApproximateCreationDateTime"] = json!(t.secs());
    }
    if sr.old_image.is_some() {
        change["OldImage"] = image(sr.old_image.as_ref())?;
    }
    Ok(json!({
        "eventID": r.event_id(),
        "eventName": r.event_name().map(|n| n.as_str()),
        "eventVersion": r.event_version(),
        "eventSource": r.event_source(),
        "awsRegion": r.aws_region().unwrap_or(region),
        "eventSourceARN": stream_arn,
        "dynamodb": change,
    }))
}

/// Records of one event.
pub fn records(event: &Event) -> &[EventRecord] {
    &event.records
}
