//! The sample order used by `orders submit` and the benchmark (the README's example).

use serde_json::{Value, json};

pub fn order(customer_id: &str) -> Value {
    json!({
        "customer": {"id": customer_id, "email": "ada@example.com", "name": "Ada Lovelace"},
        "items": [{"sku": "BOOK-1", "quantity": 2, "unit_price": {"amount": 1250, "currency": "EUR"}}],
        "shipping_address": {"line1": "12 Rue de la Paix", "city": "Paris", "postal_code": "75002", "country": "FR"}
    })
}
