//! The 18 intrinsic functions (`States.Format(...)` and friends): a small parser for
//! the call syntax and an evaluator with AWS's argument checks.

use crate::error::Failure;
use crate::path::{JsonPath, to_json_string};
use crate::payload::Scope;
use base64::Engine as _;
use serde_json::{Map, Number, Value};

/// One argument of an intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(Value),
    Path(JsonPath),
    Var(String, Option<JsonPath>),
    Call(Box<Call>),
}

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
}

const FUNCTIONS: &[&str] = &[
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
];

const MAX_NESTING: usize = 32;

/// Parses `States.Name(args...)`.
pub fn parse(text: &str) -> Result<Call, String> {
    let mut p = P {
        s: text,
        i: 0,
        depth: 0,
    };
    let c = p.call()?;
    p.ws();
    if p.i != text.len() {
        return Err(format!("unexpected trailing text in '{text}'"));
    }
    Ok(c)
}

/// True when the text looks like an intrinsic call (starts with `States.`).
pub fn looks_like_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

struct P<'a> {
    s: &'a str,
    i: usize,
    depth: usize,
}

impl P<'_> {
    fn rest(&self) -> &str {
        self.s.get(self.i..).unwrap_or("")
    }
    fn ws(&mut self) {
        while self.rest().starts_with([' ', '\t', '\n', '\r']) {
            self.i += 1;
        }
    }
    fn call(&mut self) -> Result<Call, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err("intrinsic functions nested too deeply".into());
        }
        self.ws();
        let start = self.i;
        while self
            .rest()
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.')
        {
            self.i += 1;
        }
        let name = self.s.get(start..self.i).unwrap_or("").to_string();
        if !FUNCTIONS.contains(&name.as_str()) {
            return Err(format!("unknown intrinsic function '{name}'"));
        }
        self.ws();
        if !self.rest().starts_with('(') {
            return Err(format!("expected '(' after {name}"));
        }
        self.i += 1;
        let mut args = Vec::new();
        self.ws();
        if self.rest().starts_with(')') {
            self.i += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.ws();
                if self.rest().starts_with(',') {
                    self.i += 1;
                } else if self.rest().starts_with(')') {
                    self.i += 1;
                    break;
                } else {
                    return Err(format!("expected ',' or ')' in {name}"));
                }
            }
        }
        self.depth -= 1;
        Ok(Call { name, args })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.ws();
        let src = self.s;
        let r = src.get(self.i..).unwrap_or("");
        if r.starts_with('\'') {
            return self.string().map(|s| Arg::Literal(Value::String(s)));
        }
        if r.starts_with("States.") {
            return Ok(Arg::Call(Box::new(self.call()?)));
        }
        if r.starts_with('$') {
            let start = self.i;
            let mut depth = 0i32;
            let mut quote: Option<char> = None;
            for (off, ch) in r.char_indices() {
                if let Some(q) = quote {
                    if ch == q {
                        quote = None;
                    }
                    continue;
                }
                match ch {
                    '\'' | '"' => quote = Some(ch),
                    '[' | '(' => depth += 1,
                    ']' => depth -= 1,
                    ')' if depth == 0 => {
                        self.i = start + off;
                        break;
                    }
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        self.i = start + off;
                        break;
                    }
                    _ => {}
                }
                self.i = start + off + ch.len_utf8();
            }
            let text = self.s.get(start..self.i).unwrap_or("").trim_end();
            return path_or_var(text).map_err(|e| format!("invalid path argument '{text}': {e}"));
        }
        // number / boolean / null
        let start = self.i;
        while self
            .rest()
            .starts_with(|c: char| !matches!(c, ',' | ')' | ' '))
        {
            self.i += self.rest().chars().next().map(char::len_utf8).unwrap_or(1);
        }
        let t = self.s.get(start..self.i).unwrap_or("");
        match serde_json::from_str::<Value>(t) {
            Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => Ok(Arg::Literal(v)),
            _ => Err(format!("invalid argument '{t}'")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        loop {
            let Some((off, c)) = chars.next() else {
                return Err("unterminated string literal".into());
            };
            match c {
                '\\' => {
                    let Some((_, n)) = chars.next() else {
                        return Err("unterminated string literal".into());
                    };
                    // Keep the backslash before braces: States.Format needs to see
                    // `\{` to tell escaped braces from placeholders.
                    match n {
                        '{' | '}' => {
                            out.push('\\');
                            out.push(n);
                        }
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        _ => out.push(n),
                    }
                }
                '\'' => {
                    self.i += off + 1;
                    return Ok(out);
                }
                _ => out.push(c),
            }
        }
    }
}

