//! JSONPath as Step Functions uses it (Jayway semantics, subset): `$`/`$$` roots,
//! `.name`, `['name']`, `[n]`, `[*]`, `.*`, `[a:b:c]`, `[i,j]`, `..name`, simple filters
//! `[?(@.x == 1)]`; plus reference paths (definite paths) used to write ResultPath.

use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Where a path starts: the state input (`$`) or the context object (`$$`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Input,
    Context,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Field(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Union(Vec<Sel>),
    Deep(Box<Seg>),
    Filter(Filter),
    Length,
}

#[derive(Debug, Clone, PartialEq)]
enum Sel {
    Field(String),
    Index(i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Exists(Vec<Seg>),
    Cmp(Vec<Seg>, CmpOp, Value),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    root: Root,
    segs: Vec<Seg>,
}

/// Why a path text is not a valid path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath '{path}': {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

// Depth guard: paths come from user input; deep recursion must not blow the stack.
const MAX_FILTER_DEPTH: usize = 32;

impl JsonPath {
    /// Compiles a path that starts with `$` or `$$`.
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let err = |reason: &str| PathError {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let (root, rest) = if let Some(r) = text.strip_prefix("$$") {
            (Root::Context, r)
        } else if let Some(r) = text.strip_prefix('$') {
            (Root::Input, r)
        } else {
            return Err(err("must start with '$'"));
        };
        let mut p = Parser {
            s: rest.as_bytes(),
            src: rest,
            i: 0,
            depth: 0,
        };
        let segs = p.segments(false).map_err(|r| err(&r))?;
        if p.i != p.s.len() {
            return Err(err("unexpected trailing characters"));
        }
        Ok(JsonPath {
            text: text.to_string(),
            root,
            segs,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn root(&self) -> Root {
        self.root
    }

    /// True when the path selects at most one node by construction (no wildcard,
    /// slice, union, filter or deep scan); such paths yield the node, others a list.
    pub fn is_definite(&self) -> bool {
        self.segs
            .iter()
            .all(|s| matches!(s, Seg::Field(_) | Seg::Index(_) | Seg::Length))
    }

    /// True for `$` (or `$$`) alone.
    pub fn is_root(&self) -> bool {
        self.segs.is_empty()
    }

    /// Evaluates against `doc`. Definite paths: `None` when the node is missing.
    /// Indefinite paths always yield an array (possibly empty).
    pub fn eval(&self, doc: &Value) -> Option<Value> {
        if self.is_definite() {
            let mut cur = doc;
            let mut owned: Option<Value> = None;
            for seg in &self.segs {
                match seg {
                    Seg::Field(f) => cur = cur.as_object()?.get(f)?,
                    Seg::Index(i) => {
                        let a = cur.as_array()?;
                        let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                        cur = a.get(usize::try_from(idx).ok()?)?;
                    }
                    Seg::Length => {
                        owned = Some(Value::from(cur.as_array()?.len()));
                        break;
                    }
                    _ => return None,
                }
            }
            return Some(owned.unwrap_or_else(|| cur.clone()));
        }
        let mut nodes: Vec<&Value> = vec![doc];
        for seg in &self.segs {
            let mut next = Vec::new();
            for n in nodes {
                apply(seg, n, &mut next);
            }
            nodes = next;
        }
        Some(Value::Array(nodes.into_iter().cloned().collect()))
    }

    /// Jayway-style rendering used in AWS error messages: `$['a']['b'][0]`.
    pub fn bracket_notation(&self) -> String {
        let mut out = String::from(if self.root == Root::Context {
            "$$"
        } else {
            "$"
        });
        for s in &self.segs {
            match s {
                Seg::Field(f) => {
                    let _ = write!(out, "['{f}']");
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Seg::Wildcard => out.push_str("[*]"),
                _ => {}
            }
        }
        out
    }

    /// Jayway's wording for a definite path that selects nothing in `doc`:
    /// a missing intermediate property vs. a missing leaf.
    pub fn not_found_reason(&self, doc: &Value) -> String {
        let mut cur = Some(doc);
        let mut shown = String::from(if self.root == Root::Context {
            "$$"
        } else {
            "$"
        });
        let n = self.segs.len();
        for (i, seg) in self.segs.iter().enumerate() {
            let next = match seg {
                Seg::Field(f) => {
                    let _ = write!(shown, "['{f}']");
                    cur.and_then(|c| c.as_object()).and_then(|o| o.get(f))
                }
                Seg::Index(k) => {
                    let _ = write!(shown, "[{k}]");
                    cur.and_then(|c| c.as_array())
                        .and_then(|a| usize::try_from(*k).ok().and_then(|k| a.get(k)))
                }
                _ => return format!("No results for path: {}", self.bracket_notation()),
            };
            if next.is_none() && i + 1 < n {
                return format!("Missing property in path {shown}");
            }
            cur = next;
        }
        format!("No results for path: {}", self.bracket_notation())
    }

    /// Writes `value` at this (definite) path inside `doc`, creating objects on the
    /// way. Errors when the path crosses a non-object or is indefinite, and then leaves
    /// `doc` as it was (so a caller can merge into the input it owns, and still report it).
    #[allow(clippy::result_unit_err)]
    pub fn set(&self, doc: &mut Value, value: Value) -> Result<(), ()> {
        if !self.settable(doc) {
            return Err(());
        }
        let mut cur = doc;
        for (i, seg) in self.segs.iter().enumerate() {
            let last = i + 1 == self.segs.len();
            match seg {
                Seg::Field(f) => {
                    let obj = cur.as_object_mut().ok_or(())?;
                    if last {
                        obj.insert(f.clone(), value);
                        return Ok(());
                    }
                    let slot = obj
                        .entry(f.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    // Intermediate scalars are replaced by objects, as AWS does.
                    if !slot.is_object() && !slot.is_array() {
                        *slot = Value::Object(Map::new());
                    }
                    cur = slot;
                }
                Seg::Index(idx) => {
                    let arr = cur.as_array_mut().ok_or(())?;
                    let len = arr.len() as i64;
                    let k = if *idx < 0 { len + idx } else { *idx };
                    let k = usize::try_from(k).map_err(|_| ())?;
                    let slot = arr.get_mut(k).ok_or(())?;
                    if last {
                        *slot = value;
                        return Ok(());
                    }
                    cur = slot;
                }
                _ => return Err(()),
            }
        }
        *cur = value;
        Ok(())
    }
}

impl JsonPath {
    /// Whether [`JsonPath::set`] succeeds on `doc`: the same walk, without writing.
    fn settable(&self, doc: &Value) -> bool {
        // `None`: an object `set` would create (missing, or a scalar it replaces).
        let mut cur = Some(doc);
        for (i, seg) in self.segs.iter().enumerate() {
            let last = i + 1 == self.segs.len();
            match seg {
                Seg::Field(f) => {
                    let obj = match cur {
                        Some(Value::Object(o)) => Some(o),
                        Some(_) => return false,
                        None => None,
                    };
                    if last {
                        return true;
                    }
                    cur = obj
                        .and_then(|o| o.get(f))
                        .filter(|v| v.is_object() || v.is_array());
                }
                Seg::Index(idx) => {
                    let Some(Value::Array(arr)) = cur else {
                        return false;
                    };
                    let len = arr.len() as i64;
                    let k = if *idx < 0 { len + idx } else { *idx };
                    let Some(slot) = usize::try_from(k).ok().and_then(|k| arr.get(k)) else {
                        return false;
                    };
                    if last {
                        return true;
                    }
                    cur = Some(slot);
                }
                _ => return false,
            }
        }
        true
    }
}

fn apply<'a>(seg: &Seg, n: &'a Value, out: &mut Vec<&'a Value>) {
    match seg {
        Seg::Field(f) => {
            if let Some(v) = n.as_object().and_then(|o| o.get(f)) {
                out.push(v);
            }
        }
        Seg::Index(i) => {
            if let Some(a) = n.as_array() {
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                if let Some(v) = usize::try_from(idx).ok().and_then(|k| a.get(k)) {
                    out.push(v);
                }
            }
        }
        Seg::Wildcard => match n {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(o) => out.extend(o.values()),
            _ => {}
        },
        Seg::Slice(s, e, st) => {
            if let Some(a) = n.as_array() {
                let len = a.len() as i64;
                let step = st.unwrap_or(1);
                if step <= 0 {
                    return;
                }
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let start = s.map(norm).unwrap_or(0);
                let end = e.map(norm).unwrap_or(len);
                let mut k = start;
                while k < end {
                    if let Some(v) = a.get(k as usize) {
                        out.push(v);
                    }
                    k += step;
                }
            }
        }
        Seg::Union(sels) => {
            for s in sels {
                match s {
                    Sel::Field(f) => apply(&Seg::Field(f.clone()), n, out),
                    Sel::Index(i) => apply(&Seg::Index(*i), n, out),
                }
            }
        }
        Seg::Deep(inner) => deep(inner, n, out, 0),
        Seg::Filter(f) => {
            let items: Vec<&Value> = match n {
                Value::Array(a) => a.iter().collect(),
                Value::Object(o) => o.values().collect(),
                _ => Vec::new(),
            };
            for it in items {
                if filter_ok(f, it) {
                    out.push(it);
                }
            }
        }
        Seg::Length => {}
    }
}

fn deep<'a>(inner: &Seg, n: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
    if depth > 256 {
        return;
    }
    apply(inner, n, out);
    match n {
        Value::Array(a) => a.iter().for_each(|c| deep(inner, c, out, depth + 1)),
        Value::Object(o) => o.values().for_each(|c| deep(inner, c, out, depth + 1)),
        _ => {}
    }
}

fn rel_eval<'a>(segs: &[Seg], n: &'a Value) -> Option<&'a Value> {
    let mut cur = n;
    for s in segs {
        match s {
            Seg::Field(f) => cur = cur.as_object()?.get(f)?,
            Seg::Index(i) => {
                let a = cur.as_array()?;
                let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                cur = a.get(usize::try_from(idx).ok()?)?;
            }
            _ => return None,
        }
    }
    Some(cur)
}

fn filter_ok(f: &Filter, n: &Value) -> bool {
    match f {
        Filter::Exists(p) => rel_eval(p, n).is_some(),
        Filter::And(a, b) => filter_ok(a, n) && filter_ok(b, n),
        Filter::Or(a, b) => filter_ok(a, n) || filter_ok(b, n),
        Filter::Cmp(p, op, lit) => {
            let Some(v) = rel_eval(p, n) else {
                return false;
            };
            let ord = match (v, lit) {
                (Value::Number(a), Value::Number(b)) => a
                    .as_f64()
                    .zip(b.as_f64())
                    .and_then(|(x, y)| x.partial_cmp(&y)),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                _ => None,
            };
            match op {
                CmpOp::Eq => ord == Some(std::cmp::Ordering::Equal) || (ord.is_none() && v == lit),
                CmpOp::Ne => {
                    !(ord == Some(std::cmp::Ordering::Equal) || (ord.is_none() && v == lit))
                }
                CmpOp::Lt => ord == Some(std::cmp::Ordering::Less),
                CmpOp::Le => matches!(
                    ord,
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ),
                CmpOp::Gt => ord == Some(std::cmp::Ordering::Greater),
                CmpOp::Ge => matches!(
                    ord,
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                ),
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// Parses segments until end (or, inside a filter, until a non-segment char).
    fn segments(&mut self, in_filter: bool) -> Result<Vec<Seg>, String> {
        let mut segs = Vec::new();
        while let Some(c) = self.peek() {
            match c {
                b'.' => {
                    self.i += 1;
                    if self.peek() == Some(b'.') {
                        self.i += 1;
                        let inner = if self.peek() == Some(b'*') {
                            self.i += 1;
                            Seg::Wildcard
                        } else if self.peek() == Some(b'[') {
                            self.bracket()?
                        } else {
                            Seg::Field(self.ident()?)
                        };
                        segs.push(Seg::Deep(Box::new(inner)));
                    } else if self.peek() == Some(b'*') {
                        self.i += 1;
                        segs.push(Seg::Wildcard);
                    } else {
                        let id = self.ident()?;
                        if id == "length" && self.src[self.i..].starts_with("()") {
                            self.i += 2;
                            segs.push(Seg::Length);
                        } else {
                            segs.push(Seg::Field(id));
                        }
                    }
                }
                b'[' => segs.push(self.bracket()?),
                _ if in_filter => break,
                _ => return Err(format!("unexpected character at {}", self.i)),
            }
        }
        Ok(segs)
    }

    fn ident(&mut self) -> Result<String, String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b'.'
                || c == b'['
                || c == b' '
                || c == b'('
                || c == b')'
                || c == b'='
                || c == b'!'
                || c == b'<'
                || c == b'>'
                || c == b'&'
                || c == b'|'
            {
                break;
            }
            self.i += 1;
        }
        if start == self.i {
            return Err("empty field name".into());
        }
        self.src
            .get(start..self.i)
            .map(str::to_string)
            .ok_or_else(|| "invalid field".to_string())
    }

    fn quoted(&mut self) -> Result<String, String> {
        let q = self.peek().ok_or("unterminated string")?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or("unterminated string")?;
            self.i += 1;
            if c == b'\\' && self.peek() == Some(q) {
                // Only the quote itself is escaped; other backslashes are literal (Jayway).
                self.i += 1;
                out.push(q);
            } else if c == q {
                break;
            } else {
                out.push(c);
            }
        }
        String::from_utf8(out).map_err(|_| "invalid utf-8".to_string())
    }

    fn int(&mut self) -> Result<Option<i64>, String> {
        self.ws();
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return Ok(None);
        }
        let t = self.src.get(start..self.i).ok_or("bad number")?;
        let n = t.parse::<i64>().map_err(|_| format!("bad index '{t}'"))?;
        self.ws();
        Ok(Some(n))
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}'", c as char))
        }
    }

    fn bracket(&mut self) -> Result<Seg, String> {
        self.i += 1; // '['
        self.ws();
        let seg = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                Seg::Wildcard
            }
            Some(b'\'') | Some(b'"') => {
                let mut names = vec![Sel::Field(self.quoted()?)];
                self.ws();
                while self.peek() == Some(b',') {
                    self.i += 1;
                    self.ws();
                    names.push(Sel::Field(self.quoted()?));
                    self.ws();
                }
                if names.len() == 1 {
                    match names.pop() {
                        Some(Sel::Field(f)) => Seg::Field(f),
                        _ => return Err("bad selector".into()),
                    }
                } else {
                    Seg::Union(names)
                }
            }
            Some(b'?') => {
                self.i += 1;
                self.expect(b'(')?;
                let f = self.filter_or()?;
                self.expect(b')')?;
                Seg::Filter(f)
            }
            _ => {
                let a = self.int()?;
                match self.peek() {
                    Some(b':') => {
                        self.i += 1;
                        let b = self.int()?;
                        let c = if self.peek() == Some(b':') {
                            self.i += 1;
                            self.int()?
                        } else {
                            None
                        };
                        Seg::Slice(a, b, c)
                    }
                    Some(b',') => {
                        let mut v = vec![Sel::Index(a.ok_or("bad index")?)];
                        while self.peek() == Some(b',') {
                            self.i += 1;
                            v.push(Sel::Index(self.int()?.ok_or("bad index")?));
                        }
                        Seg::Union(v)
                    }
                    _ => Seg::Index(a.ok_or("bad index")?),
                }
            }
        };
        self.expect(b']')?;
        Ok(seg)
    }

    fn filter_or(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err("filter too deep".into());
        }
        let mut left = self.filter_and()?;
        loop {
            self.ws();
            if self.src[self.i..].starts_with("||") {
                self.i += 2;
                let r = self.filter_and()?;
                left = Filter::Or(Box::new(left), Box::new(r));
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(left)
    }

    fn filter_and(&mut self) -> Result<Filter, String> {
        let mut left = self.filter_atom()?;
        loop {
            self.ws();
            if self.src[self.i..].starts_with("&&") {
                self.i += 2;
                let r = self.filter_atom()?;
                left = Filter::And(Box::new(left), Box::new(r));
            } else {
                break;
            }
        }
        Ok(left)
    }

    fn filter_atom(&mut self) -> Result<Filter, String> {
        self.ws();
        if self.peek() == Some(b'(') {
            self.i += 1;
            let f = self.filter_or()?;
            self.expect(b')')?;
            return Ok(f);
        }
        if self.peek() != Some(b'@') {
            return Err("filter must start with '@'".into());
        }
        self.i += 1;
        let segs = self.segments(true)?;
        self.ws();
        let rest = &self.src[self.i..];
        let op = [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ]
        .into_iter()
        .find(|(t, _)| rest.starts_with(t));
        let Some((t, op)) = op else {
            return Ok(Filter::Exists(segs));
        };
        self.i += t.len();
        self.ws();
        let lit = match self.peek() {
            Some(b'\'') | Some(b'"') => Value::String(self.quoted()?),
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c != b')' && c != b' ' && c != b'&' && c != b'|')
                {
                    self.i += 1;
                }
                let t = self.src.get(start..self.i).ok_or("bad literal")?;
                serde_json::from_str::<Value>(t).map_err(|_| format!("bad literal '{t}'"))?
            }
        };
        Ok(Filter::Cmp(segs, op, lit))
    }
}

