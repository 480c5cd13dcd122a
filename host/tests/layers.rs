//! The import graph of `host/src`, read from the source: no module imports one that imports it
//! back (directly or around a circle), and no module imports from a layer above its own, as
//! `DESIGN.md` orders them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer, lowest first; a module may import only from its own layer or
/// below.
const LAYERS: &[(&str, u8)] = &[
    ("model", 1),
    ("config", 1),
    ("clock", 1),
    ("redact", 1),
    ("pool", 1),
    ("ticker", 1),
    ("grpc", 1),
    ("metrics", 2),
    ("sources", 2),
    ("plugins", 2),
    ("telemetry", 2),
    ("tenancy", 2),
    ("server", 2),
    ("intake", 3),
    ("derive", 3),
    ("pipeline", 3),
    ("load", 3),
    ("export", 4),
    ("control", 5),
    ("host", 6),
    ("trial", 6),
    ("demo", 6),
    ("scaffold", 6),
    ("cli", 6),
];

/// Imports the layers allow but the design rules out.
const FORBIDDEN: &[(&str, &str)] = &[
    // The engine's nouns are the data model's; runtime types are built from config, not of it.
    ("metrics", "config"),
    // Intake parses and validates; it knows nothing of exporters.
    ("intake", "export"),
    // Config reads files into types of the data model only.
    ("config", "metrics"),
];

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("src/main.rs") {
            // The binary's root names the library as `wasmtel::`, never as `crate::`.
            out.push(path);
        }
    }
}

/// The module path of a source file (`plugins::runtime`; `` for `lib.rs`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text before the file's unit tests, without line comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names from `crate`, `super` or `self`, resolved to segments from the
/// crate root; `use` groups (`super::{a, b::c}`) are expanded one level.
fn paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .into_iter()
            .find(|head| bytes[i..].starts_with(head.as_bytes()));
        let Some(head) = starts.filter(|_| i == 0 || !ident(bytes[i - 1])) else {
            i += 1;
            continue;
        };
        let mut base: Vec<String> = match head {
            "crate::" => Vec::new(),
            "self::" => module.to_vec(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        let mut j = i + head.len();
        loop {
            if code[j..].starts_with("super::") {
                base.pop();
                j += "super::".len();
                continue;
            }
            let end = j + code[j..].bytes().take_while(|b| ident(*b)).count();
            if end > j {
                base.push(code[j..end].to_owned());
                j = end;
                if code[j..].starts_with("::") {
                    j += 2;
                    continue;
                }
                out.push(base.clone());
            } else if code[j..].starts_with('{') {
                let close = code[j..].find('}').map_or(code.len(), |c| j + c);
                for item in code[j + 1..close].split(',') {
                    let segments: Vec<String> = item
                        .split("::")
                        .map(|s| s.trim().trim_start_matches('{').trim())
                        .take_while(|s| !s.is_empty() && s.bytes().all(ident))
                        .map(str::to_owned)
                        .collect();
                    let mut full = base.clone();
                    full.extend(segments.into_iter().filter(|s| s != "self"));
                    out.push(full);
                }
                j = close;
            }
            break;
        }
        i = j.max(i + 1);
    }
    out
}

/// The import graph: each module (by file) and the modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    files(&root, &mut sources);
    let modules: BTreeMap<Vec<String>, PathBuf> = sources
        .iter()
        .map(|f| (module_of(&root, f), f.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("readable");
        let mut edges = BTreeSet::new();
        for path in paths(&code(&text), module) {
            // The longest prefix that is a module is what the path names.
            let target = (1..=path.len())
                .rev()
                .map(|n| &path[..n])
                .find(|p| modules.contains_key(*p));
            if let Some(target) = target
                && !module.starts_with(target)
                && target != module.as_slice()
            {
                edges.insert(target.join("::"));
            }
        }
        graph.insert(module.join("::"), edges);
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    assert!(
        graph.len() > 50,
        "the source was read: {} modules",
        graph.len()
    );
    assert!(
        graph["plugins::set"].contains("plugins::loader"),
        "edges are found: {:?}",
        graph["plugins::set"]
    );
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new());
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let layer = |m: &str| {
        LAYERS
            .iter()
            .find(|(name, _)| *name == top(m))
            .map(|(_, l)| *l)
            .unwrap_or_else(|| panic!("module `{m}` has no layer in LAYERS"))
    };
    let mut broken = Vec::new();
    for (from, targets) in graph() {
        if from.is_empty() {
            continue; // lib.rs declares every module
        }
        for to in targets {
            let (a, b) = (top(&from), top(&to));
            if a != b && (layer(&to) > layer(&from) || FORBIDDEN.contains(&(a, b))) {
                broken.push(format!("{from} -> {to}"));
            }
        }
    }
    assert_eq!(broken, Vec::<String>::new());
}

#[test]
fn a_circle_and_a_climb_are_seen() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    graph.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(circles(&graph), vec![vec!["a", "b", "c"]]);
    let module = vec!["plugins".to_owned(), "set".to_owned()];
    let found = paths(
        "use super::{loader::Loader, slot::{Reloadable, Slot}};\nlet x = crate::metrics::Registry::new(1);",
        &module,
    );
    assert!(
        found.contains(&vec!["plugins".into(), "loader".into(), "Loader".into()]),
        "{found:?}"
    );
    assert!(
        found.contains(&vec!["plugins".into(), "slot".into(), "Reloadable".into()]),
        "{found:?}"
    );
    assert!(
        found.contains(&vec!["metrics".into(), "Registry".into(), "new".into()]),
        "{found:?}"
    );
}
