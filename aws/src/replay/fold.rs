//! The rebuild's fold, fed while the scan runs: one state per order instead of every
//! event, so a replay's memory follows the number of orders, not the length of the log.

use super::{EventKey, ParkedEvent, ReplayError, key_of_envelope};
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

/// Folds events in any arrival order into the per-order states and the day counters.
/// A Scan returns an order's events together and in version order in practice, but
/// DynamoDB does not promise it: an event that arrives before one it follows waits (the
/// only events held), and whatever still waits when the scan ends follows a gap.
pub(super) struct Rebuild {
    opts: FoldOptions,
    orders: HashMap<String, Folding>,
    tally: Tally,
}

#[derive(Default)]
struct Folding {
    state: OrderState,
    /// The highest version folded or parked so far.
    seen: u64,
    /// Events that came before the ones they follow, by version.
    ahead: BTreeMap<u64, (EventEnvelope, OrderEvent)>,
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

/// What a rebuild folded: the orders with a view or a tracker, the day counters and the
/// events not folded (sorted by key).
pub(super) struct Rebuilt {
    pub(super) states: Vec<(String, OrderState)>,
    pub(super) sales: BTreeMap<(String, String), DailySales>,
    pub(super) parked: Vec<ParkedEvent>,
    pub(super) events_folded: u64,
}

impl Rebuild {
    pub(super) fn new(opts: FoldOptions) -> Self {
        Rebuild {
            opts,
            orders: HashMap::new(),
            tally: Tally::default(),
        }
    }

    /// Folds `envelope` now if its turn has come (then whatever waited for it), or keeps
    /// it until then. Errs only without `skip_undecodable`, on the first failing fold.
    pub(super) fn add(
        &mut self,
        envelope: EventEnvelope,
        event: OrderEvent,
    ) -> Result<(), ReplayError> {
        let folding = match self.orders.get_mut(&envelope.aggregate_id) {
            Some(f) => f,
            None => self
                .orders
                .entry(envelope.aggregate_id.clone())
                .or_default(),
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

    /// Folds what still waits, in version order (its first event follows a gap, which the
    /// fold reports), and hands over the result.
    pub(super) fn finish(mut self) -> Result<Rebuilt, ReplayError> {
        let mut states = Vec::with_capacity(self.orders.len());
        for (order_id, mut folding) in self.orders {
            while let Some((_, (envelope, event))) = folding.ahead.pop_first() {
                step(&mut folding, &mut self.tally, self.opts, &envelope, &event)?;
            }
            let state = folding.state;
            if state.view.is_some() || state.tracker.is_some() {
                states.push((order_id, state));
            }
        }
        let mut parked = self.tally.parked;
        parked.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Rebuilt {
            states,
            sales: self.tally.sales,
            parked,
            events_folded: self.tally.events_folded,
        })
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
mod tests {
    use super::*;
    use crate::codec::Item;
    use crate::read_models::{sales_item, tracker_item, view_item};
    use orders_domain::envelope::EventMeta;
    use orders_domain::money::{Currency, Money};
    use orders_domain::order::{FulfilmentRequested, OrderCancelled};
    use orders_domain::sample;
    use orders_domain::time::Timestamp;
    use proptest::prelude::*;

    const ALL: FoldOptions = FoldOptions {
        orders: true,
        daily_sales: true,
        skip_undecodable: true,
    };

    /// Three orders over two days: one cancelled, one asked for fulfilment, one only placed.
    fn log() -> Vec<(EventEnvelope, OrderEvent)> {
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

    /// What the rebuild would write, in a comparable order.
    fn items(rebuilt: &Rebuilt) -> Vec<Item> {
        let mut states: Vec<_> = rebuilt.states.iter().collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::new();
        for (id, state) in states {
            out.extend(state.view.as_ref().map(|v| view_item(v).unwrap()));
            out.extend(state.tracker.as_ref().map(|t| tracker_item(id, t).unwrap()));
        }
        out.extend(rebuilt.sales.values().map(sales_item));
        out
    }

    fn rebuild(events: impl IntoIterator<Item = (EventEnvelope, OrderEvent)>) -> Rebuilt {
        let mut r = Rebuild::new(ALL);
        for (envelope, event) in events {
            r.add(envelope, event).unwrap();
        }
        r.finish().unwrap()
    }

    #[test]
    fn in_order_the_log_folds_into_views_trackers_and_day_counters() {
        let rebuilt = rebuild(log());
        assert_eq!(rebuilt.events_folded, 5);
        assert!(rebuilt.parked.is_empty());
        assert_eq!(rebuilt.states.len(), 3);
        assert_eq!(rebuilt.sales.len(), 3, "three days, one currency");
        let cancelled = &rebuilt.sales.values().next().unwrap();
        assert_eq!(
            (cancelled.orders_placed, cancelled.orders_cancelled),
            (1, 1)
        );
        // Nothing waits once the scan is done.
        let mut r = Rebuild::new(ALL);
        for (envelope, event) in log() {
            r.add(envelope, event).unwrap();
        }
        assert!(r.orders.values().all(|f| f.ahead.is_empty()));
    }

    proptest! {
        /// DynamoDB does not promise the order of a Scan: any arrival order rebuilds the
        /// same items, and an event waits only while one before it is missing.
        #[test]
        fn any_arrival_order_rebuilds_the_same_items(
            shuffled in Just(log()).prop_shuffle()
        ) {
            let expected = items(&rebuild(log()));
            let rebuilt = rebuild(shuffled);
            prop_assert_eq!(rebuilt.events_folded, 5);
            prop_assert!(rebuilt.parked.is_empty());
            prop_assert_eq!(items(&rebuilt), expected);
        }
    }

    #[test]
    fn after_a_missing_version_the_order_stops_and_the_rest_is_parked() {
        // o-0 loses its version 1: its cancellation cannot fold.
        let log: Vec<_> = log()
            .into_iter()
            .filter(|(e, _)| !(e.aggregate_id == "o-0" && e.version == 1))
            .collect();
        let rebuilt = rebuild(log.clone());
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
        assert_eq!(rebuilt.states.len(), 2);

        // Without parking, the replay stops on it.
        let mut r = Rebuild::new(FoldOptions {
            skip_undecodable: false,
            ..ALL
        });
        for (envelope, event) in log {
            r.add(envelope, event).unwrap();
        }
        match r.finish() {
            Err(ReplayError::Fold { key, .. }) => assert_eq!(key.version, 2),
            other => panic!("{:?}", other.map(|r| r.events_folded)),
        }
    }

    #[test]
    fn events_after_a_parked_one_are_parked_with_the_reason() {
        // o-1 loses version 2 and gets versions 3 and 4: both follow the gap.
        let mut log: Vec<_> = log()
            .into_iter()
            .filter(|(e, _)| !(e.aggregate_id == "o-1" && e.version == 2))
            .collect();
        let (mut v3, mut v4) = (log[2].clone(), log[2].clone());
        v3.0.version = 3;
        v4.0.version = 4;
        log.push(v4);
        log.push(v3);
        let rebuilt = rebuild(log);
        let o1: Vec<_> = rebuilt
            .parked
            .iter()
            .filter(|p| p.key.aggregate_id == "o-1")
            .map(|p| (p.key.version, p.reason.starts_with("not folded")))
            .collect();
        assert_eq!(o1, vec![(3, false), (4, true)]);
    }
}
