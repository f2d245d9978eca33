//! Choice rules: comparison operators (and their `…Path` forms), `Is…` tests,
//! `And`/`Or`/`Not`, `StringMatches` wildcards.

use crate::error::Failure;
use crate::payload::{Ref, Scope};
use crate::timestamp;
use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Value),
    Ref(Ref),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Compare {
        var: Ref,
        kind: Kind,
        cmp: Cmp,
        operand: Operand,
    },
    Matches {
        var: Ref,
        pattern: String,
    },
    Test {
        var: Ref,
        test: Test,
        expect: bool,
    },
}

/// A top-level choice rule: a condition, where to go, what to assign.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub cond: Cond,
    pub next: String,
    pub assign: Option<Value>,
}

const OPS: &[(&str, Kind, Cmp)] = &[
    ("StringEquals", Kind::String, Cmp::Eq),
    ("StringLessThan", Kind::String, Cmp::Lt),
    ("StringGreaterThan", Kind::String, Cmp::Gt),
    ("StringLessThanEquals", Kind::String, Cmp::Le),
    ("StringGreaterThanEquals", Kind::String, Cmp::Ge),
    ("NumericEquals", Kind::Numeric, Cmp::Eq),
    ("NumericLessThan", Kind::Numeric, Cmp::Lt),
    ("NumericGreaterThan", Kind::Numeric, Cmp::Gt),
    ("NumericLessThanEquals", Kind::Numeric, Cmp::Le),
    ("NumericGreaterThanEquals", Kind::Numeric, Cmp::Ge),
    ("BooleanEquals", Kind::Boolean, Cmp::Eq),
    ("TimestampEquals", Kind::Timestamp, Cmp::Eq),
    ("TimestampLessThan", Kind::Timestamp, Cmp::Lt),
    ("TimestampGreaterThan", Kind::Timestamp, Cmp::Gt),
    ("TimestampLessThanEquals", Kind::Timestamp, Cmp::Le),
    ("TimestampGreaterThanEquals", Kind::Timestamp, Cmp::Ge),
];

const TESTS: &[(&str, Test)] = &[
    ("IsNull", Test::IsNull),
    ("IsPresent", Test::IsPresent),
    ("IsNumeric", Test::IsNumeric),
    ("IsString", Test::IsString),
    ("IsBoolean", Test::IsBoolean),
    ("IsTimestamp", Test::IsTimestamp),
];

const MAX_DEPTH: usize = 64;

