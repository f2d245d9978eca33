//! `orders projections verify`: runs [`orders::verify`] and says what differs.

use crate::replay_cmd::{Progress, parse_projections, stop_on_ctrl_c};
use orders::replay::{ReplayError, ReplayProgress};
use orders::verify::{self, Verdict};
use orders_local::store::{DayDiff, LocalStores, RowDiff};
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A projection to verify (`orders`, `daily_sales`), repeatable; or `all`.
    #[arg(long = "projection", value_name = "NAME", default_value = "all")]
    projections: Vec<String>,
    /// How many differing orders and days to list (each kind); --json lists them all.
    #[arg(long, default_value_t = 10, value_parser = crate::cli_args::at_least_one)]
    limit: usize,
    /// The verdict as JSON: the differences, each with its fields.
    #[arg(long)]
    json: bool,
    /// Rewrite what differs from the log (each such order's rows, each such day) in the
    /// active generations, in the transaction of the comparison that found it: for a few
    /// drifted orders. After a projection change, replay instead (blue/green: a way back).
    #[arg(long)]
    repair: bool,
}

pub async fn run(
    stores: &LocalStores,
    data_dir: &Path,
    args: VerifyArgs,
) -> anyhow::Result<ExitCode> {
    let projections = parse_projections(&args.projections)?;
    let stop = stop_on_ctrl_c();
    let progress = Progress::new("folding the log");
    let verdict = verify::verify(
        stores,
        data_dir,
        &projections,
        args.repair,
        &stop,
        |r: ReplayProgress| progress.events(r.done, r.total),
    )
    .await;
    progress.finish();
    let verdict = match verdict {
        Ok(v) => v,
        Err(ReplayError::Stopped) => {
            eprintln!("error: interrupted; nothing was changed");
            return Ok(ExitCode::from(130));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", report(&verdict, args.limit));
    }
    Ok(if verdict.sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The verdict as lines of text, `limit` differences of each kind at most.
fn report(v: &Verdict, limit: usize) -> String {
    let mut out = format!(
        "folded {} events of the log afresh and compared them with the read models at log position {} ({:.1} s)\n",
        v.events_read, v.position, v.seconds
    );
    let c = &v.compared;
    for &verify::Compares {
        projection,
        generation: g,
    } in &v.generations
    {
        match projection {
            orders_domain::projection::ProjectionName::Orders => {
                let (missing, extra, differ) = kinds(&c.orders);
                let same = c
                    .orders_in_log
                    .saturating_sub((differ.len() + missing.len()) as u64);
                out += &format!(
                    "orders (generation {g}): {} orders in the log: {same} the same, {} differ, {} missing from the read model, {} in the read model only\n",
                    c.orders_in_log,
                    differ.len(),
                    missing.len(),
                    extra.len()
                );
                list(&mut out, &differ, limit, row_line);
                list(&mut out, &missing, limit, row_line);
                list(&mut out, &extra, limit, row_line);
            }
            orders_domain::projection::ProjectionName::DailySales => {
                out += &format!(
                    "daily_sales (generation {g}): {} days and currencies in the log: {} differ; {} orders' sales trackers differ\n",
                    c.days_in_log,
                    c.days.len(),
                    c.trackers.len()
                );
                let days: Vec<&DayDiff> = c.days.iter().collect();
                list(&mut out, &days, limit, day_line);
                let trackers: Vec<&RowDiff> = c.trackers.iter().collect();
                list(&mut out, &trackers, limit, row_line);
            }
        }
    }
    if v.undecodable > 0 {
        out += &format!(
            "{} events of the log do not decode: no read model holds them (`orders replay --skip-undecodable` parks them)\n",
            v.undecodable
        );
        for e in &v.undecodable_events {
            out += &format!("  {}: {}\n", e.key, e.reason);
        }
        if v.undecodable > v.undecodable_events.len() as u64 {
            out += &format!(
                "  … and {} more (`orders replay --skip-undecodable` parks them all, with their reasons)\n",
                v.undecodable - v.undecodable_events.len() as u64
            );
        }
    }
    if v.not_yet_projected > 0 {
        out += &format!(
            "{} orders have events the live projector has not applied yet (it is at log position {}): not compared; `orders serve` applies them\n",
            v.not_yet_projected, v.position
        );
    }
    if v.live_dead_letters > 0 && !v.same() {
        out += &format!(
            "the live projector parked {} records, whose orders it could not bring up to date (`orders dead-letters list --source stream:projector`)\n",
            v.live_dead_letters
        );
    }
    match &v.repair {
        Some(verify::Repair::Repaired {
            rows,
            still_different,
        }) => {
            out += &format!(
                "repaired from the log, with the live projector held off: {} order views, {} sales trackers and {} days rewritten\n",
                rows.orders, rows.trackers, rows.days
            );
            if *still_different == 0 {
                out += "the read models are now what the log says";
                if v.live_dead_letters > 0 {
                    out += " (the parked records stay listed until redriven: `orders dead-letters redrive --all` finds them applied)";
                }
                out += "\n";
            } else {
                out += &format!(
                    "{still_different} rows still differ after the repair: replay (`orders replay --projection all`)\n"
                );
            }
            return out;
        }
        Some(verify::Repair::Refused(why)) => out += &format!("not repaired: {why}\n"),
        None => {}
    }
    if v.same() {
        out += "the read models are what the log says\n";
    } else {
        let names: Vec<&str> = v.differing().iter().map(|p| p.as_str()).collect();
        out += &format!(
            "the read models differ from the log: `orders replay --projection {}` rebuilds them from it\n",
            names.join(" --projection ")
        );
    }
    out
}

/// Orders missing from the read model, in it only, and differing.
fn kinds(diffs: &[RowDiff]) -> (Vec<&RowDiff>, Vec<&RowDiff>, Vec<&RowDiff>) {
    let (mut missing, mut extra, mut differ) = (vec![], vec![], vec![]);
    for d in diffs {
        match (d.read_model_version, d.log_version) {
            (None, _) => missing.push(d),
            (_, None) => extra.push(d),
            _ => differ.push(d),
        }
    }
    (missing, extra, differ)
}

fn list<T>(out: &mut String, items: &[&T], limit: usize, line: fn(&T) -> String) {
    for item in items.iter().take(limit) {
        *out += &format!("  {}\n", line(item));
    }
    if items.len() > limit {
        *out += &format!(
            "  … and {} more (--limit, or --json for all)\n",
            items.len() - limit
        );
    }
}

fn row_line(d: &RowDiff) -> String {
    match (d.read_model_version, d.log_version) {
        (None, Some(v)) => format!(
            "{}: missing from the read model (the log has it at version {v})",
            d.order_id
        ),
        (Some(v), None) => format!(
            "{}: in the read model (version {v}) but not in the log",
            d.order_id
        ),
        (rm, log) => {
            let mut s = format!("{}:", d.order_id);
            if rm != log {
                s += &format!(
                    " version {} in the read model, {} from the log;",
                    rm.unwrap_or(0),
                    log.unwrap_or(0)
                );
            }
            let fields: Vec<String> = d
                .fields
                .iter()
                .map(|f| {
                    format!(
                        " {} {} (read model) / {} (log)",
                        f.path,
                        short(&f.read_model),
                        short(&f.log)
                    )
                })
                .collect();
            s + &fields.join(";")
        }
    }
}

fn day_line(d: &DayDiff) -> String {
    let side = |s: &Option<orders_domain::projection::DailySales>| match s {
        Some(s) => {
            let money = |amount| orders::sales::money(amount, &s.currency);
            format!(
                "{} placed ({}), {} cancelled ({}), net {}",
                s.orders_placed,
                money(s.amount_placed),
                s.orders_cancelled,
                money(s.amount_cancelled),
                money(s.net_amount)
            )
        }
        None => "no row".into(),
    };
    format!(
        "{} {}: {} (read model) / {} (log)",
        d.date,
        d.currency,
        side(&d.read_model),
        side(&d.log)
    )
}

/// A value as compact JSON, long ones cut.
fn short(v: &Value) -> String {
    const MAX: usize = 60;
    let s = v.to_string();
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}