/// `$.a`, `$$.a`, or a variable reference `$name.a`.
pub fn path_or_var(text: &str) -> Result<Arg, String> {
    if text == "$"
        || text == "$$"
        || text.starts_with("$.")
        || text.starts_with("$[")
        || text.starts_with("$$")
    {
        return JsonPath::parse(text).map(Arg::Path).map_err(|e| e.reason);
    }
    let body = text.strip_prefix('$').ok_or("expected '$'")?;
    let end = body.find(['.', '[']).unwrap_or(body.len());
    let name = &body[..end];
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(format!("invalid variable name '{name}'"));
    }
    let rest = &body[end..];
    let sub = if rest.is_empty() {
        None
    } else {
        Some(JsonPath::parse(&format!("${rest}")).map_err(|e| e.reason)?)
    };
    Ok(Arg::Var(name.to_string(), sub))
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure::new("States.IntrinsicFailure", msg)
}

fn arg_count(c: &Call, min: usize, max: usize) -> Result<(), Failure> {
    let n = c.args.len();
    if n < min || n > max {
        return Err(fail(format!(
            "Invalid number of arguments in call to {}: expected {}, got {n}",
            c.name,
            if min == max {
                min.to_string()
            } else {
                format!("{min} to {max}")
            }
        )));
    }
    Ok(())
}

/// Evaluates an argument in `scope`.
pub fn eval_arg(a: &Arg, scope: &Scope) -> Result<Value, Failure> {
    match a {
        Arg::Literal(v) => Ok(v.clone()),
        Arg::Call(c) => eval(c, scope),
        Arg::Path(p) => scope.resolve_path(p).ok_or_else(|| {
            Failure::new(
                "States.Runtime",
                format!(
                    "The JSONPath {} could not be found in the input {}",
                    p.text(),
                    to_json_string(scope.input)
                ),
            )
        }),
        Arg::Var(name, sub) => scope.resolve_var(name, sub.as_ref()),
    }
}

fn as_str<'v>(c: &Call, v: &'v Value) -> Result<&'v str, Failure> {
    v.as_str()
        .ok_or_else(|| fail(format!("The argument to {} must be a string", c.name)))
}

fn as_int(c: &Call, v: &Value) -> Result<i64, Failure> {
    match v {
        Value::Number(n) => n
            .as_i64()
            // Java's Math.round: halves go up (-1.5 -> -1).
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.abs() < 9.0e15)
                    .map(|f| (f + 0.5).floor() as i64)
            })
            .ok_or_else(|| fail(format!("The arguments to {} must be integers", c.name))),
        _ => Err(fail(format!(
            "The arguments to {} must be integers",
            c.name
        ))),
    }
}

fn as_array<'v>(c: &Call, v: &'v Value) -> Result<&'v Vec<Value>, Failure> {
    v.as_array()
        .ok_or_else(|| fail(format!("The first argument to {} must be an array", c.name)))
}