/// Parses a rule body (without `Next`); errors are (field, message).
pub fn parse_cond(v: &Value, depth: usize) -> Result<Cond, (String, String)> {
    let bad = |f: &str, m: &str| (f.to_string(), m.to_string());
    if depth > MAX_DEPTH {
        return Err(bad("Choices", "choice rules nested too deeply"));
    }
    let o = v
        .as_object()
        .ok_or_else(|| bad("Choices", "a choice rule must be an object"))?;
    for (key, ctor) in [("And", 0), ("Or", 1)] {
        if let Some(list) = o.get(key) {
            let arr = list
                .as_array()
                .ok_or_else(|| bad(key, "must be a non-empty array of choice rules"))?;
            if arr.is_empty() {
                return Err(bad(key, "must be a non-empty array of choice rules"));
            }
            let rules = arr
                .iter()
                .map(|r| parse_cond(r, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if ctor == 0 {
                Cond::And(rules)
            } else {
                Cond::Or(rules)
            });
        }
    }
    if let Some(inner) = o.get("Not") {
        return Ok(Cond::Not(Box::new(parse_cond(inner, depth + 1)?)));
    }
    let var_text = o.get("Variable").and_then(Value::as_str).ok_or_else(|| {
        bad(
            "Variable",
            "a comparison must have a 'Variable' string field",
        )
    })?;
    let var = Ref::parse(var_text)
        .map_err(|e| bad("Variable", &format!("invalid path '{var_text}': {e}")))?;
    for (name, kind, cmp) in OPS {
        if let Some(lit) = o.get(*name) {
            let ok = match kind {
                Kind::String | Kind::Timestamp => lit.is_string(),
                Kind::Numeric => lit.is_number(),
                Kind::Boolean => lit.is_boolean(),
            };
            if !ok {
                return Err(bad(name, "has the wrong type for this operator"));
            }
            return Ok(Cond::Compare {
                var,
                kind: *kind,
                cmp: *cmp,
                operand: Operand::Literal(lit.clone()),
            });
        }
        let pname = format!("{name}Path");
        if let Some(p) = o.get(&pname) {
            let t = p
                .as_str()
                .ok_or_else(|| bad(&pname, "must be a string path"))?;
            let r = Ref::parse(t).map_err(|e| bad(&pname, &format!("invalid path '{t}': {e}")))?;
            return Ok(Cond::Compare {
                var,
                kind: *kind,
                cmp: *cmp,
                operand: Operand::Ref(r),
            });
        }
    }
    if let Some(p) = o.get("StringMatches") {
        let pattern = p
            .as_str()
            .ok_or_else(|| bad("StringMatches", "must be a string"))?
            .to_string();
        return Ok(Cond::Matches { var, pattern });
    }
    for (name, test) in TESTS {
        if let Some(b) = o.get(*name) {
            let expect = b.as_bool().ok_or_else(|| bad(name, "must be a boolean"))?;
            return Ok(Cond::Test {
                var,
                test: *test,
                expect,
            });
        }
    }
    Err(bad("Variable", "a choice rule needs a comparison operator"))
}

/// Evaluates a condition against the state's effective input.
pub fn eval(c: &Cond, scope: &Scope) -> Result<bool, Failure> {
    Ok(match c {
        Cond::And(rs) => {
            for r in rs {
                if !eval(r, scope)? {
                    return Ok(false);
                }
            }
            true
        }
        Cond::Or(rs) => {
            for r in rs {
                if eval(r, scope)? {
                    return Ok(true);
                }
            }
            false
        }
        Cond::Not(r) => !eval(r, scope)?,
        Cond::Test { var, test, expect } => {
            let v = var.resolve(scope);
            let r = match test {
                Test::IsPresent => v.is_some(),
                Test::IsNull => matches!(v, Some(Value::Null)),
                Test::IsNumeric => matches!(v, Some(Value::Number(_))),
                Test::IsString => matches!(v, Some(Value::String(_))),
                Test::IsBoolean => matches!(v, Some(Value::Bool(_))),
                Test::IsTimestamp => v
                    .as_ref()
                    .and_then(Value::as_str)
                    .is_some_and(|s| timestamp::parse(s).is_some()),
            };
            r == *expect
        }
        Cond::Matches { var, pattern } => {
            let v = resolve_var(var, scope)?;
            v.as_str().is_some_and(|s| wildcard_match(pattern, s))
        }
        Cond::Compare {
            var,
            kind,
            cmp,
            operand,
        } => {
            let v = resolve_var(var, scope)?;
            let rhs = match operand {
                Operand::Literal(l) => l.clone(),
                Operand::Ref(r) => r.resolve(scope).ok_or_else(|| {
                    Failure::new(
                        "States.Runtime",
                        format!("Invalid path '{}': The choice state's condition path references an invalid value.", r.text()),
                    )
                })?,
            };
            let ord = match kind {
                Kind::String => match (v.as_str(), rhs.as_str()) {
                    (Some(a), Some(b)) => Some(a.cmp(b)),
                    _ => None,
                },
                Kind::Numeric => match (&v, &rhs) {
                    (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                        (Some(x), Some(y)) => Some(x.cmp(&y)),
                        _ => a
                            .as_f64()
                            .zip(b.as_f64())
                            .and_then(|(x, y)| x.partial_cmp(&y)),
                    },
                    _ => None,
                },
                Kind::Boolean => match (v.as_bool(), rhs.as_bool()) {
                    (Some(a), Some(b)) => Some(a.cmp(&b)),
                    _ => None,
                },
                Kind::Timestamp => match (
                    v.as_str().and_then(timestamp::parse),
                    rhs.as_str().and_then(timestamp::parse),
                ) {
                    (Some(a), Some(b)) => Some(a.cmp(&b)),
                    _ => None,
                },
            };
            match (ord, cmp) {
                (None, _) => false,
                (Some(o), Cmp::Eq) => o == Ordering::Equal,
                (Some(o), Cmp::Lt) => o == Ordering::Less,
                (Some(o), Cmp::Gt) => o == Ordering::Greater,
                (Some(o), Cmp::Le) => o != Ordering::Greater,
                (Some(o), Cmp::Ge) => o != Ordering::Less,
            }
        }
    })
}

fn resolve_var(var: &Ref, scope: &Scope) -> Result<Value, Failure> {
    var.resolve(scope).ok_or_else(|| {
        Failure::new(
            "States.Runtime",
            format!(
                "Invalid path '{}': The choice state's condition path references an invalid value.",
                var.text()
            ),
        )
    })
}

/// `*` matches any run of characters; `\*` and `\\` are literal.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => match it.next() {
                Some(n) => toks.push(Tok::Ch(n)),
                None => toks.push(Tok::Ch('\\')),
            },
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    // Iterative glob match with backtracking to the last star: linear-ish, no recursion.
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < chars.len() {
        match toks.get(p) {
            Some(Tok::Ch(c)) if *c == chars[i] => {
                p += 1;
                i += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    while toks.get(p) == Some(&Tok::Star) {
        p += 1;
    }
    p == toks.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Vars;
    use serde_json::json;

    fn check(rule: Value, input: Value) -> bool {
        let c = parse_cond(&rule, 0).unwrap();
        let ctx = json!({});
        let vars = Vars::default();
        eval(&c, &Scope::new(&input, &ctx, &vars)).unwrap()
    }

    #[test]
    fn operators() {
        assert!(check(
            json!({"Variable": "$.a", "NumericEquals": 1}),
            json!({"a": 1.0})
        ));
        assert!(check(
            json!({"Variable": "$.a", "NumericLessThanPath": "$.b"}),
            json!({"a": 1, "b": 2})
        ));
        assert!(!check(
            json!({"Variable": "$.a", "StringEquals": "1"}),
            json!({"a": 1})
        ));
        assert!(check(
            json!({"Variable": "$.a", "IsPresent": false}),
            json!({})
        ));
        assert!(check(
            json!({"Not": {"Variable": "$.a", "IsNull": true}}),
            json!({"a": 1})
        ));
        assert!(check(
            json!({"Variable": "$.t", "TimestampLessThan": "2020-01-01T00:00:01Z"}),
            json!({"t": "2020-01-01T00:00:00Z"})
        ));
        assert!(check(
            json!({"And": [{"Variable": "$.a", "BooleanEquals": true}]}),
            json!({"a": true})
        ));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("log-*.txt", "log-2024.txt"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "axb"));
        assert!(!wildcard_match("*.txt", "a.txt.bak"));
    }
}
