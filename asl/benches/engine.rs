//! Engine throughput: state transitions per second with history kept in memory.
//! Run: `CARGO_TARGET_DIR=target/asl cargo bench -p asl --bench engine`.

use asl::{Engine, VirtualClock};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn pass_chain(n: usize) -> Value {
    let mut states = serde_json::Map::new();
    for i in 0..n {
        let mut s = json!({"Type": "Pass"});
        if i + 1 < n {
            s["Next"] = json!(format!("S{}", i + 1));
        } else {
            s["End"] = json!(true);
        }
        states.insert(format!("S{i}"), s);
    }
    json!({"StartAt": "S0", "States": states})
}

fn choice_loop() -> Value {
    json!({"StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Result": 0, "ResultPath": "$.i", "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.i", "NumericGreaterThanEquals": 1000, "Next": "Done"}], "Default": "Inc"},
        "Inc": {"Type": "Pass", "Parameters": {"i.$": "States.MathAdd($.i, 1)"}, "Next": "Check"},
        "Done": {"Type": "Succeed"}
    }})
}

fn parallel(n: usize) -> Value {
    let branches: Vec<Value> = (0..n)
        .map(|i| {
            let b = format!("B{i}");
            json!({"StartAt": b, "States": {b.clone(): {"Type": "Pass", "Result": i, "End": true}}})
        })
        .collect();
    json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": branches, "End": true}}})
}

fn map() -> Value {
    json!({"StartAt": "Items", "States": {
        "Items": {"Type": "Pass", "Parameters": {"items.$": "States.ArrayRange(1, 1000, 1)"}, "Next": "M"},
        "M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
              "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}, "End": true}
    }})
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn run(engine: &Engine, sm: &asl::StateMachine) {
    let name = format!("e{}", COUNTER.fetch_add(1, Ordering::Relaxed));
    let h = engine
        .start_execution(sm, &name, json!({}))
        .expect("unique name");
    let out = h.poll_now().expect("completes in one poll");
    assert_eq!(out.status, asl::ExecutionStatus::Succeeded);
}

fn bench(c: &mut Criterion) {
    // Each iteration gets a fresh engine + in-memory store (set up outside the timing),
    // so the measured run keeps its whole history in memory without the store growing
    // across thousands of iterations.
    let cases: [(&str, Value, u64); 4] = [
        ("pass_chain_100", pass_chain(100), 100),
        ("choice_loop_1000", choice_loop(), 2 + 2 * 1000 + 1),
        ("parallel_10", parallel(10), 11),
        ("map_1000", map(), 1 + 1 + 1000),
    ];
    let mut g = c.benchmark_group("engine");
    g.sample_size(20);
    for (name, def, transitions) in cases {
        let text = def.to_string();
        g.throughput(Throughput::Elements(transitions));
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let engine = Engine::builder()
                        .clock(Arc::new(VirtualClock::new()))
                        .build();
                    let sm = engine.state_machine(name, &text).expect("valid");
                    (engine, sm)
                },
                |(engine, sm)| run(engine, sm),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
