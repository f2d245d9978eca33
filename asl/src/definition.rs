//! The parsed state machine: `Definition::parse` turns ASL JSON into typed states and
//! collects every problem (state + field) instead of stopping at the first.

use crate::choice::{self, Rule};
use crate::error::ValidationError;
use crate::intrinsics::{self, Call};
use crate::path::JsonPath;
use crate::payload::Ref;
use crate::retry::{Catcher, Jitter, Retrier};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// InputPath / OutputPath / ItemsPath: absent (`$`), `null` (empty object) or a reference.
#[derive(Debug, Clone, PartialEq)]
pub enum IoPath {
    Default,
    Null,
    Ref(Ref),
}

/// ResultPath: absent (`$`, result replaces input), `null` (result discarded) or a path.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultPathSpec {
    Default,
    Null,
    Path(JsonPath),
}

/// A number given either literally or through a `…Path` field.
#[derive(Debug, Clone, PartialEq)]
pub enum Dyn<T> {
    Static(T),
    Path(Ref),
}

/// Error/Cause of a Fail state.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrSrc {
    Literal(String),
    Path(Ref),
    Call(Call),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitSpec {
    Seconds(u64),
    Timestamp(String),
    SecondsPath(Ref),
    TimestampPath(Ref),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapMode {
    Inline,
    Distributed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapSpec {
    pub items_path: IoPath,
    pub item_selector: Option<Value>,
    pub processor: Definition,
    pub mode: MapMode,
    pub max_concurrency: Dyn<u64>,
    pub tolerated_count: Option<Dyn<i64>>,
    pub tolerated_percentage: Option<Dyn<f64>>,
    pub label: Option<String>,
    pub item_batcher: Option<ItemBatcher>,
}

/// `ItemBatcher`: items are grouped as `{"Items": [...], "BatchInput": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemBatcher {
    pub max_items: Option<Dyn<u64>>,
    pub max_bytes: Option<Dyn<u64>>,
    pub batch_input: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StateKind {
    Pass {
        result: Option<Value>,
    },
    Task {
        resource: String,
        timeout: Option<Dyn<u64>>,
        heartbeat: Option<Dyn<u64>>,
        credentials: Option<Value>,
    },
    Choice {
        choices: Vec<Rule>,
        default: Option<String>,
    },
    Wait(WaitSpec),
    Succeed,
    Fail {
        error: Option<ErrSrc>,
        cause: Option<ErrSrc>,
    },
    Parallel {
        branches: Vec<Definition>,
    },
    Map(Box<MapSpec>),
}

impl StateKind {
    /// The prefix of the state's history events (`PassStateEntered`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            StateKind::Pass { .. } => "Pass",
            StateKind::Task { .. } => "Task",
            StateKind::Choice { .. } => "Choice",
            StateKind::Wait(_) => "Wait",
            StateKind::Succeed => "Succeed",
            StateKind::Fail { .. } => "Fail",
            StateKind::Parallel { .. } => "Parallel",
            StateKind::Map(_) => "Map",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub kind: StateKind,
    /// `None` means `End: true` (or a terminal state type).
    pub next: Option<String>,
    pub input_path: IoPath,
    pub output_path: IoPath,
    pub result_path: ResultPathSpec,
    pub parameters: Option<Value>,
    pub result_selector: Option<Value>,
    pub assign: Option<Value>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

/// A parsed state machine (or a Parallel branch / Map item processor).
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub comment: Option<String>,
    pub start_at: String,
    pub states: Vec<State>,
    pub timeout_seconds: Option<u64>,
    index: HashMap<String, usize>,
}

impl Definition {
    /// Parses and validates a definition given as JSON text.
    pub fn parse(text: &str) -> Result<Definition, Vec<ValidationError>> {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            vec![ValidationError {
                code: "INVALID_JSON_DESCRIPTION".into(),
                state: None,
                field: String::new(),
                message: format!("the definition is not valid JSON: {e}"),
                location: "/".into(),
            }]
        })?;
        Definition::from_value(&v)
    }

    /// Parses and validates a definition given as a JSON value.
    pub fn from_value(v: &Value) -> Result<Definition, Vec<ValidationError>> {
        let mut errs = Vec::new();
        let def = parse_machine(v, "", &mut errs, 0);
        if let Some(d) = &def {
            // Names are unique across the whole machine, branches and iterators included.
            let mut seen = std::collections::HashSet::new();
            let mut dups = Vec::new();
            collect_names(d, &mut seen, &mut dups);
            for n in dups {
                errs.push(ValidationError {
                    code: "DUPLICATE_STATE_NAME".into(),
                    state: Some(n.clone()),
                    field: String::new(),
                    message: format!("The state name '{n}' appears more than once"),
                    location: format!("/States/{n}"),
                });
            }
        }
        match def {
            Some(d) if errs.is_empty() => Ok(d),
            _ => {
                if errs.is_empty() {
                    errs.push(verr(None, "", "", "invalid definition"));
                }
                Err(errs)
            }
        }
    }

    pub fn state(&self, name: &str) -> Option<&State> {
        self.index.get(name).and_then(|&i| self.states.get(i))
    }

    pub fn start(&self) -> Option<&State> {
        self.state(&self.start_at)
    }
}

