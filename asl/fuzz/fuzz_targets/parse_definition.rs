#![no_main]
// Any bytes: parse as a definition; if valid, run it with the virtual clock.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if asl::Definition::parse(text).is_ok() {
        let engine = asl::Engine::builder()
            .clock(std::sync::Arc::new(asl::VirtualClock::new().with_horizon(60_000)))
            .build();
        if let Ok(sm) = engine.state_machine("fuzz", text) {
            if let Ok(h) = engine.start_execution(&sm, "x", serde_json::json!({"a": [1, 2]})) {
                let _ = h.poll_now();
            }
        }
    }
});
