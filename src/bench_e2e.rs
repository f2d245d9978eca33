//! `orders bench e2e`: the whole loop against an in-process runtime with the workflow:
//! `POST /orders` → projection → execution (SNS, SQS, SES, recorder) → OrderConfirmed
//! projected. Reports orders/s from the first POST until every execution succeeded with
//! its three effects stored, and the POST → confirmed latency.

use anyhow::Context;
use hyper::body::Bytes;
use orders::bench::{Load, Posted, percentile, post_orders};
use orders::runtime::{Runtime, RuntimeConfig};
use orders_local::workflow::{WorkflowOptions, services};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    #[command(flatten)]
    load: Load,
    /// How long to wait for the last executions after the load stops.
    #[arg(long, default_value_t = 120)]
    drain_timeout_seconds: u64,
    #[arg(long)]
    json: bool,
    /// Also write a mail/<id>.eml file per email (as `orders serve` does).
    #[arg(long)]
    mail_files: bool,
    /// Also report each second of the load: orders POSTed, cores used, and the
    /// POST→confirmed latency of the orders POSTed in it (shows where a backlog builds).
    #[arg(long)]
    timeline: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    connections: usize,
    target_rate: Option<u64>,
    load_seconds: f64,
    orders: usize,
    errors: usize,
    /// POST acknowledged per second during the load.
    posted_per_sec: f64,
    /// Executions succeeded (with their three effects) per second, from the first POST
    /// to the last execution's end.
    completed_per_sec: f64,
    complete_seconds: f64,
    /// CPU time of the whole process (runtime and in-process load generator, user and
    /// system) per order, from the first POST until the last execution ended: on a shared
    /// machine a steadier measure of the cost of an order than the rates.
    cpu_ms_per_order: f64,
    /// The share of the machine's CPU time (all cores) the hypervisor gave to other guests
    /// while the load ran and drained (`steal` in `/proc/stat`), in percent; `None` where
    /// the kernel does not say. On a shared VM it tells a slow run from a slow build.
    host_steal_percent: Option<f64>,
    post_ms_p50: f64,
    post_ms_p99: f64,
    confirmed_ms_p50: f64,
    confirmed_ms_p99: f64,
    confirmed_ms_max: f64,
    confirmed_samples: usize,
    executions_succeeded: u64,
    sns_messages: u64,
    sqs_messages: u64,
    emails: u64,
    /// With `--timeline`: one entry per second of the load.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    timeline: Vec<Second>,
}

/// One second of the load: the orders POSTed in it and how long they took to be confirmed.
#[derive(Debug, serde::Serialize)]
struct Second {
    second: u64,
    orders: usize,
    /// CPU time the process used in this second, in cores (2.0 = both cores of a 2-core
    /// machine busy the whole second).
    cores: f64,
    confirmed_ms_p50: f64,
    confirmed_ms_p99: f64,
    confirmed_ms_max: f64,
}

type Times = Arc<Mutex<HashMap<String, Instant>>>;

struct Counts {
    succeeded: u64,
    sns: u64,
    sqs: u64,
    mail: u64,
}

fn counts(db: &orders_local::workflow::db::WorkflowDb) -> anyhow::Result<Counts> {
    let by_status = db.count_by_status()?;
    let succeeded = by_status
        .iter()
        .find(|(s, _)| s == "SUCCEEDED")
        .map_or(0, |(_, n)| *n);
    let (sns, sqs, mail) = db.read(|c| {
        Ok((
            services::count(c, "topic_messages")?,
            services::count(c, "queue_messages")?,
            services::count(c, "mail")?,
        ))
    })?;
    Ok(Counts {
        succeeded,
        sns,
        sqs,
        mail,
    })
}

