//! The rebuild's fold, fed while the scan runs. An order is handed over for writing as
//! soon as its segment of the Scan moves on to another order, so a replay holds the orders
//! in flight (one per segment, plus the rare order still waiting for an event), the day
//! counters and each written order's id and version — not the log, nor every order's
//! state.
//!
//! A Scan returns an order's events together and in version order in practice (an item
//! collection is stored sorted by its sort key, and a segment covers whole collections), but
//! DynamoDB does not promise it. So an event that arrives before one it follows waits for
//! it, and an event of an order already handed over is kept aside ("late") and folded, once
//! the writes are done, on the state the target then holds ([`Rebuild::fold_late`]).

use super::{EventKey, ParkedEvent, ReplayError, held, key_of_envelope};
use crate::read_models::OrderState;
use orders_domain::envelope::EventEnvelope;
use orders_domain::order::OrderEvent;
use orders_domain::projection::DailySales;
use std::collections::{BTreeMap, HashMap};

/// Which projections to fold, and whether a failing fold parks or stops the replay.
#[derive(Debug, Clone, Copy)]
pub(super) struct FoldOptions {
    pub(super) orders: bool,
    pub(super) daily_sales: bool,
    pub(super) skip_undecodable: bool,
}

type Event = (EventEnvelope, OrderEvent);

pub(super) struct Rebuild {
    opts: FoldOptions,
    /// Orders still being folded.
    open: HashMap<String, Folding>,
    /// Per scan segment, the order its last event belonged to.
    current: Vec<Option<String>>,
    /// Orders handed over for writing, with the version each holds.
    closed: HashMap<String, u64>,
    /// Events of orders handed over before they came.
    late: HashMap<String, Vec<Event>>,
    tally: Tally,
}

/// An order folded as far as the scan knows: to be written.
pub(super) struct Done {
    pub(super) order_id: String,
    pub(super) state: OrderState,
}

#[derive(Default)]
struct Folding {
    state: OrderState,
    /// The highest version folded or parked so far.
    seen: u64,
    /// Events that came before the ones they follow, by version.
    ahead: BTreeMap<u64, Event>,
    /// The version whose fold failed: the order's later events are parked, not folded
    /// (the version guard would see a gap, as the live projector does).
    stopped: Option<u64>,
}

#[derive(Default)]
struct Tally {
    sales: BTreeMap<(String, String), DailySales>,
    parked: Vec<ParkedEvent>,
    events_folded: u64,
}

/// What a rebuild folded: the day counters, the events not folded (sorted by key), and
/// what each written order holds.
pub(super) struct Rebuilt {
    pub(super) sales: BTreeMap<(String, String), DailySales>,
    pub(super) parked: Vec<ParkedEvent>,
    pub(super) events_folded: u64,
    pub(super) applied: HashMap<String, u64>,
}

impl Rebuild {
    pub(super) fn new(opts: FoldOptions, segments: usize) -> Self {
        Rebuild {
            opts,
            open: HashMap::new(),
            current: vec![None; segments],
            closed: HashMap::new(),
            late: HashMap::new(),
            tally: Tally::default(),
        }
    }

    /// Takes an event of scan `segment`: folds it now if its turn has come (then whatever
    /// waited for it), or keeps it until then. When the segment moved on from another
    /// order, that order goes to `done`. Errs only without `skip_undecodable`, on the
    /// first failing fold.
    pub(super) fn add(
        &mut self,
        segment: usize,
        envelope: EventEnvelope,
        event: OrderEvent,
        done: &mut Vec<Done>,
    ) -> Result<(), ReplayError> {
        if self.closed.contains_key(&envelope.aggregate_id) {
            self.late
                .entry(envelope.aggregate_id.clone())
                .or_default()
                .push((envelope, event));
            return Ok(());
        }
        if let Some(slot) = self.current.get_mut(segment)
            && slot.as_deref() != Some(envelope.aggregate_id.as_str())
            && let Some(previous) = slot.replace(envelope.aggregate_id.clone())
        {
            self.close(previous, done);
        }
        let folding = match self.open.get_mut(&envelope.aggregate_id) {
            Some(f) => f,
            None => self.open.entry(envelope.aggregate_id.clone()).or_default(),
        };
        if envelope.version > folding.seen + 1 {
            folding.ahead.insert(envelope.version, (envelope, event));
            return Ok(());
        }
        step(folding, &mut self.tally, self.opts, &envelope, &event)?;
        while let Some(next) = folding.ahead.first_entry() {
            if *next.key() != folding.seen + 1 {
                break;
            }
            let (envelope, event) = next.remove();
            step(folding, &mut self.tally, self.opts, &envelope, &event)?;
        }
        Ok(())
    }

