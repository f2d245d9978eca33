//! A state machine definition drawn as SVG, the way the Step Functions console draws it:
//! Start on top, states in layers below (longest path from the start), Parallel branches
//! side by side inside a dashed box, a Map's iterator inside its box, Choice and Catch
//! edges to their targets, End at the bottom. Pure functions: definition → [`Graph`]
//! (coordinates) → SVG markup.

use maud::{Markup, html};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Why a definition could not be drawn.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("the definition has no {0}")]
    Missing(String),
    #[error("StartAt names {0:?}, which is not a state")]
    UnknownStart(String),
}

/// What a box stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Start,
    End,
    /// A state; the string is its `Type`.
    State(String),
    /// A Parallel or Map state, drawn around its branches or iterator.
    Container(String),
}

/// A laid out box (pixels, top-left origin).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The state name (empty for Start and End).
    pub name: String,
    pub kind: Kind,
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

/// How one state leads to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeKind {
    Next,
    Choice,
    Catch,
}

/// A laid out edge: two points (a curve) or more (a routed polyline).
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub kind: EdgeKind,
    pub points: Vec<(i32, i32)>,
}

/// The whole drawing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// Containers come before what they contain (drawing order).
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: i32,
    pub height: i32,
}

/// Where a state sits in the definition: its type and the Parallel/Map it is inside.
#[derive(Debug, Clone, PartialEq)]
pub struct StateInfo {
    pub state_type: String,
    pub parent: Option<String>,
}

const NODE_H: i32 = 36;
const MIN_W: i32 = 140;
const MAX_W: i32 = 300;
const CHAR_W: i32 = 7;
const V_GAP: i32 = 44;
const H_GAP: i32 = 28;
const PAD: i32 = 16;
const HEADER: i32 = 30;
const MARKER_W: i32 = 72;
const MARKER_H: i32 = 28;
const MARGIN: i32 = 20;

/// Every state (at any depth) with its type and enclosing Parallel/Map.
pub fn states(definition: &Value) -> HashMap<String, StateInfo> {
    let mut out = HashMap::new();
    collect_states(definition, None, &mut out);
    out
}

fn collect_states(flow: &Value, parent: Option<&str>, out: &mut HashMap<String, StateInfo>) {
    let Some(states) = flow.get("States").and_then(Value::as_object) else {
        return;
    };
    for (name, st) in states {
        let state_type = st
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        out.insert(
            name.clone(),
            StateInfo {
                state_type,
                parent: parent.map(str::to_string),
            },
        );
        for sub in sub_flows(st) {
            collect_states(sub, Some(name), out);
        }
    }
}

/// A Parallel's branches or a Map's iterator (`ItemProcessor`, or the older `Iterator`).
fn sub_flows(state: &Value) -> Vec<&Value> {
    if let Some(b) = state.get("Branches").and_then(Value::as_array) {
        return b.iter().collect();
    }
    state
        .get("ItemProcessor")
        .or_else(|| state.get("Iterator"))
        .into_iter()
        .collect()
}

/// Lays out a definition: Start, the top-level flow, End.
pub fn layout(definition: &Value) -> Result<Graph, GraphError> {
    let block = flow_block(definition)?;
    let width = block.w.max(MARKER_W) + 2 * MARGIN;
    let cx = width / 2;
    let mut g = Graph {
        width,
        ..Graph::default()
    };
    let start_y = MARGIN;
    g.nodes.push(Node {
        name: String::new(),
        kind: Kind::Start,
        x: cx - MARKER_W / 2,
        y: start_y,
        w: MARKER_W,
        h: MARKER_H,
    });
    let flow_x = cx - block.w / 2;
    let flow_y = start_y + MARKER_H + V_GAP;
    let end_y = flow_y + block.h + V_GAP;
    g.edges.push(Edge {
        kind: EdgeKind::Next,
        points: vec![
            (cx, start_y + MARKER_H),
            (flow_x + block.entry.0, flow_y + block.entry.1),
        ],
    });
    for &(ex, ey) in &block.exits {
        g.edges.push(Edge {
            kind: EdgeKind::Next,
            points: vec![(flow_x + ex, flow_y + ey), (cx, end_y)],
        });
    }
    block.place_into(&mut g, flow_x, flow_y);
    g.nodes.push(Node {
        name: String::new(),
        kind: Kind::End,
        x: cx - MARKER_W / 2,
        y: end_y,
        w: MARKER_W,
        h: MARKER_H,
    });
    g.height = end_y + MARKER_H + MARGIN;
    Ok(g)
}

