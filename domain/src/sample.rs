//! A placed order to build tests and examples on (the `sample` feature), so that each test
//! states only what it varies: who, how many, at what price.

use crate::money::Money;
use crate::order::{Address, Customer, OrderEvent, OrderLine, OrderPlaced};

pub fn customer(id: &str) -> Customer {
    Customer {
        id: id.into(),
        email: "ada@example.com".into(),
        name: "Ada Lovelace".into(),
    }
}

pub fn address() -> Address {
    Address {
        line1: "12 Rue de la Paix".into(),
        line2: None,
        city: "Paris".into(),
        postal_code: "75002".into(),
        country: "FR".into(),
    }
}

/// `quantity` books at `unit_price` for `customer_id`, placed via "test".
///
/// # Panics
/// When `unit_price × quantity` overflows: samples are small.
pub fn order_placed(
    order_id: &str,
    customer_id: &str,
    quantity: i64,
    unit_price: Money,
) -> OrderPlaced {
    let total = unit_price
        .times(quantity)
        .expect("a sample's total fits in an i64");
    OrderPlaced {
        order_id: order_id.into(),
        customer: customer(customer_id),
        items: vec![OrderLine {
            sku: "BOOK-1".into(),
            quantity,
            unit_price,
            line_total: total,
        }],
        shipping_address: address(),
        total,
        placed_via: "test".into(),
    }
}

/// One book at `total`, as the event.
pub fn placed(order_id: &str, customer_id: &str, total: Money) -> OrderEvent {
    OrderEvent::Placed(order_placed(order_id, customer_id, 1, total))
}