    /// Hands `order_id` over unless it waits for an event, stopped on one (its later
    /// events must be parked as such), or has nothing to write: those stay open until the
    /// scan ends.
    fn close(&mut self, order_id: String, done: &mut Vec<Done>) {
        let ready = self.open.get(&order_id).is_some_and(|f| {
            f.ahead.is_empty()
                && f.stopped.is_none()
                && (f.state.view.is_some() || f.state.tracker.is_some())
        });
        if !ready {
            return;
        }
        if let Some(f) = self.open.remove(&order_id) {
            self.closed.insert(
                order_id.clone(),
                held(&f.state, self.opts.orders, self.opts.daily_sales),
            );
            done.push(Done {
                order_id,
                state: f.state,
            });
        }
    }

    /// The scan is over: folds what still waits, in version order (its first event follows
    /// a gap, which the fold reports), and hands over every open order with something to
    /// write.
    pub(super) fn finish_scan(&mut self) -> Result<Vec<Done>, ReplayError> {
        let mut done = Vec::with_capacity(self.open.len());
        for (order_id, mut folding) in std::mem::take(&mut self.open) {
            while let Some((_, (envelope, event))) = folding.ahead.pop_first() {
                step(&mut folding, &mut self.tally, self.opts, &envelope, &event)?;
            }
            let state = folding.state;
            if state.view.is_some() || state.tracker.is_some() {
                self.closed.insert(
                    order_id.clone(),
                    held(&state, self.opts.orders, self.opts.daily_sales),
                );
                done.push(Done { order_id, state });
            }
        }
        Ok(done)
    }

    /// The late events, per order, in version order.
    pub(super) fn take_late(&mut self) -> Vec<(String, Vec<Event>)> {
        let mut late: Vec<_> = std::mem::take(&mut self.late).into_iter().collect();
        for (_, events) in &mut late {
            events.sort_by_key(|(e, _)| e.version);
        }
        late.sort_by(|a, b| a.0.cmp(&b.0));
        late
    }

    /// Folds an order's late `events` on `written`, what the target holds of it: the
    /// order to write again.
    pub(super) fn fold_late(
        &mut self,
        order_id: String,
        written: OrderState,
        events: Vec<Event>,
    ) -> Result<Done, ReplayError> {
        let mut folding = Folding {
            seen: held(&written, self.opts.orders, self.opts.daily_sales),
            state: written,
            ..Folding::default()
        };
        for (envelope, event) in events {
            step(&mut folding, &mut self.tally, self.opts, &envelope, &event)?;
        }
        self.closed.insert(
            order_id.clone(),
            held(&folding.state, self.opts.orders, self.opts.daily_sales),
        );
        Ok(Done {
            order_id,
            state: folding.state,
        })
    }

    pub(super) fn into_result(self) -> Rebuilt {
        let mut parked = self.tally.parked;
        parked.sort_by(|a, b| a.key.cmp(&b.key));
        Rebuilt {
            sales: self.tally.sales,
            parked,
            events_folded: self.tally.events_folded,
            applied: self.closed,
        }
    }
}

