//! `docs/error-codes.md` is generated from the one list of codes (`api/src/codes.rs`): this test
//! rewrites it when it is stale and fails, so a stale table never passes CI unnoticed.

use deai_api::codes::Code;
use std::path::Path;

#[test]
fn the_error_code_table_is_generated_from_the_list() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/error-codes.md");
    let wanted = Code::markdown_table();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != wanted {
        std::fs::write(&path, &wanted).expect("docs/error-codes.md is writable");
        panic!("docs/error-codes.md was stale and has been regenerated: commit it");
    }
    for code in Code::ALL {
        assert!(current.contains(&format!("| `{}` |", code.as_str())), "{code} is not in the table");
    }
}