fn collect_names(
    d: &Definition,
    seen: &mut std::collections::HashSet<String>,
    dups: &mut Vec<String>,
) {
    for st in &d.states {
        if !seen.insert(st.name.clone()) && !dups.contains(&st.name) {
            dups.push(st.name.clone());
        }
        match &st.kind {
            StateKind::Parallel { branches } => {
                branches.iter().for_each(|b| collect_names(b, seen, dups))
            }
            StateKind::Map(m) => collect_names(&m.processor, seen, dups),
            _ => {}
        }
    }
}

fn verr(state: Option<&str>, loc: &str, field: &str, msg: &str) -> ValidationError {
    ValidationError {
        code: "SCHEMA_VALIDATION_FAILED".into(),
        state: state.map(str::to_string),
        field: field.to_string(),
        message: msg.to_string(),
        location: if field.is_empty() {
            loc.to_string()
        } else {
            format!("{loc}/{field}")
        },
    }
}

const MAX_NESTING: usize = 40;

fn parse_machine(
    v: &Value,
    loc: &str,
    errs: &mut Vec<ValidationError>,
    depth: usize,
) -> Option<Definition> {
    if depth > MAX_NESTING {
        errs.push(verr(None, loc, "", "state machine nested too deeply"));
        return None;
    }
    let Some(o) = v.as_object() else {
        errs.push(verr(None, loc, "", "a state machine must be a JSON object"));
        return None;
    };
    if let Some(ql) = o.get("QueryLanguage")
        && ql.as_str() != Some("JSONPath")
    {
        {
            errs.push(verr(
                None,
                loc,
                "QueryLanguage",
                "only the JSONPath query language is supported by this engine (JSONata is not)",
            ));
        }
    }
    let start_at = match o.get("StartAt").and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => {
            errs.push(verr(
                None,
                loc,
                "StartAt",
                "the field 'StartAt' is required and must be a string",
            ));
            String::new()
        }
    };
    let timeout_seconds = match o.get("TimeoutSeconds") {
        None => None,
        Some(t) => match t.as_u64() {
            Some(n) => Some(n),
            None => {
                errs.push(verr(
                    None,
                    loc,
                    "TimeoutSeconds",
                    "must be a non-negative integer",
                ));
                None
            }
        },
    };
    let Some(states_obj) = o.get("States").and_then(Value::as_object) else {
        errs.push(verr(
            None,
            loc,
            "States",
            "the field 'States' is required and must be an object",
        ));
        return None;
    };
    if states_obj.is_empty() {
        errs.push(verr(
            None,
            loc,
            "States",
            "'States' must contain at least one state",
        ));
    }
    let mut states = Vec::with_capacity(states_obj.len());
    let mut index = HashMap::new();
    for (name, sv) in states_obj {
        let sloc = format!("{loc}/States/{name}");
        if name.is_empty() || name.chars().count() > 80 {
            errs.push(verr(
                Some(name),
                &sloc,
                "",
                "state names must be 1 to 80 characters long",
            ));
        }
        if let Some(st) = parse_state(name, sv, &sloc, errs, depth) {
            index.insert(name.clone(), states.len());
            states.push(st);
        }
    }
    if !start_at.is_empty() && !states_obj.contains_key(&start_at) {
        errs.push(ValidationError {
            code: "MISSING_TRANSITION_TARGET".into(),
            state: None,
            field: "StartAt".into(),
            message: format!("Missing 'Next' target: {start_at}"),
            location: format!("{loc}/StartAt"),
        });
    }
    // Transition targets must exist in the same scope.
    for st in &states {
        let sloc = format!("{loc}/States/{}", st.name);
        let mut targets: Vec<(&str, &str)> = Vec::new();
        if let Some(n) = &st.next {
            targets.push(("Next", n));
        }
        for c in &st.catch {
            targets.push(("Catch", &c.next));
        }
        if let StateKind::Choice { choices, default } = &st.kind {
            for r in choices {
                targets.push(("Choices", &r.next));
            }
            if let Some(d) = default {
                targets.push(("Default", d));
            }
        }
        for (field, t) in targets {
            if !states_obj.contains_key(t) {
                errs.push(ValidationError {
                    code: "MISSING_TRANSITION_TARGET".into(),
                    state: Some(st.name.clone()),
                    field: field.into(),
                    message: format!("Missing 'Next' target: {t}"),
                    location: format!("{sloc}/{field}"),
                });
            }
        }
    }
    // A machine (or branch) must be able to end.
    let terminal = states
        .iter()
        .any(|st| st.next.is_none() && !matches!(st.kind, StateKind::Choice { .. }));
    if !states.is_empty() && !terminal {
        errs.push(ValidationError {
            code: "MISSING_END_STATE".into(),
            state: None,
            field: "States".into(),
            message: "The workflow does not have a terminal state".into(),
            location: format!("{loc}/States"),
        });
    }
    Some(Definition {
        comment: o.get("Comment").and_then(Value::as_str).map(str::to_string),
        start_at,
        states,
        timeout_seconds,
        index,
    })
}

