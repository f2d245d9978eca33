//! `orders projections verify`: runs [`orders::verify`] and says what differs.

use crate::replay_cmd::{Progress, parse_projections, stop_on_ctrl_c};
use anyhow::Context;
use orders::replay::{ReplayError, ReplayProgress};
use orders::verify::UNDECODABLE_LISTED;
use orders::verify::{self, Verdict};
use orders_aws::replay::verify::{AwsVerdict, AwsVerifyOptions, VerifyProgress, verify_table};
use orders_domain::compare::{Compared, DayDiff, RowDiff, Undecodable};
use orders_domain::projection::ProjectionName;
use orders_local::store::LocalStores;
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
    /// A deployed stack's read-model table (the one readers use) against its event table
    /// on DynamoDB, while the projector Lambda runs: rows are judged by the version they
    /// carry, so nothing is locked. With --repair, every write is conditional on the row
    /// still holding what was read.
    #[arg(long)]
    aws: bool,
    /// With --aws: the stack (the name given to `sam deploy`); without it, the tables
    /// named by EVENTS_TABLE and READ_MODELS_TABLE.
    #[arg(long, env = "ORDERS_STACK")]
    stack: Option<String>,
    /// With --aws: parallel Scan segments, for each table.
    #[arg(long, default_value_t = 4, requires = "aws", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    segments: u32,
    /// With --aws: how old the newest event a row lacks may be for the row to count as not
    /// yet projected (the stream has not delivered it) rather than different. The
    /// projector's iterator-age alarm fires past a minute.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, requires = "aws", value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pending_grace: u64,
}

impl VerifyArgs {
    pub fn aws(&self) -> bool {
        self.aws
    }
}