/// A laid out flow (StartAt + States), relative to its own top-left corner.
struct Block {
    w: i32,
    h: i32,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    /// Top centre of the StartAt state.
    entry: (i32, i32),
    /// Bottom centres of the states that end the flow.
    exits: Vec<(i32, i32)>,
}

impl Block {
    fn place_into(self, g: &mut Graph, dx: i32, dy: i32) {
        for mut n in self.nodes {
            n.x += dx;
            n.y += dy;
            g.nodes.push(n);
        }
        for mut e in self.edges {
            for p in &mut e.points {
                p.0 += dx;
                p.1 += dy;
            }
            g.edges.push(e);
        }
    }
}

/// The states a state leads to, in the order the definition lists them.
fn successors(state: &Value) -> Vec<(String, EdgeKind)> {
    let mut out = Vec::new();
    let name = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    if let Some(n) = name(state.get("Next")) {
        out.push((n, EdgeKind::Next));
    }
    for c in state
        .get("Choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = name(c.get("Next")) {
            out.push((n, EdgeKind::Choice));
        }
    }
    if let Some(n) = name(state.get("Default")) {
        out.push((n, EdgeKind::Choice));
    }
    for c in state
        .get("Catch")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = name(c.get("Next")) {
            out.push((n, EdgeKind::Catch));
        }
    }
    out
}

fn ends_flow(state: &Value) -> bool {
    state.get("End").and_then(Value::as_bool) == Some(true)
        || matches!(
            state.get("Type").and_then(Value::as_str),
            Some("Succeed" | "Fail")
        )
}

