//! `orders dead-letters list|redrive --aws`: the stream batches the projector Lambda gave
//! up on. Lambda leaves in the `ProjectorDeadLetterQueue` an invocation record naming the
//! shard and the sequence numbers of the batch, not the records; the AWS console can only
//! show that JSON. Here each is read back from DynamoDB Streams (while it holds them, 24
//! hours) and shown as the events it held; a redrive hands them to the same projector code
//! the Lambda runs (views, and a workflow start for a new order, both idempotent) and
//! deletes the message only when every record was projected.

use anyhow::Context;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use orders_aws::streams::{self, BatchFailure};
use orders_handlers::projector::Projector;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::process::ExitCode;

/// Where the queue, the read models and the state machine are.
#[derive(Debug, clap::Args)]
pub struct AwsDeadLetterArgs {
    /// The projector's dead letters on AWS (its stream mapping's on-failure queue) instead
    /// of the local data dir.
    #[arg(long)]
    pub aws: bool,
    /// For --aws: the on-failure queue (the stack's `ProjectorDeadLetterQueueUrl` output).
    #[arg(long, env = "PROJECTOR_DLQ_URL", value_name = "URL")]
    pub queue_url: Option<String>,
    /// For --aws: take the queue, the read-model table and the state machine from this
    /// CloudFormation stack's outputs (the name given to `sam deploy`).
    #[arg(long, env = "ORDERS_STACK", value_name = "NAME")]
    pub stack: Option<String>,
    /// For --aws: messages received (and hidden from others) at once. `list` shows at most
    /// this many; `redrive` works through a longer queue in rounds of this many.
    #[arg(long, value_name = "N", default_value_t = 1_000, requires = "aws",
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub hold: u16,
}

/// How long received messages stay hidden while this command works through them (long
/// enough for a round of a thousand batches, so no receipt handle expires before its
/// delete); they are made visible again before it ends (the ones it redrove are deleted),
/// or after this if it is killed.
const HOLD_SECONDS: i32 = 300;

struct Letter {
    message_id: String,
    receipt_handle: String,
    sent_at: Option<String>,
    body: String,
}

struct Aws {
    clients: orders_aws::AwsClients,
    sqs: aws_sdk_sqs::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    queue_url: String,
    stack: Option<std::collections::HashMap<String, String>>,
}

const NO_QUEUE: &str = "--aws needs the projector's dead-letter queue: pass --stack NAME or --queue-url URL (or set PROJECTOR_DLQ_URL)";

impl Aws {
    async fn connect(args: &AwsDeadLetterArgs) -> anyhow::Result<Aws> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        // Said before the SDK looks for credentials and a region.
        if given(&args.stack).is_none() && given(&args.queue_url).is_none() {
            anyhow::bail!("{NO_QUEUE}");
        }
        let clients = crate::aws_access::clients().await?;
        let sdk = &clients.sdk;
        let stack = match given(&args.stack) {
            Some(name) => Some(crate::workflow_cmd::executions::stack_outputs(sdk, &name).await?),
            None => None,
        };
        let queue_url = match (&stack, given(&args.queue_url)) {
            (Some(outputs), _) => outputs
                .get(crate::replay_aws::DEAD_LETTER_QUEUE_OUTPUT)
                .cloned()
                .context("the stack has no ProjectorDeadLetterQueueUrl output")?,
            (None, Some(url)) => url,
            (None, None) => anyhow::bail!("{NO_QUEUE}"),
        };
        Ok(Aws {
            sqs: aws_sdk_sqs::Client::new(sdk),
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            clients,
            queue_url,
            stack,
        })
    }

    /// Up to `limit` messages not `seen` before, held invisible until released; `true`
    /// with them when the round was full, so the queue may hold more.
    async fn receive_round(
        &self,
        seen: &mut HashSet<String>,
        limit: usize,
    ) -> anyhow::Result<(Vec<Letter>, bool)> {
        let mut out = Vec::new();
        while out.len() < limit {
            let page = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages((limit - out.len()).min(10) as i32)
                .visibility_timeout(HOLD_SECONDS)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "ReceiveMessage {}: {}",
                        self.queue_url,
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?;
            let mut new = 0;
            for m in page.messages() {
                let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                    continue;
                };
                if !seen.insert(id.to_string()) {
                    continue;
                }
                new += 1;
                let sent_at = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|ms| ms.parse::<i64>().ok())
                    .map(|ms| orders_domain::Timestamp(ms).to_string());
                out.push(Letter {
                    message_id: id.to_string(),
                    receipt_handle: handle.to_string(),
                    sent_at,
                    body: m.body().unwrap_or_default().to_string(),
                });
            }
            if new == 0 {
                return Ok((out, false));
            }
        }
        Ok((out, true))
    }

    /// Makes held messages visible again at once (best effort: they reappear anyway).
    async fn release(&self, letters: &[&Letter]) {
        for l in letters {
            let released = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(&l.receipt_handle)
                .visibility_timeout(0)
                .send()
                .await;
            if let Err(e) = released {
                tracing::warn!(message_id = %l.message_id, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "could not release the message");
            }
        }
    }

    fn region(&self) -> String {
        self.clients
            .sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// The batch a letter names, as the Lambda event it was.
    async fn batch_event(
        &self,
        failure: &BatchFailure,
    ) -> Result<aws_lambda_events::event::dynamodb::Event, streams::StreamError> {
        let records = streams::read_batch(&self.streams, &failure.batch).await?;
        streams::lambda_event(&records, &failure.batch.stream_arn, &self.region())
    }

    /// A setting from the stack's outputs when `--stack` was given, else from the
    /// environment (the Lambda functions' own variables).
    fn setting(&self, output: &str, env: &str) -> anyhow::Result<String> {
        match &self.stack {
            Some(outputs) => outputs
                .get(output)
                .cloned()
                .with_context(|| format!("the stack has no {output} output")),
            None => std::env::var(env)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .with_context(|| {
                    format!("{env} is not set (needed to redrive with --aws; or pass --stack NAME)")
                }),
        }
    }
}

