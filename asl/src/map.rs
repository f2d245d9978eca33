//! Map states: items, ItemSelector, ItemBatcher, concurrency, tolerated failures,
//! inline iterations and distributed map runs.

use crate::definition::{Dyn, IoPath, MapMode, State};
use crate::error::Failure;
use crate::executor::{Exec, Res, Thread, Visit};
use crate::history::{EventDetails, error_details};
use crate::path::to_json_string;
use crate::payload::Vars;
use serde_json::{Map, Value, json};

impl Exec {
    pub(crate) fn batch(
        &self,
        b: &crate::definition::ItemBatcher,
        items: Vec<Value>,
        eff: &Value,
        vars: &Vars,
        v: &Visit<'_>,
    ) -> Res<Vec<Value>> {
        let max_items = match &b.max_items {
            Some(d) => self
                .dyn_num(d, "MaxItemsPerBatchPath", eff, vars, v)?
                .max(1),
            None => u64::MAX,
        };
        let max_bytes = match &b.max_bytes {
            Some(d) => self
                .dyn_num(d, "MaxInputBytesPerBatchPath", eff, vars, v)?
                .max(1),
            None => u64::MAX,
        };
        let batch_input = match &b.batch_input {
            Some(t) => Some(self.template(t, eff, vars, v)?),
            None => None,
        };
        let make = |chunk: Vec<Value>| {
            let mut o = Map::new();
            o.insert("Items".into(), Value::Array(chunk));
            if let Some(bi) = &batch_input {
                o.insert("BatchInput".into(), bi.clone());
            }
            Value::Object(o)
        };
        let mut out = Vec::new();
        let mut chunk = Vec::new();
        let mut bytes = 0u64;
        for item in items {
            let size = to_json_string(&item).len() as u64;
            if !chunk.is_empty() && (chunk.len() as u64 >= max_items || bytes + size > max_bytes) {
                out.push(make(std::mem::take(&mut chunk)));
                bytes = 0;
            }
            bytes += size;
            chunk.push(item);
        }
        if !chunk.is_empty() {
            out.push(make(chunk));
        }
        Ok(out)
    }

