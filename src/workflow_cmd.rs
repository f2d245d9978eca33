//! `orders mail|queue|topic|executions`: look at what the workflow did, from the data
//! directory's `workflows.db` (works while `orders serve` runs: SQLite WAL; `executions`
//! also from Step Functions with `--aws`), and the workflow options of `orders serve`.

use anyhow::Context;
use orders_local::workflow::db::{self, WorkflowDb};
use orders_local::workflow::{Names, WorkflowOptions, resources, services};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) mod executions;
mod render;

/// The workflow options of `orders serve`.
#[derive(Debug, clap::Args)]
pub struct WorkflowArgs {
    /// The SES sender (`${SenderAddress}`); verified unless --unverified-sender.
    #[arg(long, env = "ORDERS_SENDER", default_value = orders_local::workflow::DEFAULT_SENDER)]
    pub sender: String,
    /// Treat the sender as not verified: every confirmation email is rejected as SES
    /// rejects it (the workflow records the failure).
    #[arg(long, env = "ORDERS_SENDER_UNVERIFIED")]
    pub unverified_sender: bool,
    /// Seconds a received queue message stays hidden.
    #[arg(long, env = "ORDERS_QUEUE_VISIBILITY_TIMEOUT", default_value_t = 30.0)]
    pub queue_visibility_timeout: f64,
    /// Receives before a failing queue message moves to the dead-letter queue.
    #[arg(long, env = "ORDERS_QUEUE_MAX_RECEIVE_COUNT", default_value_t = 3)]
    pub queue_max_receive_count: u32,
    /// Days closed executions, emails, topic messages and consumed queue messages are
    /// kept (Step Functions keeps executions 90 days). Queue messages are kept as the
    /// template's queues keep them: 4 days, 14 in the dead-letter queue.
    #[arg(long, env = "ORDERS_RETENTION_DAYS", default_value_t = 90.0)]
    pub retention_days: f64,
    /// Run without the workflow (the projector only logs the starts).
    #[arg(long)]
    pub no_workflow: bool,
}

impl WorkflowArgs {
    pub fn options(&self) -> anyhow::Result<Option<WorkflowOptions>> {
        if self.no_workflow {
            return Ok(None);
        }
        anyhow::ensure!(
            self.sender.contains('@') && !self.sender.contains(char::is_whitespace),
            "--sender must be an email address, got {:?}",
            self.sender
        );
        anyhow::ensure!(
            self.queue_visibility_timeout.is_finite()
                && (0.0..=43_200.0).contains(&self.queue_visibility_timeout),
            "--queue-visibility-timeout must be between 0 and 43200 seconds"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.queue_max_receive_count),
            "--queue-max-receive-count must be between 1 and 1000"
        );
        anyhow::ensure!(
            self.retention_days.is_finite() && (0.001..=36_500.0).contains(&self.retention_days),
            "--retention-days must be between 0.001 and 36500"
        );
        let delays = std::env::var(resources::DELAY_ENV)
            .map(|s| resources::parse_delays(&s))
            .unwrap_or_default();
        Ok(Some(WorkflowOptions {
            sender: self.sender.clone(),
            sender_verified: !self.unverified_sender,
            visibility_timeout: Duration::from_secs_f64(self.queue_visibility_timeout),
            max_receive_count: self.queue_max_receive_count,
            delays,
            retention: orders_local::workflow::retention::Retention {
                executions: Duration::from_secs_f64(self.retention_days * 86_400.0),
                ..Default::default()
            },
            ..WorkflowOptions::default()
        }))
    }
}

#[derive(Debug, clap::Args)]
pub struct MailArgs {
    #[command(subcommand)]
    pub command: MailCmd,
    #[command(flatten)]
    pub dir: crate::cli_args::DataDir,
}

