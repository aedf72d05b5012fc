//! `deai sim --seed N` replays one seed and prints what it did; `deai sim --seeds N` runs many
//! on every core and prints each failing seed with the command that replays it, then the rate.

use crate::world::{run_seed, SeedReport};
use crate::{SimError, SimResult, SimSettings};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Runs this one seed and prints its verdict, its faults and its fingerprint (the same
    /// seed gives the same fingerprint).
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Runs this many seeds, from --first-seed on, and prints every failing one.
    #[arg(long)]
    pub seeds: Option<u64>,
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Coordinators: 3 or 5.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Steps of the fault schedule per seed; the invariants are checked after each.
    #[arg(long, default_value_t = SimSettings::default().steps)]
    pub steps: u32,
    /// Virtual milliseconds per step.
    #[arg(long, default_value_t = SimSettings::default().step_ms)]
    pub step_ms: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = SimSettings::default().clients)]
    pub clients: usize,
    /// Seeds run at once (each on a thread of its own); default: one per core.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Faults each node injects into itself, as JSON (`{"canary_ack_without_commit_every": 5}`
    /// in a test build): to show that the checker catches a known bug.
    #[arg(long, hide = true)]
    pub node_faults: Option<String>,
}

impl SimArgs {
    fn settings(&self) -> SimResult<SimSettings> {
        if !matches!(self.nodes, 3 | 5) {
            return Err(SimError::BadArgument(format!("--nodes must be 3 or 5, not {}", self.nodes)));
        }
        if self.steps == 0 || self.step_ms == 0 || self.clients == 0 {
            return Err(SimError::BadArgument("--steps, --step-ms and --clients must be at least 1".into()));
        }
        let faults = match &self.node_faults {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                SimError::BadArgument(format!("--node-faults is not a fault list this build knows: {e}"))
            })?,
            None => Default::default(),
        };
        Ok(SimSettings { nodes: self.nodes, steps: self.steps, step_ms: self.step_ms, clients: self.clients, faults })
    }

    /// The command that replays `seed` with these settings.
    fn replay(&self, seed: u64) -> String {
        let defaults = SimSettings::default();
        let mut command = format!("deai sim --seed {seed}");
        if self.nodes != defaults.nodes {
            command += &format!(" --nodes {}", self.nodes);
        }
        if self.steps != defaults.steps {
            command += &format!(" --steps {}", self.steps);
        }
        if self.step_ms != defaults.step_ms {
            command += &format!(" --step-ms {}", self.step_ms);
        }
        if self.clients != defaults.clients {
            command += &format!(" --clients {}", self.clients);
        }
        if let Some(faults) = &self.node_faults {
            command += &format!(" --node-faults '{faults}'");
        }
        command
    }
}

fn describe(report: &SeedReport) -> String {
    let operations: Vec<String> = report.operations.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let mut faults = std::collections::BTreeMap::<&str, u64>::new();
    for (_, fault) in &report.faults {
        *faults.entry(fault.kind()).or_default() += 1;
    }
    let faults: Vec<String> = faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let dirty: usize = report.power_cuts.iter().map(|c| c.dirty_pages).sum();
    let landed: usize = report.power_cuts.iter().map(|c| c.pages_landed).sum();
    let torn = report.power_cuts.iter().filter(|c| c.torn).count();
    format!(
        "operations: {}; faults: {}; power cuts landed {landed} of {dirty} dirty pages, {torn} torn; \
         {} virtual ms; messages: {} delivered, {} lost; fingerprint {:016x}",
        operations.join(", "),
        if faults.is_empty() { "none".to_string() } else { faults.join(", ") },
        report.virtual_ms,
        report.messages_delivered,
        report.messages_dropped,
        report.fingerprint
    )
}

fn print_invalid(args: &SimArgs, report: &SeedReport) {
    println!("seed {}: INVALID", report.seed);
    for violation in &report.violations {
        println!("  violated: {violation}");
    }
    println!("  faults: {:?}", report.faults);
    println!("  {}", describe(report));
    println!("  replay: {}", args.replay(report.seed));
}

/// Runs `deai sim`; `Ok(true)` when every seed held every invariant.
pub fn run_sim(args: &SimArgs) -> SimResult<bool> {
    let settings = args.settings()?;
    match (args.seed, args.seeds) {
        (Some(seed), _) => {
            let report = run_seed(seed, &settings)?;
            if report.valid() {
                println!("seed {seed}: valid; {}", describe(&report));
            } else {
                print_invalid(args, &report);
            }
            Ok(report.valid())
        }
        (None, Some(count)) => run_many(args, &settings, count),
        (None, None) => Err(SimError::BadArgument("give --seed N (replay one) or --seeds N (run many)".into())),
    }
}

fn run_many(args: &SimArgs, settings: &SimSettings, count: u64) -> SimResult<bool> {
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let invalid = Mutex::new(Vec::new());
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    // Progress about ten times per run, on stderr.
    let progress_every = (count / 10).max(1);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= count {
                    return;
                }
                let seed = args.first_seed + k;
                match run_seed(seed, settings) {
                    Ok(report) if report.valid() => {}
                    Ok(report) => invalid.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(report),
                    Err(e) => failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((seed, e)),
                }
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % progress_every == 0 {
                    eprintln!("{finished}/{count} seeds, {:.1} s", started.elapsed().as_secs_f64());
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut invalid = invalid.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    invalid.sort_by_key(|r| r.seed);
    for report in &invalid {
        print_invalid(args, report);
    }
    let failures = failures.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((seed, error)) = failures.first() {
        return Err(SimError::Setup(format!(
            "seed {seed}: {error} (and {} more seeds failed to run)",
            failures.len() - 1
        )));
    }
    let rate = count as f64 / elapsed.max(f64::EPSILON) * 60.0;
    let verdict = if invalid.is_empty() { "all valid".to_string() } else { format!("{} INVALID", invalid.len()) };
    println!(
        "{count} seeds ({} to {}): {verdict}; {elapsed:.1} s on {jobs} threads, {rate:.0} seeds per minute",
        args.first_seed,
        args.first_seed + count.saturating_sub(1)
    );
    Ok(invalid.is_empty())
}