    pub(crate) async fn map(
        &self,
        st: &State,
        m: &crate::definition::MapSpec,
        eff: Value,
        vars: &Vars,
        th: &mut Thread,
        v: &Visit<'_>,
    ) -> Res<Value> {
        let items_v = match &m.items_path {
            IoPath::Default => eff.clone(),
            p => self.io_path(p, eff.clone(), vars, v)?,
        };
        let Value::Array(items) = items_v else {
            return Err(Failure::runtime_in_state(
                v.state,
                v.entered_id,
                format!(
                    "Items of the Map state must be a JSON array, but found: {}",
                    to_json_string(&items_v)
                ),
            ));
        };
        let max_c = self.dyn_num(&m.max_concurrency, "MaxConcurrencyPath", &eff, vars, v)?;
        self.emit(
            th,
            "MapStateStarted",
            Some((
                "mapStateStartedEventDetails".into(),
                json!({"length": items.len()}),
            )),
        );
        let tol_count = match &m.tolerated_count {
            None => None,
            Some(Dyn::Static(n)) => Some(*n),
            Some(Dyn::Path(r)) => {
                let val = self.resolve_ref(r, &eff, vars, v).unwrap_or(Value::Null);
                match as_integer(&val) {
                    Some(n) if n < 0 => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            "ToleratedFailureCount cannot be negative.",
                        ));
                    }
                    Some(n) => Some(n),
                    None => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            format!(
                                "The ToleratedFailureCountPath field refers to value \"{}\" which is not a valid integer: {}",
                                shown(&val),
                                r.text()
                            ),
                        ));
                    }
                }
            }
        };
        let tol_pct = match &m.tolerated_percentage {
            None => None,
            Some(Dyn::Static(n)) => Some(*n),
            Some(Dyn::Path(r)) => {
                let val = self.resolve_ref(r, &eff, vars, v).unwrap_or(Value::Null);
                match as_float(&val) {
                    Some(n) if !(0.0..=100.0).contains(&n) => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            "ToleratedFailurePercentage must be between 0 and 100.",
                        ));
                    }
                    Some(n) => Some(n),
                    None => {
                        return Err(Failure::runtime_in_state(
                            v.state,
                            v.entered_id,
                            format!(
                                "The ToleratedFailurePercentagePath field refers to value \"{}\" which is not a valid float: {}",
                                shown(&val),
                                r.text()
                            ),
                        ));
                    }
                }
            }
        };
        let selector = m.item_selector.as_ref().or(st.parameters.as_ref());
        let item_input = |i: usize, item: &Value| -> Res<Value> {
            match selector {
                Some(sel) => {
                    let iv = Visit {
                        state: v.state,
                        entered_ms: v.entered_ms,
                        entered_id: v.entered_id,
                        item: Some((i, item)),
                        token: None,
                        retry_count: None,
                    };
                    self.template(sel, &eff, vars, &iv)
                }
                None => Ok(item.clone()),
            }
        };
        // ItemBatcher: select each item first, then group them; batches are the items.
        let (items, batched) = match &m.item_batcher {
            Some(b) => {
                let mut selected = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    selected.push(item_input(i, item)?);
                }
                (self.batch(b, selected, &eff, vars, v)?, true)
            }
            None => (items, false),
        };
        let item_input = |i: usize, item: &Value| -> Res<Value> {
            if batched {
                Ok(item.clone())
            } else {
                item_input(i, item)
            }
        };
        let distributed = m.mode == MapMode::Distributed;
        if distributed {
            let run_arn = format!(
                "arn:aws:states:{}:{}:mapRun:{}/{}:{}",
                self.inner.config.region,
                self.inner.config.account_id,
                self.sm_name,
                m.label.clone().unwrap_or_else(|| st.name.clone()),
                uuid::Uuid::new_v4()
            );
            self.emit(
                th,
                "MapRunStarted",
                Some((
                    "mapRunStartedEventDetails".into(),
                    json!({"mapRunArn": run_arn}),
                )),
            );
        }
        let n = items.len();
        let mut results: Vec<Value> = Vec::with_capacity(n);
        let mut failures: Vec<Failure> = Vec::new();
        // Without a tolerance the first failure fails the Map; with both, exceeding
        // either one does.
        let tolerated = |fails: usize| -> bool {
            if tol_count.is_none() && tol_pct.is_none() {
                return false;
            }
            let by_count = tol_count.is_none_or(|c| fails as i64 <= c);
            let by_pct = tol_pct.is_none_or(|p| n > 0 && (fails as f64) * 100.0 / (n as f64) <= p);
            by_count && by_pct
        };
        let mut cursor = th.prev;
        let mut last_terminal = th.prev;
        let mut failed: Option<(Failure, u64)> = None;
        if max_c == 1 || distributed {
            for (i, item) in items.iter().enumerate() {
                let input = item_input(i, item)?;
                let mut ith = Thread {
                    prev: cursor,
                    in_parallel: false,
                    silent: distributed,
                };
                let mut it_prev = ith.prev;
                if !distributed {
                    let id = self.emit(
                        &mut ith,
                        "MapIterationStarted",
                        EventDetails::MapIteration {
                            key: "mapIterationStartedEventDetails",
                            index: i,
                            name: st.name.clone(),
                        },
                    );
                    it_prev = id;
                }
                let _ = it_prev;
                let r = self
                    .run_machine(&m.processor, input, vars.clone(), &mut ith)
                    .await;
                cursor = ith.prev;
                match r {
                    Ok(out) => {
                        if !distributed {
                            last_terminal = self
                                .emit_raw(
                                    &mut ith,
                                    "MapIterationSucceeded",
                                    EventDetails::MapIteration {
                                        key: "mapIterationSucceededEventDetails",
                                        index: i,
                                        name: st.name.clone(),
                                    },
                                    false,
                                )
                                .0;
                        }
                        results.push(out);
                    }
                    Err(f) => {
                        if !distributed {
                            self.emit_raw(
                                &mut ith,
                                "MapIterationFailed",
                                EventDetails::MapIteration {
                                    key: "mapIterationFailedEventDetails",
                                    index: i,
                                    name: st.name.clone(),
                                },
                                false,
                            );
                        }
                        failures.push(f.clone());
                        if !tolerated(failures.len()) {
                            failed = Some((f, cursor));
                            break;
                        }
                        results.push(Value::Null);
                    }
                }
            }
        } else {
            // "No limit" still means at most 40 concurrent iterations in an inline Map.
            let limit = if max_c == 0 {
                n.clamp(1, INLINE_MAP_CONCURRENCY)
            } else {
                usize::try_from(max_c).unwrap_or(usize::MAX)
            };
            let start = th.prev;
            let mut inputs = Vec::with_capacity(n);
            for (i, item) in items.iter().enumerate() {
                inputs.push(item_input(i, item)?);
            }
            let futs = inputs.into_iter().enumerate().map(|(i, input)| {
                let ivars = vars.clone();
                async move {
                    let mut ith = Thread {
                        prev: start,
                        in_parallel: false,
                        silent: false,
                    };
                    self.emit(
                        &mut ith,
                        "MapIterationStarted",
                        EventDetails::MapIteration {
                            key: "mapIterationStartedEventDetails",
                            index: i,
                            name: st.name.clone(),
                        },
                    );
                    let r = self.run_machine(&m.processor, input, ivars, &mut ith).await;
                    let ty = if r.is_ok() {
                        "MapIterationSucceeded"
                    } else {
                        "MapIterationFailed"
                    };
                    let key = if r.is_ok() {
                        "mapIterationSucceededEventDetails"
                    } else {
                        "mapIterationFailedEventDetails"
                    };
                    let inner_last = ith.prev;
                    let (tid, _) = self.emit_raw(
                        &mut ith,
                        ty,
                        EventDetails::MapIteration {
                            key,
                            index: i,
                            name: st.name.clone(),
                        },
                        false,
                    );
                    (r, inner_last, tid)
                }
            });
            use futures_util::StreamExt;
            let mut stream = futures_util::stream::iter(futs).buffered(limit);
            while let Some((r, inner_last, tid)) = stream.next().await {
                match r {
                    Ok(out) => {
                        last_terminal = tid;
                        results.push(out);
                    }
                    Err(f) => {
                        failures.push(f.clone());
                        if !tolerated(failures.len()) {
                            failed = Some((f, inner_last));
                            break;
                        }
                        results.push(Value::Null);
                    }
                }
            }
        }
        if let Some((f, last)) = failed {
            let f = if failures.len() > 1 || tol_count.is_some() || tol_pct.is_some() {
                Failure::new(
                    "States.ExceedToleratedFailureThreshold",
                    "The specified tolerated failure threshold was exceeded",
                )
            } else {
                f
            };
            if distributed {
                self.emit(
                    th,
                    "MapRunFailed",
                    Some(error_details(
                        "mapRunFailedEventDetails",
                        Some(&f.error),
                        f.cause.as_deref(),
                        &[],
                    )),
                );
            } else {
                th.prev = last;
            }
            // MapStateFailed comes only once retries are exhausted.
            return Err(f);
        }
        if distributed {
            self.emit(th, "MapRunSucceeded", None);
        } else {
            th.prev = last_terminal;
        }
        self.emit_raw(th, "MapStateSucceeded", None, false);
        Ok(Value::Array(results))
    }
}

/// AWS runs up to 40 inline Map iterations at once when MaxConcurrency is 0.
const INLINE_MAP_CONCURRENCY: usize = 40;

/// An integer, or a string holding one (AWS accepts both in `…Path` fields).
pub(crate) fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        o => to_json_string(o),
    }
}
