//! Layout rules of the whole workspace, read from its sources with `syn`,
//! so that a newcomer can hold each file in their head
//! (docs/ARCHITECTURE.md): every file opens with a `//!` line, no function
//! longer than 80 lines outside tests, no import cycle between the files of
//! a crate, no HTTP type in the server's service layer, no CLI flag or
//! command in the messages of the layers below the CLI, and no dependency
//! that nothing uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::{self, Visit};

/// The longest a function outside tests may be, signature to closing brace.
const MAX_FUNCTION_LINES: usize = 80;

/// Crates whose paths mean HTTP machinery: the service layer stays free of
/// them so that any front end can call it.
const HTTP_CRATES: &[&str] = &["axum", "hyper", "hyper_util", "tower", "tower_http", "http"];

/// A module: its path inside its crate (`["app", "seal"]`), empty for the root.
type ModulePath = Vec<String>;

struct SourceFile {
    path: PathBuf,
    module: ModulePath,
    syntax: syn::File,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("src").is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "found only {dirs:?}");
    dirs
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The module a file under `src/` defines: `app/mod.rs` and `app.rs` are
/// `app`, `lib.rs` and `main.rs` the root.
fn module_of(relative: &Path) -> ModulePath {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") || parts.last().is_some_and(|last| last == "mod")
    {
        parts.pop();
    }
    parts
}

/// The crate's source files, except test modules kept in their own files.
fn sources(crate_dir: &Path) -> Vec<SourceFile> {
    let src = crate_dir.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let module = module_of(path.strip_prefix(&src).unwrap());
            if module.iter().any(|part| part == "tests") {
                return None;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Some(SourceFile { path, module, syntax })
        })
        .collect()
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        path.is_ident("test")
            || path.segments.last().is_some_and(|segment| segment.ident == "test")
            || (path.is_ident("cfg")
                && attr
                    .meta
                    .require_list()
                    .is_ok_and(|list| list.tokens.to_string() == "test"))
    })
}

/// Everything the rules need from one file, test code left out.
#[derive(Default)]
struct FileFacts {
    /// (name, first line, lines) of every function.
    functions: Vec<(String, usize, usize)>,
    /// Paths starting with `crate`, `super` or `self`, as segments.
    module_paths: Vec<Vec<String>>,
    /// First segments of every other path (crate names among them).
    outer_roots: BTreeSet<String>,
    /// (line, text) of every string literal, `#[error("…")]` messages
    /// included and doc comments left out.
    strings: Vec<(usize, String)>,
}

