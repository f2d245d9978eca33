//! The one place where an order's values are checked. Shape errors (wrong types, unknown
//! fields) are the codec's; everything a well-formed body can still get wrong is here.

use crate::money::Money;
use crate::order::{OrderLine, OrderPlaced, PlaceOrderRequest};
use serde::Serialize;

pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 1_000;

/// One wrong field, named by its path in the request body (`items[0].quantity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

pub fn require_text(errors: &mut FieldErrors, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        errors.push(field, "must not be empty");
    } else if value.chars().count() > max {
        errors.push(field, format!("must be at most {max} characters"));
    }
}

/// A pragmatic address check: what a mail server would accept, not all of RFC 5322.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let ok_chars = |s: &str| {
        s.chars().all(|c| {
            c.is_ascii_graphic()
                && !matches!(
                    c,
                    '@' | '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\' | '[' | ']'
                )
        })
    };
    !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && ok_chars(local)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Checks a placement request and computes its lines and total.
pub fn validate_place_order(
    order_id: &str,
    placed_via: &str,
    request: &PlaceOrderRequest,
) -> Result<OrderPlaced, FieldErrors> {
    let mut errors = FieldErrors::default();
    let c = &request.customer;
    require_text(&mut errors, "customer.id", &c.id, 64);
    require_text(&mut errors, "customer.name", &c.name, 200);
    if !is_valid_email(&c.email) {
        errors.push("customer.email", "must be a valid email address");
    }
    let a = &request.shipping_address;
    require_text(&mut errors, "shipping_address.line1", &a.line1, 200);
    if let Some(line2) = &a.line2
        && line2.chars().count() > 200
    {
        errors.push("shipping_address.line2", "must be at most 200 characters");
    }
    require_text(&mut errors, "shipping_address.city", &a.city, 100);
    require_text(
        &mut errors,
        "shipping_address.postal_code",
        &a.postal_code,
        20,
    );
    if a.country.len() != 2 || !a.country.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(
            "shipping_address.country",
            "must be an ISO 3166-1 alpha-2 code such as FR",
        );
    }

    if request.items.is_empty() {
        errors.push("items", "must contain at least one line");
    } else if request.items.len() > MAX_LINES {
        errors.push("items", format!("must contain at most {MAX_LINES} lines"));
    }
    let currency = request.items.first().map(|l| l.unit_price.currency);
    let mut lines = Vec::with_capacity(request.items.len());
    let mut total = currency.map(|c| Money::new(0, c));
    for (i, line) in request.items.iter().enumerate() {
        let at = |f: &str| format!("items[{i}].{f}");
        require_text(&mut errors, &at("sku"), &line.sku, 64);
        if line.quantity < 1 || line.quantity > MAX_QUANTITY {
            errors.push(
                at("quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            );
        }
        if line.unit_price.amount < 0 {
            errors.push(at("unit_price.amount"), "must not be negative");
        }
        if Some(line.unit_price.currency) != currency {
            errors.push(
                at("unit_price.currency"),
                "all lines must use the same currency",
            );
            continue;
        }
        match line.unit_price.times(line.quantity) {
            Some(line_total) => {
                total = total.and_then(|t| t.checked_add(&line_total));
                lines.push(OrderLine {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                    line_total,
                });
            }
            None => errors.push(at("unit_price.amount"), "line total is too large"),
        }
    }
    if errors.is_empty() && total.is_none() {
        errors.push("items", "order total is too large");
    }
    errors.into_result()?;
    let total = total.ok_or_else(|| {
        let mut e = FieldErrors::default();
        e.push("items", "order total is too large");
        e
    })?;
    Ok(OrderPlaced {
        order_id: order_id.to_string(),
        customer: request.customer.clone(),
        items: lines,
        shipping_address: request.shipping_address.clone(),
        total,
        placed_via: placed_via.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_addresses() {
        for ok in ["ada@example.com", "a.b+tag@mail.example.co.uk", "x@y.io"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada @example.com",
            "a..b@example.com",
            "ada@-example.com",
            "ada@exa_mple.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }
}
