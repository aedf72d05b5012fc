//! The HTTP API holds up under a schema-driven fuzzer (issue 5): schemathesis, pointed at the
//! OpenAPI document a running 3-node network serves at `/v1/openapi.json`, finds no 5xx, no
//! response that breaks the document, no wrong status code, content type or `Allow` header;
//! and no node panics. `.ci/run` installs schemathesis; without it this test fails and says how
//! to install it.
//!
//! The admin routes that change the cluster (learners, promote, remove, transfer-leader,
//! snapshot) are left out: fuzzing them would remove the nodes under test. They are covered by
//! the cluster tests. Miner sessions and long polls wait by design; the nodes here cap them at
//! `STREAM_CAP_MS` so that each fuzzed request ends quickly.

mod common;

use common::Processes;
use std::process::Command;

/// Examples schemathesis generates per operation.
const FUZZ_EXAMPLES_PER_OPERATION: &str = "100";
/// The admin routes left out of the fuzzing, as a regular expression over paths.
const EXCLUDED_PATHS: &str = "^/v1/admin/(learners|promote|remove|transfer-leader|snapshot)$";
/// Longest a miner session or long poll lasts on the fuzzed nodes, in milliseconds.
const STREAM_CAP_MS: &str = "20";
/// What must hold for every response.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance,unsupported_method";

#[test]
fn schemathesis_finds_nothing_wrong_with_the_api() {
    let st = std::env::var("DEAI_SCHEMATHESIS").unwrap_or_else(|_| "st".into());
    let version = Command::new(&st).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "schemathesis is not installed (`pip install schemathesis`, or set DEAI_SCHEMATHESIS to its `st`)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-fuzz"]);
    cluster.env.push(("DEAI_NODE_ACTORS__MINER_SESSION_MAX_MS".into(), STREAM_CAP_MS.into()));
    cluster.env.push(("DEAI_NODE_MAX_LONG_POLL_MS".into(), STREAM_CAP_MS.into()));
    cluster.start_all();
    // The bootstrap node leads at first; aim at every node so followers' answers are checked too.
    for i in 0..3 {
        let output = Command::new(&st)
            .args(["run", &cluster.url(i, "/v1/openapi.json")])
            .args(["--checks", CHECKS])
            .args(["--exclude-path-regex", EXCLUDED_PATHS])
            .args(["--max-examples", FUZZ_EXAMPLES_PER_OPERATION])
            .args(["--seed", "1"])
            // schemathesis keeps a cache in its working directory: not in the source tree.
            .current_dir(dir.path())
            .output()
            .expect("schemathesis runs");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "schemathesis found failures on node {i}:\n{report}");
        assert!(report.contains("passed"), "schemathesis ran no test cases on node {i}:\n{report}");
    }
    cluster.stop_all_cleanly();
    assert_eq!(cluster.panics_in_logs(), Vec::<String>::new(), "no node panicked");
}