impl FileFacts {
    fn function(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let first = sig.fn_token.span.start().line;
        let last = block.brace_token.span.close().end().line;
        self.functions.push((name.to_string(), first, last + 1 - first));
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => self.used(prefix, &name.ident),
            syn::UseTree::Rename(rename) => self.used(prefix, &rename.ident),
            syn::UseTree::Glob(_) => self.used_path(prefix.clone()),
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    fn used(&mut self, prefix: &[String], last: &syn::Ident) {
        let mut path = prefix.to_vec();
        if last != "self" {
            path.push(last.to_string());
        }
        self.used_path(path);
    }

    fn used_path(&mut self, path: Vec<String>) {
        match path.first().map(String::as_str) {
            Some("crate" | "super" | "self") => self.module_paths.push(path),
            Some(root) => {
                self.outer_roots.insert(root.to_string());
            }
            None => {}
        }
    }
}

impl<'ast> Visit<'ast> for FileFacts {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test_only(&item.attrs) {
            visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            self.function(&item.sig.ident, &item.sig, &item.block);
            visit::visit_item_fn(self, item);
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_test_only(&item.attrs) {
            self.function(&item.sig.ident, &item.sig, &item.block);
            visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let Some(block) = &item.default {
            self.function(&item.sig.ident, &item.sig, block);
        }
        visit::visit_trait_item_fn(self, item);
    }

    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if !is_test_only(&item.attrs) {
            visit::visit_item_impl(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if !is_test_only(&item.attrs) {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        if attr.path().is_ident("doc") {
            return;
        }
        if attr.path().is_ident("error") {
            let message = attr.parse_args_with(|input: syn::parse::ParseStream<'_>| {
                let message: syn::LitStr = input.parse()?;
                input.parse::<proc_macro2::TokenStream>()?;
                Ok(message)
            });
            if let Ok(message) = message {
                self.visit_lit_str(&message);
            }
        }
        visit::visit_attribute(self, attr);
    }

    fn visit_lit_str(&mut self, literal: &'ast syn::LitStr) {
        self.strings.push((literal.span().start().line, literal.value()));
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.used_path(path.segments.iter().map(|segment| segment.ident.to_string()).collect());
        visit::visit_path(self, path);
    }
}

fn facts(file: &SourceFile) -> FileFacts {
    let mut facts = FileFacts::default();
    facts.visit_file(&file.syntax);
    facts
}

/// The file module a path from `from` lands in: `crate::`, `super::` and
/// `self::` resolved, then the longest prefix that is a file of the crate.
fn target_module(from: &ModulePath, path: &[String], modules: &BTreeSet<ModulePath>) -> Option<ModulePath> {
    let mut base = from.clone();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {
            while rest.first().is_some_and(|segment| segment == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
    }
    let full: Vec<String> = base.into_iter().chain(rest.iter().cloned()).collect();
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

/// The dependency edges between a crate's files. A module using its own
/// submodules is containment, not a dependency, and is left out; a
/// submodule using its parent's items is an edge.
fn module_graph(files: &[SourceFile]) -> BTreeMap<ModulePath, BTreeSet<ModulePath>> {
    let modules: BTreeSet<ModulePath> = files.iter().map(|file| file.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for file in files {
        let edges: BTreeSet<ModulePath> = facts(file)
            .module_paths
            .iter()
            .filter_map(|path| target_module(&file.module, path, &modules))
            .filter(|target| !target.starts_with(&file.module))
            .collect();
        graph.insert(file.module.clone(), edges);
    }
    graph
}

/// One cycle through `start`, as module names, if there is one.
fn cycle_through(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>, start: &ModulePath) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&ModulePath, &ModulePath> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(module) = queue.pop_front() {
        for next in graph.get(module).into_iter().flatten() {
            if next == start {
                let mut cycle = vec![module];
                while let Some(previous) = came_from.get(cycle[cycle.len() - 1]) {
                    cycle.push(previous);
                }
                cycle.reverse();
                cycle.push(start);
                return Some(cycle.iter().map(|m| format!("crate::{}", m.join("::"))).collect());
            }
            if !came_from.contains_key(next) && next != start {
                came_from.insert(next, module);
                queue.push_back(next);
            }
        }
    }
    None
}

fn shown(file: &SourceFile) -> String {
    file.path
        .strip_prefix(workspace_root())
        .unwrap_or(&file.path)
        .display()
        .to_string()
}

#[test]
fn no_function_outside_tests_is_longer_than_80_lines() {
    let mut too_long = Vec::new();
    let mut counted = 0;
    for dir in crate_dirs() {
        for file in sources(&dir) {
            for (name, line, lines) in facts(&file).functions {
                counted += 1;
                if lines > MAX_FUNCTION_LINES {
                    too_long.push(format!("{}:{line}: fn {name} has {lines} lines", shown(&file)));
                }
            }
        }
    }
    assert!(counted > 500, "the walk found only {counted} functions");
    assert!(
        too_long.is_empty(),
        "split these (at most {MAX_FUNCTION_LINES} lines):\n{}",
        too_long.join("\n")
    );
}

#[test]
fn every_source_file_opens_with_what_it_is_for() {
    let mut silent = Vec::new();
    for dir in crate_dirs() {
        let mut paths = Vec::new();
        rust_files(&dir.join("src"), &mut paths);
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.starts_with("//!") {
                silent.push(
                    path.strip_prefix(workspace_root())
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    assert!(
        silent.is_empty(),
        "open these with a `//!` line saying what they are for:\n{}",
        silent.join("\n")
    );
}

#[test]
fn no_crate_has_an_import_cycle_between_its_files() {
    let mut cycles = BTreeMap::new();
    for dir in crate_dirs() {
        let files = sources(&dir);
        let graph = module_graph(&files);
        for module in graph.keys() {
            if let Some(cycle) = cycle_through(&graph, module) {
                let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                let mut key = cycle[..cycle.len() - 1].to_vec();
                key.sort();
                cycles
                    .entry(key)
                    .or_insert_with(|| format!("{name}: {}", cycle.join(" -> ")));
            }
        }
    }
    let cycles: Vec<String> = cycles.into_values().collect();
    assert!(cycles.is_empty(), "import cycles between files:\n{}", cycles.join("\n"));
}

#[test]
fn the_service_layer_uses_no_http_types() {
    let server = workspace_root().join("crates/hallpass-server");
    let mut checked = 0;
    for file in sources(&server) {
        if file.module.first().is_none_or(|top| top != "app") {
            continue;
        }
        checked += 1;
        let roots = facts(&file).outer_roots;
        let http: Vec<&String> = roots
            .iter()
            .filter(|root| HTTP_CRATES.contains(&root.as_str()))
            .collect();
        assert!(http.is_empty(), "{} uses {http:?}", shown(&file));
    }
    assert!(checked >= 10, "found only {checked} files under app/");
}

/// The commands people type (`hallpass server` is the process itself,
/// which operators run, and may be named).
const CLI_COMMANDS: &[&str] = &[
    "whoami",
    "token",
    "apply",
    "target",
    "role",
    "flow",
    "policy",
    "request",
    "show",
    "approve",
    "deny",
    "cancel",
    "credentials",
    "grants",
    "lock",
    "unlock",
    "revoke",
    "release",
    "extend",
    "review",
    "audit",
];

/// Whether `text` names a CLI flag (`--reason`) or command (`hallpass
/// cancel`): the front end's words, not the domain's.
fn names_the_cli(text: &str) -> bool {
    let flag = text
        .match_indices("--")
        .any(|(at, _)| text[at + 2..].starts_with(|c: char| c.is_ascii_lowercase()));
    let command = text.match_indices("hallpass ").any(|(at, _)| {
        let word: String = text[at + 9..].chars().take_while(char::is_ascii_lowercase).collect();
        CLI_COMMANDS.iter().any(|command| word.starts_with(command))
    });
    flag || command
}

#[test]
fn domain_messages_name_no_cli_flag_or_command() {
    let root = workspace_root();
    let domain = [
        root.join("crates/hallpass-core"),
        root.join("crates/hallpass-policy"),
        root.join("crates/hallpass-providers"),
        root.join("crates/hallpass-store"),
    ];
    let mut found = Vec::new();
    let mut read = 0;
    let server = sources(&root.join("crates/hallpass-server"))
        .into_iter()
        .filter(|file| file.module.first().is_some_and(|top| top == "app"));
    for file in domain.iter().flat_map(|dir| sources(dir)).chain(server) {
        for (line, text) in facts(&file).strings {
            read += 1;
            if names_the_cli(&text) {
                found.push(format!("{}:{line}: {text:?}", shown(&file)));
            }
        }
    }
    assert!(read > 300, "read only {read} strings");
    assert!(
        found.is_empty(),
        "messages of the service layer reach every front end; let the CLI add its own hints:\n{}",
        found.join("\n")
    );
}

/// The dependencies a crate's `Cargo.toml` names in `section`, as the
/// crate names code uses (`tower-http` is `tower_http`).
fn declared_dependencies(manifest: &str, section: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == section;
        } else if inside
            && let Some(name) = line.split(['.', '=', ' ']).next()
            && !name.is_empty()
            && !name.starts_with('#')
        {
            names.insert(name.replace('-', "_"));
        }
    }
    names
}

/// Every path root used by the Rust files under `dirs` of `crate_dir`.
fn used_roots(crate_dir: &Path, dirs: &[&str]) -> BTreeSet<String> {
    let mut roots = BTreeSet::new();
    for dir in dirs.iter().map(|dir| crate_dir.join(dir)).filter(|dir| dir.is_dir()) {
        let mut paths = Vec::new();
        rust_files(&dir, &mut paths);
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap();
            let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut everything = AllRoots::default();
            everything.visit_file(&syntax);
            roots.extend(everything.0);
        }
    }
    roots
}

/// First segments of every path and `use`, test code included.
#[derive(Default)]
struct AllRoots(BTreeSet<String>);

impl<'ast> Visit<'ast> for AllRoots {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let Some(first) = path.segments.first() {
            self.0.insert(first.ident.to_string());
        }
        visit::visit_path(self, path);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                self.0.insert(path.ident.to_string());
            }
            syn::UseTree::Name(name) => {
                self.0.insert(name.ident.to_string());
            }
            syn::UseTree::Group(group) => group.items.iter().for_each(|tree| self.visit_use_tree(tree)),
            syn::UseTree::Rename(rename) => {
                self.0.insert(rename.ident.to_string());
            }
            syn::UseTree::Glob(_) => {}
        }
    }

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        // `#[derive(thiserror::Error)]`, `#[serde(with = ...)]`: tokens too.
        if let syn::Meta::List(list) = &attr.meta {
            let tokens: Vec<proc_macro2::TokenTree> = list.tokens.clone().into_iter().collect();
            collect_token_roots(&tokens, &mut self.0);
        }
        visit::visit_attribute(self, attr);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (`json!`, `format!`, `select!`) are
        // tokens to syn: take every identifier followed by `::`.
        let tokens: Vec<proc_macro2::TokenTree> = mac.tokens.clone().into_iter().collect();
        collect_token_roots(&tokens, &mut self.0);
        visit::visit_macro(self, mac);
    }
}

fn collect_token_roots(tokens: &[proc_macro2::TokenTree], roots: &mut BTreeSet<String>) {
    use proc_macro2::TokenTree;
    for (index, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Ident(ident) => {
                if matches!(tokens.get(index + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':') {
                    roots.insert(ident.to_string());
                }
            }
            TokenTree::Group(group) => {
                let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                collect_token_roots(&inner, roots);
            }
            _ => {}
        }
    }
}

#[test]
fn every_dependency_is_used() {
    let mut unused = Vec::new();
    for dir in crate_dirs() {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let in_src = used_roots(&dir, &["src"]);
        let everywhere = used_roots(&dir, &["src", "tests", "benches", "examples"]);
        let checks = [("[dependencies]", &in_src), ("[dev-dependencies]", &everywhere)];
        for (section, used) in checks {
            for dependency in declared_dependencies(&manifest, section) {
                if !used.contains(&dependency) {
                    unused.push(format!("{name} {section} {dependency}"));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "unused dependencies; remove them:\n{}",
        unused.join("\n")
    );
}

/// The rules themselves: each must catch what it is for.
#[test]
fn the_rules_catch_what_they_are_for() {
    let file = |module: &[&str], text: &str| SourceFile {
        path: PathBuf::from(module.join("/")),
        module: module.iter().map(|part| part.to_string()).collect(),
        syntax: syn::parse_file(text).unwrap(),
    };
    let long_body = "let _ = 1;\n".repeat(MAX_FUNCTION_LINES);
    let long = file(
        &["a"],
        &format!("fn long() {{\n{long_body}}}\n#[cfg(test)]\nmod tests {{ fn t() {{\n{long_body}}} }}"),
    );
    let functions = facts(&long).functions;
    assert_eq!(functions, [("long".to_string(), 1, MAX_FUNCTION_LINES + 2)]);

    let files = [
        file(&["a"], "use crate::b::{self, Thing};"),
        file(&["b"], "fn f() { super::a::g(); }"),
        file(&["c"], "mod d; use self::d::X;"),
        file(&["c", "d"], "use super::Y;"),
    ];
    let graph = module_graph(&files);
    let cycle = cycle_through(&graph, &vec!["a".to_string()]).expect("a -> b -> a");
    assert_eq!(cycle, ["crate::a", "crate::b", "crate::a"]);
    assert!(
        cycle_through(&graph, &vec!["c".to_string()]).is_none(),
        "parent and child are no cycle"
    );

    let messages = file(
        &["e"],
        "/// Run `hallpass cancel --force`.\n#[derive(Error)] enum E { #[error(\"add --reason\")] A }\nfn f() { g(\"then run hallpass cancel\"); }",
    );
    let strings: Vec<String> = facts(&messages).strings.into_iter().map(|(_, text)| text).collect();
    assert_eq!(
        strings,
        ["add --reason", "then run hallpass cancel"],
        "doc comments are left out"
    );
    assert!(strings.iter().all(|text| names_the_cli(text)));
    assert!(!names_the_cli(
        "--- a long -- dash, hallpass: the broker, HALLPASS_TOKEN"
    ));

    let manifest = "[dependencies]\ntower-http.workspace = true\nserde = \"1\"\n# a note\n\n[dev-dependencies]\nsyn = { version = \"2\" }\n";
    let declared = declared_dependencies(manifest, "[dependencies]");
    assert_eq!(declared, ["serde", "tower_http"].map(String::from).into());
    assert_eq!(
        declared_dependencies(manifest, "[dev-dependencies]"),
        ["syn".to_string()].into()
    );
    let mut roots = AllRoots::default();
    roots.visit_file(
        &syn::parse_file(
            "#[derive(thiserror::Error)] struct E; fn f() { let _ = serde_json::json!({\"a\": chrono::Utc::now()}); }",
        )
        .unwrap(),
    );
    for used in ["thiserror", "serde_json", "chrono"] {
        assert!(roots.0.contains(used), "{used} in {:?}", roots.0);
    }
    assert!(!roots.0.contains("tower_http"));

    let http = file(
        &["app"],
        "use axum::Json; fn f() -> hyper::StatusCode { hyper::StatusCode::OK }",
    );
    let roots = facts(&http).outer_roots;
    assert!(roots.contains("axum") && roots.contains("hyper"), "{roots:?}");
}