fn flow_block(flow: &Value) -> Result<Block, GraphError> {
    let states = flow
        .get("States")
        .and_then(Value::as_object)
        .ok_or_else(|| GraphError::Missing("States".into()))?;
    let start = flow
        .get("StartAt")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::Missing("StartAt".into()))?;
    if !states.contains_key(start) {
        return Err(GraphError::UnknownStart(start.to_string()));
    }
    let order = discovery_order(states, start);
    let rank = ranks(states, start, &order);

    // Each state's box (containers hold their laid out branches).
    let mut boxes: HashMap<&str, (i32, i32, Vec<Block>)> = HashMap::new();
    for name in &order {
        let st = &states[name.as_str()];
        let subs = sub_flows(st);
        if subs.is_empty() {
            let w = (name.chars().count() as i32 * CHAR_W + 32).clamp(MIN_W, MAX_W);
            boxes.insert(name, (w, NODE_H, Vec::new()));
        } else {
            let blocks = subs
                .into_iter()
                .map(flow_block)
                .collect::<Result<Vec<_>, _>>()?;
            let inner_w: i32 =
                blocks.iter().map(|b| b.w).sum::<i32>() + H_GAP * (blocks.len() as i32 - 1).max(0);
            let inner_h = blocks.iter().map(|b| b.h).max().unwrap_or(0);
            let label_w = name.chars().count() as i32 * CHAR_W + 2 * PAD;
            let w = (inner_w + 2 * PAD).max(label_w).max(MIN_W);
            boxes.insert(name, (w, HEADER + inner_h + PAD, blocks));
        }
    }

    // Rows by rank, each centred.
    let max_rank = rank.values().copied().max().unwrap_or(0);
    let mut rows: Vec<Vec<&str>> = vec![Vec::new(); max_rank + 1];
    for name in &order {
        rows[rank[name.as_str()]].push(name);
    }
    let row_w = |row: &Vec<&str>| -> i32 {
        row.iter().map(|n| boxes[n].0).sum::<i32>() + H_GAP * (row.len() as i32 - 1).max(0)
    };
    let width = rows.iter().map(row_w).max().unwrap_or(0);
    let mut pos: HashMap<&str, (i32, i32, i32, i32)> = HashMap::new();
    let mut y = 0;
    for row in &rows {
        let mut x = (width - row_w(row)) / 2;
        let h = row.iter().map(|n| boxes[n].1).max().unwrap_or(0);
        for n in row {
            let (w, bh, _) = &boxes[n];
            pos.insert(n, (x, y, *w, *bh));
            x += w + H_GAP;
        }
        y += h + V_GAP;
    }
    let height = (y - V_GAP).max(0);

    let mut block = Block {
        w: width,
        h: height,
        nodes: Vec::new(),
        edges: Vec::new(),
        entry: (0, 0),
        exits: Vec::new(),
    };
    for name in &order {
        let (x, y, w, h) = pos[name.as_str()];
        let st = &states[name.as_str()];
        let state_type = st.get("Type").and_then(Value::as_str).unwrap_or("");
        let Some((_, _, blocks)) = boxes.remove(name.as_str()) else {
            continue;
        };
        let kind = if blocks.is_empty() {
            Kind::State(state_type.to_string())
        } else {
            Kind::Container(state_type.to_string())
        };
        block.nodes.push(Node {
            name: name.clone(),
            kind,
            x,
            y,
            w,
            h,
        });
        // Branches side by side, centred under the header.
        let inner_w: i32 =
            blocks.iter().map(|b| b.w).sum::<i32>() + H_GAP * (blocks.len() as i32 - 1).max(0);
        let mut bx = x + (w - inner_w) / 2;
        for b in blocks {
            let bw = b.w;
            b.place_into_block(&mut block, bx, y + HEADER);
            bx += bw + H_GAP;
        }
        if ends_flow(st) {
            block.exits.push((x + w / 2, y + h));
        }
    }
    let (sx, sy, sw, _) = pos[start];
    block.entry = (sx + sw / 2, sy);
    // Edges: forward ones as curves, back ones (loops) routed around the right side.
    for name in &order {
        let (x, y, w, h) = pos[name.as_str()];
        for (target, kind) in successors(&states[name.as_str()]) {
            let Some(&(tx, ty, tw, th)) = pos.get(target.as_str()) else {
                continue;
            };
            let points = if rank[target.as_str()] > rank[name.as_str()] {
                vec![(x + w / 2, y + h), (tx + tw / 2, ty)]
            } else {
                let out_x = width + H_GAP / 2;
                block.w = block.w.max(out_x + 4);
                vec![
                    (x + w, y + h / 2),
                    (out_x, y + h / 2),
                    (out_x, ty + th / 2),
                    (tx + tw, ty + th / 2),
                ]
            };
            block.edges.push(Edge { kind, points });
        }
    }
    Ok(block)
}

impl Block {
    fn place_into_block(self, outer: &mut Block, dx: i32, dy: i32) {
        let mut g = Graph::default();
        self.place_into(&mut g, dx, dy);
        outer.nodes.extend(g.nodes);
        outer.edges.extend(g.edges);
    }
}

/// States breadth first from StartAt along their edges; unreachable ones last.
fn discovery_order(states: &Map<String, Value>, start: &str) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut order = Vec::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    seen.insert(start.to_string());
    while let Some(n) = queue.pop_front() {
        if let Some(st) = states.get(&n) {
            for (t, _) in successors(st) {
                if states.contains_key(&t) && seen.insert(t.clone()) {
                    queue.push_back(t);
                }
            }
        }
        order.push(n);
    }
    for name in states.keys() {
        if seen.insert(name.clone()) {
            order.push(name.clone());
        }
    }
    order
}

