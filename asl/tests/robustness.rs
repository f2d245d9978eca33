//! Short property runs: arbitrary input never panics or hangs the parser, the path
//! evaluator or the intrinsic evaluator, and arbitrary small machines run to an end.

use asl::intrinsics;
use asl::path::JsonPath;
use asl::payload::{Scope, Vars};
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z$.\\[\\]*0-9 ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z.$]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\$[a-z.\\[\\]*:0-9?@()=' -]{0,20}",
        "\\$\\$[a-zA-Z.\\[\\]0-9]{0,16}",
        ".{0,24}",
    ]
}

fn intrinsic_text() -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec![
        "States.Format",
        "States.StringToJson",
        "States.JsonToString",
        "States.Array",
        "States.ArrayPartition",
        "States.ArrayContains",
        "States.ArrayRange",
        "States.ArrayGetItem",
        "States.ArrayLength",
        "States.ArrayUnique",
        "States.Base64Encode",
        "States.Base64Decode",
        "States.Hash",
        "States.JsonMerge",
        "States.MathRandom",
        "States.MathAdd",
        "States.StringSplit",
        "States.UUID",
        "States.Nope",
    ]);
    let arg = prop_oneof![
        Just("$.a".to_string()),
        Just("$.b[0]".to_string()),
        Just("'x{}y'".to_string()),
        Just("'SHA-256'".to_string()),
        Just("1".to_string()),
        Just("-3".to_string()),
        Just("2.5".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("States.Array(1, 2, 3)".to_string()),
        "[a-z$'(),. ]{0,6}",
    ];
    (names, prop::collection::vec(arg, 0..4)).prop_map(|(n, a)| format!("{n}({})", a.join(", ")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics(text in ".{0,200}", v in arb_json()) {
        let _ = asl::Definition::parse(&text);
        let _ = asl::Definition::from_value(&v);
        let _ = asl::Definition::from_value(&json!({"StartAt": "A", "States": {"A": v}}));
    }

    #[test]
    fn paths_never_panic(p in path_text(), doc in arb_json()) {
        if let Ok(jp) = JsonPath::parse(&p) {
            let _ = jp.eval(&doc);
            let _ = jp.not_found_reason(&doc);
            let mut d = doc.clone();
            let _ = jp.set(&mut d, json!(1));
        }
    }

    #[test]
    fn intrinsics_never_panic(e in intrinsic_text(), input in arb_json()) {
        if let Ok(call) = intrinsics::parse(&e) {
            let ctx = json!({});
            let vars = Vars::default();
            let input = json!({"a": input, "b": [input]});
            let _ = intrinsics::eval(&call, &Scope::new(&input, &ctx, &vars));
        }
    }

    #[test]
    fn small_machines_end(result in arb_json(), params in arb_json(), input in arb_json()) {
        let def = json!({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Parameters": params, "Next": "B"},
            "B": {"Type": "Pass", "Result": result, "ResultPath": "$.r", "Next": "C"},
            "C": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}, "End": true}
        }});
        let engine = asl::Engine::builder().build();
        if let Ok(sm) = engine.state_machine("p", &def.to_string())
            && let Ok(h) = engine.start_execution(&sm, "x", input)
        {
            prop_assert!(h.poll_now().is_some());
        }
    }
}
