//! The order domain: the aggregate, its events and their envelope, money, validation,
//! the read models as pure folds, and the ports the application needs. No I/O here.

pub mod compare;
pub mod envelope;
pub mod money;
pub mod order;
pub mod ports;
pub mod projection;
pub mod sales;
#[cfg(feature = "sample")]
pub mod sample;
pub mod time;
pub mod validation;
pub mod workflow;

pub use envelope::{DecodeError, EventEnvelope, EventMeta};
pub use money::{Currency, Money};
pub use order::{Command, DomainError, Order, OrderEvent, OrderStatus, decide, evolve};
pub use time::Timestamp;
