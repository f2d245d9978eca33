//! Where the emulators listen and how tests name what they create; shared by the adapter
//! tests and the root crate's AWS tests (included by path). `scripts/with-emulators` exports
//! `DYNAMODB_ENDPOINT` and `MOTO_ENDPOINT`; a test that needs one fails with a clear message
//! when it is missing, it never passes silently.

const HOW: &str = "run the emulator-backed tests inside `scripts/with-emulators`, \
                   e.g. `scripts/with-emulators cargo test -p orders-aws`";

fn endpoint(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!("{var} is not set: this test needs {what}; {HOW}"),
    }
}

pub fn dynamodb_endpoint() -> String {
    endpoint("DYNAMODB_ENDPOINT", "DynamoDB Local")
}

pub fn moto_endpoint() -> String {
    endpoint("MOTO_ENDPOINT", "moto_server")
}

pub fn region() -> String {
    std::env::var("AWS_REGION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string())
}

#[path = "../../../local/tests/contract/unique.rs"]
mod unique_ids;
pub use unique_ids::unique;
