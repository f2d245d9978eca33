#![no_main]
// First line: a path; rest: a JSON document.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, doc) = text.split_once('\n').unwrap_or((text, "{}"));
    let doc: serde_json::Value = serde_json::from_str(doc).unwrap_or(serde_json::Value::Null);
    if let Ok(p) = asl::path::JsonPath::parse(path) {
        let _ = p.eval(&doc);
        let _ = p.not_found_reason(&doc);
        let mut d = doc.clone();
        let _ = p.set(&mut d, serde_json::json!(1));
    }
});