struct Ctx<'a> {
    name: &'a str,
    loc: &'a str,
    o: &'a Map<String, Value>,
    errs: &'a mut Vec<ValidationError>,
}

impl Ctx<'_> {
    fn err(&mut self, field: &str, msg: impl AsRef<str>) {
        self.errs
            .push(verr(Some(self.name), self.loc, field, msg.as_ref()));
    }

    fn string(&mut self, field: &str) -> Option<String> {
        match self.o.get(field) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err(field, format!("the field '{field}' must be a string"));
                None
            }
        }
    }

    fn io_path(&mut self, field: &str) -> IoPath {
        match self.o.get(field) {
            None => IoPath::Default,
            Some(Value::Null) => IoPath::Null,
            Some(Value::String(s)) => match Ref::parse(s) {
                Ok(r) => IoPath::Ref(r),
                Err(e) => {
                    self.err(
                        field,
                        format!("the value '{s}' is not a valid JSONPath: {e}"),
                    );
                    IoPath::Default
                }
            },
            Some(_) => {
                self.err(
                    field,
                    format!("the field '{field}' must be a string or null"),
                );
                IoPath::Default
            }
        }
    }

    fn result_path(&mut self, field: &str) -> ResultPathSpec {
        match self.o.get(field) {
            None => ResultPathSpec::Default,
            Some(Value::Null) => ResultPathSpec::Null,
            Some(Value::String(s)) => match JsonPath::parse(s) {
                Ok(p) if p.is_definite() && p.root() == crate::path::Root::Input => {
                    ResultPathSpec::Path(p)
                }
                Ok(_) => {
                    self.err(
                        field,
                        format!("the value '{s}' is not a valid reference path"),
                    );
                    ResultPathSpec::Default
                }
                Err(e) => {
                    self.err(
                        field,
                        format!(
                            "the value '{s}' is not a valid reference path: {}",
                            e.reason
                        ),
                    );
                    ResultPathSpec::Default
                }
            },
            Some(_) => {
                self.err(
                    field,
                    format!("the field '{field}' must be a string or null"),
                );
                ResultPathSpec::Default
            }
        }
    }

    fn template(&mut self, field: &str) -> Option<Value> {
        let v = self.o.get(field)?;
        let mut problems = Vec::new();
        check_template(v, &mut problems, 0);
        for p in problems {
            self.err(field, p);
        }
        Some(v.clone())
    }

    fn dyn_u64(&mut self, field: &str) -> Option<Dyn<u64>> {
        let pfield = format!("{field}Path");
        match (self.o.get(field), self.o.get(&pfield)) {
            (Some(_), Some(_)) => {
                self.err(
                    field,
                    format!("'{field}' and '{pfield}' are mutually exclusive"),
                );
                None
            }
            (Some(v), None) => match v.as_u64() {
                Some(n) => Some(Dyn::Static(n)),
                None => {
                    self.err(
                        field,
                        format!("the field '{field}' must be a non-negative integer"),
                    );
                    None
                }
            },
            (None, Some(p)) => self.dyn_path(&pfield, p),
            (None, None) => None,
        }
    }

    fn dyn_path<T>(&mut self, field: &str, p: &Value) -> Option<Dyn<T>> {
        match p.as_str().map(Ref::parse) {
            Some(Ok(r)) => Some(Dyn::Path(r)),
            _ => {
                self.err(
                    field,
                    format!("the field '{field}' must be a valid JSONPath"),
                );
                None
            }
        }
    }
}

