//! `orders replay --aws`: blue/green on DynamoDB. The event table is scanned into a fresh
//! read-model table, which is then caught up with what was appended meanwhile. With
//! `--stack`, readers are switched to it: the stack's `ActiveReadModelsTable` parameter
//! (template unchanged, every other parameter kept) points the api and projector
//! functions at the new table, and a second catch-up covers what the old table got
//! between the first one and the switch. The old table stays until `--drop-old`, which
//! drops it only if a replay made it (the stack's own table is CloudFormation's).

use crate::replay_cmd::Progress;
use anyhow::Context;
use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use orders_aws::replay::{
    AppliedVersions, AwsReplayOptions, CatchUpSummary, ReplayPhase, ReplayProgress, catch_up,
    replay_to_table,
};
use orders_aws::{AwsClients, DynamoReadModels, Endpoints};
use orders_domain::Timestamp;
use orders_domain::projection::ProjectionName;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The template parameter that names the table readers use.
pub const ACTIVE_TABLE_PARAMETER: &str = "ActiveReadModelsTable";

/// The stack output that names its own read-model table (readers use it when
/// [`ACTIVE_TABLE_PARAMETER`] is empty).
pub const OWN_TABLE_OUTPUT: &str = "StackReadModelsTableName";

/// The stack output that names the projector's dead-letter queue.
pub const DEAD_LETTER_QUEUE_OUTPUT: &str = "ProjectorDeadLetterQueueUrl";

/// How long a switch may take before the command gives up waiting (CloudFormation goes on).
const SWITCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What `orders replay --aws` was asked.
pub struct AwsReplay {
    pub projections: Vec<ProjectionName>,
    pub stack: Option<String>,
    pub switch: bool,
    pub drop_old: bool,
    pub dry_run: bool,
    /// Only bring this table up to date (after a switch by hand).
    pub catch_up_only: Option<String>,
    /// Switch readers to this table, one they used before (the way back after a replay).
    pub switch_to: Option<String>,
    /// With `catch_up_only` or `switch_to`: the events from this moment on (through the
    /// `by_time` index).
    pub since: Option<Timestamp>,
    pub options: AwsReplayOptions,
}

/// Where the tables are: the stack's outputs, or the functions' own variables.
pub(crate) struct Tables {
    pub(crate) events: String,
    /// The one readers use now.
    pub(crate) active: String,
    /// The stack's own read-model table (CloudFormation's), when the stack says.
    own: Option<String>,
    /// The projector's dead-letter queue, when the stack says.
    pub(crate) dead_letter_queue: Option<String>,
}