/// Evaluates a parsed call.
pub fn eval(c: &Call, scope: &Scope) -> Result<Value, Failure> {
    let args = c
        .args
        .iter()
        .map(|a| eval_arg(a, scope))
        .collect::<Result<Vec<_>, _>>()?;
    let a = |i: usize| args.get(i).unwrap_or(&Value::Null);
    match c.name.as_str() {
        "States.Format" => {
            if args.is_empty() {
                return Err(fail("States.Format requires at least one argument"));
            }
            let tpl = as_str(c, a(0))?;
            format(tpl, &args[1..])
        }
        "States.StringToJson" => {
            arg_count(c, 1, 1)?;
            let s = as_str(c, a(0))?;
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(s).map_err(|_| {
                fail(format!(
                    "Invalid JSON string passed to States.StringToJson: {s}"
                ))
            })
        }
        "States.JsonToString" => {
            arg_count(c, 1, 1)?;
            Ok(Value::String(to_json_string(a(0))))
        }
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            arg_count(c, 2, 2)?;
            let arr = as_array(c, a(0))?;
            let size = as_int(c, a(1))?;
            if size <= 0 {
                return Err(fail("The chunk size must be a positive integer"));
            }
            let chunks = arr
                .chunks(usize::try_from(size).unwrap_or(usize::MAX))
                .map(|ch| Value::Array(ch.to_vec()))
                .collect();
            Ok(Value::Array(chunks))
        }
        "States.ArrayContains" => {
            arg_count(c, 2, 2)?;
            let arr = as_array(c, a(0))?;
            Ok(Value::Bool(arr.iter().any(|x| json_eq(x, a(1)))))
        }
        "States.ArrayRange" => {
            arg_count(c, 3, 3)?;
            let (s, e, st) = (as_int(c, a(0))?, as_int(c, a(1))?, as_int(c, a(2))?);
            if st == 0 {
                return Err(fail("The step argument to States.ArrayRange cannot be 0"));
            }
            let mut out = Vec::new();
            let mut k = s;
            while (st > 0 && k <= e) || (st < 0 && k >= e) {
                if out.len() >= 1000 {
                    return Err(fail(
                        "The array returned by States.ArrayRange cannot contain more than 1000 items",
                    ));
                }
                out.push(Value::from(k));
                k = k.saturating_add(st);
                if k == i64::MAX || k == i64::MIN {
                    break;
                }
            }
            Ok(Value::Array(out))
        }
        "States.ArrayGetItem" => {
            arg_count(c, 2, 2)?;
            let arr = as_array(c, a(0))?;
            let i = as_int(c, a(1))?;
            usize::try_from(i)
                .ok()
                .and_then(|i| arr.get(i))
                .cloned()
                .ok_or_else(|| {
                    fail(format!(
                        "Index {i} is out of bounds for States.ArrayGetItem"
                    ))
                })
        }
        "States.ArrayLength" => {
            arg_count(c, 1, 1)?;
            Ok(Value::from(as_array(c, a(0))?.len()))
        }
        "States.ArrayUnique" => {
            arg_count(c, 1, 1)?;
            let arr = as_array(c, a(0))?;
            let mut out: Vec<Value> = Vec::new();
            for x in arr {
                if !out.iter().any(|y| json_eq(x, y)) {
                    out.push(x.clone());
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            arg_count(c, 1, 1)?;
            let s = as_str(c, a(0))?;
            if s.len() > 10_000 {
                return Err(fail(
                    "The input to States.Base64Encode is longer than 10000 characters",
                ));
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s),
            ))
        }
        "States.Base64Decode" => {
            arg_count(c, 1, 1)?;
            let s = as_str(c, a(0))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| fail(format!("Invalid base64 input to States.Base64Decode: {s}")))?;
            Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        }
        "States.Hash" => {
            arg_count(c, 2, 2)?;
            let data = match a(0) {
                Value::String(s) => s.clone(),
                Value::Null => return Err(fail("The input data to States.Hash cannot be null")),
                other => to_json_string(other),
            };
            let alg = as_str(c, a(1))?;
            hash(&data, alg).map(Value::String)
        }
        "States.JsonMerge" => {
            arg_count(c, 3, 3)?;
            let deep = a(2)
                .as_bool()
                .ok_or_else(|| fail("The third argument to States.JsonMerge must be a boolean"))?;
            if deep {
                return Err(fail(
                    "States.JsonMerge only supports shallow merging (false)",
                ));
            }
            let (Value::Object(l), Value::Object(r)) = (a(0), a(1)) else {
                return Err(fail(
                    "The arguments to States.JsonMerge must be JSON objects",
                ));
            };
            let mut m: Map<String, Value> = l.clone();
            for (k, v) in r {
                m.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(m))
        }
        "States.MathRandom" => {
            arg_count(c, 2, 3)?;
            let (s, e) = (as_int(c, a(0))?, as_int(c, a(1))?);
            if s >= e {
                return Err(fail(
                    "The start of States.MathRandom must be less than the end",
                ));
            }
            use rand::{Rng, SeedableRng};
            let v = if args.len() == 3 {
                let seed = as_int(c, a(2))?;
                let mut r = rand::rngs::StdRng::seed_from_u64(seed as u64);
                r.random_range(s..e)
            } else {
                rand::rng().random_range(s..e)
            };
            Ok(Value::from(v))
        }
        "States.MathAdd" => {
            arg_count(c, 2, 2)?;
            let (x, y) = (as_int(c, a(0))?, as_int(c, a(1))?);
            x.checked_add(y)
                .map(Value::from)
                .ok_or_else(|| fail("Integer overflow in States.MathAdd"))
        }
        "States.StringSplit" => {
            arg_count(c, 2, 2)?;
            let s = as_str(c, a(0))?;
            let d = as_str(c, a(1))?;
            let parts: Vec<Value> = if d.is_empty() {
                vec![Value::String(s.to_string())]
            } else {
                s.split(|ch: char| d.contains(ch))
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect()
            };
            Ok(Value::Array(parts))
        }
        "States.UUID" => {
            arg_count(c, 0, 0)?;
            Ok(Value::String(uuid::Uuid::new_v4().to_string()))
        }
        other => Err(fail(format!("Unknown intrinsic function {other}"))),
    }
}

