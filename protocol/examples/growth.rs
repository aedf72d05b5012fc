//! How apply time, memory and snapshot size grow with the number of completed task cycles held
//! in the ledger.
//!
//! The ledger is grown by generating full signed cycles (put, allocate, claim, rate) and
//! applying them with `Ledger::apply_preverified` (the signatures are made here and need no
//! check). At each requested size it reports:
//!
//! - process memory (VmRSS and VmHWM from /proc/self/status);
//! - `snapshot()` time and bytes, `restore()` time (restore includes the invariant check);
//! - apply time per cycle for the next `--probe` cycles: on the grown ledger itself
//!   (`apply_preverified`, timed entry by entry, also split by message kind), and on clones of
//!   the ledger at that size with `apply` (strict), `apply_batch` (chunks of 64) and
//!   `apply_preverified`.
//!
//! Run: `cargo run --profile bench -p deai-protocol --example growth -- 10000 100000 1000000`
//! Options: `--batch N` orders per Allocate (default 64), `--probe N` cycles (default 5000),
//! `--reps N` repetitions of each clone measurement (default 3; the median is printed).

use deai_protocol::ledger::Entry;
use deai_protocol::message::MessageKind;
use deai_protocol::testkit::CycleWorkload;
use deai_protocol::types::OrderId;
use deai_protocol::Ledger;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------

/// `(VmRSS, VmHWM)` in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Time spent in `apply_preverified`, by message kind.
#[derive(Default)]
struct KindTimes {
    by_kind: BTreeMap<&'static str, (Duration, u64)>,
    total: Duration,
}

impl KindTimes {
    fn timed_apply(&mut self, ledger: &mut Ledger, entry: &Entry) {
        let t = Instant::now();
        let r = ledger.apply_preverified(entry);
        let d = t.elapsed();
        if let Err(e) = r {
            panic!("generated entry rejected: {e}");
        }
        self.total += d;
        let slot = self.by_kind.entry(kind_name(entry.envelope.kind)).or_default();
        slot.0 += d;
        slot.1 += 1;
    }
}

fn kind_name(k: MessageKind) -> &'static str {
    k.name()
}

