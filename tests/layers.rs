//! The layers of `src/` (ARCHITECTURE.md, "Layers"): each top-level module may import only
//! the modules below it. Read from the source, every `crate::…` path outside comments and
//! test code counts, so a forbidden import cannot come back unnoticed, and no two modules
//! can import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and what it may import. Lower layers first; `app` wires everything.
const LAYERS: &[(&str, &[&str])] = &[
    // The ground floor: plain words and a TLS helper; they import nothing of the crate.
    ("model", &[]),
    ("tls", &[]),
    // Probes measure; they know neither alerts nor the store.
    ("probe", &["model", "tls"]),
    ("store", &["model"]),
    // The validated config: plain data over probe definitions.
    ("catalog", &["model", "probe"]),
    // Notifiers deliver events; they know neither probes nor the alert engine.
    ("notify", &["model", "tls", "store"]),
    ("reach", &["model", "catalog"]),
    ("metrics", &["model", "catalog", "probe"]),
    ("scheduler", &["model", "catalog", "probe", "metrics"]),
    // The engine is pure: neither the state nor the store.
    ("alert", &["model", "catalog", "reach", "probe"]),
    ("status", &["model", "catalog", "reach", "probe"]),
    ("journal", &["model", "store", "notify"]),
    // Reports read the store's history and know nothing of the running agent.
    ("report", &["model", "store"]),
    (
        "state",
        &[
            "model",
            "catalog",
            "reach",
            "probe",
            "metrics",
            "scheduler",
            "alert",
            "status",
        ],
    ),
    ("config", &["model", "probe", "catalog", "notify"]),
    (
        "server",
        &[
            "model", "catalog", "reach", "metrics", "alert", "status", "state", "journal", "store",
            "report",
        ],
    ),
    (
        "app",
        &[
            "model",
            "tls",
            "probe",
            "store",
            "catalog",
            "notify",
            "reach",
            "metrics",
            "scheduler",
            "alert",
            "status",
            "journal",
            "state",
            "config",
            "server",
            "report",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/alert/engine.rs` → `alert`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The modules a file's own code names as `crate::x`, leaving out comments and the test
/// module at its end.
fn imports(text: &str) -> BTreeSet<String> {
    let code = match text.find("\n#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        // Whole files that only tests compile.
        if matches!(name.as_deref(), Some("tests.rs" | "test_servers.rs")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let rel = file
            .strip_prefix(&src)
            .expect("in src")
            .display()
            .to_string();
        for import in imports(&text) {
            if import != module {
                graph
                    .entry(module.clone())
                    .or_default()
                    .entry(import)
                    .or_default()
                    .push(rel.clone());
            }
        }
        graph.entry(module).or_default();
    }
    graph
}

#[test]
fn every_module_imports_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, imports) in graph() {
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!("module `{module}` is not in the table of layers"));
            continue;
        };
        for (import, files) in imports {
            if !may.contains(&import.as_str()) {
                wrong.push(format!(
                    "`{module}` imports `{import}` ({}), which is not below it",
                    files.join(", ")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_table_of_layers_is_itself_acyclic() {
    // Each module may import only modules listed before it.
    for (i, (module, may)) in LAYERS.iter().enumerate() {
        for m in *may {
            let below = LAYERS[..i].iter().any(|(name, _)| name == m);
            assert!(below, "`{module}` may import `{m}`, which is not below it");
        }
    }
}

#[test]
fn the_scanner_sees_imports_and_skips_comments_and_tests() {
    let text = "use crate::alert::Engine;\nfn f() { crate::store::x(); } // crate::journal\n#[cfg(test)]\nmod tests {\n use crate::state::X;\n}\n";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["alert", "store"]);
}