/// Equality as JSON values, with numbers compared by value (1 == 1.0).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn num_eq(x: &Number, y: &Number) -> bool {
    match (x.as_i64(), y.as_i64()) {
        (Some(p), Some(q)) => p == q,
        _ => x.as_f64() == y.as_f64(),
    }
}

fn format(tpl: &str, args: &[Value]) -> Result<Value, Failure> {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = tpl.chars().peekable();
    let mut used = 0usize;
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                let v = it.next().ok_or_else(|| {
                    fail("The number of arguments does not match the number of placeholders in States.Format")
                })?;
                used += 1;
                out.push_str(&java_string(v));
            }
            _ => out.push(ch),
        }
    }
    if used != args.len() {
        return Err(fail(
            "The number of arguments does not match the number of placeholders in States.Format",
        ));
    }
    Ok(Value::String(out))
}

/// How AWS (a Java service) renders a value inside `States.Format`: strings raw,
/// objects as `{k=v, ...}`, arrays as `[a, b]`.
fn java_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(java_string).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{k}={}", java_string(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => to_json_string(other),
    }
}

fn hash(data: &str, alg: &str) -> Result<String, Failure> {
    use sha2::Digest;
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    if data.len() > 10_000 {
        return Err(fail(
            "The input data to States.Hash is longer than 10000 characters",
        ));
    }
    Ok(match alg {
        "MD5" => hex(&md5::Md5::digest(data.as_bytes())),
        "SHA-1" => hex(&sha1::Sha1::digest(data.as_bytes())),
        "SHA-256" => hex(&sha2::Sha256::digest(data.as_bytes())),
        "SHA-384" => hex(&sha2::Sha384::digest(data.as_bytes())),
        "SHA-512" => hex(&sha2::Sha512::digest(data.as_bytes())),
        other => {
            return Err(fail(format!(
                "The hashing algorithm {other} is not supported. The supported algorithms are: MD5, SHA-1, SHA-256, SHA-384, SHA-512"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Vars;
    use serde_json::json;

    fn run(expr: &str, input: Value) -> Result<Value, Failure> {
        let call = parse(expr).map_err(|e| Failure::new("parse", e))?;
        let ctx = json!({"StateMachine": {"Name": "a-b-c"}});
        let vars = Vars::default();
        let scope = Scope::new(&input, &ctx, &vars);
        eval(&call, &scope)
    }

    #[test]
    fn functions() {
        assert_eq!(
            run("States.Format('a{}b{}', 1, 'x')", json!({})).unwrap(),
            json!("a1bx")
        );
        assert_eq!(
            run("States.Format('\\{\\}{}', $.v)", json!({"v": [1]})).unwrap(),
            json!("{}[1]")
        );
        assert_eq!(
            run("States.ArrayRange(1, 9, 2)", json!({})).unwrap(),
            json!([1, 3, 5, 7, 9])
        );
        assert_eq!(
            run("States.ArrayPartition(States.Array(1,2,3), 2)", json!({})).unwrap(),
            json!([[1, 2], [3]])
        );
        assert_eq!(
            run("States.MathAdd($.a, -1)", json!({"a": 3})).unwrap(),
            json!(2)
        );
        assert_eq!(
            run("States.Hash('x', 'SHA-1')", json!({})).unwrap(),
            json!("11f6ad8ec52a2984abaafd7c3b516503785c2072")
        );
        assert_eq!(
            run("States.Base64Decode(States.Base64Encode('hi'))", json!({})).unwrap(),
            json!("hi")
        );
        assert_eq!(
            run("States.StringSplit('a,b,,c', ',')", json!({})).unwrap(),
            json!(["a", "b", "c"])
        );
        assert_eq!(
            run(
                "States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), 0)",
                json!({})
            )
            .unwrap(),
            json!("a")
        );
        assert_eq!(
            run("States.ArrayUnique(States.Array(1, 1.0, 2))", json!({})).unwrap(),
            json!([1, 2])
        );
        assert!(run("States.ArrayRange(0, 5000, 1)", json!({})).is_err());
        assert!(run("States.Nope()", json!({})).is_err());
        assert!(run("States.Format('{}')", json!({})).is_err());
    }
}
