//! The event store on DynamoDB.
//!
//! Events table: key `aggregate_id` (S, hash) + `version` (N, range), items in the one
//! format of [`crate::codec`], stream `NEW_IMAGE`. Idempotency table: key
//! `idempotency_key` (S), TTL attribute `expires_at` (epoch seconds, created + 24 h).
//!
//! An append is one `TransactWriteItems`:
//! 1. a `Put` per event, conditioned on `attribute_not_exists(aggregate_id)`, i.e. on no
//!    event existing at that aggregate + version. With versions strictly sequential, the
//!    put of version `expected + 1` already rules out a lost update: if anyone appended
//!    after `expected`, that item exists.
//! 2. when `expected_version > 0`, a `ConditionCheck` that the event at `expected_version`
//!    exists. Without it a writer that is *ahead* of the log (a stale or made-up
//!    `If-Match`) could write version 7 onto an order at version 3 and leave a gap; with
//!    it the log stays gap-free whatever the caller sends.
//! 3. the idempotency record, conditioned on `attribute_not_exists(idempotency_key)`.
//!
//! The `ClientRequestToken` is derived from the aggregate id and the first event id, so the
//! SDK's retries of a request whose answer was lost are not applied twice.

use crate::codec::{self, KEY_AGGREGATE, KEY_VERSION};
use crate::dynamo::{self, MAX_TRANSACT_ACTIONS, TxError, get_n, get_s, n, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use orders_domain::EventEnvelope;
use orders_domain::ports::{AppendRequest, EventStore, IdempotencyRecord, StoreError};
use orders_domain::time::Timestamp;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tracing::Instrument;

/// The idempotency table's key attribute.
pub const KEY_IDEMPOTENCY: &str = "idempotency_key";
/// The idempotency table's TTL attribute (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long an idempotency record is kept at least (DynamoDB's TTL sweep removes it
/// some time after).
pub const IDEMPOTENCY_TTL_SECS: i64 = 24 * 60 * 60;

#[derive(Debug, Clone)]
pub struct DynamoEventStore {
    client: Client,
    events_table: String,
    idempotency_table: String,
}

impl DynamoEventStore {
    pub fn new(client: Client, events_table: &str, idempotency_table: &str) -> Self {
        DynamoEventStore {
            client,
            events_table: events_table.to_string(),
            idempotency_table: idempotency_table.to_string(),
        }
    }

    pub fn events_table(&self) -> &str {
        &self.events_table
    }

    pub fn idempotency_table(&self) -> &str {
        &self.idempotency_table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn append_inner(&self, request: AppendRequest) -> Result<(), StoreError> {
        check_request(&request)?;
        let has_check = request.expected_version > 0 && !request.events.is_empty();
        let overhead = usize::from(has_check) + usize::from(request.idempotency.is_some());
        if request.events.len() + overhead > MAX_TRANSACT_ACTIONS {
            return Err(StoreError::TooManyEvents {
                max: MAX_TRANSACT_ACTIONS - overhead,
                got: request.events.len(),
            });
        }
        let mut actions = Vec::with_capacity(request.events.len() + overhead);
        for envelope in &request.events {
            let item = codec::envelope_to_item(envelope)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let put = Put::builder()
                .table_name(&self.events_table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#agg)")
                .expression_attribute_names("#agg", KEY_AGGREGATE)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        if has_check {
            let check = ConditionCheck::builder()
                .table_name(&self.events_table)
                .key(KEY_AGGREGATE, s(&request.aggregate_id))
                .key(KEY_VERSION, n(request.expected_version))
                .condition_expression("attribute_exists(#agg)")
                .expression_attribute_names("#agg", KEY_AGGREGATE)
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            actions.push(TransactWriteItem::builder().condition_check(check).build());
        }
        let idempotency_index = match &request.idempotency {
            Some(record) => {
                let put = Put::builder()
                    .table_name(&self.idempotency_table)
                    .set_item(Some(idempotency_item(record)))
                    .condition_expression("attribute_not_exists(#k)")
                    .expression_attribute_names("#k", KEY_IDEMPOTENCY)
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                actions.push(TransactWriteItem::builder().put(put).build());
                Some(actions.len() - 1)
            }
            None => None,
        };
        if actions.is_empty() {
            return Ok(());
        }
        let token = request
            .events
            .first()
            .map(|e| client_request_token(&request.aggregate_id, &e.event_id))
            .or_else(|| {
                request
                    .idempotency
                    .as_ref()
                    .map(|r| client_request_token(&request.aggregate_id, &r.key))
            });
        match dynamo::transact(&self.client, actions, token).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.map_append_error(&request, idempotency_index, &e)),
        }
    }

    fn map_append_error(
        &self,
        request: &AppendRequest,
        idempotency_index: Option<usize>,
        err: &TxError,
    ) -> StoreError {
        // A repeated command usually fails both conditions: the key wins, so the caller
        // can answer with the first response.
        if let (Some(i), Some(record)) = (idempotency_index, &request.idempotency)
            && err.failed_condition_at(i)
        {
            return StoreError::DuplicateIdempotencyKey(record.key.clone());
        }
        if err.any_failed_condition() {
            return StoreError::Conflict {
                aggregate_id: request.aggregate_id.clone(),
                expected: request.expected_version,
            };
        }
        tracing::warn!(error = %err.message(), "append failed");
        StoreError::Unavailable(err.message())
    }

    async fn idempotency_inner(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.idempotency_table)
            .key(KEY_IDEMPOTENCY, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(dynamo::describe(&e)))?;
        out.item
            .map(|item| idempotency_from_item(&item))
            .transpose()
    }
}

/// The stored items of order `aggregate_id` with a version above `after` (0: all of
/// them), in version order: a consistent, paginated Query. Errs with what the service said.
pub(crate) async fn events_after(
    client: &Client,
    table: &str,
    aggregate_id: &str,
    after: u64,
) -> Result<Vec<HashMap<String, AttributeValue>>, String> {
    let mut items = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .key_condition_expression("#agg = :id AND #ver > :after")
            .expression_attribute_names("#agg", KEY_AGGREGATE)
            .expression_attribute_names("#ver", KEY_VERSION)
            .expression_attribute_values(":id", s(aggregate_id))
            .expression_attribute_values(":after", n(after))
            .consistent_read(true)
            .scan_index_forward(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| dynamo::describe(&e))?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(items),
        }
    }
}