/// Longest path from StartAt, ignoring edges that close a loop; unreachable states go
/// one layer below everything else.
fn ranks(states: &Map<String, Value>, start: &str, order: &[String]) -> HashMap<String, usize> {
    // Back edges: found by a depth-first walk (an edge to a state still on the stack).
    let mut back: HashSet<(String, String)> = HashSet::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut on_stack: HashSet<String> = HashSet::new();
    let mut stack: Vec<(String, usize)> = vec![(start.to_string(), 0)];
    on_stack.insert(start.to_string());
    while let Some((n, i)) = stack.pop() {
        let succ: Vec<String> = states
            .get(&n)
            .map(successors)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, _)| t)
            .filter(|t| states.contains_key(t))
            .collect();
        if let Some(t) = succ.get(i) {
            stack.push((n.clone(), i + 1));
            if on_stack.contains(t) {
                back.insert((n, t.clone()));
            } else if !done.contains(t) {
                on_stack.insert(t.clone());
                stack.push((t.clone(), 0));
            }
        } else {
            on_stack.remove(&n);
            done.insert(n);
        }
    }
    let mut rank: HashMap<String, usize> = HashMap::from([(start.to_string(), 0)]);
    // Relaxation over an acyclic graph converges in at most |states| rounds.
    for _ in 0..order.len() {
        let mut changed = false;
        for n in order {
            let Some(&r) = rank.get(n) else { continue };
            for (t, _) in successors(&states[n.as_str()]) {
                if !states.contains_key(&t) || back.contains(&(n.clone(), t.clone())) {
                    continue;
                }
                if rank.get(&t).is_none_or(|&old| old < r + 1) {
                    rank.insert(t, r + 1);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let below = rank.values().copied().max().unwrap_or(0) + 1;
    for n in order {
        rank.entry(n.clone()).or_insert(below);
    }
    rank
}

/// The graph as SVG. `class_of(state)` is the status class of each state
/// (`succeeded`, `failed`, `caught`, `running`, `not-reached`).
pub fn svg(g: &Graph, class_of: &dyn Fn(&str) -> &'static str) -> Markup {
    html! {
        svg.graph xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (g.width) " " (g.height)}
            width=(g.width) height=(g.height) role="img" aria-label="State machine graph" {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
            @for n in g.nodes.iter().filter(|n| matches!(n.kind, Kind::Container(_))) {
                g class={"state container " (class_of(&n.name))} data-state=(n.name) tabindex="0" {
                    title { (n.name) }
                    rect x=(n.x) y=(n.y) width=(n.w) height=(n.h) rx="8" {}
                    text.label x=(n.x + 10) y=(n.y + 19) { (label(&n.name, n.w - 20)) }
                }
            }
            @for e in &g.edges {
                path class={"edge " (edge_class(e.kind))} d=(edge_path(&e.points)) marker-end="url(#arrow)" {}
            }
            @for n in &g.nodes {
                @match &n.kind {
                    Kind::Start | Kind::End => {
                        g.marker {
                            rect x=(n.x) y=(n.y) width=(n.w) height=(n.h) rx=(n.h / 2) {}
                            text x=(n.x + n.w / 2) y=(n.y + n.h / 2 + 4) text-anchor="middle" {
                                @if n.kind == Kind::Start { "Start" } @else { "End" }
                            }
                        }
                    }
                    Kind::State(t) => {
                        g class={"state " (class_of(&n.name))} data-state=(n.name) data-type=(t) tabindex="0" {
                            title { (n.name) " (" (t) ")" }
                            rect x=(n.x) y=(n.y) width=(n.w) height=(n.h) rx="6" {}
                            text x=(n.x + n.w / 2) y=(n.y + n.h / 2 + 4) text-anchor="middle" { (label(&n.name, n.w - 16)) }
                        }
                    }
                    Kind::Container(_) => {}
                }
            }
        }
    }
}

fn edge_class(k: EdgeKind) -> &'static str {
    match k {
        EdgeKind::Next => "next",
        EdgeKind::Choice => "choice",
        EdgeKind::Catch => "catch",
    }
}

fn edge_path(points: &[(i32, i32)]) -> String {
    match points {
        [(x1, y1), (x2, y2)] => {
            let my = (y1 + y2) / 2;
            format!("M {x1} {y1} C {x1} {my} {x2} {my} {x2} {y2}")
        }
        _ => {
            let mut d = String::new();
            for (i, (x, y)) in points.iter().enumerate() {
                d.push_str(if i == 0 { "M " } else { " L " });
                d.push_str(&format!("{x} {y}"));
            }
            d
        }
    }
}

/// The name, cut with an ellipsis to what fits in `width` pixels.
fn label(name: &str, width: i32) -> String {
    let fits = (width / CHAR_W).max(4) as usize;
    if name.chars().count() <= fits {
        name.to_string()
    } else {
        let cut: String = name.chars().take(fits - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node<'a>(g: &'a Graph, name: &str) -> &'a Node {
        g.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn inside(inner: &Node, outer: &Node) -> bool {
        inner.x >= outer.x
            && inner.y >= outer.y
            && inner.x + inner.w <= outer.x + outer.w
            && inner.y + inner.h <= outer.y + outer.h
    }

    fn nested() -> Value {
        json!({
            "StartAt": "P",
            "States": {
                "P": {"Type": "Parallel", "Next": "Done", "Branches": [
                    {"StartAt": "A1", "States": {
                        "A1": {"Type": "Pass", "Next": "A2"},
                        "A2": {"Type": "Task", "Resource": "x", "End": true,
                               "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "A3"}]},
                        "A3": {"Type": "Pass", "End": true}}},
                    {"StartAt": "Inner", "States": {
                        "Inner": {"Type": "Parallel", "End": true, "Branches": [
                            {"StartAt": "I1", "States": {"I1": {"Type": "Pass", "End": true}}},
                            {"StartAt": "I2", "States": {"I2": {"Type": "Pass", "End": true}}}]}}},
                    {"StartAt": "C1", "States": {"C1": {"Type": "Succeed"}}}
                ]},
                "Done": {"Type": "Succeed"}
            }
        })
    }

    #[test]
    fn parallel_branches_sit_side_by_side_inside_their_box() {
        let g = layout(&nested()).unwrap();
        let p = node(&g, "P");
        assert_eq!(p.kind, Kind::Container("Parallel".into()));
        let (a1, inner, c1) = (node(&g, "A1"), node(&g, "Inner"), node(&g, "C1"));
        for n in [a1, inner, c1, node(&g, "A2"), node(&g, "A3")] {
            assert!(inside(n, p), "{} inside P", n.name);
        }
        // Branch starts on one row, left to right in branch order, not overlapping.
        assert_eq!(a1.y, inner.y);
        assert_eq!(a1.y, c1.y);
        assert!(a1.x + a1.w <= inner.x);
        assert!(inner.x + inner.w <= c1.x);
        // The nested Parallel holds its own two branches side by side.
        let (i1, i2) = (node(&g, "I1"), node(&g, "I2"));
        assert!(inside(i1, inner) && inside(i2, inner));
        assert_eq!(i1.y, i2.y);
        assert!(i1.x + i1.w <= i2.x);
        // Sequence goes down; what follows the Parallel is below it.
        assert!(node(&g, "A2").y > a1.y);
        assert!(node(&g, "Done").y >= p.y + p.h);
        // Everything fits in the drawing.
        for n in &g.nodes {
            assert!(n.x >= 0 && n.y >= 0, "{n:?}");
            assert!(n.x + n.w <= g.width && n.y + n.h <= g.height, "{n:?}");
        }
        // Containers are listed before what they contain.
        let idx = |name: &str| g.nodes.iter().position(|n| n.name == name).unwrap();
        assert!(idx("P") < idx("A1") && idx("Inner") < idx("I1"));
    }

    #[test]
    fn catch_and_choice_edges_are_drawn_with_their_kind() {
        let g = layout(&nested()).unwrap();
        let a2 = node(&g, "A2");
        let a3 = node(&g, "A3");
        let catch = g
            .edges
            .iter()
            .find(|e| e.kind == EdgeKind::Catch)
            .expect("a catch edge");
        assert_eq!(catch.points[0], (a2.x + a2.w / 2, a2.y + a2.h));
        assert_eq!(*catch.points.last().unwrap(), (a3.x + a3.w / 2, a3.y));

        let choice = json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [
                {"Variable": "$.a", "BooleanEquals": true, "Next": "Yes"},
                {"Variable": "$.b", "BooleanEquals": true, "Next": "No"}], "Default": "Other"},
            "Yes": {"Type": "Succeed"}, "No": {"Type": "Fail"}, "Other": {"Type": "Pass", "End": true}}});
        let g = layout(&choice).unwrap();
        let choices: Vec<_> = g
            .edges
            .iter()
            .filter(|e| e.kind == EdgeKind::Choice)
            .collect();
        assert_eq!(choices.len(), 3);
        // Three targets on one row below the Choice; each leads to End.
        let (y, n, o) = (node(&g, "Yes"), node(&g, "No"), node(&g, "Other"));
        assert!(y.y == n.y && n.y == o.y && y.y > node(&g, "C").y);
        let end = g.nodes.iter().find(|n| n.kind == Kind::End).unwrap();
        let to_end = g
            .edges
            .iter()
            .filter(|e| *e.points.last().unwrap() == (end.x + end.w / 2, end.y))
            .count();
        assert_eq!(to_end, 3);
    }

    #[test]
    fn a_map_holds_its_iterator_and_loops_are_routed_around() {
        let def = json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "ItemProcessor": {"StartAt": "Work", "States": {
                "Work": {"Type": "Pass", "Next": "Again?"},
                "Again?": {"Type": "Choice", "Choices": [{"Variable": "$.x", "BooleanEquals": true, "Next": "Work"}], "Default": "Ok"},
                "Ok": {"Type": "Succeed"}}}, "End": true}}});
        let g = layout(&def).unwrap();
        let m = node(&g, "M");
        assert_eq!(m.kind, Kind::Container("Map".into()));
        assert!(inside(node(&g, "Work"), m) && inside(node(&g, "Ok"), m));
        let back = g
            .edges
            .iter()
            .find(|e| e.points.len() == 4)
            .expect("the loop back to Work is routed");
        assert_eq!(back.kind, EdgeKind::Choice);
        let info = states(&def);
        assert_eq!(info["Work"].parent.as_deref(), Some("M"));
        assert_eq!(info["M"].parent, None);
        assert_eq!(info["M"].state_type, "Map");
    }

    #[test]
    fn svg_marks_each_state_with_its_name_and_class() {
        let g = layout(&nested()).unwrap();
        let out = svg(&g, &|n| if n == "A3" { "caught" } else { "succeeded" }).into_string();
        assert!(
            out.contains(r#"class="state caught" data-state="A3""#),
            "{out}"
        );
        assert!(out.contains(r#"class="state container succeeded" data-state="P""#));
        assert!(out.contains(r#"class="edge catch""#));
        assert_eq!(out.matches("data-state=").count(), 9);
    }

    #[test]
    fn names_are_escaped_and_bad_definitions_are_errors() {
        let def = json!({"StartAt": "<b>&", "States": {"<b>&": {"Type": "Succeed"}}});
        let out = svg(&layout(&def).unwrap(), &|_| "succeeded").into_string();
        assert!(out.contains("&lt;b&gt;&amp;") && !out.contains("<b>"));
        assert_eq!(
            layout(&json!({"StartAt": "X", "States": {}})),
            Err(GraphError::UnknownStart("X".into()))
        );
        assert_eq!(
            layout(&json!({"States": {}})),
            Err(GraphError::Missing("StartAt".into()))
        );
        assert_eq!(label("abcdefghijkl", 56), "abcdefg…");
    }
}
