//! Read models as pure folds over the log. Each keeps the last version it applied per
//! order; the version guard makes at-least-once delivery and replay harmless.

use crate::envelope::EventEnvelope;
use crate::money::Money;
use crate::order::{
    Address, Customer, NotificationResult, OrderEvent, OrderLine, OrderStatus, status_of,
};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The projections a user can name (for example to `orders replay --projection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionName {
    /// The order view and its by-customer index.
    Orders,
    /// Daily sales per currency.
    DailySales,
}

impl ProjectionName {
    pub const ALL: [ProjectionName; 2] = [ProjectionName::Orders, ProjectionName::DailySales];

    pub fn as_str(&self) -> &'static str {
        match self {
            ProjectionName::Orders => "orders",
            ProjectionName::DailySales => "daily_sales",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Whether an incoming event is the next one for a projection's per-order state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applicability {
    Apply,
    /// Already applied (a duplicate or stale delivery): a no-op.
    Duplicate,
    /// An earlier version is missing: retry later rather than fold out of order.
    Gap {
        expected: u64,
    },
}

pub fn applicability(last_applied: u64, incoming: u64) -> Applicability {
    if incoming <= last_applied {
        Applicability::Duplicate
    } else if incoming == last_applied + 1 {
        Applicability::Apply
    } else {
        Applicability::Gap {
            expected: last_applied + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRef {
    pub execution_name: String,
    /// RUNNING until the workflow's outcome is recorded, then SUCCEEDED.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentView {
    pub message_id: String,
    pub requested_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<Timestamp>,
}

/// `GET /orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: String,
    pub status: OrderStatus,
    pub version: u64,
    pub customer: Customer,
    pub items: Vec<OrderLine>,
    pub shipping_address: Address,
    pub total: Money,
    pub placed_at: Timestamp,
    pub updated_at: Timestamp,
    pub correlation_id: String,
    pub workflow: WorkflowRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilment: Option<FulfilmentView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<String>,
}

/// One row of `GET /orders?customer_id=…` (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub version: u64,
    pub total: Money,
    pub placed_at: Timestamp,
}

impl OrderView {
    pub fn summary(&self) -> OrderSummary {
        OrderSummary {
            order_id: self.order_id.clone(),
            customer_id: self.customer.id.clone(),
            status: self.status,
            version: self.version,
            total: self.total,
            placed_at: self.placed_at,
        }
    }

    fn refresh_status(&mut self) {
        self.status = status_of(
            self.cancelled_at.is_some(),
            self.fulfilment
                .as_ref()
                .is_some_and(|f| f.shipped_at.is_some()),
            self.fulfilment.is_some(),
            self.confirmed_at.is_some(),
        );
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    #[error("event {version} of order {aggregate_id} arrived before the order was placed")]
    NotPlaced { aggregate_id: String, version: u64 },
}

/// Folds one event (already checked with [`applicability`]) into the order view.
pub fn apply_order_view(
    view: Option<OrderView>,
    envelope: &EventEnvelope,
    event: &OrderEvent,
) -> Result<OrderView, ProjectionError> {
    let at = envelope.occurred_at;
    let mut view = match (view, event) {
        (None, OrderEvent::Placed(p)) => {
            return Ok(OrderView {
                order_id: p.order_id.clone(),
                status: OrderStatus::Placed,
                version: envelope.version,
                customer: p.customer.clone(),
                items: p.items.clone(),
                shipping_address: p.shipping_address.clone(),
                total: p.total,
                placed_at: at,
                updated_at: at,
                correlation_id: envelope.correlation_id.clone(),
                workflow: WorkflowRef {
                    execution_name: crate::workflow::execution_name(&p.order_id),
                    status: "RUNNING".into(),
                },
                confirmed_at: None,
                notifications: vec![],
                fulfilment: None,
                cancelled_at: None,
                cancellation_reason: None,
            });
        }
        (Some(v), _) => v,
        (None, _) => {
            return Err(ProjectionError::NotPlaced {
                aggregate_id: envelope.aggregate_id.clone(),
                version: envelope.version,
            });
        }
    };
    match event {
        OrderEvent::Placed(_) | OrderEvent::NotificationFailed(_) => {}
        OrderEvent::Cancelled(c) => {
            view.cancelled_at = Some(at);
            view.cancellation_reason = c.reason.clone();
        }
        OrderEvent::Confirmed(c) => {
            view.confirmed_at = Some(at);
            view.notifications = c.notifications.clone();
            view.workflow = WorkflowRef {
                execution_name: c.execution_name.clone(),
                status: "SUCCEEDED".into(),
            };
        }
        OrderEvent::FulfilmentRequested(f) => {
            view.fulfilment = Some(FulfilmentView {
                message_id: f.message_id.clone(),
                requested_at: at,
                carrier: None,
                tracking_number: None,
                shipped_at: None,
            });
        }
        OrderEvent::Shipped(s) => {
            if let Some(f) = view.fulfilment.as_mut() {
                f.carrier = Some(s.carrier.clone());
                f.tracking_number = Some(s.tracking_number.clone());
                f.shipped_at = Some(at);
            }
        }
    }
    view.version = envelope.version;
    view.updated_at = at;
    view.refresh_status();
    Ok(view)
}

/// Which point of an order's history a view is asked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After its last event.
    Latest,
    /// After the event of this version.
    Version(u64),
    /// After the last event that occurred at or before this moment.
    At(Timestamp),
}

impl AsOf {
    /// A version as a request names it (`?version=`, the console's link): 1 or more.
    pub fn version_from(text: &str) -> Option<AsOf> {
        text.parse::<u64>()
            .ok()
            .filter(|v| *v >= 1)
            .map(AsOf::Version)
    }