/// The events of one request must continue the log right after `expected_version`, for
/// the request's own order: anything else is a bug in the caller, refused before any write.
fn check_request(request: &AppendRequest) -> Result<(), StoreError> {
    for (i, e) in request.events.iter().enumerate() {
        let want = request.expected_version + 1 + i as u64;
        if e.aggregate_id != request.aggregate_id || e.version != want {
            return Err(StoreError::Corrupt(format!(
                "inconsistent append for order {} at version {}: event {} is {}@{}, expected {}@{want}",
                request.aggregate_id,
                request.expected_version,
                e.event_id,
                e.aggregate_id,
                e.version,
                request.aggregate_id
            )));
        }
    }
    Ok(())
}

/// At most 36 printable characters (DynamoDB's limit), the same for the same append.
pub fn client_request_token(aggregate_id: &str, first_event_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(aggregate_id.as_bytes())
        .chain_update([0u8])
        .chain_update(first_event_id.as_bytes())
        .finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..36].to_string()
}

fn idempotency_item(record: &IdempotencyRecord) -> HashMap<String, AttributeValue> {
    let expires = record.created_at.millis().div_euclid(1000) + IDEMPOTENCY_TTL_SECS;
    HashMap::from([
        (KEY_IDEMPOTENCY.to_string(), s(&record.key)),
        ("request_hash".to_string(), s(&record.request_hash)),
        ("aggregate_id".to_string(), s(&record.aggregate_id)),
        ("status".to_string(), n(record.status)),
        ("response".to_string(), s(&record.response)),
        ("created_at".to_string(), s(record.created_at.to_string())),
        (TTL_ATTRIBUTE.to_string(), n(expires)),
    ])
}

