//! The house's invariants (ARCHITECTURE.md, "Invariants"), checked from `cargo metadata` and the
//! sources rather than kept by promise:
//! - the participants' crates (`deai-client`, `deai-miner`) and `deai-api` never depend, even
//!   indirectly, on openraft, redb or actix;
//! - `deai-api` depends on the protocol crate and serde-side crates only;
//! - only `deai-api` defines `/v1` JSON shapes: no other crate that speaks `/v1` derives serde on
//!   its own types, and neither the client crate (SDK and CLI) nor the miner reads JSON by field
//!   name;
//! - only `cluster/src/network/tcp.rs` knows the peer frame format.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ENGINE_CRATES: &[&str] = &["openraft", "redb", "actix", "actix-web", "actix-rt", "actix-server"];

/// Every package's normal (non-dev, non-build) dependencies, by package name.
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let names: BTreeMap<String, String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_string(), p["name"].as_str().unwrap().to_string()))
        .collect();
    let mut graph = BTreeMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let name = names[node["id"].as_str().unwrap()].clone();
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null()))
            .map(|d| names[d["pkg"].as_str().unwrap()].clone())
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// Everything `root` depends on, directly or not, with the path to each.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(root.to_string(), vec![root.to_string()])];
    while let Some((name, path)) = stack.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if !seen.contains_key(dep) {
                let mut next = path.clone();
                next.push(dep.clone());
                seen.insert(dep.clone(), next.clone());
                stack.push((dep.clone(), next));
            }
        }
    }
    seen
}

fn engine_links(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> Vec<String> {
    reachable(graph, root)
        .into_iter()
        .filter(|(name, _)| ENGINE_CRATES.contains(&name.as_str()))
        .map(|(_, path)| path.join(" -> "))
        .collect()
}

#[test]
fn participants_never_link_the_coordinators_engine() {
    let graph = dependency_graph();
    for participant in ["deai-api", "deai-client", "deai-miner", "deai-clock", "deai-chaos"] {
        assert!(graph.contains_key(participant), "{participant} is a workspace package");
        assert_eq!(engine_links(&graph, participant), Vec::<String>::new(), "{participant} links the engine");
    }
    // The check sees links where there are some.
    assert!(!engine_links(&graph, "deai-coordinator").is_empty());
}

#[test]
fn the_api_crate_depends_on_the_protocol_and_serde_only() {
    let graph = dependency_graph();
    let direct: BTreeSet<&str> = graph["deai-api"].iter().map(String::as_str).collect();
    let allowed: BTreeSet<&str> =
        ["deai-protocol", "serde", "hex", "blake3", "ed25519-dalek", "thiserror", "utoipa"].into_iter().collect();
    let extra: Vec<&&str> = direct.difference(&allowed).collect();
    assert!(extra.is_empty(), "deai-api depends on {extra:?} beyond the protocol and serde");
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The lines of `files` that match `bad`, as `file:line: text`.
fn offending(files: &[std::path::PathBuf], bad: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && bad(code) {
                found.push(format!("{}:{}: {}", file.strip_prefix(root()).unwrap().display(), n + 1, code));
            }
        }
    }
    found
}

/// The files of `dir` that speak `/v1`: all but `backends.rs`, whose JSON is the backends' own
/// (an OpenAI-compatible server's), not `/v1`.
fn participant_files(dir: &str) -> Vec<std::path::PathBuf> {
    rust_files(&root().join(dir)).into_iter().filter(|f| !f.ends_with("backends.rs")).collect()
}

#[test]
fn only_the_api_crate_defines_v1_json_shapes() {
    // The coordinator's handlers, the SDK and the miner: serde derives there would be /v1
    // shapes of their own.
    let mut speakers = vec![root().join("coordinator/src/http.rs"), root().join("client/src/sdk.rs")];
    speakers.extend(participant_files("miner/src"));
    let derives = offending(&speakers, |line| {
        line.starts_with("#[derive(") && (line.contains("Serialize") || line.contains("Deserialize"))
    });
    assert_eq!(derives, Vec::<String>::new(), "a /v1 shape outside deai-api");
    // Reading JSON by field name instead of through a view.
    let mut readers = participant_files("client/src");
    readers.push(root().join("coordinator/src/admin_cli.rs"));
    readers.extend(participant_files("miner/src"));
    let by_name = offending(&readers, |line| line.contains("[\"") && !line.contains("b\"") && line.contains("\"]"));
    assert_eq!(by_name, Vec::<String>::new(), "JSON read by field name instead of a deai-api view");
    // The check finds a derive where there is one.
    assert!(!offending(&rust_files(&root().join("api/src")), |l| l.starts_with("#[derive(")
        && l.contains("Serialize"))
    .is_empty());
}