/// Checks `.$` entries of a template: value must be a string holding a path or call.
fn check_template(v: &Value, problems: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        problems.push("template nested too deeply".into());
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                if k.ends_with(".$") {
                    match val.as_str() {
                        Some(s) if intrinsics::looks_like_call(s) => {
                            if let Err(e) = intrinsics::parse(s) {
                                problems.push(format!("the value for the field '{k}' is not a valid intrinsic function: {e}"));
                            }
                        }
                        Some(s) => {
                            if let Err(e) = Ref::parse(s) {
                                problems.push(format!("the value for the field '{k}' must be a valid JSONPath or intrinsic function: {e}"));
                            }
                        }
                        None => problems.push(format!("the value for the field '{k}' must be a STRING that contains a JSONPath")),
                    }
                } else {
                    check_template(val, problems, depth + 1);
                }
            }
        }
        Value::Array(a) => a
            .iter()
            .for_each(|x| check_template(x, problems, depth + 1)),
        _ => {}
    }
}

const COMMON: &[&str] = &["Type", "Comment", "QueryLanguage"];

fn allowed_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default", "Assign"],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "Timestamp",
            "SecondsPath",
            "TimestampPath",
            "Assign",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Branches",
            "Assign",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ItemSelector",
            "ResultSelector",
            "Retry",
            "Catch",
            "Iterator",
            "ItemProcessor",
            "ItemsPath",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "Label",
            "ItemReader",
            "ResultWriter",
            "ItemBatcher",
            "Assign",
        ],
        _ => &[],
    }
}