#[derive(Debug, clap::Subcommand)]
pub enum MailCmd {
    /// Sent messages, newest first.
    List {
        /// At most this many (1 or more).
        #[arg(long, default_value_t = 50, value_parser = crate::cli_args::at_least_one)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One message (by SES message id or list number): headers and text, or the .eml.
    Show {
        id: String,
        /// Print the RFC 5322 message as stored.
        #[arg(long)]
        eml: bool,
    },
    /// SES identities and whether they are verified.
    Identities,
    /// Mark an address (or domain) as a verified identity.
    Verify { address: String },
    /// Mark an address (or domain) as not verified: mail from it is rejected.
    Unverify { address: String },
}

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    pub command: QueueCmd,
    #[command(flatten)]
    pub dir: crate::cli_args::DataDir,
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueCmd {
    /// Messages of the fulfilment queue (waiting or in flight; --all: consumed too).
    List {
        #[arg(long)]
        all: bool,
        /// At most this many (1 or more).
        #[arg(long, default_value_t = 100, value_parser = crate::cli_args::at_least_one)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Messages in the dead-letter queue, with why they are there.
    Dlq {
        #[arg(long)]
        json: bool,
    },
    /// Move dead-letter messages (all, or one by id) back to the fulfilment queue.
    Redrive { message_id: Option<String> },
}

#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub command: TopicCmd,
    #[command(flatten)]
    pub dir: crate::cli_args::DataDir,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicCmd {
    /// Messages published on the order topic, newest first.
    List {
        /// At most this many (1 or more).
        #[arg(long, default_value_t = 50, value_parser = crate::cli_args::at_least_one)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ExecutionsArgs {
    #[command(subcommand)]
    pub command: ExecutionsCmd,
    #[command(flatten)]
    pub dir: crate::cli_args::DataDir,
    #[command(flatten)]
    pub aws: executions::AwsArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum ExecutionsCmd {
    /// Executions, newest first.
    List {
        /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED or PENDING_REDRIVE.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1 or more).
        #[arg(long, default_value_t = 50, value_parser = crate::cli_args::at_least_one)]
        limit: usize,
        /// The ListExecutions JSON.
        #[arg(long)]
        json: bool,
    },
    /// One execution (by order id, execution name or ARN) with each state and its timing.
    Show {
        name: String,
        /// The DescribeExecution JSON plus the states.
        #[arg(long)]
        json: bool,
    },
    /// The execution's history (GetExecutionHistory).
    History {
        name: String,
        /// The AWS GetExecutionHistory JSON.
        #[arg(long)]
        json: bool,
    },
    /// Redrive a FAILED, TIMED_OUT or ABORTED execution (RedriveExecution): it goes on
    /// from the state that did not finish, on the running `orders serve` (or, with
    /// `--aws`, on Step Functions).
    Redrive {
        name: String,
        /// The server (default: the one serving the data dir); unused with --aws.
        #[arg(long, env = "ORDERS_URL")]
        url: Option<String>,
    },
    /// Stop a RUNNING execution (StopExecution): it ends ABORTED, and can be redriven
    /// (on the running `orders serve`, or with `--aws` on Step Functions).
    Stop {
        name: String,
        /// The error it ends with.
        #[arg(long)]
        error: Option<String>,
        /// The cause it ends with.
        #[arg(long)]
        cause: Option<String>,
        /// The server (default: the one serving the data dir); unused with --aws.
        #[arg(long, env = "ORDERS_URL")]
        url: Option<String>,
    },
}

async fn open(dir: &Path) -> anyhow::Result<WorkflowDb> {
    anyhow::ensure!(
        dir.join(db::FILE_NAME).exists(),
        "no workflow store in {} (start `orders serve` first, or pass --data-dir)",
        dir.display()
    );
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || WorkflowDb::open(&d))
        .await?
        .with_context(|| format!("opening {}", dir.join(db::FILE_NAME).display()))
}

/// Runs `f` with the database open, and closes it (committing queued writes) afterwards.
async fn with_db<T>(
    dir: &Path,
    f: impl AsyncFnOnce(&WorkflowDb) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let db = open(dir).await?;
    let out = f(&db).await;
    let d = db.clone();
    let _ = tokio::task::spawn_blocking(move || d.close()).await;
    out
}

fn ts(ms: i64) -> String {
    asl::timestamp::format_millis(ms)
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn mail(args: MailArgs) -> anyhow::Result<ExitCode> {
    with_db(&args.dir.data_dir, async |db| match args.command {
        MailCmd::List { limit, json } => {
            let list = db.read(|c| services::mails(c, limit))?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no mail");
            } else {
                for m in list {
                    println!(
                        "{}  {}  {} -> {}  {}",
                        m.message_id,
                        ts(m.sent_at),
                        m.from,
                        m.to.join(", "),
                        m.subject
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MailCmd::Show { id, eml } => {
            let found = db.read(|c| services::mail(c, &id))?;
            let m = found.ok_or_else(|| anyhow::anyhow!("no mail with id {id}"))?;
            if eml {
                print!("{}", m.raw);
                return Ok(ExitCode::SUCCESS);
            }
            let head = m.raw.split("\r\n\r\n").next().unwrap_or("");
            for line in head.lines().filter(|l| !l.starts_with("Content-")) {
                println!("{line}");
            }
            for (kind, body) in resources::decode_parts(&m.raw) {
                if kind == "text/plain" {
                    println!("\n{body}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MailCmd::Identities => {
            for (a, v) in db.read(services::identities)? {
                println!("{a}  {}", if v { "verified" } else { "NOT verified" });
            }
            Ok(ExitCode::SUCCESS)
        }
        MailCmd::Verify { address } | MailCmd::Unverify { address } if !address.contains('.') => {
            anyhow::bail!("{address:?} is not an email address or domain")
        }
        MailCmd::Verify { address } => {
            db.write(move |c| services::set_identity(c, &address, true))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        MailCmd::Unverify { address } => {
            db.write(move |c| services::set_identity(c, &address, false))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

fn print_queue(list: &[services::QueueMessage], dlq: bool) {
    if list.is_empty() {
        println!("no messages");
    }
    for m in list {
        let mut line = format!(
            "{}  {}  {}  received {}x",
            m.message_id,
            ts(m.sent_at),
            m.state,
            m.receive_count
        );
        if let Some(c) = &m.correlation_id {
            line.push_str(&format!("  correlation {c}"));
        }
        if dlq {
            if let Some(r) = &m.dead_reason {
                line.push_str(&format!("\n    reason: {r}"));
            }
        } else if let Some(e) = &m.last_error {
            line.push_str(&format!("\n    last error: {e}"));
        }
        line.push_str(&format!("\n    body: {}", m.body));
        println!("{line}");
    }
}

pub async fn queue(args: QueueArgs) -> anyhow::Result<ExitCode> {
    let names = Names::default();
    with_db(&args.dir.data_dir, async |db| match args.command {
        QueueCmd::List { all, limit, json } => {
            let q = names.queue.clone();
            let list = db.read(|c| services::queue_messages(c, &q, all, limit))?;
            if json {
                print_json(&list)?;
            } else {
                println!("{}", names.queue_url(&names.queue));
                print_queue(&list, false);
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCmd::Dlq { json } => {
            let q = names.dead_letter_queue.clone();
            let list = db.read(|c| services::queue_messages(c, &q, false, 0))?;
            if json {
                print_json(&list)?;
            } else {
                println!("{}", names.queue_url(&names.dead_letter_queue));
                print_queue(&list, true);
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCmd::Redrive { message_id } => {
            let q = names.dead_letter_queue.clone();
            let wanted = message_id.clone();
            let moved = db
                .write(move |c| {
                    services::redrive(c, &q, wanted.as_deref(), asl::clock::system_now_millis())
                })
                .await?;
            if let Some(id) = message_id
                && moved.is_empty()
            {
                anyhow::bail!("no message {id} in the dead-letter queue");
            }
            println!(
                "moved {} message(s) back to {}",
                moved.len(),
                names.queue_url(&names.queue)
            );
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

pub async fn topic(args: TopicArgs) -> anyhow::Result<ExitCode> {
    with_db(&args.dir.data_dir, async |db| match args.command {
        TopicCmd::List { limit, json } => {
            let list = db.read(|c| services::topic_messages(c, limit))?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no messages");
            } else {
                for m in list {
                    println!(
                        "{}  {}  {}\n    {}",
                        m.message_id,
                        ts(m.published_at),
                        m.topic_arn,
                        m.message
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
}

/// `orders executions …`: from the local data dir, or from Step Functions with `--aws`.
pub async fn executions(args: ExecutionsArgs) -> anyhow::Result<ExitCode> {
    args.dir.refuse_with_aws(args.aws.aws)?;
    // Asked of the running server (its engine runs the execution), or of Step Functions.
    let asked = match &args.command {
        ExecutionsCmd::Redrive { name, url } => Some((name, url, "redrive", None, None)),
        ExecutionsCmd::Stop {
            name,
            error,
            cause,
            url,
        } => Some((name, url, "stop", error.clone(), cause.clone())),
        _ => None,
    };
    if let Some((name, url, action, error, cause)) = asked {
        if args.aws.aws {
            let source = executions::Source::aws(&args.aws).await?;
            return executions::act_on_aws(&source, name, action, error, cause).await;
        }
        let form: Vec<(&str, String)> = [("error", error), ("cause", cause)]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        let url = orders::client::Connection::server_url(url.clone(), &args.dir.data_dir);
        return executions::ask_server(&url, name, action, &form).await;
    }
    if args.aws.aws {
        let source = executions::Source::aws(&args.aws).await?;
        return executions::run(&source, args.command).await;
    }
    with_db(&args.dir.data_dir, async |db| {
        executions::run(&executions::Source::Local(db.clone()), args.command).await
    })
    .await
}