pub async fn run(
    stores: &LocalStores,
    data_dir: &Path,
    args: VerifyArgs,
) -> anyhow::Result<ExitCode> {
    crate::aws_access::stack_for(false, args.stack.clone())?;
    let projections = parse_projections(&args.projections)?;
    let stop = stop_on_ctrl_c();
    let progress = Progress::new("folding the log");
    let verdict = verify::verify(
        stores,
        data_dir,
        &projections,
        args.repair,
        &stop,
        |r: ReplayProgress| progress.replay(r),
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

/// `orders projections verify --aws`: runs [`orders_aws::replay::verify`] on the stack's
/// tables and says what differs.
pub async fn run_aws(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let projections = parse_projections(&args.projections)?;
    let stack = crate::aws_access::stack_for(true, args.stack.clone())?;
    let sdk = crate::aws_access::sdk_config(true).await?;
    let tables = crate::replay_aws::tables(&sdk, stack.as_deref()).await?;
    let clients = orders_aws::AwsClients::from_sdk_config(&sdk, &orders_aws::Endpoints::default());
    let opts = AwsVerifyOptions {
        projections,
        segments: args.segments,
        repair: args.repair,
        pending_grace: std::time::Duration::from_secs(args.pending_grace),
    };
    let progress = Progress::new("verifying");
    let verdict = verify_table(
        &clients.dynamodb,
        &tables.events,
        &tables.active,
        &opts,
        |p| match p {
            VerifyProgress::Events { read, estimate } => {
                progress.events(read, estimate.unwrap_or(read).max(read))
            }
            VerifyProgress::ReadModels { read, estimate } => {
                progress.update("read-model items", read, estimate.unwrap_or(read).max(read))
            }
            VerifyProgress::Rechecking { done, total } => {
                progress.update("orders read again", done, total)
            }
        },
    )
    .await;
    progress.finish();
    let verdict = verdict.with_context(|| format!("verifying {}", tables.active))?;
    // Batches the projector Lambda gave up on are the likely cause of a difference.
    let parked = match (verdict.same(), &tables.dead_letter_queue) {
        (false, Some(url)) => parked_batches(&sdk, url).await,
        _ => None,
    };
    if args.json {
        let mut json = serde_json::to_value(&verdict)?;
        if let (Some(n), Some(map)) = (parked, json.as_object_mut()) {
            map.insert("projector_dead_letters".into(), n.into());
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!(
            "{}",
            report_aws(&verdict, stack.as_deref(), parked, args.limit)
        );
    }
    Ok(if verdict.sound() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How many batches wait in the projector's dead-letter queue `url` (about: SQS counts
/// approximately); `None` when that cannot be read, which is no reason to fail a verify.
async fn parked_batches(sdk: &aws_config::SdkConfig, url: &str) -> Option<u64> {
    let attributes = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .inspect_err(|e| tracing::debug!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "reading the projector's dead-letter queue"))
        .ok()?;
    let count = |name| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// The AWS verdict as lines of text, `limit` differences of each kind at most;
/// `parked`: the batches in the projector's dead-letter queue.
fn report_aws(v: &AwsVerdict, stack: Option<&str>, parked: Option<u64>, limit: usize) -> String {
    let mut out = format!(
        "folded {} events of {} and compared them with the {} items of {} ({:.1} s)\n",
        v.events_read, v.events_table, v.read_model_items, v.read_models_table, v.seconds
    );
    for &p in &v.projections {
        sections(
            &mut out,
            p,
            &format!("table {}", v.read_models_table),
            &v.compared,
            limit,
        );
    }
    let listed = &v.undecodable[..v.undecodable.len().min(UNDECODABLE_LISTED)];
    undecodable(&mut out, v.undecodable.len() as u64, listed);
    if !v.not_yet_projected.is_empty() {
        out += &format!(
            "{} orders have events the projector has not applied yet (younger than {} s, --pending-grace): not compared\n",
            v.not_yet_projected.len(),
            v.pending_grace_seconds
        );
    }
    if !v.unsettled_days.is_empty() {
        let days: Vec<String> = v
            .unsettled_days
            .iter()
            .take(limit)
            .map(|(d, c)| format!("{d} {c}"))
            .collect();
        out += &format!(
            "{} days and currencies were written while being read, so not compared: {}{}\n",
            v.unsettled_days.len(),
            days.join(", "),
            if v.unsettled_days.len() > limit {
                ", …"
            } else {
                ""
            }
        );
    }
    if let (Some(n @ 1..), Some(stack)) = (parked, stack) {
        out += &format!(
            "the projector Lambda gave up on {n} batches, whose orders it could not bring up to date (`orders dead-letters list --aws --stack {stack}`)\n"
        );
    }
    if let Some(r) = &v.repair {
        let done = &r.repaired;
        out += &format!(
            "repaired from the log, each write conditional on what was read: {} rows rewritten, {} deleted, {} events applied, {} days corrected\n",
            done.rows_rewritten, done.rows_deleted, done.events_applied, done.days_corrected
        );
        if !done.moved.is_empty() {
            out += &format!(
                "{} moved meanwhile and were left as the projector wrote them: {}\n",
                done.moved.len(),
                done.moved.join(", ")
            );
        }
        out += &match r.still_different {
            0 => "verified again: the read models are what the log says\n".to_string(),
            n => {
                format!("verified again: {n} rows and days still differ: run it again, or replay\n")
            }
        };
        return out;
    }
    if v.same() {
        out += "the read models are what the log says\n";
    } else {
        let names: Vec<&str> = v.compared.differing().iter().map(|p| p.as_str()).collect();
        let stack = stack.map_or(String::new(), |s| format!(" --stack {s}"));
        out += &format!(
            "the read models differ from the log: `orders replay --aws{stack} --projection {}` rebuilds them from it\n",
            names.join(" --projection ")
        );
    }
    out
}

/// The lines of one projection: counts, then the differences.
fn sections(out: &mut String, projection: ProjectionName, label: &str, c: &Compared, limit: usize) {
    match projection {
        ProjectionName::Orders => {
            let (missing, extra, differ) = kinds(&c.orders);
            let same = c
                .orders_in_log
                .saturating_sub((differ.len() + missing.len()) as u64);
            *out += &format!(
                "orders ({label}): {} orders in the log: {same} the same, {} differ, {} missing from the read model, {} in the read model only\n",
                c.orders_in_log,
                differ.len(),
                missing.len(),
                extra.len()
            );
            list(out, &differ, limit, row_line);
            list(out, &missing, limit, row_line);
            list(out, &extra, limit, row_line);
        }
        ProjectionName::DailySales => {
            *out += &format!(
                "daily_sales ({label}): {} days and currencies in the log: {} differ; {} orders' sales trackers differ\n",
                c.days_in_log,
                c.days.len(),
                c.trackers.len()
            );
            let days: Vec<&DayDiff> = c.days.iter().collect();
            list(out, &days, limit, day_line);
            let trackers: Vec<&RowDiff> = c.trackers.iter().collect();
            list(out, &trackers, limit, row_line);
        }
    }
}

/// The undecodable events: how many, and the first of them.
fn undecodable(out: &mut String, count: u64, listed: &[Undecodable]) {
    if count == 0 {
        return;
    }
    *out += &format!(
        "{count} events of the log do not decode: no read model holds them (`orders replay --skip-undecodable` parks them)\n"
    );
    for e in listed {
        *out += &format!("  {}: {}\n", e.key, e.reason);
    }
    if count > listed.len() as u64 {
        *out += &format!(
            "  … and {} more (`orders replay --skip-undecodable` parks them all, with their reasons)\n",
            count - listed.len() as u64
        );
    }
}

/// The verdict as lines of text, `limit` differences of each kind at most.
fn report(v: &Verdict, limit: usize) -> String {
    let mut out = format!(
        "folded {} events of the log afresh and compared them with the read models at log position {} ({:.1} s)\n",
        v.events_read, v.position, v.seconds
    );
    for &verify::Compares {
        projection,
        generation: g,
    } in &v.generations
    {
        sections(
            &mut out,
            projection,
            &format!("generation {g}"),
            &v.compared,
            limit,
        );
    }
    undecodable(&mut out, v.undecodable, &v.undecodable_events);
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
