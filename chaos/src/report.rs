//! The report of a run: `results.json` (verdicts and counts, for machines), `history.jsonl`
//! (every operation, one JSON object a line), `faults.json`, `roles.json` (each node's role as
//! sampled), and `index.html` (for people):
//! throughput and latency over time with each fault window shaded, each node's role over time,
//! the verdict per invariant, the longest time without an acknowledged write per nemesis, and
//! the command that replays the run.

use crate::checker::Verdict;
use crate::history::{Op, Outcome};
use crate::nemesis::{Fault, NemesisKind};
use crate::{ChaosError, ChaosResult};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// A node's role as the sampler saw it.
#[derive(Clone, Debug, Serialize)]
pub struct RoleSample {
    pub at_ms: u64,
    pub node: u64,
    /// `leader`, `follower`, `candidate`, `learner`, or `down` when it did not answer.
    pub role: String,
    /// The node's term, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
}

/// Everything a run produced.
pub struct RunRecord {
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    pub duration_ms: u64,
    pub nemeses: Vec<NemesisKind>,
    /// The command line that replays the run.
    pub replay: String,
    pub ops: Vec<Op>,
    pub faults: Vec<Fault>,
    pub roles: Vec<RoleSample>,
    pub verdicts: Vec<Verdict>,
    /// Whether the run was cut short by SIGINT or SIGTERM.
    pub interrupted: bool,
}

/// The longest stretch without an acknowledged write, overall and around each kind of fault.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WriteGaps {
    pub longest_ms: u64,
    /// Per nemesis: the longest gap between two acknowledged writes that belongs to one of its
    /// faults (the last fault that started before the gap ended, and ended at most
    /// [`GAP_AFTER_FAULT_MS`] before it began).
    pub by_nemesis: BTreeMap<String, u64>,
}

/// How long after a fault ends a gap still counts as that fault's.
pub const GAP_AFTER_FAULT_MS: u64 = 5_000;

pub fn write_gaps(record: &RunRecord) -> WriteGaps {
    let mut acks: Vec<u64> = record
        .ops
        .iter()
        .filter(|op| op.kind.is_write() && op.outcome == Outcome::Ok)
        .map(|op| op.complete_ms)
        .collect();
    acks.sort_unstable();
    let mut gaps = WriteGaps::default();
    for pair in acks.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        gaps.longest_ms = gaps.longest_ms.max(to - from);
        // A gap is the last fault's that started before it ended and had not long ended
        // when it began.
        let owner = record
            .faults
            .iter()
            .filter(|f| f.start_ms <= to && from <= f.end_ms + GAP_AFTER_FAULT_MS)
            .max_by_key(|f| f.start_ms);
        if let Some(fault) = owner {
            let entry = gaps.by_nemesis.entry(fault.kind.name().to_string()).or_default();
            *entry = (*entry).max(to - from);
        }
    }
    gaps
}

/// Leader changes the sampler saw: terms in which some node was seen leading, after the first.
/// (Counting changes of the leading node instead would count a resumed old leader that has not
/// yet learned of the new term.)
pub fn leader_changes(roles: &[RoleSample]) -> u64 {
    let terms: std::collections::BTreeSet<u64> =
        roles.iter().filter(|s| s.role == "leader").filter_map(|s| s.term).collect();
    terms.len().saturating_sub(1) as u64
}

#[derive(Serialize)]
struct Results<'a> {
    valid: bool,
    interrupted: bool,
    seed: u64,
    nodes: usize,
    clients: usize,
    duration_ms: u64,
    nemeses: Vec<&'static str>,
    replay: &'a str,
    operations: BTreeMap<&'static str, u64>,
    faults: BTreeMap<&'static str, u64>,
    write_gaps: WriteGaps,
    leader_changes: u64,
    leader_changes_per_hour: u64,
    invariants: &'a [Verdict],
}

/// Whether every invariant held (and the run was not cut short).
pub fn valid(record: &RunRecord) -> bool {
    !record.interrupted && record.verdicts.iter().all(|v| v.valid)
}