fn parse_state(
    name: &str,
    v: &Value,
    loc: &str,
    errs: &mut Vec<ValidationError>,
    depth: usize,
) -> Option<State> {
    let Some(o) = v.as_object() else {
        errs.push(verr(Some(name), loc, "", "a state must be a JSON object"));
        return None;
    };
    let mut c = Ctx { name, loc, o, errs };
    let Some(ty) = c.string("Type") else {
        c.err("Type", "the field 'Type' is required");
        return None;
    };
    let allowed = allowed_fields(&ty);
    if allowed.is_empty() {
        c.err("Type", format!("unknown state type '{ty}'"));
        return None;
    }
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) && !COMMON.contains(&k.as_str()) {
            c.err(
                k,
                format!("the field '{k}' is not supported by {ty} states"),
            );
        }
    }
    if let Some(ql) = o.get("QueryLanguage")
        && ql.as_str() != Some("JSONPath")
    {
        {
            c.err(
                "QueryLanguage",
                "only the JSONPath query language is supported by this engine (JSONata is not)",
            );
        }
    }
    // Transition
    let terminal = matches!(ty.as_str(), "Choice" | "Succeed" | "Fail");
    let next = c.string("Next");
    let end = match o.get("End") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            c.err("End", "the field 'End' must be a boolean");
            false
        }
    };
    if !terminal {
        match (&next, end) {
            (Some(_), true) => c.err("End", "a state cannot have both 'Next' and 'End: true'"),
            (None, false) => c.err(
                "Next",
                "a non-terminal state must have 'Next' or 'End: true'",
            ),
            _ => {}
        }
    }
    let input_path = c.io_path("InputPath");
    let output_path = c.io_path("OutputPath");
    let result_path = c.result_path("ResultPath");
    let parameters = c.template("Parameters");
    let result_selector = c.template("ResultSelector");
    let assign = c.template("Assign");
    if let Some(a) = &assign
        && !a.is_object()
    {
        {
            c.err("Assign", "the field 'Assign' must be an object");
        }
    }
    let retry = parse_retry(&mut c);
    let catch = parse_catch(&mut c);
    let kind = match ty.as_str() {
        "Pass" => StateKind::Pass {
            result: o.get("Result").cloned(),
        },
        "Task" => {
            let resource = match c.string("Resource") {
                Some(r) if !r.starts_with("arn:") => {
                    c.errs.push(ValidationError {
                        code: "INVALID_RESOURCE".into(),
                        state: Some(name.to_string()),
                        field: "Resource".into(),
                        message: format!("The resource '{r}' is not a valid ARN"),
                        location: format!("{loc}/Resource"),
                    });
                    r
                }
                Some(r) => r,
                None => {
                    c.err("Resource", "the field 'Resource' is required");
                    String::new()
                }
            };
            let timeout = c.dyn_u64("TimeoutSeconds");
            let heartbeat = c.dyn_u64("HeartbeatSeconds");
            if let (Some(Dyn::Static(t)), Some(Dyn::Static(h))) = (&timeout, &heartbeat)
                && h >= t
            {
                {
                    c.err(
                        "HeartbeatSeconds",
                        "'HeartbeatSeconds' must be smaller than 'TimeoutSeconds'",
                    );
                }
            }
            if let Some(Dyn::Static(0)) = timeout {
                c.err("TimeoutSeconds", "'TimeoutSeconds' must be positive");
            }
            StateKind::Task {
                resource,
                timeout,
                heartbeat,
                credentials: o.get("Credentials").cloned(),
            }
        }
        "Choice" => {
            let mut choices = Vec::new();
            match o.get("Choices").and_then(Value::as_array) {
                Some(arr) if !arr.is_empty() => {
                    for r in arr {
                        let next = r.get("Next").and_then(Value::as_str);
                        match (choice::parse_cond(r, 0), next) {
                            (Ok(cond), Some(n)) => {
                                let assign = r.get("Assign").cloned();
                                choices.push(Rule {
                                    cond,
                                    next: n.to_string(),
                                    assign,
                                })
                            }
                            (Err((f, m)), _) => c.err("Choices", format!("{f}: {m}")),
                            (_, None) => {
                                c.err("Choices", "every top-level choice rule needs a 'Next'")
                            }
                        }
                    }
                }
                _ => c.err("Choices", "the field 'Choices' must be a non-empty array"),
            }
            let default = c.string("Default");
            StateKind::Choice { choices, default }
        }
        "Wait" => {
            let specs: Vec<&str> = ["Seconds", "Timestamp", "SecondsPath", "TimestampPath"]
                .into_iter()
                .filter(|f| o.contains_key(*f))
                .collect();
            if specs.len() != 1 {
                c.err("Seconds", "a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath");
                return None;
            }
            let f = specs[0];
            let val = &o[f];
            let spec = match f {
                "Seconds" => match val.as_u64() {
                    Some(n) if n <= 99_999_999 => WaitSpec::Seconds(n),
                    _ => {
                        c.err(f, "'Seconds' must be an integer between 0 and 99999999");
                        return None;
                    }
                },
                "Timestamp" => match val.as_str() {
                    Some(s) if crate::timestamp::parse(s).is_some() => {
                        WaitSpec::Timestamp(s.to_string())
                    }
                    _ => {
                        c.err(
                            f,
                            "'Timestamp' must be an ISO-8601 extended offset date-time string",
                        );
                        return None;
                    }
                },
                _ => match val.as_str().map(Ref::parse) {
                    Some(Ok(r)) if f == "SecondsPath" => WaitSpec::SecondsPath(r),
                    Some(Ok(r)) => WaitSpec::TimestampPath(r),
                    _ => {
                        c.err(f, format!("'{f}' must be a valid JSONPath"));
                        return None;
                    }
                },
            };
            StateKind::Wait(spec)
        }
        "Succeed" => StateKind::Succeed,
        "Fail" => {
            let error = err_src(&mut c, "Error");
            let cause = err_src(&mut c, "Cause");
            StateKind::Fail { error, cause }
        }
        "Parallel" => {
            let mut branches = Vec::new();
            match o.get("Branches").and_then(Value::as_array) {
                Some(arr) if !arr.is_empty() => {
                    for (i, b) in arr.iter().enumerate() {
                        let bl = format!("{loc}/Branches[{i}]");
                        if let Some(d) = parse_machine(b, &bl, c.errs, depth + 1) {
                            branches.push(d);
                        }
                    }
                }
                _ => c.err("Branches", "the field 'Branches' must be a non-empty array"),
            }
            StateKind::Parallel { branches }
        }
        "Map" => {
            let proc_field = if o.contains_key("ItemProcessor") {
                "ItemProcessor"
            } else {
                "Iterator"
            };
            let Some(pv) = o.get(proc_field) else {
                c.err(
                    "ItemProcessor",
                    "a Map state needs an 'ItemProcessor' (or 'Iterator')",
                );
                return None;
            };
            let mode = match pv
                .get("ProcessorConfig")
                .and_then(|p| p.get("Mode"))
                .and_then(Value::as_str)
            {
                Some("DISTRIBUTED") => MapMode::Distributed,
                Some("INLINE") | None => MapMode::Inline,
                Some(other) => {
                    c.err(
                        proc_field,
                        format!("unknown ProcessorConfig.Mode '{other}'"),
                    );
                    MapMode::Inline
                }
            };
            if o.contains_key("ResultWriter") {
                c.err(
                    "ResultWriter",
                    "ResultWriter needs an AWS service (S3) and is not supported by this engine",
                );
            }
            if o.contains_key("ItemReader") {
                c.err(
                    "ItemReader",
                    "ItemReader needs an AWS service (S3) and is not supported by this engine",
                );
            }
            let mut sub = pv.clone();
            if let Some(m) = sub.as_object_mut() {
                m.remove("ProcessorConfig");
            }
            let processor = parse_machine(&sub, &format!("{loc}/{proc_field}"), c.errs, depth + 1)?;
            let items_path = c.io_path("ItemsPath");
            let item_selector = if o.contains_key("ItemSelector") {
                c.template("ItemSelector")
            } else {
                None
            };
            let max_concurrency = c.dyn_u64("MaxConcurrency").unwrap_or(Dyn::Static(0));
            let tolerated_count = match (
                o.get("ToleratedFailureCount"),
                o.get("ToleratedFailureCountPath"),
            ) {
                (Some(v), None) => match v.as_i64() {
                    Some(n) if n >= 0 => Some(Dyn::Static(n)),
                    _ => {
                        c.err("ToleratedFailureCount", "must be a non-negative integer");
                        None
                    }
                },
                (None, Some(p)) => c.dyn_path("ToleratedFailureCountPath", p),
                (Some(_), Some(_)) => {
                    c.err("ToleratedFailureCount", "'ToleratedFailureCount' and 'ToleratedFailureCountPath' are mutually exclusive");
                    None
                }
                (None, None) => None,
            };
            let tolerated_percentage = match (
                o.get("ToleratedFailurePercentage"),
                o.get("ToleratedFailurePercentagePath"),
            ) {
                (Some(v), None) => match v.as_f64() {
                    Some(n) if (0.0..=100.0).contains(&n) => Some(Dyn::Static(n)),
                    _ => {
                        c.err(
                            "ToleratedFailurePercentage",
                            "must be a number between 0 and 100",
                        );
                        None
                    }
                },
                (None, Some(p)) => c.dyn_path("ToleratedFailurePercentagePath", p),
                (Some(_), Some(_)) => {
                    c.err("ToleratedFailurePercentage", "'ToleratedFailurePercentage' and 'ToleratedFailurePercentagePath' are mutually exclusive");
                    None
                }
                (None, None) => None,
            };
            StateKind::Map(Box::new(MapSpec {
                items_path,
                item_selector,
                processor,
                mode,
                max_concurrency,
                tolerated_count,
                tolerated_percentage,
                label: c.string("Label"),
                item_batcher: parse_batcher(&mut c),
            }))
        }
        _ => return None,
    };
    Some(State {
        name: name.to_string(),
        kind,
        next: if terminal { None } else { next },
        input_path,
        output_path,
        result_path,
        parameters,
        result_selector,
        assign,
        retry,
        catch,
    })
}