    /// Whether an event is part of the history up to this point (events come in version
    /// order, and their times do not go back).
    pub fn includes(&self, envelope: &EventEnvelope) -> bool {
        match *self {
            AsOf::Latest => true,
            AsOf::Version(v) => envelope.version <= v,
            AsOf::At(t) => envelope.occurred_at <= t,
        }
    }

    /// Whether an order's history (oldest first) has this point: not a version past its
    /// last, nor a moment before its placement.
    pub fn check(&self, events: &[EventEnvelope]) -> Result<(), ViewAtError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Err(ViewAtError::NoEvents);
        };
        match *self {
            AsOf::Version(version) if version > last.version => Err(ViewAtError::NoSuchVersion {
                order_id: first.aggregate_id.clone(),
                version,
                latest: last.version,
            }),
            AsOf::At(at) if !self.includes(first) => Err(ViewAtError::NotPlacedYet {
                order_id: first.aggregate_id.clone(),
                at,
                placed_at: first.occurred_at,
            }),
            _ => Ok(()),
        }
    }

    /// The events of an order's history (oldest first) up to this point, once it is
    /// [checked](Self::check).
    pub fn events<'a>(
        &self,
        events: &'a [EventEnvelope],
    ) -> Result<&'a [EventEnvelope], ViewAtError> {
        self.check(events)?;
        let n = events.iter().take_while(|e| self.includes(e)).count();
        Ok(&events[..n])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewAtError {
    #[error("the order has no events")]
    NoEvents,
    #[error("order {order_id} has no version {version}: its latest is {latest}")]
    NoSuchVersion {
        order_id: String,
        version: u64,
        latest: u64,
    },
    #[error("order {order_id} was not placed yet at {at} (it was placed at {placed_at})")]
    NotPlacedYet {
        order_id: String,
        at: Timestamp,
        placed_at: Timestamp,
    },
    #[error("event {aggregate_id}#v{version} does not decode: {source}")]
    Undecodable {
        aggregate_id: String,
        version: u64,
        source: crate::envelope::DecodeError,
    },
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl ViewAtError {
    /// The history has no such point (as opposed to a history that does not fold).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            ViewAtError::NoEvents
                | ViewAtError::NoSuchVersion { .. }
                | ViewAtError::NotPlacedYet { .. }
        )
    }
}

/// An order's view as it stood at `as_of`, folded from its stored events (oldest first)
/// through the same fold as the projector's. Events past `as_of` are not decoded.
pub fn view_as_of(events: &[EventEnvelope], as_of: AsOf) -> Result<OrderView, ViewAtError> {
    let mut view = None;
    for envelope in as_of.events(events)? {
        let event = envelope
            .decode()
            .map_err(|source| ViewAtError::Undecodable {
                aggregate_id: envelope.aggregate_id.clone(),
                version: envelope.version,
                source,
            })?;
        view = Some(apply_order_view(view, envelope, &event)?);
    }
    // The first event is included (checked above), and folds or fails.
    view.ok_or(ViewAtError::NoEvents)
}

/// What the daily-sales projection remembers per order: enough to reverse a cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesTracker {
    pub version: u64,
    pub total: Option<Money>,
}

/// A change to one day's counters for one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesDelta {
    pub date: String,
    pub currency: String,
    pub orders_placed: i64,
    pub amount_placed: i64,
    pub orders_cancelled: i64,
    pub amount_cancelled: i64,
}

/// One day's sales in one currency (`net_amount` = placed − cancelled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailySales {
    pub date: String,
    pub currency: String,
    pub orders_placed: i64,
    pub amount_placed: i64,
    pub orders_cancelled: i64,
    pub amount_cancelled: i64,
    pub net_amount: i64,
}

impl DailySales {
    pub fn new(date: &str, currency: &str) -> Self {
        DailySales {
            date: date.into(),
            currency: currency.into(),
            orders_placed: 0,
            amount_placed: 0,
            orders_cancelled: 0,
            amount_cancelled: 0,
            net_amount: 0,
        }
    }

    pub fn add(&mut self, d: &SalesDelta) {
        self.orders_placed += d.orders_placed;
        self.amount_placed += d.amount_placed;
        self.orders_cancelled += d.orders_cancelled;
        self.amount_cancelled += d.amount_cancelled;
        self.net_amount = self.amount_placed - self.amount_cancelled;
    }
}

/// Folds one event into the sales tracker; returns the counter change it causes.
/// Placements count on the day they happen, cancellations on the day they happen.
pub fn apply_daily_sales(
    tracker: Option<SalesTracker>,
    envelope: &EventEnvelope,
    event: &OrderEvent,
) -> (SalesTracker, Option<SalesDelta>) {
    let mut tracker = tracker.unwrap_or(SalesTracker {
        version: 0,
        total: None,
    });
    tracker.version = envelope.version;
    // Only placing and cancelling move a day's counters: the date is rendered for those.
    let date = || envelope.occurred_at.date();
    let delta = match event {
        OrderEvent::Placed(p) => {
            tracker.total = Some(p.total);
            Some(SalesDelta {
                date: date(),
                currency: p.total.currency.to_string(),
                orders_placed: 1,
                amount_placed: p.total.amount,
                orders_cancelled: 0,
                amount_cancelled: 0,
            })
        }
        OrderEvent::Cancelled(_) => tracker.total.map(|t| SalesDelta {
            date: date(),
            currency: t.currency.to_string(),
            orders_placed: 0,
            amount_placed: 0,
            orders_cancelled: 1,
            amount_cancelled: t.amount,
        }),
        _ => None,
    };
    (tracker, delta)
}
