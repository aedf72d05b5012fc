//! The modules of `cluster/src` form layers: no module imports one above it, so no two modules
//! import each other, directly or around a circle.
//!
//! The test reads the sources, takes every path into the crate (`crate::…`, `super::…`,
//! `self::…` and a child module's name, in `use` items, expressions and types; not in comments
//! or string literals), resolves each to the module that defines it (a name re-exported by
//! `lib.rs` resolves to the module it comes from), and checks the graph of modules: it has no
//! cycle, and every import points to a lower layer of [`LAYERS`]. A new module goes into the
//! lowest layer above everything it imports.
//!
//! Only paths are read: a method call is not followed to the module that defines the method.
//! The node's admin methods are defined in `admin.rs`, above the node; only modules above
//! `admin` may call them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers of `cluster/src`, bottom first. A module imports only modules of lower layers.
const LAYERS: &[&[&str]] = &[
    // What every layer returns: `ClusterError` and its codes.
    &["error"],
    // Leaves: metrics, supervised tasks, the key file, the peer control messages, one Raft write.
    &["metrics", "supervision", "identity", "control", "raft_write", "faults"],
    &["network::peer_auth"],
    // The transports. `tcp` knows the frame format and serves a `PeerService`; it knows no node.
    &["network", "network::tcp", "network::in_process"],
    &["batcher"],
    &["node"],
    &["admin", "outbox"],
    &["checkpointer", "peer_service"],
];

/// One reference from a module to another, as written, for the failure message.
#[derive(Clone, Debug)]
struct Witness {
    path: String,
}

/// Module → the modules it imports, each with the first reference that does.
type Graph = BTreeMap<String, BTreeMap<String, Witness>>;

#[test]
fn the_modules_of_cluster_import_each_other_in_no_cycle() {
    let graph = cluster_graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!("the modules of cluster/src import each other in a circle:\n{}", describe(&graph, &cycle));
    }
}

#[test]
fn no_module_of_cluster_imports_one_above_it() {
    let graph = cluster_graph();
    let mut layer_of = BTreeMap::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        for module in *layer {
            assert!(layer_of.insert(*module, i).is_none(), "{module} is in two layers");
            assert!(graph.contains_key(*module), "LAYERS names {module}, which is no module of cluster/src");
        }
    }
    let mut wrong = Vec::new();
    for (module, imports) in &graph {
        let Some(&mine) = layer_of.get(module.as_str()) else {
            wrong.push(format!("{module} is in no layer: add it to LAYERS above everything it imports"));
            continue;
        };
        for (to, witness) in imports {
            let theirs = layer_of.get(to.as_str()).copied().unwrap_or(usize::MAX);
            if theirs >= mine {
                wrong.push(format!("{module} (layer {mine}) imports {to} (layer {theirs}): {}", witness.path));
            }
        }
    }
    assert!(wrong.is_empty(), "modules of cluster/src out of their layers:\n  {}", wrong.join("\n  "));
}

#[test]
fn the_cycle_finder_names_the_cycle() {
    let graph = |edges: &[(&str, &str)]| -> Graph {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.entry(from.to_string()).or_default().insert(to.to_string(), Witness { path: format!("crate::{to}") });
            g.entry(to.to_string()).or_default();
        }
        g
    };
    let circle = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]);
    assert_eq!(find_cycle(&circle), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let reached_late = graph(&[("a", "b"), ("c", "d"), ("d", "e"), ("e", "d")]);
    assert_eq!(find_cycle(&reached_late), Some(vec!["d".into(), "e".into(), "d".into()]));
    let diamond = graph(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]);
    assert_eq!(find_cycle(&diamond), None);
}

/// The whole check, on two made-up modules that import each other: it fails, naming both.
#[test]
fn two_modules_importing_each_other_are_caught() {
    let files = vec![
        ("batcher".to_string(), "use crate::node::client_write;\n".to_string()),
        ("node".to_string(), "fn start() { let b = crate::batcher::WriteBatcher::start(); }\n".to_string()),
    ];
    let graph = build_graph(&files, &BTreeMap::new()).expect("every path resolves");
    let cycle = find_cycle(&graph).expect("a cycle");
    assert_eq!(cycle, vec!["batcher".to_string(), "node".into(), "batcher".into()]);
    let text = describe(&graph, &cycle);
    assert!(text.contains("crate::node::client_write") && text.contains("crate::batcher::WriteBatcher"), "{text}");
}