fn parse_batcher(c: &mut Ctx) -> Option<ItemBatcher> {
    let b = c.o.get("ItemBatcher")?;
    let Some(bo) = b.as_object() else {
        c.err("ItemBatcher", "the field 'ItemBatcher' must be an object");
        return None;
    };
    let mut num = |field: &str| -> Option<Dyn<u64>> {
        let pfield = format!("{field}Path");
        match (bo.get(field), bo.get(&pfield)) {
            (Some(v), None) => match v.as_u64() {
                Some(n) if n > 0 => Some(Dyn::Static(n)),
                _ => {
                    c.err(
                        "ItemBatcher",
                        format!("'{field}' must be a positive integer"),
                    );
                    None
                }
            },
            (None, Some(p)) => c.dyn_path("ItemBatcher", p),
            (Some(_), Some(_)) => {
                c.err(
                    "ItemBatcher",
                    format!("'{field}' and '{pfield}' are mutually exclusive"),
                );
                None
            }
            (None, None) => None,
        }
    };
    let max_items = num("MaxItemsPerBatch");
    let max_bytes = num("MaxInputBytesPerBatch");
    if max_items.is_none() && max_bytes.is_none() {
        c.err(
            "ItemBatcher",
            "'ItemBatcher' needs MaxItemsPerBatch(Path) or MaxInputBytesPerBatch(Path)",
        );
    }
    Some(ItemBatcher {
        max_items,
        max_bytes,
        batch_input: bo.get("BatchInput").cloned(),
    })
}

