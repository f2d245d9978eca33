//! DynamoDB Streams, read with AWS's own client, turned into the Lambda event the
//! projector receives (`aws_lambda_events::event::dynamodb::Event`).
//!
//! Included with `#[path]` by the end-to-end tests too, to feed the real projector handler
//! (needs aws-sdk-dynamodbstreams, aws_lambda_events and orders-aws with `streams`).

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::Record;
use orders_aws::streams::{ShardStart, read_shard};
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
        let from_shard = read_shard(client, stream_arn, shard_id, ShardStart::TrimHorizon, None)
            .await
            .map_err(|e| e.to_string())?;
        records.extend(from_shard);
    }
    Ok(records)
}

/// The one conversion, the command line's (`orders dead-letters --aws`).
#[allow(unused_imports)]
pub use orders_aws::streams::lambda_event;

/// Records of one event.
pub fn records(event: &Event) -> &[EventRecord] {
    &event.records
}
