#![no_main]
// First line: an intrinsic call; rest: the input document.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (expr, doc) = text.split_once('\n').unwrap_or((text, "{}"));
    let input: serde_json::Value = serde_json::from_str(doc).unwrap_or(serde_json::Value::Null);
    if let Ok(call) = asl::intrinsics::parse(expr) {
        let ctx = serde_json::json!({});
        let vars = asl::payload::Vars::default();
        let _ = asl::intrinsics::eval(&call, &asl::payload::Scope::new(&input, &ctx, &vars));
    }
});