pub async fn run(req: AwsReplay) -> anyhow::Result<ExitCode> {
    let sdk = crate::aws_access::sdk_config(true).await?;
    let tables = tables(&sdk, req.stack.as_deref()).await?;
    let clients = AwsClients::from_sdk_config(&sdk, &Endpoints::default());
    if let Some(table) = &req.catch_up_only {
        if req.dry_run {
            println!("dry run: nothing will be changed");
            match req.since {
                Some(since) => println!(
                    "  read the events of {} from {since} on (its by_time index, else a scan) and apply to {table} those it has not applied",
                    tables.events
                ),
                None => println!(
                    "  scan {} and apply to {table} the events it has not applied",
                    tables.events
                ),
            }
            return Ok(ExitCode::SUCCESS);
        }
        let caught =
            bring_up_to_date(&clients, &tables.events, table, &req, req.since, None).await?;
        println!(
            "caught up {table}: {} events read ({}), {} applied, in {:.1} s",
            caught.events_read,
            caught.read_by,
            caught.events_applied,
            caught.elapsed.as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(table) = &req.switch_to {
        return switch_back(&sdk, &clients, &tables, table, &req).await;
    }
    let switching = req.switch && req.stack.is_some();
    // A stack that cannot be switched is refused before anything is built (or planned).
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let params = match req.stack.as_deref().filter(|_| switching) {
        Some(stack) => Some(stack_parameters(&cfn, stack).await?),
        None => None,
    };
    if req.dry_run {
        println!("dry run: nothing will be changed");
        println!(
            "  scan {} in {} segments, fold every order, write {} with BatchWriteItem, then catch it up with the events appended from its start (through the table's by_time index, else by another scan)",
            tables.events,
            req.options.segments,
            req.options
                .target_table
                .clone()
                .unwrap_or_else(|| format!("a new table next to {}", tables.active))
        );
        match (&req.stack, switching) {
            (Some(stack), true) => println!(
                "  switch readers: update stack {stack}'s {ACTIVE_TABLE_PARAMETER} (its template and other parameters kept), then catch up once more{}",
                if req.drop_old {
                    "; then drop the old table if a replay made it"
                } else {
                    ""
                }
            ),
            _ => println!("  leave readers on {}", tables.active),
        }
        return Ok(ExitCode::SUCCESS);
    }

    let progress = Progress::new("replay --aws");
    let built = replay_to_table(
        &clients.dynamodb,
        &tables.events,
        &tables.active,
        &req.options,
        |p| show(&progress, p),
    )
    .await;
    progress.finish();
    let mut built = built?;
    print!("{built}");
    let target = built.target_table.clone();
    let mut known = std::mem::take(&mut built.applied);
    // Both catch-ups read the events appended from the replay's start on.
    let since = Some(built.started_at);
    let catch_up = async |known: &mut AppliedVersions| {
        bring_up_to_date(&clients, &tables.events, &target, &req, since, Some(known)).await
    };
    let caught = catch_up(&mut known).await?;
    println!(
        "caught up {target}: {} events appended meanwhile applied ({} events {})",
        caught.events_applied, caught.events_read, caught.read_by
    );
    let (Some(stack), Some(params)) = (req.stack.as_deref(), params) else {
        println!("{}", built.switch_hint());
        return Ok(ExitCode::SUCCESS);
    };

    let catch_up_later = built.catch_up_command(Some(stack));
    let left_at = now();
    switch_readers(&cfn, stack, &params, &target, &catch_up_later)
        .await
        .with_context(|| {
            format!(
                "{target} is rebuilt and caught up but not switched to (switch by hand, or drop it)"
            )
        })?;
    let caught = catch_up(&mut known).await?;
    println!(
        "switched readers from {} to {target} (stack {stack}); caught up {} more events ({} events {})",
        tables.active, caught.events_applied, caught.events_read, caught.read_by
    );
    // `sam deploy --guided` writes every parameter into samconfig.toml: the next deploy
    // would switch readers back.
    println!(
        "if samconfig.toml's parameter_overrides sets {ACTIVE_TABLE_PARAMETER}, set it to {target} (or delete it there) before the next `sam deploy`"
    );
    let stays = if req.drop_old {
        match params.active {
            // A table a replay made, and readers have left it.
            Some(old) if old != target => {
                clients
                    .dynamodb
                    .delete_table()
                    .table_name(&old)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("dropping {old}: {}", DisplayErrorContext(e)))?;
                println!("dropped {old}");
                false
            }
            _ => {
                println!(
                    "{} stays: it is the stack's own table (CloudFormation's to delete)",
                    tables.active
                );
                true
            }
        }
    } else {
        println!(
            "{} stays until you drop it (`--drop-old` on the next replay)",
            tables.active
        );
        true
    };
    if stays {
        println!(
            "to switch readers back to {}: `{}`",
            tables.active,
            switch_back_command(stack, &req.projections, &tables.active, left_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The wall clock, as the replay's own times are taken.
/// The stack's tables (its outputs), or without a stack the functions' own variables
/// (`EVENTS_TABLE`, `READ_MODELS_TABLE`).
pub(crate) async fn tables(
    sdk: &aws_config::SdkConfig,
    stack: Option<&str>,
) -> anyhow::Result<Tables> {
    Ok(match stack {
        Some(stack) => {
            let outputs = crate::workflow_cmd::executions::stack_outputs(sdk, stack).await?;
            let output = |key: &str| {
                outputs
                    .get(key)
                    .cloned()
                    .with_context(|| format!("stack {stack} has no {key} output"))
            };
            Tables {
                events: output("EventsTableName")?,
                active: output("ReadModelsTableName")?,
                own: outputs.get(OWN_TABLE_OUTPUT).cloned(),
                dead_letter_queue: outputs.get(DEAD_LETTER_QUEUE_OUTPUT).cloned(),
            }
        }
        None => {
            let var = |name: &str| {
                std::env::var(name)
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .with_context(|| {
                        format!(
                            "{name} is not set (a DynamoDB table, with --aws; or pass --stack NAME)"
                        )
                    })
            };
            Tables {
                events: var("EVENTS_TABLE")?,
                active: var("READ_MODELS_TABLE")?,
                own: None,
                dead_letter_queue: None,
            }
        }
    })
}

fn now() -> Timestamp {
    orders_domain::ports::Clock::now(&orders_local::store::SystemClock)
}

/// The command that switches readers back to `table`, which they left at `left_at`.
fn switch_back_command(
    stack: &str,
    projections: &[ProjectionName],
    table: &str,
    left_at: Timestamp,
) -> String {
    format!(
        "orders replay --aws --stack {stack} {} --switch-to {table} --since {left_at}",
        projection_flags(projections)
    )
}

/// `--projection orders --projection daily_sales`, as a command line says them.
fn projection_flags(projections: &[ProjectionName]) -> String {
    let flags: Vec<String> = projections
        .iter()
        .map(|p| format!("--projection {}", p.as_str()))
        .collect();
    flags.join(" ")
}

/// `--switch-to TABLE`: readers go back to a table they used before. It is caught up
/// (from `--since`, when readers left it, through the `by_time` index; else by a scan),
/// the stack is pointed at it (the parameter emptied for the stack's own table), and it is
/// caught up once more with what the projector wrote to the other table meanwhile.
async fn switch_back(
    sdk: &aws_config::SdkConfig,
    clients: &AwsClients,
    tables: &Tables,
    table: &str,
    req: &AwsReplay,
) -> anyhow::Result<ExitCode> {
    let stack = req
        .stack
        .as_deref()
        .context("--switch-to needs --stack: the stack whose readers to switch")?;
    anyhow::ensure!(
        table != tables.active,
        "readers of stack {stack} already use {table}"
    );
    let own = tables.own.as_deref().with_context(|| {
        format!(
            "stack {stack} has no {OWN_TABLE_OUTPUT} output, so its own table cannot be told from a replay's: deploy the current template.yaml first"
        )
    })?;
    orders_aws::schema::summary(&clients.dynamodb, table)
        .await
        .map_err(|e| anyhow::anyhow!("cannot switch to {table}: {}", e.reason))?;
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    let params = stack_parameters(&cfn, stack).await?;
    // The stack's own table is the parameter's default: naming it would make it look like
    // a replay's table, which `--drop-old` deletes.
    let value = if table == own { "" } else { table };
    if req.dry_run {
        println!("dry run: nothing will be changed");
        println!(
            "  catch {table} up with {} ({}), then switch stack {stack}'s readers from {} to it ({ACTIVE_TABLE_PARAMETER}={value:?}), then catch it up once more",
            tables.events,
            match req.since {
                Some(since) => format!("the events from {since} on, through its by_time index"),
                None => "a scan: without --since it reads the whole table".into(),
            },
            tables.active
        );
        return Ok(ExitCode::SUCCESS);
    }
    let first = now();
    let caught = bring_up_to_date(clients, &tables.events, table, req, req.since, None).await?;
    println!(
        "caught up {table}: {} events applied ({} events {})",
        caught.events_applied, caught.events_read, caught.read_by
    );
    let catch_up_later = format!(
        "orders replay --aws --stack {stack} {} --catch-up {table} --since {first}",
        projection_flags(&req.projections)
    );
    let left_at = now();
    switch_readers(&cfn, stack, &params, value, &catch_up_later)
        .await
        .with_context(|| format!("{table} is caught up but readers were not switched to it"))?;
    // What the projector wrote to the other table since the first catch-up began.
    let again = bring_up_to_date(clients, &tables.events, table, req, Some(first), None).await?;
    println!(
        "switched readers from {} to {table} (stack {stack}); caught up {} more events ({} events {})",
        tables.active, again.events_applied, again.events_read, again.read_by
    );
    println!(
        "if samconfig.toml's parameter_overrides sets {ACTIVE_TABLE_PARAMETER}, set it to {value:?} (or delete it there) before the next `sam deploy`"
    );
    println!(
        "to switch readers back to {}: `{}`",
        tables.active,
        switch_back_command(stack, &req.projections, &tables.active, left_at)
    );
    Ok(ExitCode::SUCCESS)
}

fn show(progress: &Progress, p: ReplayProgress) {
    match p.phase {
        ReplayPhase::Scanning => progress.events(
            p.events_read,
            p.events_estimate
                .unwrap_or(p.events_read)
                .max(p.events_read),
        ),
        ReplayPhase::Writing => progress.update(
            "orders written",
            p.orders_written,
            p.orders_total.unwrap_or(p.orders_written),
        ),
    }
}

/// Catches `table` up; `known` (what it holds of each order, when this process wrote it)
/// spares reading back the orders that did not change.
async fn bring_up_to_date(
    clients: &AwsClients,
    events: &str,
    table: &str,
    req: &AwsReplay,
    since: Option<Timestamp>,
    known: Option<&mut AppliedVersions>,
) -> anyhow::Result<CatchUpSummary> {
    let target =
        DynamoReadModels::new(clients.dynamodb.clone(), table).with_projections(&req.projections);
    let progress = Progress::new("catch-up");
    let caught = catch_up(
        &clients.dynamodb,
        events,
        &target,
        &req.options,
        since,
        known,
        |p| show(&progress, p),
    )
    .await;
    progress.finish();
    let caught = caught.with_context(|| format!("catching up {table}"))?;
    for p in &caught.parked {
        println!("parked {}: {}", p.key, p.reason);
    }
    Ok(caught)
}

/// The stack's parameters, checked for [`ACTIVE_TABLE_PARAMETER`] before anything is built.
struct StackParameters {
    values: HashMap<String, String>,
    /// The table readers use unless it is the stack's own (`None`).
    active: Option<String>,
}

async fn stack_parameters(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> anyhow::Result<StackParameters> {
    let values: HashMap<String, String> = describe(cfn, stack)
        .await?
        .parameters()
        .iter()
        .filter_map(|p| {
            Some((
                p.parameter_key()?.to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let active = values.get(ACTIVE_TABLE_PARAMETER).with_context(|| {
        format!(
            "stack {stack} has no {ACTIVE_TABLE_PARAMETER} parameter, so its readers cannot be switched: deploy the current template.yaml first, or pass --no-switch"
        )
    })?;
    let active = Some(active.clone()).filter(|a| !a.is_empty());
    Ok(StackParameters { values, active })
}

/// Points the stack's readers at `table`: UpdateStack with the previous template, every
/// parameter as it was but [`ACTIVE_TABLE_PARAMETER`]; waits for the update. A timeout
/// names `catch_up`, the command to run once the update is done.
async fn switch_readers(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
    params: &StackParameters,
    table: &str,
    catch_up: &str,
) -> anyhow::Result<()> {
    let mut keep: Vec<Parameter> = params
        .values
        .keys()
        .filter(|k| k.as_str() != ACTIVE_TABLE_PARAMETER)
        .map(|k| {
            Parameter::builder()
                .parameter_key(k)
                .use_previous_value(true)
                .build()
        })
        .collect();
    keep.push(
        Parameter::builder()
            .parameter_key(ACTIVE_TABLE_PARAMETER)
            .parameter_value(table)
            .build(),
    );
    cfn.update_stack()
        .stack_name(stack)
        .use_previous_template(true)
        .set_parameters(Some(keep))
        // The template's IAM roles, and the SAM transform it is deployed through.
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityAutoExpand)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "switching readers (UpdateStack {stack}): {}; readers still use the old table",
                DisplayErrorContext(e)
            )
        })?;
    // CloudFormation takes a minute or two: say what the wait is for, and each status.
    eprintln!(
        "switching readers: updating stack {stack} ({ACTIVE_TABLE_PARAMETER} = {table}); CloudFormation takes a minute or two"
    );
    let started = Instant::now();
    let mut wait = Duration::from_millis(200);
    let mut said: Option<StackStatus> = None;
    loop {
        let s = describe(cfn, stack).await?;
        match s.stack_status() {
            Some(StackStatus::UpdateComplete) => return Ok(()),
            Some(status) if status.as_str().ends_with("_IN_PROGRESS") => {
                if said.as_ref() != Some(status) {
                    eprintln!(
                        "switching readers: stack {stack} is {} ({:.0} s)",
                        status.as_str(),
                        started.elapsed().as_secs_f64()
                    );
                    said = Some(status.clone());
                }
            }
            other => anyhow::bail!(
                "switching readers: stack {stack} is {} ({}); readers still use the old table",
                other.map_or("in an unknown state", |s| s.as_str()),
                s.stack_status_reason().unwrap_or("no reason given")
            ),
        }
        anyhow::ensure!(
            started.elapsed() < SWITCH_TIMEOUT,
            "switching readers: stack {stack} is still updating after {} minutes; when it is done, run `{catch_up}`",
            SWITCH_TIMEOUT.as_secs() / 60
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn describe(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> anyhow::Result<aws_sdk_cloudformation::types::Stack> {
    let out = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("reading stack {stack}: {}", DisplayErrorContext(e)))?;
    out.stacks()
        .first()
        .cloned()
        .with_context(|| format!("no stack named {stack}"))
}