#[test]
fn references_come_from_use_trees_paths_and_super_not_comments_or_strings() {
    let source = r##"
        //! Mentions crate::checkpointer in a doc comment, which imports nothing.
        use crate::{node::{CoordinatorNode, Written as W}, ClusterError};
        use crate::network::{self, tcp};
        /* crate::outbox /* nested */ crate::admin */
        const S: &str = "crate::checkpointer \" crate::admin";
        const R: &str = r#"crate::outbox"#;
        fn f<'a>(x: &'a str) -> char {
            crate::batcher::start::<u8>();
            let _ = [crate::metrics::render];
            '"'
        }
        #[cfg(test)]
        mod tests {
            use super::*;
            use super::super::peer_auth::PeerAuth;
        }
    "##;
    let mut files = vec![("network::tcp".to_string(), source.to_string())];
    for other in ["batcher", "error", "metrics", "network", "network::peer_auth", "node", "outbox"] {
        files.push((other.to_string(), String::new()));
    }
    let aliases = BTreeMap::from([("ClusterError".to_string(), "error".to_string())]);
    let graph = build_graph(&files, &aliases).expect("every path resolves");
    let imports: BTreeSet<&str> = graph["network::tcp"].keys().map(String::as_str).collect();
    assert_eq!(
        imports,
        BTreeSet::from(["batcher", "error", "metrics", "network", "network::peer_auth", "node"]),
        "{graph:?}"
    );
}

#[test]
fn a_path_into_no_module_is_reported() {
    let files = vec![("node".to_string(), "use crate::NotReExported;\n".to_string())];
    let err = build_graph(&files, &BTreeMap::new()).unwrap_err();
    assert!(err.contains("crate::NotReExported"), "{err}");
}

// ---- reading the sources ----

/// The graph of `cluster/src`'s modules; `lib.rs` is the root, whose re-exports are aliases.
fn cluster_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_modules(&src, &src, &mut files);
    let root = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let aliases = root_aliases(&root, &modules).unwrap_or_else(|e| panic!("lib.rs: {e}"));
    build_graph(&files, &aliases).unwrap_or_else(|e| panic!("{e}"))
}

/// Every module file under `dir` but the crate root, as (module path, source).
fn read_modules(src: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("readable src").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_modules(src, &path, files);
        } else if path.extension().is_some_and(|e| e == "rs") && path != src.join("lib.rs") {
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut segments: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if segments.last().is_some_and(|s| s == "mod") {
                segments.pop();
            }
            files.push((segments.join("::"), std::fs::read_to_string(&path).expect("readable source")));
        }
    }
}

/// The names `lib.rs` re-exports (`pub use node::{CoordinatorNode, …}`), each to its module.
fn root_aliases(root: &str, modules: &BTreeSet<String>) -> Result<BTreeMap<String, String>, String> {
    let tokens = tokens(root);
    let mut aliases = BTreeMap::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            Token::Ident(word) if word == "use" && depth == 0 => {
                let mut start = i + 1;
                if tokens.get(start) == Some(&Token::Ident("crate".into())) {
                    start += 2;
                }
                let (leaves, next) = use_tree(&tokens, start, Vec::new());
                for (path, alias) in leaves {
                    let module = longest_module(&path, modules)
                        .ok_or_else(|| format!("`use {}` names no module of the crate", path.join("::")))?;
                    match alias {
                        Some(alias) => aliases.insert(alias, module),
                        None => return Err(format!("`use {}::*`: re-export names one by one", path.join("::"))),
                    };
                }
                i = next;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(aliases)
}

/// The module graph of `files` (module path, source), with `aliases` the names the root
/// re-exports. A path that reaches no module is an error.
fn build_graph(files: &[(String, String)], aliases: &BTreeMap<String, String>) -> Result<Graph, String> {
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = Graph::new();
    for (module, source) in files {
        let imports = graph.entry(module.clone()).or_default();
        for path in crate_paths(module, source) {
            let target = match longest_module(&path, &modules) {
                Some(target) => target,
                None => aliases.get(&path[0]).cloned().ok_or_else(|| {
                    format!(
                        "{module}: crate::{} is neither a module nor a name lib.rs re-exports from one",
                        path.join("::")
                    )
                })?,
            };
            if target != *module {
                imports.entry(target).or_insert_with(|| Witness { path: format!("crate::{}", path.join("::")) });
            }
        }
    }
    Ok(graph)
}

/// The module that `path` (from the crate root) names or reaches into: its longest prefix that
/// is a module.
fn longest_module(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|p| modules.contains(p))
}

