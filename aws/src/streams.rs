//! Stream batches the projector gave up on, on AWS (feature `streams`, for the command line).
//!
//! When the projector's stream mapping runs out of retries (or the records grow too old),
//! Lambda sends its on-failure destination, the `ProjectorDeadLetterQueue`, not the records
//! but an invocation record naming them: the shard and the range of sequence numbers
//! ([`BatchFailure`]). [`read_batch`] reads that range back from DynamoDB Streams (while
//! the stream still holds it, 24 hours) and [`lambda_event`] makes it the very event Lambda
//! delivered, so the same projector handler can be given it again.

use aws_lambda_events::event::dynamodb::Event;
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("not an on-failure record of a DynamoDB stream batch: {0}")]
    NotABatchFailure(String),
    #[error(
        "the records are no longer in the stream (DynamoDB Streams keeps them 24 hours): \
         rebuild the read models with `orders replay --aws` instead"
    )]
    Trimmed,
    #[error("DynamoDB Streams {operation}: {message}")]
    Service {
        operation: &'static str,
        message: String,
    },
    #[error("the stream records do not make a Lambda event: {0}")]
    Shape(String),
}

/// Lambda's invocation record for a stream batch that failed (the body of a message on the
/// on-failure destination).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchFailure {
    #[serde(rename = "requestContext")]
    pub request_context: RequestContext,
    #[serde(rename = "responseContext", default)]
    pub response_context: Option<ResponseContext>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: BatchInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub function_arn: Option<String>,
    /// `RetryAttemptsExhausted`, `RecordAgeExceeded`, ...
    pub condition: String,
    #[serde(default)]
    pub approximate_invoke_count: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseContext {
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub function_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub approximate_arrival_of_first_record: Option<String>,
    #[serde(default)]
    pub approximate_arrival_of_last_record: Option<String>,
    pub batch_size: u32,
    pub stream_arn: String,
}

impl BatchFailure {
    /// Parses a message body.
    pub fn parse(body: &str) -> Result<BatchFailure, StreamError> {
        serde_json::from_str(body).map_err(|e| StreamError::NotABatchFailure(e.to_string()))
    }

    /// Why Lambda gave up, in one phrase.
    pub fn reason(&self) -> String {
        let invokes = self
            .request_context
            .approximate_invoke_count
            .map(|n| format!(" after {n} invocation(s)"))
            .unwrap_or_default();
        let error = self
            .response_context
            .as_ref()
            .and_then(|r| r.function_error.as_deref())
            .map(|e| format!(" (function error: {e})"))
            .unwrap_or_default();
        format!("{}{invokes}{error}", self.request_context.condition)
    }
}

fn service_error<E, R>(
    operation: &'static str,
    e: aws_sdk_dynamodbstreams::error::SdkError<E, R>,
) -> StreamError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string();
    if message.contains("TrimmedDataAccessException") {
        StreamError::Trimmed
    } else {
        StreamError::Service { operation, message }
    }
}

/// Sequence numbers are decimal strings of any length: compared as numbers.
fn seq_le(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    (a.len(), a) <= (b.len(), b)
}

/// Where [`read_shard`] starts.
#[derive(Debug, Clone, Copy)]
pub enum ShardStart<'a> {
    /// The oldest record the shard still has.
    TrimHorizon,
    /// This record.
    At(&'a str),
}

