//! The read models on DynamoDB: one table, key `pk` (S) + `sk` (S), and the GSI
//! `by_customer` (`gsi1pk` S = customer id, `gsi1sk` S = `<placed_at>#<order_id>`,
//! projection ALL).
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | order view | `ORDER#<id>` | `VIEW` | `view` (M, the [`OrderView`]), `version`, `gsi1pk`, `gsi1sk` |
//! | sales tracker | `ORDER#<id>` | `SALES` | `tracker` (M, the [`SalesTracker`]), `version` |
//! | daily sales | `SALES#<date>` | `<currency>` | `date`, `currency`, counters (N, `ADD`) |
//!
//! Folding is the domain's ([`apply_order_view`], [`apply_daily_sales`],
//! [`applicability`]), the same as the SQLite adapter's. Each projection keeps its own
//! last applied version per order; a write is conditioned on it
//! (`attribute_not_exists(pk) OR version = :prev`), and the counters are `ADD`ed in the
//! same `TransactWriteItems` as the tracker's guarded put, so a redelivered event can
//! never count twice. The table name is a parameter: a blue/green rebuild replays the
//! log into a fresh table (and may select the projections it rebuilds).
//!
//! Costs and limits: `apply` is one strongly consistent Query of the order's partition
//! plus one write (a conditional PutItem, or a TransactWriteItems when the counters move
//! too). The counter item of one day and currency takes every placement and cancellation
//! of that day: DynamoDB allows about 1,000 writes/s per item (half that transactionally),
//! so beyond a few hundred orders/s per currency the counters would need write sharding
//! (`SALES#<date>#<n>`, summed on read). `daily_sales` scans the table (the days are not
//! known in advance): an operator's / CLI call needing `dynamodb:Scan`, not a request path.

use crate::dynamo::{self, TxError, get_n, get_s, n, s};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::ports::{ApplyOutcome, Page, ReadModelError, ReadModels};
use orders_domain::projection::{
    Applicability, DailySales, OrderSummary, OrderView, ProjectionName, SalesDelta, SalesTracker,
    applicability, apply_daily_sales, apply_order_view,
};
use std::collections::{BTreeMap, HashMap};
use tracing::Instrument;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI_BY_CUSTOMER: &str = "by_customer";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";

pub(crate) const SK_VIEW: &str = "VIEW";
pub(crate) const SK_SALES_TRACKER: &str = "SALES";
pub(crate) const SALES_PREFIX: &str = "SALES#";
pub(crate) const ORDER_PREFIX: &str = "ORDER#";

/// How often `apply` re-reads and retries when another writer moved a guard first.
const APPLY_ATTEMPTS: usize = 5;
/// The largest page `customer_orders` returns.
pub const MAX_PAGE: usize = 1000;

type Item = HashMap<String, AttributeValue>;

pub fn order_pk(order_id: &str) -> String {
    format!("{ORDER_PREFIX}{order_id}")
}

pub fn sales_pk(date: &str) -> String {
    format!("{SALES_PREFIX}{date}")
}

#[derive(Debug, Clone)]
pub struct DynamoReadModels {
    client: Client,
    table: String,
    orders: bool,
    daily_sales: bool,
}

/// What one order's items hold now (live), or what the events folded so far add up to (a
/// rebuild, [`crate::replay`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct OrderState {
    pub(crate) view: Option<OrderView>,
    pub(crate) view_version: u64,
    pub(crate) tracker: Option<SalesTracker>,
    pub(crate) tracker_version: u64,
}

/// What folding one event changed in an [`OrderState`].
#[derive(Debug, Default)]
pub(crate) struct Folded {
    pub(crate) view: bool,
    pub(crate) tracker: bool,
    pub(crate) delta: Option<SalesDelta>,
}