/// Writes the report into `out`.
pub fn write(out: &Path, record: &RunRecord) -> ChaosResult<()> {
    let mut operations: BTreeMap<&'static str, u64> = BTreeMap::new();
    for op in &record.ops {
        let outcome = match op.outcome {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        };
        *operations.entry(outcome).or_default() += 1;
    }
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    for fault in &record.faults {
        *faults.entry(fault.kind.name()).or_default() += 1;
    }
    let changes = leader_changes(&record.roles);
    let results = Results {
        valid: valid(record),
        interrupted: record.interrupted,
        seed: record.seed,
        nodes: record.nodes,
        clients: record.clients,
        duration_ms: record.duration_ms,
        nemeses: record.nemeses.iter().map(|k| k.name()).collect(),
        replay: &record.replay,
        operations,
        faults,
        write_gaps: write_gaps(record),
        leader_changes: changes,
        leader_changes_per_hour: changes.saturating_mul(3_600_000) / record.duration_ms.max(1),
        invariants: &record.verdicts,
    };
    save(out, "results.json", &to_json(&results))?;
    save(out, "faults.json", &to_json(&record.faults))?;
    save(out, "roles.json", &to_json(&record.roles))?;
    let mut lines = String::new();
    for op in &record.ops {
        lines.push_str(&serde_json::to_string(op).unwrap_or_default());
        lines.push('\n');
    }
    save(out, "history.jsonl", &lines)?;
    save(out, "index.html", &html(record, &results))
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn save(out: &Path, name: &str, text: &str) -> ChaosResult<()> {
    std::fs::write(out.join(name), text).map_err(ChaosError::io(format!("write {}", out.join(name).display())))
}

/// Plot geometry, in SVG user units.
const PLOT_WIDTH: f64 = 960.0;
const PLOT_HEIGHT: f64 = 160.0;
const LANE_HEIGHT: f64 = 18.0;

fn colour(kind: NemesisKind) -> &'static str {
    match kind {
        NemesisKind::Kill => "#f4a6a6",
        NemesisKind::Pause => "#f7d794",
        NemesisKind::Partition => "#a3bffa",
        NemesisKind::DiskFull => "#c6a0f6",
        NemesisKind::Clock => "#9ae6b4",
        NemesisKind::SlowNet => "#fbb6ce",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn x_of(ms: u64, duration_ms: u64) -> f64 {
    ms as f64 / duration_ms.max(1) as f64 * PLOT_WIDTH
}

fn shaded_faults(svg: &mut String, record: &RunRecord, height: f64) {
    for fault in &record.faults {
        let (x0, x1) = (x_of(fault.start_ms, record.duration_ms), x_of(fault.end_ms, record.duration_ms));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="0" width="{:.1}" height="{height:.0}" fill="{}"><title>{}: {} ({} ms)</title></rect>"#,
            (x1 - x0).max(1.0),
            colour(fault.kind),
            fault.kind.name(),
            escape(&fault.detail),
            fault.end_ms - fault.start_ms
        );
    }
}

/// Acknowledged operations per second, as a line, over the shaded faults.
fn throughput_svg(record: &RunRecord) -> String {
    let seconds = (record.duration_ms / 1000 + 1) as usize;
    let mut per_second = vec![0u64; seconds];
    for op in record.ops.iter().filter(|op| op.outcome == Outcome::Ok) {
        if let Some(bin) = per_second.get_mut((op.complete_ms / 1000) as usize) {
            *bin += 1;
        }
    }
    let top = per_second.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(r#"<svg viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" class="plot">"#);
    shaded_faults(&mut svg, record, PLOT_HEIGHT);
    let points: Vec<String> = per_second
        .iter()
        .enumerate()
        .map(|(s, n)| {
            format!(
                "{:.1},{:.1}",
                x_of(s as u64 * 1000, record.duration_ms),
                PLOT_HEIGHT - *n as f64 / top * (PLOT_HEIGHT - 10.0)
            )
        })
        .collect();
    let _ =
        write!(svg, r##"<polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" points="{}"/>"##, points.join(" "));
    let _ = write!(svg, r##"<text x="4" y="12" class="axis">{top:.0} ops/s</text></svg>"##);
    svg
}

/// Latency per second of completion: the median, the 99th percentile and the largest of the
/// acknowledged operations as lines, unknown outcomes as red dots (log scale, 1 ms to 30 s).
/// One point per second and line keeps the page small however long the run.
fn latency_svg(record: &RunRecord) -> String {
    let high = (30_000f64).log10();
    let y_of = |ms: u64| PLOT_HEIGHT - ((ms.max(1) as f64).log10().clamp(0.0, high) / high) * (PLOT_HEIGHT - 4.0);
    let seconds = (record.duration_ms / 1000 + 1) as usize;
    let mut per_second: Vec<Vec<u64>> = vec![Vec::new(); seconds];
    let mut svg = format!(r#"<svg viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" class="plot">"#);
    shaded_faults(&mut svg, record, PLOT_HEIGHT);
    for op in &record.ops {
        let latency = op.complete_ms.saturating_sub(op.invoke_ms);
        match op.outcome {
            Outcome::Ok => {
                if let Some(bin) = per_second.get_mut((op.complete_ms / 1000) as usize) {
                    bin.push(latency);
                }
            }
            Outcome::Unknown => {
                let _ = write!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="2" fill="#c53030"/>"##,
                    x_of(op.complete_ms, record.duration_ms),
                    y_of(latency)
                );
            }
            Outcome::Failed => {}
        }
    }
    per_second.iter_mut().for_each(|bin| bin.sort_unstable());
    for (share, stroke) in [(0.5, "#2b6cb0"), (0.99, "#805ad5"), (1.0, "#1a202c")] {
        let points: Vec<String> = per_second
            .iter()
            .enumerate()
            .filter(|(_, bin)| !bin.is_empty())
            .map(|(s, bin)| {
                let at = ((bin.len() - 1) as f64 * share).round() as usize;
                format!("{:.1},{:.1}", x_of(s as u64 * 1000, record.duration_ms), y_of(bin[at]))
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{stroke}" stroke-width="1.2" points="{}"/>"#,
            points.join(" ")
        );
    }
    svg.push_str(r#"<text x="4" y="12" class="axis">30 s</text>"#);
    let _ = write!(svg, r#"<text x="4" y="{:.0}" class="axis">1 ms</text></svg>"#, PLOT_HEIGHT - 4.0);
    svg
}

/// One lane per node: leader, follower, candidate or down over time.
fn roles_svg(record: &RunRecord) -> String {
    let mut lanes: BTreeMap<u64, Vec<&RoleSample>> = BTreeMap::new();
    for sample in &record.roles {
        lanes.entry(sample.node).or_default().push(sample);
    }
    let height = LANE_HEIGHT * lanes.len().max(1) as f64;
    let mut svg = format!(r#"<svg viewBox="0 0 {PLOT_WIDTH} {height}" class="plot">"#);
    for (lane, (node, samples)) in lanes.iter().enumerate() {
        let y = lane as f64 * LANE_HEIGHT;
        for pair in samples.windows(2) {
            let fill = match pair[0].role.as_str() {
                "leader" => "#38a169",
                "follower" => "#cbd5e0",
                "candidate" => "#d69e2e",
                "down" => "#e53e3e",
                _ => "#a0aec0",
            };
            let (x0, x1) = (x_of(pair[0].at_ms, record.duration_ms), x_of(pair[1].at_ms, record.duration_ms));
            let _ = write!(
                svg,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
                y + 2.0,
                (x1 - x0).max(0.5),
                LANE_HEIGHT - 4.0
            );
        }
        let _ = write!(svg, r#"<text x="4" y="{:.1}" class="lane">node {node}</text>"#, y + LANE_HEIGHT - 5.0);
    }
    svg.push_str("</svg>");
    svg
}

fn html(record: &RunRecord, results: &Results<'_>) -> String {
    let verdict = if results.valid { "valid" } else { "INVALID" };
    let mut page = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>deai chaos: seed {seed} {verdict}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1000px}} .plot{{width:100%;background:#fafafa;border:1px solid #ddd}}
.axis,.lane{{font-size:10px;fill:#333}} table{{border-collapse:collapse}} td,th{{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}}
.ok{{color:#276749}} .bad{{color:#c53030;font-weight:bold}} code{{background:#f0f0f0;padding:1px 4px}}</style></head><body>
<h1>deai chaos: <span class="{class}">{verdict}</span></h1>
<p>seed {seed}, {nodes} coordinators, {clients} clients, {secs} s, nemeses: {nemeses}{cut}</p>
<p>replay: <code>{replay}</code></p>
"#,
        seed = record.seed,
        class = if results.valid { "ok" } else { "bad" },
        nodes = record.nodes,
        clients = record.clients,
        secs = record.duration_ms / 1000,
        nemeses = if record.nemeses.is_empty() { "none".to_string() } else { results.nemeses.join(", ") },
        cut = if record.interrupted { " (interrupted)" } else { "" },
        replay = escape(&record.replay),
    );
    page.push_str(
        "<h2>Invariants</h2><table><tr><th>invariant</th><th>verdict</th><th>checked</th><th>detail</th></tr>",
    );
    for v in &record.verdicts {
        let _ = write!(
            page,
            r#"<tr><td>{}</td><td class="{}">{}</td><td>{}</td><td>{}</td></tr>"#,
            v.name,
            if v.valid { "ok" } else { "bad" },
            if v.valid { "valid" } else { "violated" },
            v.checked,
            escape(&v.detail)
        );
    }
    page.push_str("</table>");
    for v in record.verdicts.iter().filter(|v| !v.window.is_empty()) {
        let _ = write!(page, "<h3>{}: the operations that show it</h3><pre>", v.name);
        for op in &v.window {
            page.push_str(&escape(&serde_json::to_string(op).unwrap_or_default()));
            page.push('\n');
        }
        page.push_str("</pre>");
    }
    page.push_str("<h2>Operations</h2><table>");
    for (outcome, n) in &results.operations {
        let _ = write!(page, "<tr><td>{outcome}</td><td>{n}</td></tr>");
    }
    let _ = write!(
        page,
        "</table><h2>Faults</h2><p>{} injected; {} leader changes ({} an hour)</p><table><tr><th>nemesis</th><th>faults</th><th>longest time without an acknowledged write</th></tr>",
        record.faults.len(),
        results.leader_changes,
        results.leader_changes_per_hour
    );
    for (kind, n) in &results.faults {
        let gap = results.write_gaps.by_nemesis.get(*kind).copied().unwrap_or(0);
        let _ = write!(page, "<tr><td>{kind}</td><td>{n}</td><td>{gap} ms</td></tr>");
    }
    let _ = write!(page, "<tr><td>whole run</td><td></td><td>{} ms</td></tr></table>", results.write_gaps.longest_ms);
    let legend: String = record
        .nemeses
        .iter()
        .map(|k| format!(r#"<span style="background:{}">&nbsp;{}&nbsp;</span> "#, colour(*k), k.name()))
        .collect();
    let _ = write!(
        page,
        "<h2>Throughput (acknowledged operations per second)</h2><p>{legend}</p>{}",
        throughput_svg(record)
    );
    let _ = write!(page, "<h2>Latency per second (blue: median, purple: 99th percentile, black: largest; red dots: unknown outcomes)</h2>{}", latency_svg(record));
    let _ = write!(
        page,
        "<h2>Roles (green: leader, grey: follower, amber: candidate, red: down)</h2>{}",
        roles_svg(record)
    );
    page.push_str(r#"<p>Raw data: <a href="results.json">results.json</a>, <a href="history.jsonl">history.jsonl</a>, <a href="faults.json">faults.json</a>, <a href="roles.json">roles.json</a>.</p></body></html>"#);
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpKind;

    fn ack(at: u64) -> Op {
        Op {
            client: 0,
            kind: OpKind::Faucet,
            amount: Some(1),
            nonce: Some(at),
            invoke_ms: at,
            complete_ms: at,
            outcome: Outcome::Ok,
            error: None,
            read: None,
            account_of: None,
        }
    }

    fn record(ops: Vec<Op>, faults: Vec<Fault>, roles: Vec<RoleSample>) -> RunRecord {
        RunRecord {
            seed: 1,
            nodes: 3,
            clients: 1,
            duration_ms: 60_000,
            nemeses: vec![NemesisKind::Kill, NemesisKind::Pause],
            replay: String::new(),
            ops,
            faults,
            roles,
            verdicts: vec![],
            interrupted: false,
        }
    }

    #[test]
    fn each_gap_belongs_to_the_last_fault_before_it() {
        let fault =
            |kind, start_ms, end_ms| Fault { kind, node: 0, at_leader: true, start_ms, end_ms, detail: String::new() };
        let ops = [0, 100, 2_100, 2_200, 9_000, 9_100, 9_400].into_iter().map(ack).collect();
        let faults = vec![fault(NemesisKind::Kill, 150, 1_000), fault(NemesisKind::Pause, 8_000, 9_050)];
        let gaps = write_gaps(&record(ops, faults, vec![]));
        assert_eq!(gaps.longest_ms, 6_800);
        assert_eq!(gaps.by_nemesis["kill"], 2_000);
        assert_eq!(gaps.by_nemesis["pause"], 6_800);
    }

    #[test]
    fn leader_changes_count_new_terms_not_stale_leaders() {
        let sample = |node, role: &str, term| RoleSample { at_ms: 0, node, role: role.into(), term: Some(term) };
        let roles =
            vec![sample(0, "leader", 1), sample(1, "leader", 2), sample(0, "leader", 1), sample(1, "leader", 2)];
        assert_eq!(leader_changes(&roles), 1);
    }
}
