//! `orders sales`: the sales report of the `daily_sales` read model, from the local data
//! dir or (`--aws`) from the deployed stack's read-model table.

use crate::cli_args::DataDir;
use crate::replay_cmd::open_existing;
use anyhow::Context;
use orders::sales::{self, SalesFilter};
use orders_domain::ports::{Clock, ReadModelError, ReadModels};
use orders_domain::projection::DailySales;
use orders_handlers::system::SystemClock;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SalesArgs {
    /// The first day shown (YYYY-MM-DD, UTC). With --aws, up to a year of days from it are
    /// read with a Query each instead of a Scan of the whole table.
    #[arg(long)]
    from: Option<String>,
    /// The last day shown (YYYY-MM-DD, UTC).
    #[arg(long)]
    to: Option<String>,
    /// Only this currency (ISO 4217).
    #[arg(long)]
    currency: Option<String>,
    /// The report as JSON: the days, and the totals per currency.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    dir: DataDir,
    /// Read the deployed stack's read-model table instead (standard credential chain): the
    /// one --stack names, else READ_MODELS_TABLE.
    #[arg(long)]
    aws: bool,
    /// With --aws: the stack (the name given to `sam deploy`).
    #[arg(long, env = "ORDERS_STACK")]
    stack: Option<String>,
}

pub async fn run(args: SalesArgs) -> anyhow::Result<ExitCode> {
    let filter = SalesFilter::parse(
        args.from.as_deref(),
        args.to.as_deref(),
        args.currency.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("--{e}"))?;
    let stack = crate::aws_access::stack_for(args.aws, args.stack)?;
    args.dir.refuse_with_aws(args.aws)?;
    let (rows, place) = if args.aws {
        let (reads, table) = crate::aws_access::read_models(stack.as_deref()).await?;
        let rows = rows_of(&reads, &filter)
            .await
            .with_context(|| format!("reading {table}"))?;
        (rows, table)
    } else {
        let data_dir = &args.dir.data_dir;
        let stores = open_existing(data_dir).await?;
        let rows = rows_of(&stores.read_models, &filter)
            .await
            .with_context(|| format!("reading the sales in {}", data_dir.display()))?;
        (rows, data_dir.display().to_string())
    };
    let report = sales::report(rows, &filter);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.days.is_empty() && filter == SalesFilter::default() {
        println!("no sales yet ({place})");
    } else if report.days.is_empty() {
        println!("no sales {} ({place})", filter.describe());
    } else {
        print!("{}", sales::render_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The read model's rows the report needs: with a `--from`, only its days (on DynamoDB a
/// Query each instead of a Scan of the whole table); otherwise every day.
async fn rows_of(
    reads: &impl ReadModels,
    filter: &SalesFilter,
) -> Result<Vec<DailySales>, ReadModelError> {
    let today = SystemClock.now().date();
    match filter.days(&today) {
        Some(days) => reads.daily_sales_of(&days).await,
        None => reads.daily_sales().await,
    }
}