fn err_src(c: &mut Ctx, field: &str) -> Option<ErrSrc> {
    let pfield = format!("{field}Path");
    match (c.o.get(field), c.o.get(&pfield)) {
        (Some(_), Some(_)) => {
            c.err(
                field,
                format!("'{field}' and '{pfield}' are mutually exclusive"),
            );
            None
        }
        (Some(v), None) => match v.as_str() {
            Some(s) => Some(ErrSrc::Literal(s.to_string())),
            None => {
                c.err(field, format!("the field '{field}' must be a string"));
                None
            }
        },
        (None, Some(p)) => match p.as_str() {
            Some(s) if intrinsics::looks_like_call(s) => match intrinsics::parse(s) {
                Ok(call) => Some(ErrSrc::Call(call)),
                Err(e) => {
                    c.err(&pfield, e);
                    None
                }
            },
            Some(s) => match Ref::parse(s) {
                Ok(r) => Some(ErrSrc::Path(r)),
                Err(e) => {
                    c.err(&pfield, format!("invalid path '{s}': {e}"));
                    None
                }
            },
            None => {
                c.err(&pfield, format!("the field '{pfield}' must be a string"));
                None
            }
        },
        (None, None) => None,
    }
}

fn error_equals(c: &mut Ctx, field: &str, v: &Value) -> Vec<String> {
    match v.get("ErrorEquals").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => {
            let names: Vec<String> = a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            if names.len() != a.len() {
                c.err(field, "'ErrorEquals' must hold strings");
            }
            if names.iter().any(|n| n == "States.ALL") && names.len() > 1 {
                c.err(field, "'States.ALL' must appear alone in 'ErrorEquals'");
            }
            names
        }
        _ => {
            c.err(field, "'ErrorEquals' must be a non-empty array of strings");
            Vec::new()
        }
    }
}