/// One record of a batch, as the list shows it.
fn record_summary(r: &aws_lambda_events::event::dynamodb::EventRecord) -> Value {
    let seq = r.change.sequence_number.clone().unwrap_or_default();
    match orders_aws::codec::envelope_from_image(r.change.new_image.clone()) {
        Ok(e) => json!({
            "sequence_number": seq,
            "order_id": e.aggregate_id,
            "version": e.version,
            "event_type": e.event_type,
        }),
        Err(err) => json!({ "sequence_number": seq, "undecodable": err.to_string() }),
    }
}

pub async fn list(args: &AwsDeadLetterArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let aws = Aws::connect(args).await?;
    let (letters, more) = aws
        .receive_round(&mut HashSet::new(), usize::from(args.hold))
        .await?;
    let mut shown = Vec::new();
    for l in &letters {
        let mut v = json!({ "message_id": l.message_id, "sent_at": l.sent_at });
        match BatchFailure::parse(&l.body) {
            Err(e) => {
                v["error"] = json!(e.to_string());
                v["body"] = json!(l.body);
            }
            Ok(f) => {
                v["reason"] = json!(f.reason());
                v["batch"] = serde_json::to_value(&f.batch)?;
                match aws.batch_event(&f).await {
                    Ok(event) => {
                        v["records"] = event.records.iter().map(record_summary).collect();
                    }
                    Err(e) => v["records_error"] = json!(e.to_string()),
                }
            }
        }
        shown.push(v);
    }
    aws.release(&letters.iter().collect::<Vec<_>>()).await;
    if as_json {
        for v in &shown {
            println!("{}", serde_json::to_string(v)?);
        }
    } else if shown.is_empty() {
        println!("no dead letters in {}", aws.queue_url);
    } else {
        for v in &shown {
            print_letter(v);
        }
    }
    if more {
        // Not on stdout: `--json` keeps one object per line there.
        eprintln!(
            "the first {} shown; the queue may hold more (--hold N shows more)",
            shown.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_letter(v: &Value) {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
    println!("message {}  sent {}", s("message_id"), s("sent_at"));
    if let Some(e) = v["error"].as_str() {
        println!("  {e}");
        return;
    }
    let b = &v["batch"];
    println!("  {}", s("reason"));
    println!(
        "  shard {}  sequence numbers {} to {}  ({} record(s))",
        b["shardId"].as_str().unwrap_or("-"),
        b["startSequenceNumber"].as_str().unwrap_or("-"),
        b["endSequenceNumber"].as_str().unwrap_or("-"),
        b["batchSize"]
    );
    if let Some(e) = v["records_error"].as_str() {
        println!("  records: {e}");
    }
    for r in v["records"].as_array().into_iter().flatten() {
        match r["undecodable"].as_str() {
            Some(e) => println!(
                "    {}  undecodable: {e}",
                r["sequence_number"].as_str().unwrap_or("-")
            ),
            None => println!(
                "    {}  {}  v{}  {}",
                r["sequence_number"].as_str().unwrap_or("-"),
                r["order_id"].as_str().unwrap_or("-"),
                r["version"],
                r["event_type"].as_str().unwrap_or("-")
            ),
        }
    }
}

pub async fn redrive(
    args: &AwsDeadLetterArgs,
    message_id: Option<&str>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let aws = Aws::connect(args).await?;
    let reads = aws.clients.read_models(&orders_aws::ReadModelsConfig {
        table: aws.setting("ReadModelsTableName", "READ_MODELS_TABLE")?,
    });
    let starter = aws.clients.workflow_starter(&orders_aws::WorkflowConfig {
        state_machine_arn: aws.setting("StateMachineArn", "STATE_MACHINE_ARN")?,
    });
    let projector = Projector::live(reads, starter);
    // Kept letters stay held until the end, so a later round does not receive them again.
    let mut seen = HashSet::new();
    let mut kept: Vec<Letter> = Vec::new();
    let (mut chosen_any, mut redriven, mut failed) = (false, 0usize, 0usize);
    loop {
        let (letters, more) = match aws.receive_round(&mut seen, usize::from(args.hold)).await {
            Ok(round) => round,
            Err(e) => {
                aws.release(&kept.iter().collect::<Vec<_>>()).await;
                return Err(e);
            }
        };
        let (chosen, others): (Vec<Letter>, Vec<Letter>) = letters
            .into_iter()
            .partition(|l| all || Some(l.message_id.as_str()) == message_id);
        kept.extend(others);
        let found = !chosen.is_empty();
        chosen_any |= found;
        for l in chosen {
            match redrive_one(&aws, &projector, &l).await {
                Ok(n) => {
                    let deleted = aws
                        .sqs
                        .delete_message()
                        .queue_url(&aws.queue_url)
                        .receipt_handle(&l.receipt_handle)
                        .send()
                        .await;
                    match deleted {
                        Ok(_) => {
                            redriven += 1;
                            println!("redriven {}: {n} record(s) projected", l.message_id);
                        }
                        // Projected, but the message stays: a second redrive is harmless.
                        Err(e) => {
                            failed += 1;
                            println!(
                                "projected {} but could not delete it: {}",
                                l.message_id,
                                aws_sdk_sqs::error::DisplayErrorContext(e)
                            );
                        }
                    }
                }
                Err(reason) => {
                    failed += 1;
                    println!("kept {}: {reason}", l.message_id);
                    kept.push(l);
                }
            }
        }
        if !more || (found && !all) {
            break;
        }
    }
    aws.release(&kept.iter().collect::<Vec<_>>()).await;
    if !chosen_any {
        return match message_id {
            Some(id) => Err(anyhow::anyhow!("no message {id} in {}", aws.queue_url)),
            None => {
                println!("no dead letters in {}", aws.queue_url);
                Ok(ExitCode::SUCCESS)
            }
        };
    }
    println!("{redriven} redriven, {failed} kept");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Projects the letter's batch again; the number of records, or why not.
async fn redrive_one<R, W>(
    aws: &Aws,
    projector: &Projector<R, W>,
    l: &Letter,
) -> Result<usize, String>
where
    R: orders_domain::ports::ReadModels,
    W: orders_domain::ports::WorkflowStarter,
{
    let failure = BatchFailure::parse(&l.body).map_err(|e| e.to_string())?;
    let event = aws.batch_event(&failure).await.map_err(|e| e.to_string())?;
    let n = event.records.len();
    let (response, reason) = projector.handle_explained(event).await;
    match response.batch_item_failures.first() {
        None => Ok(n),
        Some(first) => Err(reason.unwrap_or_else(|| {
            format!(
                "the projector failed the record with sequence number {}",
                first.item_identifier.as_deref().unwrap_or("-")
            )
        })),
    }
}