/// Every path into the crate in `source`, the file of `module`, from the crate root.
fn crate_paths(module: &str, source: &str) -> Vec<Vec<String>> {
    let tokens = tokens(source);
    let here: Vec<String> = module.split("::").map(String::from).collect();
    let children: BTreeSet<String> = tokens
        .windows(3)
        .filter_map(|w| match w {
            [Token::Ident(m), Token::Ident(name), Token::Other(';')] if m == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect();
    // Inline modules (`mod tests { … }`) open at a brace depth; `super` counts from them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_path = i == 0 || tokens[i - 1] != Token::PathSep;
        match &tokens[i] {
            Token::Open => depth += 1,
            Token::Close => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Token::Ident(m) if m == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Open)) = (tokens.get(i + 1), tokens.get(i + 2)) {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Token::Ident(word) if starts_path && tokens.get(i + 1) == Some(&Token::PathSep) => {
                let mut base: Vec<String> = here.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect();
                let start = match word.as_str() {
                    "crate" => {
                        base.clear();
                        i + 2
                    }
                    "self" => i + 2,
                    "super" => {
                        let mut j = i;
                        while tokens.get(j) == Some(&Token::Ident("super".into()))
                            && tokens.get(j + 1) == Some(&Token::PathSep)
                        {
                            base.pop();
                            j += 2;
                        }
                        j
                    }
                    child if children.contains(child) => i,
                    _ => {
                        i += 1;
                        continue;
                    }
                };
                let (leaves, next) = use_tree(&tokens, start, base);
                // A path within this file (`use super::*` in its tests) resolves to the file's own
                // module, which `build_graph` leaves out.
                paths.extend(leaves.into_iter().map(|(p, _)| p).filter(|p| !p.is_empty()));
                i = next.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    paths
}

/// A path a use tree ends in, with the name it is imported as (`None` for a glob).
type Leaf = (Vec<String>, Option<String>);

/// Reads a path or use tree from `tokens[start..]` below `prefix`: its leaves and the index
/// after it.
fn use_tree(tokens: &[Token], start: usize, prefix: Vec<String>) -> (Vec<Leaf>, usize) {
    let mut path = prefix;
    let mut i = start;
    loop {
        match tokens.get(i) {
            Some(Token::Open) => {
                let mut leaves = Vec::new();
                i += 1;
                while !matches!(tokens.get(i), None | Some(Token::Close)) {
                    let (mut inner, next) = use_tree(tokens, i, path.clone());
                    leaves.append(&mut inner);
                    i = next;
                    if tokens.get(i) == Some(&Token::Comma) {
                        i += 1;
                    }
                }
                return (leaves, i + 1);
            }
            Some(Token::Star) => return (vec![(path, None)], i + 1),
            Some(Token::Ident(segment)) => {
                if segment != "self" {
                    path.push(segment.clone());
                }
                i += 1;
                if tokens.get(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                let alias = match (tokens.get(i), tokens.get(i + 1)) {
                    (Some(Token::Ident(word)), Some(Token::Ident(alias))) if word == "as" => {
                        i += 2;
                        alias.clone()
                    }
                    _ => path.last().cloned().unwrap_or_default(),
                };
                return (vec![(path, Some(alias))], i);
            }
            // `crate::x::<T>`, `crate::x::(…)`: the path ends here.
            _ => {
                let alias = path.last().cloned();
                return (vec![(path, alias)], i);
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Other(char),
}

/// The tokens of Rust `source` that paths are made of; comments, string and character literals
/// and lifetimes' quotes are dropped.
fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut nested = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    nested += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    nested -= 1;
                    i += 2;
                    if nested == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if (c == 'r' || (c == 'b' && at(i + 1) == 'r')) && raw_string_hashes(&chars, i).is_some() {
            let (hashes, open) = raw_string_hashes(&chars, i).unwrap_or_default();
            i = open + 1;
            let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                i += 1;
            }
            i += closing.len();
        } else if c == 'b' && at(i + 1) == '"' {
            i = skip_string(&chars, i + 2);
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let q = if c == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' {
                // An escaped character literal: to its closing quote.
                i = q + 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(q + 2) == '\'' {
                i = q + 3;
            } else {
                // A lifetime: its name follows as an identifier.
                i = q + 1;
            }
        } else if c == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            i += 2;
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token::PathSep);
            i += 2;
        } else {
            out.push(match c {
                '{' => Token::Open,
                '}' => Token::Close,
                ',' => Token::Comma,
                '*' => Token::Star,
                other => Token::Other(other),
            });
            i += 1;
        }
    }
    out
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

/// The index after the string literal whose body starts at `i`.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// If a raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starts at `i`: its number of hashes and
/// the index of its opening quote.
fn raw_string_hashes(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = if chars[i] == 'b' { i + 2 } else { i + 1 };
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j))
}

// ---- the graph ----

/// A cycle of `graph`, as the modules along it with the first repeated at the end, if it has
/// one. Depth first from each module in name order, so the answer is the same every run.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'g>(
        graph: &'g Graph,
        module: &'g str,
        marks: &mut BTreeMap<&'g str, Mark>,
        stack: &mut Vec<&'g str>,
    ) -> Option<Vec<String>> {
        marks.insert(module, Mark::Open);
        stack.push(module);
        for next in graph.get(module).into_iter().flat_map(|m| m.keys()) {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|m| *m == next).unwrap_or(0);
                    let mut cycle: Vec<String> = stack[from..].iter().map(|m| m.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(graph, next, marks, stack) {
                        return Some(cycle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(module, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for module in graph.keys() {
        if !marks.contains_key(module.as_str()) {
            if let Some(cycle) = visit(graph, module, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

/// `cycle` as text: the modules, then the reference behind each step.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let steps: Vec<String> =
        cycle.windows(2).map(|w| format!("  {} uses {}", w[0], graph[&w[0]][&w[1]].path)).collect();
    format!("  {}\n{}", cycle.join(" → "), steps.join("\n"))
}
