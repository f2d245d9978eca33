//! The Order aggregate: the wire-level shapes of an order, its commands and events,
//! `decide` (command → events) and `evolve` (state + event → state).

use crate::money::Money;
use crate::validation::{self, FieldErrors};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub id: String,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// An order line as the client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: Money,
}

/// An order line as recorded: the line total is computed once, at placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    pub customer: Customer,
    pub items: Vec<LineRequest>,
    pub shipping_address: Address,
}

/// Which side channel of the confirmation workflow a result speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sns,
    Sqs,
    Email,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DeliveryStatus {
    Sent,
    Failed,
}

/// One branch's result, as the workflow reports it to the recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationResult {
    pub channel: Channel,
    pub status: DeliveryStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

// ---- events (payloads; the envelope lives in `envelope`) ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: String,
    pub customer: Customer,
    pub items: Vec<OrderLine>,
    pub shipping_address: Address,
    pub total: Money,
    /// Where the order came from (`api`, `seed`, …). New in schema version 2; version 1
    /// events are upcast with `unknown`.
    pub placed_via: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub execution_name: String,
    pub notifications: Vec<NotificationResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub execution_name: String,
    pub channel: Channel,
    pub error: String,
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentRequested {
    /// The queue message that carried the request (for tracing a duplicate back).
    pub message_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    Placed(OrderPlaced),
    Cancelled(OrderCancelled),
    Confirmed(OrderConfirmed),
    NotificationFailed(NotificationFailed),
    FulfilmentRequested(FulfilmentRequested),
    Shipped(OrderShipped),
}

// ---- commands ----

// A command lives for one request; boxing the placement would buy nothing but noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Place {
        order_id: String,
        request: PlaceOrderRequest,
        /// The channel recorded on the event (`api` for HTTP).
        placed_via: String,
    },
    Cancel {
        reason: Option<String>,
    },
    /// The workflow's outcome, reported by the recorder.
    RecordWorkflowOutcome {
        execution_name: String,
        notifications: Vec<NotificationResult>,
    },
    /// The fulfilment consumer took the queue message.
    RequestFulfilment {
        message_id: String,
    },
    Ship {
        carrier: String,
        tracking_number: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid order")]
    Invalid(FieldErrors),
    #[error("order {0} already exists")]
    AlreadyPlaced(String),
    #[error("order not found")]
    NotFound,
    #[error("order can no longer be cancelled: it is {0}")]
    NotCancellable(OrderStatus),
    #[error("order is cancelled")]
    Cancelled,
    #[error("order cannot be shipped: it is {0}")]
    NotShippable(OrderStatus),
}

// ---- state ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Placed,
    Confirmed,
    FulfilmentRequested,
    Shipped,
    Cancelled,
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderStatus::Placed => "PLACED",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::FulfilmentRequested => "FULFILMENT_REQUESTED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Cancelled => "CANCELLED",
        })
    }
}

/// What the decisions need to know about an order, folded from its events.
/// Confirmation and fulfilment arrive through independent paths (the recorder and the
/// queue consumer race), so they are facts kept side by side, and the status is derived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    pub version: u64,
    pub placed: Option<OrderPlaced>,
    pub confirmed_by: Option<String>,
    pub fulfilment_message: Option<String>,
    pub shipment: Option<OrderShipped>,
    pub cancelled: bool,
}

impl Order {
    pub fn exists(&self) -> bool {
        self.placed.is_some()
    }

    pub fn status(&self) -> OrderStatus {
        status_of(
            self.cancelled,
            self.shipment.is_some(),
            self.fulfilment_message.is_some(),
            self.confirmed_by.is_some(),
        )
    }

    /// Folds a whole history.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> Order {
        events.into_iter().fold(Order::default(), evolve)
    }
}

/// The one rule that orders the lifecycle: cancelled and shipped are final, fulfilment
/// progress outranks the confirmation that may land after it.
pub fn status_of(cancelled: bool, shipped: bool, fulfilment: bool, confirmed: bool) -> OrderStatus {
    if cancelled {
        OrderStatus::Cancelled
    } else if shipped {
        OrderStatus::Shipped
    } else if fulfilment {
        OrderStatus::FulfilmentRequested
    } else if confirmed {
        OrderStatus::Confirmed
    } else {
        OrderStatus::Placed
    }
}

