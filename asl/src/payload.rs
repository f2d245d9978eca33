//! Payload templates (Parameters, ItemSelector, ResultSelector, Assign): objects whose
//! `key.$` entries are JSONPaths, context paths, variable references or intrinsics.

use crate::error::Failure;
use crate::intrinsics::{self, Arg};
use crate::path::{JsonPath, Root, to_json_string};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Workflow variables visible to a state (`$name`). Branches and iterations get a copy,
/// so their assignments stay local, as in AWS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vars {
    pub values: HashMap<String, Value>,
}

/// A reference to a value: a JSONPath on the input/context, or a variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Ref {
    Path(JsonPath),
    Var(String, Option<JsonPath>),
}

impl Ref {
    pub fn parse(text: &str) -> Result<Ref, String> {
        match intrinsics::path_or_var(text)? {
            Arg::Path(p) => Ok(Ref::Path(p)),
            Arg::Var(n, s) => Ok(Ref::Var(n, s)),
            _ => Err("expected a path".into()),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Ref::Path(p) => p.text().to_string(),
            Ref::Var(n, None) => format!("${n}"),
            Ref::Var(n, Some(p)) => format!("${n}{}", p.text().trim_start_matches('$')),
        }
    }

    /// Resolves the reference; `None` when the node does not exist.
    pub fn resolve(&self, scope: &Scope) -> Option<Value> {
        match self {
            Ref::Path(p) => scope.resolve_path(p),
            Ref::Var(n, sub) => scope.resolve_var(n, sub.as_ref()).ok(),
        }
    }
}

/// Builds the context object lazily: most states never read `$$`.
pub type ContextFn<'a> = &'a (dyn Fn() -> Value + Sync);

/// What an expression can see: the current input (`$`), the context object (`$$`)
/// and the variables.
pub struct Scope<'a> {
    pub input: &'a Value,
    context: Ctx<'a>,
    pub vars: &'a Vars,
}

enum Ctx<'a> {
    Ready(&'a Value),
    Lazy(ContextFn<'a>, OnceLock<Value>),
}

impl<'a> Scope<'a> {
    pub fn new(input: &'a Value, context: &'a Value, vars: &'a Vars) -> Scope<'a> {
        Scope {
            input,
            context: Ctx::Ready(context),
            vars,
        }
    }

    pub fn lazy(input: &'a Value, context: ContextFn<'a>, vars: &'a Vars) -> Scope<'a> {
        Scope {
            input,
            context: Ctx::Lazy(context, OnceLock::new()),
            vars,
        }
    }

    /// Same context and variables, different `$`.
    pub fn with_input<'b>(&'b self, input: &'b Value) -> Scope<'b> {
        Scope {
            input,
            context: Ctx::Ready(self.context()),
            vars: self.vars,
        }
    }

    pub fn context(&self) -> &Value {
        match &self.context {
            Ctx::Ready(v) => v,
            Ctx::Lazy(f, cell) => cell.get_or_init(f),
        }
    }

    pub fn resolve_path(&self, p: &JsonPath) -> Option<Value> {
        match p.root() {
            Root::Input => p.eval(self.input),
            Root::Context => p.eval(self.context()),
        }
    }

    pub fn resolve_var(&self, name: &str, sub: Option<&JsonPath>) -> Result<Value, Failure> {
        let v = self.vars.values.get(name).ok_or_else(|| {
            Failure::new(
                "States.Runtime",
                format!("The variable reference ${name} could not be resolved: the variable is not defined"),
            )
        })?;
        match sub {
            None => Ok(v.clone()),
            Some(p) => p.eval(v).ok_or_else(|| {
                Failure::new(
                    "States.Runtime",
                    format!(
                        "The JSONPath ${name}{} could not be found in the variable {}",
                        p.text().trim_start_matches('$'),
                        to_json_string(v)
                    ),
                )
            }),
        }
    }
}

/// Evaluates one `.$` expression (`field` is the key including `.$`, for messages).
pub fn eval_expr(expr: &str, field: &str, scope: &Scope) -> Result<Value, Failure> {
    if intrinsics::looks_like_call(expr) {
        let call = intrinsics::parse(expr).map_err(|e| Failure::new("States.Runtime", e))?;
        return intrinsics::eval(&call, scope);
    }
    let r = Ref::parse(expr).map_err(|e| {
        Failure::new(
            "States.Runtime",
            format!("The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call: {e}"),
        )
    })?;
    match &r {
        Ref::Path(p) => scope.resolve_path(p).ok_or_else(|| {
            Failure::new(
                "States.Runtime",
                format!(
                    "The JSONPath '{}' specified for the field '{field}' could not be found in the input '{}'",
                    p.text(),
                    to_json_string(if p.root() == Root::Context {
                        scope.context()
                    } else {
                        scope.input
                    })
                ),
            )
        }),
        Ref::Var(n, sub) => scope.resolve_var(n, sub.as_ref()),
    }
}

/// Evaluates a payload template (recursively through objects and arrays).
pub fn eval_template(tpl: &Value, scope: &Scope) -> Result<Value, Failure> {
    match tpl {
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                if let Some(name) = k.strip_suffix(".$") {
                    let expr = v.as_str().ok_or_else(|| {
                        Failure::new(
                            "States.Runtime",
                            format!("The value for the field '{k}' must be a STRING that contains a JSONPath"),
                        )
                    })?;
                    out.insert(name.to_string(), eval_expr(expr, k, scope)?);
                } else {
                    out.insert(k.clone(), eval_template(v, scope)?);
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .iter()
            .map(|v| eval_template(v, scope))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template() {
        let input = json!({"a": 1, "b": {"c": [1, 2]}});
        let ctx = json!({"State": {"Name": "S"}});
        let mut vars = Vars::default();
        vars.values.insert("x".into(), json!({"y": 5}));
        let s = Scope::new(&input, &ctx, &vars);
        let tpl = json!({"k": "v", "a.$": "$.a", "n": {"c.$": "$.b.c[1]"}, "s.$": "$$.State.Name",
            "v.$": "$x.y", "f.$": "States.Format('{}-{}', $.a, $x.y)", "l": [{"q.$": "$.a"}]});
        assert_eq!(
            eval_template(&tpl, &s).unwrap(),
            json!({"k": "v", "a": 1, "n": {"c": 2}, "s": "S", "v": 5, "f": "1-5", "l": [{"q": 1}]})
        );
        let err = eval_template(&json!({"z.$": "$.nope"}), &s).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert!(
            err.cause
                .unwrap()
                .contains("'$.nope' specified for the field 'z.$'")
        );
    }
}