fn step(
    folding: &mut Folding,
    tally: &mut Tally,
    opts: FoldOptions,
    envelope: &EventEnvelope,
    event: &OrderEvent,
) -> Result<(), ReplayError> {
    folding.seen = folding.seen.max(envelope.version);
    if let Some(at) = folding.stopped {
        tally.parked.push(ParkedEvent {
            key: key_of_envelope(envelope),
            event_type: Some(envelope.event_type.clone()),
            reason: format!("not folded: follows version {at} of this order, parked"),
        });
        return Ok(());
    }
    match folding
        .state
        .fold(opts.orders, opts.daily_sales, envelope, event)
    {
        Ok(folded) => {
            tally.events_folded += 1;
            if let Some(d) = folded.delta {
                tally
                    .sales
                    .entry((d.date.clone(), d.currency.clone()))
                    .or_insert_with(|| DailySales::new(&d.date, &d.currency))
                    .add(&d);
            }
            Ok(())
        }
        Err(e) => {
            let key: EventKey = key_of_envelope(envelope);
            if !opts.skip_undecodable {
                return Err(ReplayError::Fold {
                    key,
                    reason: e.to_string(),
                });
            }
            tracing::warn!(%key, error = %e, "event does not fold, parked");
            tally.parked.push(ParkedEvent {
                key,
                event_type: Some(envelope.event_type.clone()),
                reason: e.to_string(),
            });
            folding.stopped = Some(envelope.version);
            Ok(())
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::codec::Item;
    use crate::read_models::{sales_item, tracker_item, view_item};
    use orders_domain::envelope::EventMeta;
    use orders_domain::money::{Currency, Money};
    use orders_domain::order::{FulfilmentRequested, OrderCancelled};
    use orders_domain::sample;
    use orders_domain::time::Timestamp;
    use proptest::prelude::*;

    pub(in crate::replay) const ALL: FoldOptions = FoldOptions {
        orders: true,
        daily_sales: true,
        skip_undecodable: true,
    };

    /// Three orders over two days: one cancelled, one asked for fulfilment, one only placed.
    pub(in crate::replay) fn log() -> Vec<(EventEnvelope, OrderEvent)> {
        let mut out = Vec::new();
        for (i, tail) in [
            vec![OrderEvent::Cancelled(OrderCancelled {
                reason: Some("changed my mind".into()),
            })],
            vec![OrderEvent::FulfilmentRequested(FulfilmentRequested {
                message_id: "m-1".into(),
            })],
            vec![],
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("o-{i}");
            let mut events = vec![sample::placed(
                &id,
                "c-1",
                Money::new(1000 + i as i64, Currency::parse("EUR").unwrap()),
            )];
            events.extend(tail);
            let meta = EventMeta {
                occurred_at: Timestamp(1_795_706_525_123 + i as i64 * 86_400_000),
                correlation_id: "corr".into(),
                causation_id: "cause".into(),
            };
            let mut n = 0;
            let envelopes = EventEnvelope::wrap(&id, 0, &events, &meta, || {
                n += 1;
                format!("{id}-{n}")
            });
            out.extend(envelopes.into_iter().zip(events));
        }
        out
    }

    /// Replays `events` (each with its scan segment) as `replay_inner` does, with a map as
    /// the target: what the target holds at the end, as items, and the fold's result.
    fn replay(
        events: Vec<(usize, Event)>,
        opts: FoldOptions,
    ) -> Result<(Vec<Item>, Rebuilt, usize), ReplayError> {
        let mut r = Rebuild::new(opts, 4);
        let mut target: BTreeMap<String, OrderState> = BTreeMap::new();
        let mut done = Vec::new();
        for (segment, (envelope, event)) in events {
            r.add(segment, envelope, event, &mut done)?;
        }
        done.extend(r.finish_scan()?);
        for d in done {
            assert!(target.insert(d.order_id, d.state).is_none(), "written once");
        }
        let late = r.take_late();
        let late_orders = late.len();
        for (order_id, events) in late {
            let written = target.get(&order_id).cloned().unwrap_or_default();
            let d = r.fold_late(order_id, written, events)?;
            target.insert(d.order_id, d.state);
        }
        let rebuilt = r.into_result();
        let mut items = Vec::new();
        for (id, state) in &target {
            items.extend(state.view.as_ref().map(|v| view_item(v).unwrap()));
            items.extend(state.tracker.as_ref().map(|t| tracker_item(id, t).unwrap()));
        }
        items.extend(rebuilt.sales.values().map(sales_item));
        Ok((items, rebuilt, late_orders))
    }

    /// Each order's events in one segment (as a Scan has them), in log order.
    fn in_segments(events: Vec<Event>) -> Vec<(usize, Event)> {
        events
            .into_iter()
            .map(|e| {
                let segment = e.0.aggregate_id.bytes().map(usize::from).sum::<usize>() % 2;
                (segment, e)
            })
            .collect()
    }

    #[test]
    fn in_order_the_log_folds_into_views_trackers_and_day_counters() {
        let (items, rebuilt, late) = replay(in_segments(log()), ALL).unwrap();
        assert_eq!(rebuilt.events_folded, 5);
        assert!(rebuilt.parked.is_empty());
        assert_eq!(late, 0, "nothing comes after its order was handed over");
        assert_eq!(
            items.len(),
            3 * 2 + 3,
            "a view and a tracker each, three days"
        );
        assert_eq!(rebuilt.applied.len(), 3);
        assert_eq!(rebuilt.applied["o-0"], 2);
        let first_day = rebuilt.sales.values().next().unwrap();
        assert_eq!(
            (first_day.orders_placed, first_day.orders_cancelled),
            (1, 1)
        );
    }

    #[test]
    fn an_order_is_handed_over_when_its_segment_moves_on() {
        let mut r = Rebuild::new(ALL, 2);
        let mut done = Vec::new();
        let log = log();
        r.add(0, log[0].0.clone(), log[0].1.clone(), &mut done)
            .unwrap();
        r.add(0, log[1].0.clone(), log[1].1.clone(), &mut done)
            .unwrap();
        assert!(done.is_empty(), "o-0 is still being read");
        r.add(1, log[2].0.clone(), log[2].1.clone(), &mut done)
            .unwrap();
        assert!(done.is_empty(), "another segment");
        r.add(0, log[4].0.clone(), log[4].1.clone(), &mut done)
            .unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].order_id, "o-0");
        assert_eq!(done[0].state.view.as_ref().map(|v| v.version), Some(2));
        assert_eq!(r.open.len(), 2, "only the orders in flight are held");
    }

    #[test]
    fn an_order_met_again_after_it_was_written_is_folded_on_what_was_written() {
        // o-0's cancellation comes after o-1 in the same segment.
        let log = log();
        let events = vec![
            (0, log[0].clone()),
            (0, log[2].clone()),
            (0, log[1].clone()),
            (0, log[3].clone()),
            (0, log[4].clone()),
        ];
        let (items, rebuilt, late) = replay(events, ALL).unwrap();
        assert_eq!(late, 1);
        assert_eq!(rebuilt.events_folded, 5);
        assert_eq!(rebuilt.applied["o-0"], 2);
        assert_eq!(items, replay(in_segments(log), ALL).unwrap().0);
    }

    proptest! {
        /// DynamoDB does not promise the order of a Scan: any arrival order, within
        /// segments or across them, rebuilds the same items.
        #[test]
        fn any_arrival_order_rebuilds_the_same_items(
            shuffled in Just(log()).prop_shuffle(),
            segments in proptest::collection::vec(0usize..4, 5),
        ) {
            let expected = replay(in_segments(log()), ALL).unwrap().0;
            let events = shuffled.into_iter().zip(segments).map(|(e, s)| (s, e)).collect();
            let (items, rebuilt, _) = replay(events, ALL).unwrap();
            prop_assert_eq!(rebuilt.events_folded, 5);
            prop_assert!(rebuilt.parked.is_empty());
            prop_assert_eq!(items, expected);
        }
    }

    #[test]
    fn after_a_missing_version_the_order_stops_and_the_rest_is_parked() {
        // o-0 loses its version 1: its cancellation cannot fold.
        let log: Vec<_> = log()
            .into_iter()
            .filter(|(e, _)| !(e.aggregate_id == "o-0" && e.version == 1))
            .collect();
        let (_, rebuilt, _) = replay(in_segments(log.clone()), ALL).unwrap();
        assert_eq!(rebuilt.events_folded, 3);
        assert_eq!(rebuilt.parked.len(), 1);
        assert_eq!(rebuilt.parked[0].key.aggregate_id, "o-0");
        assert_eq!(rebuilt.parked[0].key.version, 2);
        assert!(
            rebuilt.parked[0]
                .reason
                .contains("version 1 was not applied"),
            "{:?}",
            rebuilt.parked
        );
        assert_eq!(rebuilt.applied.len(), 2, "o-0 has nothing to write");

        // Without parking, the replay stops on it.
        let stop = FoldOptions {
            skip_undecodable: false,
            ..ALL
        };
        match replay(in_segments(log), stop) {
            Err(ReplayError::Fold { key, .. }) => assert_eq!(key.version, 2),
            other => panic!("{:?}", other.map(|r| r.1.events_folded)),
        }
    }

    #[test]
    fn events_after_a_parked_one_are_parked_with_the_reason() {
        // o-1 loses version 2 and gets versions 3 and 4: both follow the gap, whether they
        // come in the order's run of the scan or after it.
        let mut log: Vec<_> = log()
            .into_iter()
            .filter(|(e, _)| !(e.aggregate_id == "o-1" && e.version == 2))
            .collect();
        let (mut v3, mut v4) = (log[2].clone(), log[2].clone());
        v3.0.version = 3;
        v4.0.version = 4;
        let together = {
            let mut l = log.clone();
            l.insert(3, v4.clone());
            l.insert(3, v3.clone());
            l
        };
        log.push(v4);
        log.push(v3);
        for events in [together, log] {
            let events = events.into_iter().map(|e| (0, e)).collect();
            let (_, rebuilt, _) = replay(events, ALL).unwrap();
            let o1: Vec<_> = rebuilt
                .parked
                .iter()
                .filter(|p| p.key.aggregate_id == "o-1")
                .map(|p| (p.key.version, p.reason.starts_with("not folded")))
                .collect();
            assert_eq!(o1, vec![(3, false), (4, true)]);
        }
    }
}
