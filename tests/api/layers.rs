//! The layering, checked on the source: the HTTP and SQL crates stay in `src/http` and
//! `src/store`, and no two top-level modules depend on each other, however indirectly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of a file without its comments (a comment may name anything).
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("a readable source file")
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where `crate_name` is named as a path (`crate_name::...`), not as part of a longer path
/// (`crate::http::...` is this crate's own module, not the `http` crate).
fn names_crate(code: &str, crate_name: &str) -> bool {
    let needle = format!("{crate_name}::");
    code.match_indices(&needle).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
    })
}

#[test]
fn http_and_sql_crates_are_used_only_in_src_http_and_src_store() {
    let root = source_root();
    let allowed = [root.join("http"), root.join("store")];
    let mut offences = Vec::new();
    for file in rust_files(&root) {
        if allowed.iter().any(|dir| file.starts_with(dir)) {
            continue;
        }
        let code = code_of(&file);
        for name in [
            "axum",
            "http",
            "hyper",
            "tower",
            "tower_http",
            "utoipa",
            "sqlx",
        ] {
            if names_crate(&code, name) {
                offences.push(format!("{} uses {name}", file.display()));
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}

#[test]
fn the_check_for_crates_tells_a_crate_from_this_crates_own_module() {
    assert!(names_crate("use axum::Json;", "axum"));
    assert!(names_crate("fn f() -> http::HeaderValue", "http"));
    assert!(!names_crate("use crate::http::state::AppState;", "http"));
    assert!(!names_crate("use super::http::x;", "http"));
    assert!(!names_crate("let tower_http = 1; my_sqlx::f()", "sqlx"));
}

/// Top-level module -> the top-level modules it names as `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = source_root();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&root).expect("src") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("a UTF-8 name")
            .to_owned();
        if name == "main" || name == "lib" {
            continue;
        }
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        let uses = graph.entry(name.clone()).or_default();
        for file in files {
            let code = code_of(&file);
            for (at, _) in code.match_indices("crate::") {
                let module: String = code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if module != name && !module.is_empty() {
                    uses.insert(module);
                }
            }
        }
    }
    graph
}

#[test]
fn no_two_top_level_modules_depend_on_each_other() {
    let graph = module_graph();
    assert!(graph.len() > 8, "the modules were found: {graph:?}");
    // Everything each module reaches, directly or not.
    let reaches = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&String> = graph[start].iter().collect();
        while let Some(module) = next.pop() {
            if seen.insert(module.clone()) {
                next.extend(graph.get(module).into_iter().flatten());
            }
        }
        seen
    };
    let cycles: Vec<String> = graph
        .keys()
        .filter(|module| reaches(module).contains(*module))
        .cloned()
        .collect();
    assert!(
        cycles.is_empty(),
        "modules that depend on themselves through others: {cycles:?} in {graph:#?}"
    );
    // The shared vocabulary is a leaf.
    assert!(graph["oauth"].is_empty(), "{:?}", graph["oauth"]);
}

#[test]
fn the_domain_knows_no_configuration_command_line_server_or_http() {
    let graph = module_graph();
    let domain = [
        "browser", "clients", "tokens", "keys", "oauth", "store", "users",
    ];
    let outer = ["config", "cli", "server", "http", "telemetry"];
    let offences: Vec<String> = domain
        .iter()
        .flat_map(|module| {
            graph[*module]
                .iter()
                .filter(|used| outer.contains(&used.as_str()))
                .map(move |used| format!("{module} uses crate::{used}"))
        })
        .collect();
    assert!(offences.is_empty(), "{offences:#?}");
}
