//! `orders replay` and `orders seed`: the command-line side of rebuilding projections.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use orders::replay::{self, ReplayError, ReplayOptions, ReplayProgress};
use orders_domain::ports::Clock;
use orders_domain::projection::ProjectionName;
use orders_local::store::{LocalStores, SystemClock, UlidIds};
use orders_local::tailer::TailerConfig;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("since_target").args(["catch_up", "switch_to"])))]
pub struct ReplayArgs {
    /// A projection to rebuild (`orders`, `daily_sales`), repeatable; or `all`.
    #[arg(long = "projection", required = true, value_name = "NAME")]
    projections: Vec<String>,
    #[command(flatten)]
    dir: crate::cli_args::DataDir,
    /// Continue an interrupted replay from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Say what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// After the switch, drop the generations that are no longer active.
    #[arg(long)]
    drop_old: bool,
    /// Park undecodable events (with their key and reason) instead of stopping.
    #[arg(long)]
    skip_undecodable: bool,
    /// Events per transaction.
    #[arg(long, default_value_t = replay::DEFAULT_CHUNK)]
    chunk: usize,
    /// Replay on AWS: scan the DynamoDB event table into a fresh read-model table next to
    /// the one readers use, catch it up, and with --stack switch readers to it (standard
    /// credential chain, AWS_ENDPOINT_URL honoured).
    #[arg(long)]
    aws: bool,
    /// With --aws: the stack (the name given to `sam deploy`) whose tables to replay and
    /// whose readers to switch; without it, EVENTS_TABLE and READ_MODELS_TABLE name the
    /// tables and readers are not switched.
    #[arg(long, env = "ORDERS_STACK")]
    stack: Option<String>,
    /// With --aws --stack: rebuild and catch up, but leave readers where they are.
    #[arg(long, requires = "aws")]
    no_switch: bool,
    /// With --aws: only bring TABLE up to date with the event table (after switching
    /// readers to it by hand).
    #[arg(long, value_name = "TABLE", requires = "aws", conflicts_with_all = ["resume", "target_table", "drop_old"])]
    catch_up: Option<String>,
    /// With --aws --stack: switch readers to TABLE, a table they used before (the way
    /// back after a replay): catch it up, point the stack at it, catch it up once more.
    #[arg(long, value_name = "TABLE", requires = "aws", conflicts_with_all = ["catch_up", "resume", "target_table", "drop_old", "no_switch"])]
    switch_to: Option<String>,
    /// With --catch-up or --switch-to: read only the events that occurred from TIME on
    /// (RFC 3339 UTC: when the replay started, or when readers left the table), through
    /// the event table's by_time index; without it the whole table is scanned.
    #[arg(long, value_name = "TIME", requires = "since_target")]
    since: Option<orders_domain::Timestamp>,
    /// Parallel Scan segments (with --aws).
    #[arg(long, default_value_t = 4, requires = "aws")]
    segments: u32,
    /// Items written per second at most (with --aws).
    #[arg(long, requires = "aws")]
    rate_limit: Option<u32>,
    /// The new read-model table (with --aws; default: the live one's name with the next
    /// generation suffix).
    #[arg(long, requires = "aws")]
    target_table: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// How many orders (about four events each).
    #[arg(long, required_unless_present = "finish")]
    orders: Option<u64>,
    /// Finish a seed that was interrupted: build the read models of the history it
    /// appended and put the live projector after it (appends nothing).
    #[arg(long, conflicts_with = "orders")]
    finish: bool,
    #[command(flatten)]
    dir: crate::cli_args::DataDir,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

pub fn parse_projections(names: &[String]) -> anyhow::Result<Vec<ProjectionName>> {
    let mut out = vec![];
    for n in names {
        if n == "all" {
            out.extend(ProjectionName::ALL);
            continue;
        }
        let p = ProjectionName::parse(n)
            .with_context(|| format!("unknown projection `{n}` (known: {}, or all)", known()))?;
        out.push(p);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One projection's name.
pub fn parse_projection(name: &str) -> anyhow::Result<ProjectionName> {
    ProjectionName::parse(name)
        .with_context(|| format!("unknown projection `{name}` (known: {})", known()))
}

fn known() -> String {
    let names: Vec<&str> = ProjectionName::ALL.iter().map(|p| p.as_str()).collect();
    names.join(", ")
}

pub(crate) async fn open_existing(data_dir: &Path) -> anyhow::Result<LocalStores> {
    anyhow::ensure!(
        data_dir.join("events.db").is_file(),
        "no event store in {} (wrong --data-dir?)",
        data_dir.display()
    );
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || LocalStores::open(&dir))
        .await
        .context("opening the data directory")?
        .with_context(|| format!("opening {}", data_dir.display()))
}

/// A progress bar on a terminal; a plain line every couple of seconds otherwise. Counts
/// one thing at a time (events; on AWS events scanned, then orders written): a new unit
/// starts the rate and the ETA over from where it stands.
pub(crate) struct Progress {
    what: String,
    bar: Option<ProgressBar>,
    state: std::sync::Mutex<Phase>,
}

struct Phase {
    unit: &'static str,
    started: Instant,
    /// The count when this unit started: the rate is over what was done since.
    from: u64,
    last_line: Instant,
    /// The count the last plain line said: the same count again says nothing new.
    said: Option<(u64, u64)>,
    /// The step of a local replay last said ([`Progress::replay`]).
    step: Option<replay::ReplayStep>,
}

impl Phase {
    fn new(unit: &'static str, from: u64) -> Self {
        Phase {
            unit,
            started: Instant::now(),
            from,
            last_line: Instant::now(),
            said: None,
            step: None,
        }
    }
}

fn bar_style(unit: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

impl Progress {
    pub(crate) fn new(what: &str) -> Self {
        const FIRST: &str = "events";
        let bar = std::io::stderr().is_terminal().then(|| {
            // Hidden until the first count (an empty bar would show as full).
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
            b.set_style(bar_style(FIRST));
            b.set_message(what.to_string());
            b
        });
        Progress {
            what: what.to_string(),
            bar,
            state: std::sync::Mutex::new(Phase::new(FIRST, 0)),
        }
    }

    pub(crate) fn update(&self, unit: &'static str, done: u64, total: u64) {
        let mut phase = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let new_unit = phase.unit != unit;
        if new_unit {
            *phase = Phase::new(unit, done);
        }
        if let Some(b) = &self.bar {
            if b.is_hidden() {
                b.set_draw_target(ProgressDrawTarget::stderr());
            }
            if new_unit {
                b.set_style(bar_style(unit));
            }
            // Both at once: one redraw, never a count over the other unit's total.
            b.update(|state| {
                state.set_len(total);
                state.set_pos(done);
            });
            if new_unit {
                // Rate and ETA from here on, not from a jump to `done`.
                b.reset_eta();
                b.reset_elapsed();
            }
            return;
        }
        let due = new_unit || phase.last_line.elapsed() >= Duration::from_secs(2) || done == total;
        if due && phase.said != Some((done, total)) {
            phase.last_line = Instant::now();
            phase.said = Some((done, total));
            let secs = phase.started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "{}: {done}/{total} {unit}, {:.0}/s",
                self.what,
                done.saturating_sub(phase.from) as f64 / secs
            );
        }
    }

    /// Events read of `total`.
    pub(crate) fn events(&self, done: u64, total: u64) {
        self.update("events", done, total);
    }

    /// A local replay's progress: the count of events, or the step it is at once they are
    /// read (said once: on the bar as its message, else as one line).
    pub(crate) fn replay(&self, p: ReplayProgress) {
        // The count first: a step follows the events it comes after.
        self.events(p.done, p.total);
        let mut phase = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = phase.step != p.step;
        phase.step = p.step;
        drop(phase);
        if changed {
            let said = p.step.map_or_else(
                || self.what.clone(),
                |s| format!("{}: {}", self.what, s.describe()),
            );
            match &self.bar {
                Some(b) => b.set_message(said),
                None if p.step.is_some() => eprintln!("{said}"),
                None => {}
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The data dir's replay lock, or one line saying what runs there (as its holder said)
/// and what to do. The lock names this command, its pid and since when.
pub(crate) fn replay_lock(data_dir: &Path, meanwhile: &str) -> anyhow::Result<replay::ReplayLock> {
    replay_lock_as(data_dir, meanwhile, &this_command())
}

/// [`replay_lock`], described as `command` ([`this_command`]'s text).
fn replay_lock_as(
    data_dir: &Path,
    meanwhile: &str,
    command: &str,
) -> anyhow::Result<replay::ReplayLock> {
    let lock = replay::ReplayLock::try_acquire(data_dir)
        .with_context(|| format!("locking {}", data_dir.display()))?;
    let Some(mut lock) = lock else {
        let holder = replay::ReplayLock::holder(data_dir)
            .ok()
            .flatten()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        anyhow::bail!(
            "a replay is running in {}{holder}; {meanwhile}",
            data_dir.display()
        );
    };
    // Only for the messages of others: a lock without its description still locks.
    let _ = lock.describe(command);
    Ok(lock)
}

/// "`orders replay --projection all` (pid 1234, since 2026-11-30T00:31:02.000Z)".
pub(crate) fn this_command() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!(
        "`orders {}` (pid {}, since {})",
        args.join(" "),
        std::process::id(),
        SystemClock.now()
    )
}

/// The end of a summary line that says how many undecodable events a run parked.
pub(crate) fn parked_note(parked: u64) -> String {
    if parked > 0 {
        format!(
            "; parked {parked} undecodable events (see dead letters, source `{}`)",
            replay::DEAD_LETTER_SOURCE
        )
    } else {
        String::new()
    }
}

/// A flag that Ctrl-C sets: long runs stop at their next step, cleanly.
pub(crate) fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let set = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            set.store(true, Ordering::Relaxed);
        }
    });
    stop
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let projections = parse_projections(&args.projections)?;
    anyhow::ensure!(args.chunk > 0, "--chunk must be at least 1");
    crate::aws_access::stack_for(args.aws, args.stack.clone())?;
    args.dir.refuse_with_aws(args.aws)?;
    if args.aws {
        return replay_aws(args, projections).await;
    }
    let stores = open_existing(&args.dir.data_dir).await?;
    let command = this_command();
    let lock = std::sync::Mutex::new(replay_lock_as(
        &args.dir.data_dir,
        "wait for it to finish (or stop it with Ctrl-C and continue with --resume)",
        &command,
    )?);
    let opts = ReplayOptions {
        projections,
        resume: args.resume,
        drop_old: args.drop_old,
        skip_undecodable: args.skip_undecodable,
        chunk: args.chunk,
    };
    if args.dry_run {
        let plan = replay::plan(&stores, &opts).await?;
        println!("dry run: nothing will be changed");
        for (p, from, to) in &plan.steps {
            println!(
                "  {}: build generation {to} from the log{}, then switch readers from {}",
                p.as_str(),
                if args.resume { " (resuming)" } else { "" },
                from.map_or("none".to_string(), |g| format!("generation {g}")),
            );
        }
        println!("  events in the log: {}", plan.events);
        if let Some(seq) = plan.resuming_from {
            println!("  resuming after log position {seq}");
        }
        if args.drop_old {
            println!("  then drop the generations that are no longer active");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let stop = stop_on_ctrl_c();
    let progress = Progress::new("replay");
    let result = replay::replay(&stores, &opts, &stop, |p: ReplayProgress| {
        progress.replay(p);
        // How far it is, in the lock, for `projections status` and the console.
        let _ = lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .say_progress(&command, p);
    })
    .await;
    progress.finish();
    match result {
        Ok(s) => {
            for sw in &s.switches {
                println!(
                    "{}: switched readers from {} to generation {}{}",
                    sw.projection.as_str(),
                    sw.from
                        .map_or("none".to_string(), |g| format!("generation {g}")),
                    sw.to,
                    if sw.dropped_old {
                        " (old generations dropped)"
                    } else {
                        ""
                    }
                );
            }
            if s.switches.iter().any(|sw| sw.dropped_old) {
                crate::projections_cmd::free_space_hint(&stores).await;
            }
            println!(
                "replayed {} events, rebuilt {} orders in {:.2} s ({:.0} events/s){}",
                s.events_read,
                s.orders_rebuilt,
                s.seconds,
                s.rate(),
                parked_note(s.parked)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ReplayError::Stopped) => {
            eprintln!("error: interrupted; nothing was switched; continue with --resume");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn seed(args: SeedArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.orders != Some(0), "--orders must be at least 1");
    // Held for the whole seed: a server started meanwhile is refused too.
    let _serving = orders::runtime::claim_data_dir(
        &args.dir.data_dir,
        "`orders seed`",
        "stop it before seeding (its live projector would start the workflow of every seeded order)",
    )?;
    let dir = args.dir.data_dir.clone();
    let stores = tokio::task::spawn_blocking(move || LocalStores::open(&dir))
        .await
        .context("opening the data directory")?
        .with_context(|| format!("opening {}", args.dir.data_dir.display()))?;
    // The read models are built by a replay after the seeding.
    let _lock = replay_lock(&args.dir.data_dir, "seed when it has finished")?;
    let projector = TailerConfig::default().name;
    let pending = orders::seed::pending(&args.dir.data_dir)
        .with_context(|| format!("reading {}'s unfinished seed", args.dir.data_dir.display()))?;
    // Where the seeded history begins for the live projector: after an interrupted seed,
    // where that one began (it had caught up then); otherwise here, if it has caught up.
    let after = match pending {
        Some(after) => Some(after),
        None => {
            let head = stores.events.head_seq();
            (stores.read_models.checkpoint(&projector).await? >= head).then_some(head)
        }
    };
    if let Some(orders) = args.orders {
        if let (Some(after), None) = (after, pending) {
            orders::seed::mark_pending(&args.dir.data_dir, after)
                .with_context(|| format!("marking the seed in {}", args.dir.data_dir.display()))?;
        }
        append_seed(&stores, orders, args.concurrency).await?;
    } else if pending.is_none() {
        println!(
            "no unfinished seed in {}: nothing to finish",
            args.dir.data_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if after.is_none() {
        eprintln!(
            "warning: the live projector had not projected the whole log before the seed, so it was left where it was: `orders serve` will project the seeded orders live and start their workflows"
        );
        return Ok(ExitCode::SUCCESS);
    }
    // The seeded orders are history: their workflows ran long ago (each history already
    // holds its outcome). Their read models are built the way a replay builds them, with
    // no side effect, and the live projector starts after them, so `orders serve` starts
    // no workflow, publishes nothing and sends no email for them.
    let opts = ReplayOptions {
        projections: ProjectionName::ALL.to_vec(),
        resume: false,
        drop_old: true,
        skip_undecodable: false,
        chunk: replay::DEFAULT_CHUNK,
    };
    let progress = Progress::new("seed: building read models");
    let built = replay::replay(&stores, &opts, &AtomicBool::new(false), |p| {
        progress.events(p.done, p.total)
    })
    .await;
    progress.finish();
    let built = built.context("building the read models of the seeded orders")?;
    stores
        .read_models
        .set_checkpoint(&projector, stores.events.head_seq())
        .await?;
    orders::seed::clear_pending(&args.dir.data_dir)
        .with_context(|| format!("clearing the seed mark in {}", args.dir.data_dir.display()))?;
    println!(
        "built the read models ({} orders) in {:.2} s; the live projector starts after the seeded history",
        built.orders_rebuilt, built.seconds
    );
    Ok(ExitCode::SUCCESS)
}

async fn append_seed(stores: &LocalStores, orders: u64, concurrency: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress = Arc::new(Progress::new("seed"));
    let p = progress.clone();
    let estimate = orders * 4;
    let seeded = orders::seed::seed(
        stores.events.clone(),
        Arc::new(UlidIds::new()),
        SystemClock.now(),
        orders,
        concurrency,
        move |events| p.events(events, estimate.max(events)),
    )
    .await?;
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {} orders, {} events in {:.2} s ({:.0} events/s)",
        seeded.orders,
        seeded.events,
        secs,
        seeded.events as f64 / secs.max(0.001)
    );
    Ok(())
}

/// `orders replay --aws` (see [`crate::replay_aws`]).
async fn replay_aws(
    args: ReplayArgs,
    projections: Vec<ProjectionName>,
) -> anyhow::Result<ExitCode> {
    let options = orders_aws::replay::AwsReplayOptions {
        segments: args.segments,
        rate_limit: args.rate_limit,
        skip_undecodable: args.skip_undecodable,
        projections: projections.clone(),
        target_table: args.target_table.clone(),
        reuse_target: args.resume,
        ..Default::default()
    };
    let stack = crate::aws_access::stack_for(true, args.stack.clone())?;
    crate::replay_aws::run(crate::replay_aws::AwsReplay {
        projections,
        stack,
        switch: !args.no_switch,
        drop_old: args.drop_old,
        dry_run: args.dry_run,
        catch_up_only: args.catch_up,
        switch_to: args.switch_to,
        since: args.since,
        options,
    })
    .await
}