pub fn evolve(mut state: Order, event: &OrderEvent) -> Order {
    state.version += 1;
    match event {
        OrderEvent::Placed(p) => state.placed = Some(p.clone()),
        OrderEvent::Cancelled(_) => state.cancelled = true,
        OrderEvent::Confirmed(c) => state.confirmed_by = Some(c.execution_name.clone()),
        OrderEvent::NotificationFailed(_) => {}
        OrderEvent::FulfilmentRequested(f) => state.fulfilment_message = Some(f.message_id.clone()),
        OrderEvent::Shipped(s) => state.shipment = Some(s.clone()),
    }
    state
}

pub fn decide(state: &Order, command: &Command) -> Result<Vec<OrderEvent>, DomainError> {
    match command {
        Command::Place {
            order_id,
            request,
            placed_via,
        } => {
            if state.exists() {
                return Err(DomainError::AlreadyPlaced(order_id.clone()));
            }
            let placed = validation::validate_place_order(order_id, placed_via, request)
                .map_err(DomainError::Invalid)?;
            Ok(vec![OrderEvent::Placed(placed)])
        }
        Command::Cancel { reason } => {
            require_placed(state)?;
            match state.status() {
                OrderStatus::Placed | OrderStatus::Confirmed => {
                    Ok(vec![OrderEvent::Cancelled(OrderCancelled {
                        reason: reason.clone(),
                    })])
                }
                other => Err(DomainError::NotCancellable(other)),
            }
        }
        Command::RecordWorkflowOutcome {
            execution_name,
            notifications,
        } => {
            require_placed(state)?;
            // The recorder is retried by the workflow: a second report of the same
            // execution is already in the log and appends nothing.
            if state.confirmed_by.as_deref() == Some(execution_name.as_str()) {
                return Ok(vec![]);
            }
            let mut events = vec![OrderEvent::Confirmed(OrderConfirmed {
                execution_name: execution_name.clone(),
                notifications: notifications.clone(),
            })];
            events.extend(
                notifications
                    .iter()
                    .filter(|n| n.status == DeliveryStatus::Failed)
                    .map(|n| {
                        OrderEvent::NotificationFailed(NotificationFailed {
                            execution_name: execution_name.clone(),
                            channel: n.channel,
                            error: n.error.clone().unwrap_or_else(|| "Unknown".into()),
                            cause: n.cause.clone().unwrap_or_default(),
                        })
                    }),
            );
            Ok(events)
        }
        Command::RequestFulfilment { message_id } => {
            require_placed(state)?;
            if state.cancelled {
                return Err(DomainError::Cancelled);
            }
            // Queues deliver at least once: fulfilment is requested once per order.
            if state.fulfilment_message.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![OrderEvent::FulfilmentRequested(FulfilmentRequested {
                message_id: message_id.clone(),
            })])
        }
        Command::Ship {
            carrier,
            tracking_number,
        } => {
            require_placed(state)?;
            let mut errors = FieldErrors::default();
            validation::require_text(&mut errors, "carrier", carrier, 100);
            validation::require_text(&mut errors, "tracking_number", tracking_number, 100);
            errors.into_result().map_err(DomainError::Invalid)?;
            let shipment = OrderShipped {
                carrier: carrier.clone(),
                tracking_number: tracking_number.clone(),
            };
            // A carrier's callback is retried: the same shipment again is already in the
            // log and appends nothing; another one is a conflict.
            if state.shipment.as_ref() == Some(&shipment) {
                return Ok(vec![]);
            }
            if state.status() != OrderStatus::FulfilmentRequested {
                return Err(DomainError::NotShippable(state.status()));
            }
            Ok(vec![OrderEvent::Shipped(shipment)])
        }
    }
}

fn require_placed(state: &Order) -> Result<(), DomainError> {
    if state.exists() {
        Ok(())
    } else {
        Err(DomainError::NotFound)
    }
}