#[test]
fn only_one_file_knows_the_peer_frame_format() {
    // The frame format's marks: its constants, and a u32 length prefix written on or read from
    // a stream.
    let frame_file = root().join("cluster/src/network/tcp.rs");
    let mut files = Vec::new();
    for dir in ["cluster/src", "coordinator/src", "actors/src", "storage/src", "devtools/src", "src"] {
        files.extend(rust_files(&root().join(dir)));
    }
    let knowers: BTreeSet<String> = offending(&files, |line| {
        line.contains("WIRE_VERSION")
            || line.contains("MAX_FRAME_BYTES")
            || (line.contains("u32") && (line.contains("to_le_bytes") || line.contains("from_le_bytes")))
    })
    .into_iter()
    .map(|hit| hit.split(':').next().unwrap().to_string())
    .collect();
    let expected: BTreeSet<String> =
        [frame_file.strip_prefix(root()).unwrap().display().to_string()].into_iter().collect();
    assert_eq!(knowers, expected, "the peer frame format is known outside network/tcp.rs");
}

/// The string literals inside the braces that follow the first `open` at or after `from` in
/// `text` (a function body or a constant's list), and where that block ends.
fn literals_in_block(text: &str, from: usize, open: char, close: char) -> (Vec<String>, usize) {
    let Some(start) = text[from..].find(open).map(|i| from + i) else { return (Vec::new(), text.len()) };
    let mut depth = 0usize;
    let mut literals = Vec::new();
    let mut chars = text[start..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return (literals, start + i);
                }
            }
            '"' => {
                let mut literal = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    literal.push(c);
                }
                literals.push(literal);
            }
            _ => {}
        }
    }
    (literals, text.len())
}

/// The codes a crate's sources can answer with: the literals of every `fn code(` body and of
/// the code lists, and the code argument of each `ApiError` built by hand.
fn codes_in_sources(files: &[std::path::PathBuf]) -> BTreeMap<String, String> {
    let is_code = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let mut found = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        for mark in ["fn code(", "pub const ERROR_CODES", "pub const ADMIN_REFUSAL_CODES"] {
            let (open, close) = if mark.starts_with("fn") { ('{', '}') } else { ('[', ']') };
            let mut at = 0;
            while let Some(i) = text[at..].find(mark).map(|i| at + i) {
                // A list's block follows its `=` (its type has brackets too).
                let from = if open == '[' { i + text[i..].find('=').unwrap_or(0) } else { i + mark.len() };
                let (literals, end) = literals_in_block(&text, from, open, close);
                for literal in literals.into_iter().filter(|l| is_code(l)) {
                    found.insert(literal, name.clone());
                }
                at = end;
            }
        }
        for call in ["ApiError::new(", "ApiError::bad_request(", "ApiError::unavailable("] {
            for (i, _) in text.match_indices(call) {
                let args = &text[i + call.len()..];
                let args = args.trim_start().trim_start_matches(|c: char| c.is_ascii_digit()).trim_start_matches(',');
                if let Some(rest) = args.trim_start().strip_prefix('"') {
                    let literal: String = rest.chars().take_while(|c| *c != '"').collect();
                    found.insert(literal, name.clone());
                }
            }
        }
    }
    found
}

#[test]
fn every_error_code_in_the_libraries_is_in_the_one_list() {
    let mut files = Vec::new();
    for dir in
        ["protocol/src", "storage/src", "cluster/src", "actors/src", "coordinator/src", "client/src", "miner/src"]
    {
        files.extend(rust_files(&root().join(dir)));
    }
    let found = codes_in_sources(&files);
    // Each kind of source was read: a code from a `code()` body, a list and a handler.
    for sample in ["nonce_gap", "storage_damaged", "not_leader", "client_queue_full", "too_much_invalid_input"] {
        assert!(found.contains_key(sample), "{sample} was not found in the sources: the scan is broken");
    }
    let missing: Vec<String> = found
        .iter()
        .filter(|(code, _)| deai_api::codes::Code::parse(code).is_none())
        .map(|(code, file)| format!("{code} ({file})"))
        .collect();
    assert_eq!(missing, Vec::<String>::new(), "codes missing from api/src/codes.rs");
}
