//! docs/threat-model.md names, for every threat, the tests that prove its mitigation. This
//! keeps that true: every name in a table's "tests" column must be a test function in the code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("target") && !path.ends_with("node_modules") {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The backticked names in the last cell of every table row under a header whose last column
/// is "tests".
fn named_tests(document: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_tests_table = false;
    for line in document.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            in_tests_table = false;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let last = cells.last().copied().unwrap_or("");
        if last == "tests" {
            in_tests_table = true;
            continue;
        }
        if !in_tests_table || last.starts_with("---") {
            continue;
        }
        names.extend(last.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    names
}

#[test]
fn every_test_named_in_the_threat_model_exists() {
    let document = std::fs::read_to_string(workspace().join("docs/threat-model.md")).unwrap();
    let names = named_tests(&document);
    assert!(
        names.len() > 50,
        "the threat model should name its tests ({} found)",
        names.len()
    );
    let mut files = Vec::new();
    rust_sources(&workspace().join("crates"), &mut files);
    let code: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| {
            !code.contains(&format!("fn {name}(")) && !code.contains(&format!("fn {name}<"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "named in docs/threat-model.md but not found as tests: {missing:?}"
    );
    // Every STRIDE category is covered.
    for category in [
        "## Spoofing",
        "## Tampering",
        "## Repudiation",
        "## Information disclosure",
        "## Denial of service",
        "## Elevation of privilege",
    ] {
        assert!(document.contains(category), "{category} missing");
    }
    assert!(
        document.contains("```mermaid"),
        "the data-flow diagram is missing"
    );
}

#[test]
fn the_parser_reads_only_the_tests_column() {
    let doc =
        "| a | tests |\n|---|---|\n| `not_this` | `this_one`, `and_this` |\n\ntext `ignored`\n";
    assert_eq!(named_tests(doc), vec!["this_one", "and_this"]);
}
