//! The documents a newcomer follows stay true: every source file or document they name exists,
//! the README's set-up path puts `deai` on PATH and makes every key a role needs, and the
//! contract (`docs/SPEC.md`) is in the repository.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `code spans` of `text` that name a document or a source file of this repository.
fn named_files(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.ends_with(".md") || span.ends_with(".rs"))
        .filter(|span| !span.contains(|c: char| c.is_whitespace() || "*<>{}$".contains(c)))
        .map(str::to_string)
        .collect()
}

/// The workspace's crate folders (and their `src/`).
fn crate_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root()).unwrap().flatten() {
        if entry.path().join("Cargo.toml").exists() {
            dirs.push(entry.path().join("src"));
            dirs.push(entry.path());
        }
    }
    dirs
}

#[test]
fn every_file_the_documents_name_exists() {
    let mut documents = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".md") && name != "SPEC.md" {
            documents.push(format!("docs/{name}"));
        }
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for document in &documents {
        let base = Path::new(document).parent().unwrap_or(Path::new(""));
        for named in named_files(&read(document)) {
            checked += 1;
            // Named from the root, from the document's folder, or inside a crate (a crate's
            // section names `tests/x.rs` for `<crate>/tests/x.rs`); a bare file name may be
            // anywhere.
            let exists = !named.contains('/')
                || root().join(&named).exists()
                || root().join(base).join(&named).exists()
                || crate_dirs().iter().any(|dir| dir.join(&named).exists());
            if !exists {
                missing.push(format!("{document} names {named}"));
            }
        }
    }
    assert!(checked > 20, "only {checked} file names found: the scan is broken");
    assert_eq!(missing, Vec::<String>::new());
}

#[test]
fn the_readme_takes_a_newcomer_from_nothing_to_every_role() {
    let readme = read("README.md");
    for step in [
        "cargo install --path . --locked", // `deai` on PATH
        "deai dev",
        "deai keygen --out miner.key",
        "deai keygen --coordinator",
        "deai client",
        "deai miner",
        "deai gov",
        "docs/SPEC.md",
        "dev faucet",
        "epoch",
    ] {
        assert!(readme.contains(step), "the README lacks {step:?}");
    }
    assert!(!readme.contains("kept beside this repository"), "the README points outside the repository");
}

#[test]
fn the_contract_is_in_the_repository() {
    let spec = read("docs/SPEC.md");
    for section in ["## 5. Protocol rules", "## 6. The BFT-signature layer", "## 8. Public rules API"] {
        assert!(spec.contains(section), "docs/SPEC.md lacks {section}");
    }
}