fn arg_value(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.replace('_', "").parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch = arg_value(&args, "--batch", 64);
    let probe = arg_value(&args, "--probe", 5_000);
    let reps = arg_value(&args, "--reps", 3).max(1);
    let mut sizes: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i].starts_with("--") {
            i += 2;
            continue;
        }
        if let Ok(n) = args[i].replace('_', "").parse::<usize>() {
            sizes.push(n);
        }
        i += 1;
    }
    if sizes.is_empty() {
        sizes = vec![10_000, 100_000, 1_000_000];
    }
    sizes.sort();
    println!("growth: sizes {sizes:?}, {batch} orders per Allocate, probe {probe} cycles, {reps} reps");
    println!(
        "size_of: Order {} bytes, OrderId {} bytes; load average at start: {}",
        std::mem::size_of::<deai_protocol::ledger::Order>(),
        std::mem::size_of::<OrderId>(),
        loadavg()
    );

    let started = Instant::now();
    let (rss0, _) = memory();
    let mut w = CycleWorkload::new();
    let (rss_base, _) = memory();
    println!(
        "setup: {} clients, {} miners; RSS {:.1} MiB (process start {:.1} MiB)",
        CycleWorkload::CLIENTS,
        CycleWorkload::MINERS,
        mib(rss_base),
        mib(rss0)
    );

    let mut cycles_in_ledger = 0usize;
    let mut rows: Vec<String> = Vec::new();
    for &size in &sizes {
        // Grow to `size` completed cycles.
        let t = Instant::now();
        let mut build = KindTimes::default();
        w.run(size - cycles_in_ledger, batch, |l, e| build.timed_apply(l, e), |_| {});
        let grown = size - cycles_in_ledger;
        cycles_in_ledger = size;
        let build_time = t.elapsed();
        let (rss, hwm) = memory();
        println!(
            "\n== {size} completed cycles (orders in ledger: {}, height {})",
            w.net.ledger.orders.len(),
            w.net.ledger.height
        );
        println!(
            "grew {grown} cycles in {:.1} s (of which apply_preverified {:.1} s, {:.2} us/cycle; the rest is signing and planning)",
            build_time.as_secs_f64(),
            build.total.as_secs_f64(),
            us(build.total) / grown as f64
        );
        println!(
            "memory: VmRSS {:.1} MiB (+{:.1} MiB over setup), VmHWM {:.1} MiB",
            mib(rss),
            mib(rss - rss_base),
            mib(hwm)
        );

        // Snapshot and restore.
        let t = Instant::now();
        let snap = w.net.ledger.snapshot();
        let snap_time = t.elapsed();
        let t = Instant::now();
        let restored = Ledger::restore(&snap).expect("snapshot restores");
        let restore_time = t.elapsed();
        assert_eq!(restored.root, w.net.ledger.root);
        assert_eq!(restored.orders.len(), w.net.ledger.orders.len());
        drop(restored);
        let snap_bytes = snap.len();
        drop(snap);
        println!(
            "snapshot: {snap_bytes} bytes ({:.1} bytes/cycle), snapshot {:.3} s, restore {:.3} s",
            snap_bytes as f64 / size as f64,
            snap_time.as_secs_f64(),
            restore_time.as_secs_f64()
        );

        // Apply time for the next `probe` cycles at this size.
        let at_size = w.net.ledger.clone();
        let mut probe_times = KindTimes::default();
        let mut entries = Vec::new();
        w.run(probe, batch, |l, e| probe_times.timed_apply(l, e), |e| entries.push(e));
        cycles_in_ledger += probe;
        let organic = us(probe_times.total) / probe as f64;
        let kinds: Vec<String> =
            probe_times.by_kind.iter().map(|(k, (d, n))| format!("{k} {:.2} us", us(*d) / *n as f64)).collect();
        println!("apply_preverified on the grown ledger: {organic:.2} us/cycle; per entry: {}", kinds.join(", "));

        let measure = |name: &str, f: &dyn Fn(&mut Ledger)| {
            let mut times = Vec::new();
            for _ in 0..reps {
                let mut l = at_size.clone();
                let t = Instant::now();
                f(&mut l);
                times.push(t.elapsed());
                assert_eq!(l.root, w.net.ledger.root, "{name} ends at the generator's root");
            }
            let m = median(times);
            let per = us(m) / probe as f64;
            println!("{name} on a clone: {per:.2} us/cycle ({:.0} cycles/s)", 1e6 / per);
            per
        };
        let clone_pre = measure("apply_preverified", &|l| {
            for e in &entries {
                l.apply_preverified(e).expect("accepted");
            }
        });
        let clone_batch = measure("apply_batch64", &|l| {
            for ch in entries.chunks(64) {
                for r in l.apply_batch(ch) {
                    r.expect("accepted");
                }
            }
        });
        let clone_strict = measure("apply_strict", &|l| {
            for e in &entries {
                l.apply(e).expect("accepted");
            }
        });
        drop(at_size);
        drop(entries);

        rows.push(format!(
            "| {size} | {organic:.2} | {clone_pre:.2} | {clone_batch:.2} | {clone_strict:.2} | {:.0} | {snap_bytes} | {:.3} | {:.3} |",
            mib(rss - rss_base),
            snap_time.as_secs_f64(),
            restore_time.as_secs_f64()
        ));
    }

    let (_, hwm) = memory();
    println!("\nload average at end: {}", loadavg());
    println!("total run time {:.1} s, peak RSS (VmHWM) {:.1} MiB", started.elapsed().as_secs_f64(), mib(hwm));
    println!("\n| completed cycles | preverified us/cycle (grown ledger) | preverified us/cycle (clone) | apply_batch64 us/cycle | apply strict us/cycle | RSS over setup MiB | snapshot bytes | snapshot s | restore s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