fn parse_retry(c: &mut Ctx) -> Vec<Retrier> {
    let Some(v) = c.o.get("Retry") else {
        return Vec::new();
    };
    let Some(arr) = v.as_array() else {
        c.err("Retry", "the field 'Retry' must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in arr {
        let error_equals = error_equals(c, "Retry", r);
        let num = |k: &str| r.get(k).and_then(Value::as_f64);
        let interval_seconds = num("IntervalSeconds").unwrap_or(1.0);
        let max_attempts = r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
        let backoff_rate = num("BackoffRate").unwrap_or(2.0);
        if interval_seconds < 1.0 || backoff_rate < 1.0 {
            c.err(
                "Retry",
                "'IntervalSeconds' must be at least 1 and 'BackoffRate' at least 1.0",
            );
        }
        let jitter = match r.get("JitterStrategy").and_then(Value::as_str) {
            Some("FULL") => Jitter::Full,
            Some("NONE") | None => Jitter::None,
            Some(o) => {
                c.err("Retry", format!("unknown JitterStrategy '{o}'"));
                Jitter::None
            }
        };
        out.push(Retrier {
            error_equals,
            interval_seconds,
            max_attempts: u32::try_from(max_attempts.min(99_999_999)).unwrap_or(u32::MAX),
            backoff_rate,
            max_delay_seconds: num("MaxDelaySeconds"),
            jitter,
        });
    }
    out
}

fn parse_catch(c: &mut Ctx) -> Vec<Catcher> {
    let Some(v) = c.o.get("Catch") else {
        return Vec::new();
    };
    let Some(arr) = v.as_array() else {
        c.err("Catch", "the field 'Catch' must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in arr {
        let error_equals = error_equals(c, "Catch", r);
        let next = match r.get("Next").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => {
                c.err("Catch", "every catcher needs a 'Next'");
                continue;
            }
        };
        let result_path = match r.get("ResultPath") {
            None => ResultPathSpec::Default,
            Some(Value::Null) => ResultPathSpec::Null,
            Some(Value::String(s)) => match JsonPath::parse(s) {
                Ok(p) if p.is_definite() => ResultPathSpec::Path(p),
                _ => {
                    c.err("Catch", format!("invalid ResultPath '{s}'"));
                    ResultPathSpec::Default
                }
            },
            Some(_) => {
                c.err("Catch", "'ResultPath' must be a string or null");
                ResultPathSpec::Default
            }
        };
        out.push(Catcher {
            error_equals,
            result_path,
            next,
            assign: r.get("Assign").cloned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports() {
        let ok = Definition::parse(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#);
        assert!(ok.is_ok());
        let bad = Definition::parse(
            r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"C":{"Type":"Task","End":true}}}"#,
        )
        .unwrap_err();
        assert!(
            bad.iter()
                .any(|e| e.state.as_deref() == Some("A") && e.field == "Next")
        );
        assert!(
            bad.iter()
                .any(|e| e.state.as_deref() == Some("C") && e.field == "Resource")
        );
        let codes = |t: &str| -> Vec<String> {
            Definition::parse(t)
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.code)
                .collect()
        };
        assert!(
            codes(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"A"}}}"#)
                .contains(&"MISSING_END_STATE".to_string())
        );
        assert!(
            codes(r#"{"StartAt":"A","States":{"A":{"Type":"Task","Resource":"nope","End":true}}}"#)
                .contains(&"INVALID_RESOURCE".to_string())
        );
        assert!(
            codes(r#"{"StartAt":"A","QueryLanguage":"JSONata","States":{"A":{"Type":"Succeed"}}}"#)
                .contains(&"SCHEMA_VALIDATION_FAILED".to_string())
        );
        assert!(codes(r#"{"StartAt":"P","States":{"P":{"Type":"Parallel","End":true,"Branches":[{"StartAt":"P","States":{"P":{"Type":"Succeed"}}}]}}}"#).contains(&"DUPLICATE_STATE_NAME".to_string()));
        assert!(Definition::parse("[").is_err());
        assert!(Definition::parse("{}").is_err());
    }
}
