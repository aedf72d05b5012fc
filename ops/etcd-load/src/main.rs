//! `etcd-load`: committed puts per second and their latency on an etcd cluster, under the same
//! load shape as `deai bench ledger`, so that the two reports can share one table.
//!
//! The shape is copied on purpose. deai's benchmark runs `writers` clients, each with one write
//! in flight, over one pipelined connection to the leader. Here `writers` tasks each send one put
//! at a time over one gRPC (HTTP/2) connection to the etcd leader. The leader is found first
//! because a follower would forward every put to it, a hop deai's client never pays (etcd's own
//! `benchmark` tool has `--target-leader` for the same reason). Every put writes a new key, so
//! each one is a new revision rather than an overwrite, and every value is exactly
//! `--value-bytes` long so that a put carries the same payload as one deai write.

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use etcd_client::{Client, ConnectOptions, KvClient};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest one put may take before it counts as failed, in milliseconds (as in deai's bench).
const PUT_TIMEOUT_MS: u64 = 10_000;
/// Time between progress lines, in milliseconds.
const PROGRESS_EVERY_MS: u64 = 1_000;
/// Highest latency the histograms track, in microseconds (longer ones are clamped).
const MAX_TRACKED_LATENCY_US: u64 = 60_000_000;
/// Significant decimal digits the latency histograms keep.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// How long to wait for a TCP connection to one member, in milliseconds.
const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// How long one member may take to answer a status request, in milliseconds.
const STATUS_TIMEOUT_MS: u64 = 2_000;
/// How long to keep looking for a leader (an election may still be running), in milliseconds.
const LEADER_WAIT_MS: u64 = 10_000;
/// Pause between two rounds of looking for the leader, in milliseconds.
const LEADER_RETRY_MS: u64 = 100;
/// Every key starts with this, then `/<writer>/<n>`.
const KEY_PREFIX: &str = "bench";
/// The byte every value is filled with (etcd stores values as given, so the content is moot).
const VALUE_FILL_BYTE: u8 = b'x';

/// Puts load for an etcd cluster: `writers` tasks, one put in flight each, one connection.
#[derive(Parser, Debug)]
#[command(name = "etcd-load", version, about)]
struct Args {
    /// Client endpoints of the members (`host:port`, comma-separated); the leader is used.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:12379,127.0.0.1:22379,127.0.0.1:32379")]
    endpoints: Vec<String>,
    /// Concurrent writers, each with one put in flight.
    #[arg(long, default_value_t = 32)]
    writers: usize,
    /// Puts in all, split evenly between the writers.
    #[arg(long, default_value_t = 50_000)]
    writes: u64,
    /// Bytes in every value.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// What the run reports; `--json` prints exactly this.
#[derive(Debug, Serialize)]
struct Report {
    committed_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Puts that succeeded.
    writes: u64,
    failed: u64,
    duration_s: f64,
    writers: usize,
    value_bytes: usize,
}

/// One writer's share of the results.
struct WriterResult {
    latencies_us: Histogram<u64>,
    failed: u64,
    first_error: Option<String>,
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_TRACKED_LATENCY_US, LATENCY_SIGNIFICANT_DIGITS)
        .map_err(|e| anyhow!("latency histogram: {e:?}"))
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

/// Whether `endpoint` is the member that currently leads.
async fn is_leader(endpoint: &str) -> anyhow::Result<bool> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .with_timeout(Duration::from_millis(STATUS_TIMEOUT_MS));
    let mut client = Client::connect([endpoint], Some(options)).await?;
    let status = client.status().await?;
    let member = status.header().map(|h| h.member_id()).context("status answer without a header")?;
    Ok(member != 0 && member == status.leader())
}

/// The endpoint of the leading member, waiting out an election if one is running.
async fn find_leader(endpoints: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
    loop {
        let mut errors = Vec::new();
        for endpoint in endpoints {
            match is_leader(endpoint).await {
                Ok(true) => return Ok(endpoint.clone()),
                Ok(false) => {}
                Err(e) => errors.push(format!("{endpoint}: {e:#}")),
            }
        }
        if Instant::now() >= deadline {
            let why = if errors.is_empty() { "no member says it leads".to_string() } else { errors.join("; ") };
            bail!("no leader among {} within {LEADER_WAIT_MS} ms ({why})", endpoints.join(","));
        }
        tokio::time::sleep(Duration::from_millis(LEADER_RETRY_MS)).await;
    }
}

/// One writer: `puts` puts in turn, each to a key of its own.
async fn write(
    mut kv: KvClient,
    writer: usize,
    puts: u64,
    value: Arc<Vec<u8>>,
    done: Arc<AtomicU64>,
) -> anyhow::Result<WriterResult> {
    let mut latencies_us = new_histogram()?;
    let mut failed = 0;
    let mut first_error = None;
    let timeout = Duration::from_millis(PUT_TIMEOUT_MS);
    for n in 0..puts {
        let key = format!("{KEY_PREFIX}/{writer}/{n}");
        let value = value.as_ref().clone();
        let started = Instant::now();
        match tokio::time::timeout(timeout, kv.put(key, value, None)).await {
            Ok(Ok(_)) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies_us.saturating_record(micros);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("no answer within {PUT_TIMEOUT_MS} ms"));
            }
        }
    }
    Ok(WriterResult { latencies_us, failed, first_error })
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    if args.endpoints.iter().all(|e| e.trim().is_empty()) {
        bail!("--endpoints is empty");
    }
    if args.writers == 0 || args.writes < args.writers as u64 {
        bail!("need at least one writer and at least one put per writer");
    }
    let per_writer = args.writes / args.writers as u64;
    let total = per_writer * args.writers as u64;
    if total != args.writes {
        eprintln!("etcd-load: {total} puts ({per_writer} per writer), {} left over", args.writes - total);
    }
    let endpoints: Vec<String> =
        args.endpoints.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect();
    let leader = find_leader(&endpoints).await?;
    eprintln!("etcd-load: leader at {leader}; {} writers, {total} puts of {} bytes", args.writers, args.value_bytes);

    let options = ConnectOptions::new().with_connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
    let client =
        Client::connect([leader.as_str()], Some(options)).await.with_context(|| format!("connect to {leader}"))?;
    let value = Arc::new(vec![VALUE_FILL_BYTE; args.value_bytes]);
    let done = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(PROGRESS_EVERY_MS)).await;
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64();
                eprintln!("  {n:>9}/{total} puts committed  {rate:>9.0} puts/s");
            }
        })
    };
    // Every writer clones the same client: the clones share its one channel.
    let tasks: Vec<_> = (0..args.writers)
        .map(|w| tokio::spawn(write(client.kv_client(), w, per_writer, value.clone(), done.clone())))
        .collect();
    let mut all = new_histogram()?;
    let mut failed = 0;
    let mut first_error = None;
    for task in tasks {
        let result = task.await.context("writer task")??;
        all.add(&result.latencies_us).map_err(|e| anyhow!("merge histograms: {e:?}"))?;
        failed += result.failed;
        if first_error.is_none() {
            first_error = result.first_error;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    if let Some(error) = first_error {
        eprintln!("etcd-load: {failed} puts failed; the first: {error}");
    }

    let committed = all.len();
    Ok(Report {
        committed_per_s: committed as f64 / elapsed,
        p50_ms: quantile_ms(&all, 0.50),
        p99_ms: quantile_ms(&all, 0.99),
        p999_ms: quantile_ms(&all, 0.999),
        writes: committed,
        failed,
        duration_s: elapsed,
        writers: args.writers,
        value_bytes: args.value_bytes,
    })
}

fn print(report: &Report) {
    println!("etcd-load: puts to the leader over one connection");
    println!(
        "  {} writers, {} puts of {} bytes, {} failed",
        report.writers, report.writes, report.value_bytes, report.failed
    );
    println!("  committed: {:.0} puts/s in {:.1} s", report.committed_per_s, report.duration_s);
    println!("  latency: p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms", report.p50_ms, report.p99_ms, report.p999_ms);
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let outcome = run(&args).await.and_then(|report| {
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print(&report);
        }
        Ok(())
    });
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
