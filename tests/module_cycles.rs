//! Data flows one way (docs/design.md): no module of `src/` imports a module that imports it
//! back, directly or through others. A module is a file; `crate::a::b` and `super::x` paths
//! outside `#[cfg(test)]` are its imports; a module and its own ancestors are not counted
//! (a parent declares and re-exports its children).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module of `src/`, by path, with its text before its first `#[cfg(test)]`.
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let mut module = prefix.to_vec();
        if path.is_dir() {
            module.push(name.to_owned());
            modules(&path, &module, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        if !matches!(name, "mod" | "lib" | "main") {
            module.push(name.to_owned());
        }
        let text = std::fs::read_to_string(&path).expect("a source file");
        let code: String = text
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        out.insert(module, code.to_owned());
    }
}

/// The paths after each occurrence of `start` in `code`: `crate::a::b` gives `[a, b]`.
fn paths_after<'a>(code: &'a str, start: &'a str) -> impl Iterator<Item = Vec<String>> + 'a {
    code.match_indices(start).filter_map(move |(at, _)| {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let rest = &code[at + start.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let segments: Vec<String> = rest[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Some(segments)
    })
}

/// The longest known module that `segments` starts with.
fn resolve(all: &BTreeMap<Module, String>, segments: &[String]) -> Option<Module> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].to_vec())
        .find(|m| all.contains_key(m))
}

fn related(a: &Module, b: &Module) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut all = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut all,
    );
    assert!(all.len() > 20, "{} modules found", all.len());
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, code) in &all {
        let mut targets = BTreeSet::new();
        for path in paths_after(code, "crate::") {
            targets.extend(resolve(&all, &path));
        }
        for (at, _) in code.match_indices("super::") {
            let before = code[..at].chars().next_back();
            if code[..at].ends_with("super::")
                || before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            {
                continue; // counted from the first `super::` of a chain
            }
            let mut rest = &code[at..];
            let mut ups = 0;
            while let Some(tail) = rest.strip_prefix("super::") {
                ups += 1;
                rest = tail;
            }
            let mut full = module[..module.len().saturating_sub(ups)].to_vec();
            full.extend(
                paths_after(&format!("::{rest}"), "::")
                    .next()
                    .unwrap_or_default(),
            );
            targets.extend(resolve(&all, &full));
        }
        targets.retain(|t| !related(module, t));
        edges.insert(module.clone(), targets);
    }
    // A cycle: a module reaches itself.
    let mut cycles = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&Module> = edges[start].iter().collect();
        while let Some(next) = stack.pop() {
            if next == start {
                cycles.push(start.join("::"));
                break;
            }
            if seen.insert(next) {
                stack.extend(edges.get(next).into_iter().flatten());
            }
        }
    }
    assert!(cycles.is_empty(), "modules in an import cycle: {cycles:?}");
}