pub async fn run(args: E2eArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.load.connections > 0,
        "--connections must be at least 1"
    );
    let dir = std::env::temp_dir().join(format!(
        "orders-bench-e2e-{}-{}",
        std::process::id(),
        asl::clock::system_now_millis()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let confirmed: Times = Arc::default();
    let observer = {
        let confirmed = confirmed.clone();
        Arc::new(move |e: &orders_domain::EventEnvelope| {
            if e.event_type == "OrderConfirmed"
                && let Ok(mut c) = confirmed.lock()
            {
                c.insert(e.aggregate_id.clone(), Instant::now());
            }
        })
    };
    let runtime = Runtime::start_with_workflow(
        RuntimeConfig {
            addr: "127.0.0.1:0".parse()?,
            data_dir: dir.clone(),
            observer: Some(observer),
            allowed_hosts: vec![],
            allowed_origins: vec![],
            auth: false,
            throttle: false,
        },
        WorkflowOptions {
            mail_files: args.mail_files,
            ..WorkflowOptions::default()
        },
    )
    .await?;
    let result = measure(&runtime, &args, &confirmed).await;
    runtime.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "end to end: {} connections{}, {:.1} s of load\n  POSTed        {:.0}/s ({} orders, {} errors), POST p50 {:.2} ms, p99 {:.2} ms\n  completed     {:.0} orders/s (all executions SUCCEEDED after {:.1} s)\n  CPU           {:.2} ms per order (the whole process, load generator included)\n  POST→confirmed p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)\n  effects       {} executions SUCCEEDED, {} SNS, {} SQS, {} emails",
            report.connections,
            report
                .target_rate
                .map(|r| format!(" at {r}/s"))
                .unwrap_or_default(),
            report.load_seconds,
            report.posted_per_sec,
            report.orders,
            report.errors,
            report.post_ms_p50,
            report.post_ms_p99,
            report.completed_per_sec,
            report.complete_seconds,
            report.cpu_ms_per_order,
            report.confirmed_ms_p50,
            report.confirmed_ms_p99,
            report.confirmed_ms_max,
            report.confirmed_samples,
            report.executions_succeeded,
            report.sns_messages,
            report.sqs_messages,
            report.emails,
        );
        if let Some(steal) = report.host_steal_percent {
            println!(
                "  host          {steal:.1} % of the machine's CPU time went to other guests (steal)"
            );
        }
        if !report.timeline.is_empty() {
            println!("  second  orders  cores  confirmed p50 / p99 / max (ms)");
            for s in &report.timeline {
                println!(
                    "  {:>6}  {:>6}  {:>5.2}  {:.1} / {:.1} / {:.1}",
                    s.second,
                    s.orders,
                    s.cores,
                    s.confirmed_ms_p50,
                    s.confirmed_ms_p99,
                    s.confirmed_ms_max
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_complete(
    runtime: &Runtime,
    expected: u64,
    timeout: Duration,
) -> anyhow::Result<Counts> {
    let wf = runtime.workflow().context("the workflow is not running")?;
    let deadline = Instant::now() + timeout;
    loop {
        let db = wf.db.clone();
        let c = tokio::task::spawn_blocking(move || counts(&db)).await??;
        if (c.succeeded >= expected && c.sns >= expected && c.sqs >= expected && c.mail >= expected)
            || Instant::now() > deadline
        {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn measure(runtime: &Runtime, args: &E2eArgs, confirmed: &Times) -> anyhow::Result<Report> {
    let body = Bytes::from(serde_json::to_vec(&orders::sample::order("bench"))?);
    let drain = Duration::from_secs(args.drain_timeout_seconds);
    // Warm-up, unmeasured, and drained so the measured run starts from quiet.
    let warmup = Duration::from_secs(args.load.warmup_seconds);
    let warm = post_orders(runtime.addr, &args.load, warmup, body.clone()).await?;
    wait_complete(runtime, warm.posted.len() as u64, drain).await?;
    let before = {
        let db = runtime.workflow().context("no workflow")?.db.clone();
        tokio::task::spawn_blocking(move || counts(&db)).await??
    };

    let started = Instant::now();
    let cpu_before = process_cpu();
    let steal_before = host_cpu();
    let cores = args.timeline.then(|| sample_cores(started));
    let seconds_of_load = Duration::from_secs(args.load.seconds);
    let run = post_orders(runtime.addr, &args.load, seconds_of_load, body).await?;
    let (posted, errors) = (run.posted, run.errors);
    let load_seconds = started.elapsed().as_secs_f64();
    let n = posted.len() as u64;
    let after = wait_complete(runtime, before.succeeded + n, drain).await?;
    let complete_seconds = started.elapsed().as_secs_f64();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let host_steal_percent = steal_between(steal_before, host_cpu());
    runtime.wait_projected().await;

    let confirmed = confirmed.lock().map(|c| c.clone()).unwrap_or_default();
    let mut lat: Vec<f64> = posted
        .iter()
        .filter_map(|p| {
            confirmed
                .get(&p.order_id)
                .map(|c| c.saturating_duration_since(p.sent).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut post_ms: Vec<f64> = posted.iter().map(|p| p.ms).collect();
    post_ms.sort_by(f64::total_cmp);
    let timeline = match cores {
        Some((stop, sampler)) => {
            let _ = stop.send(());
            let cores = sampler.await.context("the CPU sampler")?;
            seconds(&posted, &confirmed, started, &cores)
        }
        None => vec![],
    };
    let done = after.succeeded - before.succeeded;
    Ok(Report {
        connections: args.load.connections,
        target_rate: args.load.rate,
        load_seconds,
        orders: posted.len(),
        errors,
        posted_per_sec: posted.len() as f64 / load_seconds,
        completed_per_sec: done as f64 / complete_seconds,
        complete_seconds,
        cpu_ms_per_order: cpu.as_secs_f64() * 1000.0 / (posted.len().max(1) as f64),
        host_steal_percent,
        post_ms_p50: percentile(&post_ms, 0.5),
        post_ms_p99: percentile(&post_ms, 0.99),
        confirmed_ms_p50: percentile(&lat, 0.5),
        confirmed_ms_p99: percentile(&lat, 0.99),
        confirmed_ms_max: lat.last().copied().unwrap_or(0.0),
        confirmed_samples: lat.len(),
        executions_succeeded: done,
        sns_messages: after.sns - before.sns,
        sqs_messages: after.sqs - before.sqs,
        emails: after.mail - before.mail,
        timeline,
    })
}

/// The cores the process used from one sample to the next, with when (seconds after the
/// load began) that interval ended.
type CoreSamples = Vec<(f64, f64)>;

/// Samples the process's CPU time about once a second from `started`, as the cores used
/// since the previous sample; the last, partial interval is added when `stop` fires.
fn sample_cores(
    started: Instant,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<CoreSamples>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut samples = vec![];
        let (mut last, mut at) = (process_cpu(), Instant::now());
        let mut tick =
            tokio::time::interval_at((at + Duration::from_secs(1)).into(), Duration::from_secs(1));
        // A late tick (a busy machine) is not made up with a burst of near-empty intervals.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let end = tokio::select! {
                _ = tick.tick() => false,
                _ = &mut stopped => true,
            };
            let (now, now_at) = (process_cpu(), Instant::now());
            let wall = now_at.saturating_duration_since(at).as_secs_f64();
            if wall > 0.0 {
                let ended = now_at.saturating_duration_since(started).as_secs_f64();
                samples.push((ended, now.saturating_sub(last).as_secs_f64() / wall));
            }
            if end {
                return samples;
            }
            (last, at) = (now, now_at);
        }
    });
    (stop, sampler)
}

/// The latency of the orders POSTed in each second of the load, with that second's cores.
fn seconds(
    posted: &[Posted],
    confirmed: &HashMap<String, Instant>,
    started: Instant,
    cores: &[(f64, f64)],
) -> Vec<Second> {
    let mut by_second: std::collections::BTreeMap<u64, (usize, Vec<f64>)> = Default::default();
    for p in posted {
        let slot = by_second
            .entry(p.sent.saturating_duration_since(started).as_secs())
            .or_default();
        slot.0 += 1;
        if let Some(c) = confirmed.get(&p.order_id) {
            slot.1
                .push(c.saturating_duration_since(p.sent).as_secs_f64() * 1000.0);
        }
    }
    by_second
        .into_iter()
        .map(|(second, (orders, mut lat))| {
            lat.sort_by(f64::total_cmp);
            Second {
                second,
                orders,
                // The interval that covers the middle of this second.
                cores: cores
                    .iter()
                    .find(|(ended, _)| *ended > second as f64 + 0.5)
                    .map_or(0.0, |(_, c)| *c),
                confirmed_ms_p50: percentile(&lat, 0.5),
                confirmed_ms_p99: percentile(&lat, 0.99),
                confirmed_ms_max: lat.last().copied().unwrap_or(0.0),
            }
        })
        .collect()
}

/// The machine's CPU time so far, in the kernel's ticks: (stolen by the hypervisor, all).
type HostCpu = Option<(u64, u64)>;

fn host_cpu() -> HostCpu {
    parse_host_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line of `/proc/stat`: user, nice, system, idle, iowait, irq, softirq, steal
/// (guest time is already counted in user).
fn parse_host_cpu(stat: &str) -> HostCpu {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let steal = *ticks.get(7)?;
    Some((steal, ticks.iter().sum()))
}

fn steal_between(before: HostCpu, after: HostCpu) -> Option<f64> {
    let ((s0, t0), (s1, t1)) = (before?, after?);
    let total = t1.checked_sub(t0).filter(|t| *t > 0)?;
    Some(s1.saturating_sub(s0) as f64 * 100.0 / total as f64)
}

/// The CPU time this process has used so far, all threads.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_share_of_all_ticks_between_two_readings() {
        let stat = |steal: u64, idle: u64| {
            format!(
                "cpu  100 0 50 {idle} 5 0 3 {steal} 0 0\ncpu0 50 0 25 {idle} 2 0 1 {steal} 0 0\nintr 1 2\n"
            )
        };
        let before = parse_host_cpu(&stat(10, 1000));
        assert_eq!(before, Some((10, 1168)));
        let after = parse_host_cpu(&stat(40, 1270));
        // 300 ticks went by, 30 of them stolen.
        assert_eq!(steal_between(before, after), Some(10.0));
        assert_eq!(steal_between(before, before), None, "no time went by");
        assert_eq!(parse_host_cpu("cpu  1 2 3\n"), None, "no steal column");
        assert_eq!(parse_host_cpu("intr 1 2\n"), None);
    }
}