/// Renders a value as AWS does in messages and history: compact JSON.
pub fn to_json_string(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(p: &str, v: &Value) -> Option<Value> {
        JsonPath::parse(p).ok()?.eval(v)
    }

    #[test]
    fn definite_and_indefinite() {
        let d = json!({"a": {"b": [1, 2, 3]}, "users": [{"s": 0}, {"s": 1}]});
        assert_eq!(ev("$.a.b[1]", &d), Some(json!(2)));
        assert_eq!(ev("$.a.b[-1]", &d), Some(json!(3)));
        assert_eq!(ev("$['a']['b'][0]", &d), Some(json!(1)));
        assert_eq!(ev("$.a.x", &d), None);
        assert_eq!(ev("$.a.b[*]", &d), Some(json!([1, 2, 3])));
        assert_eq!(ev("$.a.b[1:]", &d), Some(json!([2, 3])));
        assert_eq!(ev("$.a.b[:1]", &d), Some(json!([1])));
        assert_eq!(ev("$.users[?(@.s == 0)]", &d), Some(json!([{"s": 0}])));
        assert_eq!(ev("$..s", &d), Some(json!([0, 1])));
        assert_eq!(ev("$.a.b.length()", &d), Some(json!(3)));
        assert_eq!(ev("$.nope[*]", &d), Some(json!([])));
    }

    #[test]
    fn set_creates_objects() {
        let mut d = json!({"a": 1});
        JsonPath::parse("$.x.y")
            .unwrap()
            .set(&mut d, json!(2))
            .unwrap();
        assert_eq!(d, json!({"a": 1, "x": {"y": 2}}));
        assert!(
            JsonPath::parse("$.a[0]")
                .unwrap()
                .set(&mut d, json!(2))
                .is_err()
        );
        // A failed set leaves the document as it was (the scalar at `a` is not replaced).
        assert_eq!(d, json!({"a": 1, "x": {"y": 2}}));
        let mut list = json!({"l": [{"k": 1}, 5]});
        for bad in ["$.l.k", "$.l[2].k", "$.l[1][0]", "$.l[1].k", "$.l[*]"] {
            assert!(
                JsonPath::parse(bad)
                    .unwrap()
                    .set(&mut list, json!(0))
                    .is_err(),
                "{bad}"
            );
            assert_eq!(list, json!({"l": [{"k": 1}, 5]}), "{bad}");
        }
        JsonPath::parse("$.l[0].k")
            .unwrap()
            .set(&mut list, json!(0))
            .unwrap();
        JsonPath::parse("$.l[-2].m.n")
            .unwrap()
            .set(&mut list, json!(3))
            .unwrap();
        JsonPath::parse("$.l[1]")
            .unwrap()
            .set(&mut list, json!(6))
            .unwrap();
        assert_eq!(list, json!({"l": [{"k": 0, "m": {"n": 3}}, 6]}));
    }

    #[test]
    fn rejects_garbage() {
        for p in ["", "a", "$.", "$[", "$[?(", "$['a", "$.a b"] {
            assert!(JsonPath::parse(p).is_err(), "{p}");
        }
    }
}