fn idempotency_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<IdempotencyRecord, StoreError> {
    let corrupt = |field: &str| {
        StoreError::Corrupt(format!(
            "idempotency record {:?}: `{field}` is missing or invalid",
            get_s(item, KEY_IDEMPOTENCY).unwrap_or("?")
        ))
    };
    let text = |field: &str| {
        get_s(item, field)
            .map(str::to_string)
            .ok_or_else(|| corrupt(field))
    };
    Ok(IdempotencyRecord {
        key: text(KEY_IDEMPOTENCY)?,
        request_hash: text("request_hash")?,
        aggregate_id: text("aggregate_id")?,
        status: get_n(item, "status").ok_or_else(|| corrupt("status"))?,
        response: text("response")?,
        created_at: get_s(item, "created_at")
            .and_then(Timestamp::parse)
            .ok_or_else(|| corrupt("created_at"))?,
    })
}

impl EventStore for DynamoEventStore {
    async fn append(&self, request: AppendRequest) -> Result<(), StoreError> {
        let span = tracing::info_span!(
            "dynamodb.append",
            order_id = %request.aggregate_id,
            correlation_id = %request.events.first().map(|e| e.correlation_id.as_str()).unwrap_or(""),
            expected_version = request.expected_version,
            events = request.events.len(),
        );
        self.append_inner(request).instrument(span).await
    }

    async fn load(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope>, StoreError> {
        let span = tracing::debug_span!("dynamodb.load", order_id = %aggregate_id);
        load_order(&self.client, &self.events_table, aggregate_id)
            .instrument(span)
            .await
    }

    async fn idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let span = tracing::debug_span!("dynamodb.idempotency", idempotency_key = %key);
        self.idempotency_inner(key).instrument(span).await
    }
}

/// One order's events from `events_table`, in version order, checked for gaps. The
/// store's `load`, and what a reader without the idempotency table uses (`orders events
/// --aws`).
pub async fn load_order(
    client: &Client,
    events_table: &str,
    aggregate_id: &str,
) -> Result<Vec<EventEnvelope>, StoreError> {
    let items = events_after(client, events_table, aggregate_id, 0)
        .await
        .map_err(StoreError::Unavailable)?;
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        let envelope = codec::envelope_from_item(item)
            .map_err(|e| StoreError::Corrupt(format!("order {aggregate_id}: {e}")))?;
        let expected = events.len() as u64 + 1;
        if envelope.version != expected {
            return Err(StoreError::Corrupt(format!(
                "order {aggregate_id}: found version {} where {expected} was expected",
                envelope.version
            )));
        }
        events.push(envelope);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_deterministic_and_fits() {
        let a = client_request_token("01JORDER", "01JEVENT");
        assert_eq!(a, client_request_token("01JORDER", "01JEVENT"));
        assert_ne!(a, client_request_token("01JORDER", "01JEVENT2"));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn idempotency_items_round_trip_with_a_ttl() {
        let r = IdempotencyRecord {
            key: "k-1".into(),
            request_hash: "abc".into(),
            aggregate_id: "01JORDER".into(),
            status: 201,
            response: "{\"order_id\":\"01JORDER\"}".into(),
            created_at: Timestamp(1_795_706_525_123),
        };
        let item = idempotency_item(&r);
        assert_eq!(
            item[TTL_ATTRIBUTE],
            AttributeValue::N((1_795_706_525 + IDEMPOTENCY_TTL_SECS).to_string())
        );
        assert_eq!(idempotency_from_item(&item).unwrap(), r);
        let mut broken = item.clone();
        broken.remove("status");
        let err = idempotency_from_item(&broken).unwrap_err();
        assert!(err.to_string().contains("status"), "{err}");
    }
}
