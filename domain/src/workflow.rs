//! What the order workflow is started with: the placed order plus the confirmation email,
//! rendered here so the state machine need not loop over lines.

use crate::envelope::EventEnvelope;
use crate::money::Money;
use crate::order::{Address, Customer, OrderLine, OrderPlaced};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// One execution per order: its name is the order id, so a redelivered stream record
/// finds the execution already there.
pub fn execution_name(order_id: &str) -> String {
    order_id.to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowInput {
    pub order_id: String,
    pub correlation_id: String,
    pub customer: Customer,
    pub items: Vec<OrderLine>,
    pub total: Money,
    pub shipping_address: Address,
    pub placed_at: Timestamp,
    pub email: Email,
}

impl WorkflowInput {
    pub fn for_placed(envelope: &EventEnvelope, placed: &OrderPlaced) -> Self {
        WorkflowInput {
            order_id: placed.order_id.clone(),
            correlation_id: envelope.correlation_id.clone(),
            customer: placed.customer.clone(),
            items: placed.items.clone(),
            total: placed.total,
            shipping_address: placed.shipping_address.clone(),
            placed_at: envelope.occurred_at,
            email: confirmation_email(placed),
        }
    }
}

pub fn confirmation_email(p: &OrderPlaced) -> Email {
    let subject = format!("Your order {} is confirmed", p.order_id);
    let mut text = format!(
        "Hello {},\n\nThank you for your order {}.\n\n",
        p.customer.name, p.order_id
    );
    let mut rows = String::new();
    for l in &p.items {
        text.push_str(&format!(
            "  {} x {} @ {} = {}\n",
            l.quantity, l.sku, l.unit_price, l.line_total
        ));
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(&l.sku),
            l.quantity,
            l.unit_price,
            l.line_total
        ));
    }
    let a = &p.shipping_address;
    text.push_str(&format!(
        "\nTotal: {}\n\nShipping to: {}, {} {}, {}\n\nAny Company Online\n",
        p.total, a.line1, a.postal_code, a.city, a.country
    ));
    let html = format!(
        "<html><body><p>Hello {},</p><p>Thank you for your order <strong>{}</strong>.</p>\
         <table><thead><tr><th>SKU</th><th>Qty</th><th>Unit price</th><th>Line total</th></tr></thead>\
         <tbody>{rows}</tbody></table><p>Total: <strong>{}</strong></p>\
         <p>Shipping to: {}, {} {}, {}</p><p>Any Company Online</p></body></html>",
        escape_html(&p.customer.name),
        escape_html(&p.order_id),
        p.total,
        escape_html(&a.line1),
        escape_html(&a.postal_code),
        escape_html(&a.city),
        escape_html(&a.country),
    );
    Email {
        subject,
        text,
        html,
    }
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