impl OrderState {
    /// Folds one event into the selected projections with the domain's folds, each guarded
    /// by its own last applied version ([`applicability`]). This is the one fold of both
    /// the live path ([`DynamoReadModels::apply`]) and the rebuild ([`crate::replay`]).
    /// On error the state is unchanged.
    pub(crate) fn fold(
        &mut self,
        orders: bool,
        daily_sales: bool,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<Folded, ReadModelError> {
        let gap = |expected: u64| ReadModelError::Gap {
            aggregate_id: envelope.aggregate_id.clone(),
            expected,
            got: envelope.version,
        };
        let view_step = if orders {
            applicability(self.view_version, envelope.version)
        } else {
            Applicability::Duplicate
        };
        let sales_step = if daily_sales {
            applicability(self.tracker_version, envelope.version)
        } else {
            Applicability::Duplicate
        };
        for step in [view_step, sales_step] {
            if let Applicability::Gap { expected } = step {
                return Err(gap(expected));
            }
        }
        let mut folded = Folded::default();
        if view_step == Applicability::Apply {
            // `apply_order_view` only fails when there is no view yet, so taking it loses
            // nothing on error.
            let view = apply_order_view(self.view.take(), envelope, event)?;
            self.view_version = view.version;
            self.view = Some(view);
            folded.view = true;
        }
        if sales_step == Applicability::Apply {
            let (tracker, delta) = apply_daily_sales(self.tracker.take(), envelope, event);
            self.tracker_version = tracker.version;
            self.tracker = Some(tracker);
            folded.tracker = true;
            folded.delta = delta;
        }
        Ok(folded)
    }
}

/// The order-view item (`ORDER#<id>` / `VIEW`), with its by-customer index keys.
pub(crate) fn view_item(view: &OrderView) -> Result<Item, ReadModelError> {
    let map = serde_dynamo::to_attribute_value(view)
        .map_err(|e| ReadModelError::Corrupt(e.to_string()))?;
    Ok(HashMap::from([
        (PK.to_string(), s(order_pk(&view.order_id))),
        (SK.to_string(), s(SK_VIEW)),
        ("version".to_string(), n(view.version)),
        ("view".to_string(), map),
        (GSI1_PK.to_string(), s(&view.customer.id)),
        (
            GSI1_SK.to_string(),
            s(format!("{}#{}", view.placed_at, view.order_id)),
        ),
    ]))
}

/// The sales-tracker item (`ORDER#<id>` / `SALES`).
pub(crate) fn tracker_item(order_id: &str, tracker: &SalesTracker) -> Result<Item, ReadModelError> {
    let map = serde_dynamo::to_attribute_value(tracker)
        .map_err(|e| ReadModelError::Corrupt(e.to_string()))?;
    Ok(HashMap::from([
        (PK.to_string(), s(order_pk(order_id))),
        (SK.to_string(), s(SK_SALES_TRACKER)),
        ("version".to_string(), n(tracker.version)),
        ("tracker".to_string(), map),
    ]))
}

/// The attribute names of a day's item, by the placeholders the updates of its counters
/// use (`#date`, `#cur`, `#op`, `#ap`, `#oc`, `#ac`).
pub(crate) fn day_names() -> HashMap<String, String> {
    [
        ("#date", "date"),
        ("#cur", "currency"),
        ("#op", "orders_placed"),
        ("#ap", "amount_placed"),
        ("#oc", "orders_cancelled"),
        ("#ac", "amount_cancelled"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A day's counters with their final values (`SALES#<date>` / `<currency>`): the same
/// attributes the live path's `ADD`s build up, written whole by a rebuild.
pub(crate) fn sales_item(row: &DailySales) -> Item {
    HashMap::from([
        (PK.to_string(), s(sales_pk(&row.date))),
        (SK.to_string(), s(&row.currency)),
        ("date".to_string(), s(&row.date)),
        ("currency".to_string(), s(&row.currency)),
        ("orders_placed".to_string(), n(row.orders_placed)),
        ("amount_placed".to_string(), n(row.amount_placed)),
        ("orders_cancelled".to_string(), n(row.orders_cancelled)),
        ("amount_cancelled".to_string(), n(row.amount_cancelled)),
    ])
}

impl DynamoReadModels {
    /// All projections, in `table`.
    pub fn new(client: Client, table: &str) -> Self {
        DynamoReadModels {
            client,
            table: table.to_string(),
            orders: true,
            daily_sales: true,
        }
    }

    /// Only the named projections are folded by `apply` (for a rebuild of some of them).
    pub fn with_projections(mut self, projections: &[ProjectionName]) -> Self {
        self.orders = projections.contains(&ProjectionName::Orders);
        self.daily_sales = projections.contains(&ProjectionName::DailySales);
        self
    }

    /// The same store writing another table (a blue/green rebuild target).
    pub fn with_table(&self, table: &str) -> Self {
        DynamoReadModels {
            table: table.to_string(),
            ..self.clone()
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The projections `apply` folds.
    pub fn projections(&self) -> Vec<ProjectionName> {
        ProjectionName::ALL
            .into_iter()
            .filter(|p| match p {
                ProjectionName::Orders => self.orders,
                ProjectionName::DailySales => self.daily_sales,
            })
            .collect()
    }

    fn unavailable<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> ReadModelError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        ReadModelError::Unavailable(dynamo::describe(err))
    }

    /// A strongly consistent Query of the items of one partition.
    pub(crate) fn partition(
        &self,
        pk: String,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
    }

    pub(crate) async fn load_state(&self, order_id: &str) -> Result<OrderState, ReadModelError> {
        let out = self
            .partition(order_pk(order_id))
            .send()
            .await
            .map_err(|e| Self::unavailable(&e))?;
        let mut state = OrderState::default();
        for item in out.items.unwrap_or_default() {
            match get_s(&item, SK) {
                Some(SK_VIEW) => {
                    state.view_version = version_of(&item)?;
                    state.view = Some(view_from_item(&item)?);
                }
                Some(SK_SALES_TRACKER) => {
                    state.tracker_version = version_of(&item)?;
                    let tracker = item.get("tracker").cloned().ok_or_else(|| {
                        ReadModelError::Corrupt(format!(
                            "sales tracker of {order_id}: no `tracker`"
                        ))
                    })?;
                    state.tracker = Some(
                        serde_dynamo::from_attribute_value(tracker)
                            .map_err(|e| ReadModelError::Corrupt(e.to_string()))?,
                    );
                }
                _ => {}
            }
        }
        Ok(state)
    }

    /// The writes that fold `event` into `state`; none when every selected projection
    /// has applied it already.
    fn plan(
        &self,
        mut state: OrderState,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<Vec<TransactWriteItem>, ReadModelError> {
        let (prev_view, prev_tracker) = (state.view_version, state.tracker_version);
        let folded = state.fold(self.orders, self.daily_sales, envelope, event)?;
        let mut writes = Vec::new();
        if folded.view
            && let Some(view) = &state.view
        {
            writes.push(self.guarded_put(view_item(view)?, prev_view)?);
        }
        if folded.tracker
            && let Some(tracker) = &state.tracker
        {
            writes.push(
                self.guarded_put(tracker_item(&envelope.aggregate_id, tracker)?, prev_tracker)?,
            );
            if let Some(delta) = &folded.delta {
                writes.push(self.add_sales(delta)?);
            }
        }
        Ok(writes)
    }

    fn guarded_put(&self, item: Item, prev: u64) -> Result<TransactWriteItem, ReadModelError> {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .expression_attribute_names("#pk", PK);
        put = if prev == 0 {
            put.condition_expression("attribute_not_exists(#pk)")
        } else {
            put.condition_expression("attribute_not_exists(#pk) OR #v = :prev")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":prev", n(prev))
        };
        let put = put
            .build()
            .map_err(|e| ReadModelError::Unavailable(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn add_sales(&self, d: &SalesDelta) -> Result<TransactWriteItem, ReadModelError> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(PK, s(sales_pk(&d.date)))
            .key(SK, s(&d.currency))
            .update_expression(
                "SET #date = :date, #cur = :cur \
                 ADD #op :op, #ap :ap, #oc :oc, #ac :ac",
            )
            .set_expression_attribute_names(Some(day_names()))
            .expression_attribute_values(":date", s(&d.date))
            .expression_attribute_values(":cur", s(&d.currency))
            .expression_attribute_values(":op", n(d.orders_placed))
            .expression_attribute_values(":ap", n(d.amount_placed))
            .expression_attribute_values(":oc", n(d.orders_cancelled))
            .expression_attribute_values(":ac", n(d.amount_cancelled))
            .build()
            .map_err(|e| ReadModelError::Unavailable(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// One guarded put goes alone (half the cost of a transaction); anything more is one
    /// transaction.
    async fn write(&self, mut writes: Vec<TransactWriteItem>) -> Result<(), TxError> {
        if writes.len() == 1
            && let Some(put) = writes[0].put.take()
        {
            let result = self
                .client
                .put_item()
                .table_name(put.table_name)
                .set_item(Some(put.item))
                .set_condition_expression(put.condition_expression)
                .set_expression_attribute_names(put.expression_attribute_names)
                .set_expression_attribute_values(put.expression_attribute_values)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    Err(TxError::Canceled(vec![Some(
                        dynamo::CONDITIONAL_CHECK_FAILED.to_string(),
                    )]))
                }
                Err(e) => Err(TxError::Other(dynamo::describe(&e))),
            };
        }
        dynamo::transact(&self.client, writes, None).await
    }

    async fn apply_inner(
        &self,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<ApplyOutcome, ReadModelError> {
        for attempt in 1..=APPLY_ATTEMPTS {
            let state = self.load_state(&envelope.aggregate_id).await?;
            let writes = self.plan(state, envelope, event)?;
            if writes.is_empty() {
                tracing::debug!("duplicate delivery, nothing to apply");
                return Ok(ApplyOutcome::Duplicate);
            }
            match self.write(writes).await {
                Ok(()) => return Ok(ApplyOutcome::Applied),
                // Another writer (a concurrent redelivery, a replay) moved a guard between
                // our read and our write: read again and decide again.
                Err(e) if e.any_failed_condition() => {
                    tracing::debug!(attempt, "read model guard moved, re-reading");
                }
                Err(e) => return Err(ReadModelError::Unavailable(e.message())),
            }
        }
        Err(ReadModelError::Unavailable(format!(
            "order {}: version guard kept moving after {APPLY_ATTEMPTS} attempts",
            envelope.aggregate_id
        )))
    }

    async fn customer_orders_inner(
        &self,
        customer_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<OrderSummary>, ReadModelError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut start = match cursor {
            Some(c) => Some(decode_cursor(c, customer_id)?),
            None => None,
        };
        // One more than asked: tells whether a next page exists without an empty last page.
        let want = limit + 1;
        let mut items: Vec<Item> = Vec::with_capacity(want);
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(GSI_BY_CUSTOMER)
                .key_condition_expression("#g = :c")
                .expression_attribute_names("#g", GSI1_PK)
                .expression_attribute_values(":c", s(customer_id))
                .scan_index_forward(false)
                .limit(i32::try_from(want - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| Self::unavailable(&e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() && items.len() < want => start = Some(k),
                _ => break,
            }
        }
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(encode_cursor).transpose()?
        } else {
            None
        };
        let items = items
            .iter()
            .map(|i| view_from_item(i).map(|v| v.summary()))
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    /// [`ReadModels::daily_sales_of`]: one strongly consistent Query of each day's
    /// partition (`SALES#<day>`), 16 at a time. A month costs about thirty small reads.
    async fn daily_sales_of_inner(
        &self,
        days: &[String],
    ) -> Result<Vec<DailySales>, ReadModelError> {
        let mut rows = Vec::new();
        for chunk in days.chunks(16) {
            let mut reads = tokio::task::JoinSet::new();
            for (at, day) in chunk.iter().enumerate() {
                let query = self.partition(sales_pk(day));
                // A day has an item per currency: one page in practice, but follow them all.
                reads.spawn(async move {
                    let mut items = Vec::new();
                    let mut start: Option<Item> = None;
                    loop {
                        let page = query
                            .clone()
                            .set_exclusive_start_key(start.take())
                            .send()
                            .await
                            .map_err(|e| Self::unavailable(&e))?;
                        items.extend(page.items.unwrap_or_default());
                        match page.last_evaluated_key {
                            Some(k) if !k.is_empty() => start = Some(k),
                            _ => return Ok::<_, ReadModelError>((at, items)),
                        }
                    }
                });
            }
            let mut days_items = vec![Vec::new(); chunk.len()];
            while let Some(read) = reads.join_next().await {
                let (at, items) =
                    read.map_err(|e| ReadModelError::Unavailable(format!("daily sales: {e}")))??;
                days_items[at] = items;
            }
            for item in days_items.iter().flatten() {
                rows.push(sales_from_item(item)?);
            }
        }
        Ok(rows)
    }

    async fn daily_sales_inner(&self) -> Result<Vec<DailySales>, ReadModelError> {
        // The days are not known in advance: a filtered scan. This is for operators and
        // tests (the CLI), not a request path; it reads the whole table.
        let mut rows = BTreeMap::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#pk, :p)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":p", s(SALES_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| Self::unavailable(&e))?;
            for item in page.items.unwrap_or_default() {
                let row = sales_from_item(&item)?;
                rows.insert((row.date.clone(), row.currency.clone()), row);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(rows.into_values().collect())
    }

    async fn order_inner(&self, order_id: &str) -> Result<Option<OrderView>, ReadModelError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(order_pk(order_id)))
            .key(SK, s(SK_VIEW))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Self::unavailable(&e))?;
        out.item.as_ref().map(view_from_item).transpose()
    }
}

pub(crate) fn version_of(item: &Item) -> Result<u64, ReadModelError> {
    get_n(item, "version").ok_or_else(|| {
        ReadModelError::Corrupt(format!(
            "{:?}/{:?}: `version` is missing or not a number",
            get_s(item, PK),
            get_s(item, SK)
        ))
    })
}

pub(crate) fn view_from_item(item: &Item) -> Result<OrderView, ReadModelError> {
    let view = item.get("view").cloned().ok_or_else(|| {
        ReadModelError::Corrupt(format!("{:?}: no `view` attribute", get_s(item, PK)))
    })?;
    serde_dynamo::from_attribute_value(view)
        .map_err(|e| ReadModelError::Corrupt(format!("{:?}: {e}", get_s(item, PK))))
}

pub(crate) fn sales_from_item(item: &Item) -> Result<DailySales, ReadModelError> {
    let text = |k: &str| {
        get_s(item, k)
            .map(str::to_string)
            .ok_or_else(|| ReadModelError::Corrupt(format!("daily sales item: no `{k}`")))
    };
    let count = |k: &str| -> i64 { get_n(item, k).unwrap_or(0) };
    let mut row = DailySales::new(&text("date")?, &text("currency")?);
    row.add(&SalesDelta {
        date: row.date.clone(),
        currency: row.currency.clone(),
        orders_placed: count("orders_placed"),
        amount_placed: count("amount_placed"),
        orders_cancelled: count("orders_cancelled"),
        amount_cancelled: count("amount_cancelled"),
    });
    Ok(row)
}

const CURSOR_KEYS: [&str; 4] = [PK, SK, GSI1_PK, GSI1_SK];

/// The opaque cursor: URL-safe base64 of the JSON of the last item's keys.
fn encode_cursor(item: &Item) -> Result<String, ReadModelError> {
    let mut keys = BTreeMap::new();
    for k in CURSOR_KEYS {
        let v = get_s(item, k)
            .ok_or_else(|| ReadModelError::Corrupt(format!("order item without `{k}`")))?;
        keys.insert(k, v);
    }
    let json = serde_json::to_vec(&keys).map_err(|e| ReadModelError::Corrupt(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// Anything but a cursor we issued for this customer is `InvalidCursor`.
fn decode_cursor(cursor: &str, customer_id: &str) -> Result<Item, ReadModelError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| ReadModelError::InvalidCursor)?;
    let keys: BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| ReadModelError::InvalidCursor)?;
    if keys.len() != CURSOR_KEYS.len()
        || CURSOR_KEYS.iter().any(|k| !keys.contains_key(*k))
        || keys.get(GSI1_PK).map(String::as_str) != Some(customer_id)
        || !keys.get(PK).is_some_and(|p| p.starts_with("ORDER#"))
    {
        return Err(ReadModelError::InvalidCursor);
    }
    Ok(keys.into_iter().map(|(k, v)| (k, s(v))).collect())
}

impl ReadModels for DynamoReadModels {
    async fn apply(
        &self,
        envelope: &EventEnvelope,
        event: &OrderEvent,
    ) -> Result<ApplyOutcome, ReadModelError> {
        let span = tracing::info_span!(
            "dynamodb.project",
            order_id = %envelope.aggregate_id,
            correlation_id = %envelope.correlation_id,
            version = envelope.version,
            event_type = %envelope.event_type,
        );
        self.apply_inner(envelope, event).instrument(span).await
    }

    async fn order(&self, order_id: &str) -> Result<Option<OrderView>, ReadModelError> {
        let span = tracing::debug_span!("dynamodb.order", order_id = %order_id);
        self.order_inner(order_id).instrument(span).await
    }

    async fn customer_orders(
        &self,
        customer_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<OrderSummary>, ReadModelError> {
        let span = tracing::debug_span!("dynamodb.customer_orders", customer_id = %customer_id);
        self.customer_orders_inner(customer_id, limit, cursor)
            .instrument(span)
            .await
    }

    async fn daily_sales(&self) -> Result<Vec<DailySales>, ReadModelError> {
        self.daily_sales_inner()
            .instrument(tracing::debug_span!("dynamodb.daily_sales"))
            .await
    }

    async fn daily_sales_of(&self, days: &[String]) -> Result<Vec<DailySales>, ReadModelError> {
        self.daily_sales_of_inner(days)
            .instrument(tracing::debug_span!(
                "dynamodb.daily_sales_of",
                days = days.len()
            ))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(customer: &str) -> Item {
        HashMap::from([
            (PK.to_string(), s("ORDER#01J")),
            (SK.to_string(), s("VIEW")),
            (GSI1_PK.to_string(), s(customer)),
            (GSI1_SK.to_string(), s("2026-11-26T15:22:05.123Z#01J")),
        ])
    }

    #[test]
    fn cursors_round_trip_for_their_customer_only() {
        let c = encode_cursor(&item("c-42")).unwrap();
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_cursor(&c, "c-42").unwrap(), item("c-42"));
        assert_eq!(
            decode_cursor(&c, "c-43").unwrap_err(),
            ReadModelError::InvalidCursor
        );
        for bad in ["", "!!", "e30", "bm90IGpzb24"] {
            assert_eq!(
                decode_cursor(bad, "c-42").unwrap_err(),
                ReadModelError::InvalidCursor,
                "{bad}"
            );
        }
    }
}