/// A shard's records in stream order, from `start` up to and including `last` (or to the
/// shard's current end).
pub async fn read_shard(
    client: &Client,
    stream_arn: &str,
    shard_id: &str,
    start: ShardStart<'_>,
    last: Option<&str>,
) -> Result<Vec<Record>, StreamError> {
    let request = client
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(shard_id);
    let request = match start {
        ShardStart::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        ShardStart::At(seq) => request
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(seq),
    };
    let it = request
        .send()
        .await
        .map_err(|e| service_error("GetShardIterator", e))?;
    let mut iterator = it.shard_iterator().map(str::to_string);
    let mut records = Vec::new();
    // An open shard always hands out a next iterator: an empty page is its current end.
    while let Some(i) = iterator.take() {
        let page = client
            .get_records()
            .shard_iterator(i)
            .send()
            .await
            .map_err(|e| service_error("GetRecords", e))?;
        if page.records().is_empty() {
            break;
        }
        for r in page.records() {
            let seq = r
                .dynamodb()
                .and_then(|d| d.sequence_number())
                .unwrap_or_default();
            if last.is_some_and(|last| !seq_le(seq, last)) {
                return Ok(records);
            }
            records.push(r.clone());
        }
        iterator = page.next_shard_iterator().map(str::to_string);
    }
    Ok(records)
}

/// The records of the failed batch, in stream order: from its first sequence number up to
/// and including its last.
pub async fn read_batch(client: &Client, batch: &BatchInfo) -> Result<Vec<Record>, StreamError> {
    let records = read_shard(
        client,
        &batch.stream_arn,
        &batch.shard_id,
        ShardStart::At(&batch.start_sequence_number),
        Some(&batch.end_sequence_number),
    )
    .await?;
    if records.is_empty() {
        // The iterator started at a sequence number the shard no longer has.
        return Err(StreamError::Trimmed);
    }
    Ok(records)
}

/// The records as one Lambda event, built through the JSON Lambda delivers, so the event
/// type's own deserializer checks the shape.
pub fn lambda_event(
    records: &[Record],
    stream_arn: &str,
    region: &str,
) -> Result<Event, StreamError> {
    let records: Vec<Value> = records
        .iter()
        .map(|r| record_json(r, stream_arn, region))
        .collect::<Result<_, _>>()?;
    serde_json::from_value(json!({ "Records": records }))
        .map_err(|e| StreamError::Shape(e.to_string()))
}

fn image(
    map: Option<&std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>,
) -> Result<Value, StreamError> {
    match map {
        None => Ok(json!({})),
        Some(m) => {
            let item = serde_dynamo::Item::from(m.clone());
            serde_json::to_value(&item).map_err(|e| StreamError::Shape(e.to_string()))
        }
    }
}

fn record_json(r: &Record, stream_arn: &str, region: &str) -> Result<Value, StreamError> {
    let sr = r
        .dynamodb()
        .ok_or_else(|| StreamError::Shape("a stream record without `dynamodb`".into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lambdas_on_failure_record_and_says_why() {
        let body = r#"{
          "requestContext": {"requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
            "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:orders-projector",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4},
          "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
          "version": "1.0", "timestamp": "2026-11-27T10:00:06.021Z",
          "DDBStreamBatchInfo": {"shardId": "shardId-00000001573689847184-864758bb",
            "startSequenceNumber": "800000000003126276362", "endSequenceNumber": "800000000003126276380",
            "approximateArrivalOfFirstRecord": "2026-11-27T10:00:04Z",
            "approximateArrivalOfLastRecord": "2026-11-27T10:00:05Z", "batchSize": 3,
            "streamArn": "arn:aws:dynamodb:us-east-2:123456789012:table/orders-events/stream/2026-11-01T00:00:00.000"}
        }"#;
        let f = BatchFailure::parse(body).expect("parses");
        assert_eq!(f.batch.batch_size, 3);
        assert_eq!(f.batch.start_sequence_number, "800000000003126276362");
        assert_eq!(
            f.reason(),
            "RetryAttemptsExhausted after 4 invocation(s) (function error: Unhandled)"
        );
        assert!(matches!(
            BatchFailure::parse(r#"{"Records": []}"#),
            Err(StreamError::NotABatchFailure(_))
        ));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(seq_le("99", "100"));
        assert!(seq_le("100", "100"));
        assert!(!seq_le("101", "100"));
        assert!(seq_le("000100", "100"));
        assert!(!seq_le("800000000003126276381", "800000000003126276380"));
    }
}
