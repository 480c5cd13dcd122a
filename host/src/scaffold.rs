//! `wasmtel plugins new`: a ready plugin project — source, contract, a unit test (Rust) and a
//! `build.sh` that makes `<name>.wasm` — for an exporter, a transform or a view, in Rust,
//! Python or JavaScript.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The kinds of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Turns batches into requests for one backend.
    Exporter,
    /// Edits batches on their way to every exporter.
    Transform,
    /// Maps a series' attributes when it is recorded.
    View,
}

/// The languages a project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `wasmtel-guest` SDK (cargo, target wasm32-wasip2).
    Rust,
    /// Python, built with `componentize-py` (PyPI).
    Python,
    /// JavaScript, built with `componentize-js` (npm).
    Js,
}

/// The contract, copied into Python and JavaScript projects for their build tools.
const WIT: &str = include_str!("../../wit/plugin.wit");

/// Where this binary's SDK checkout was, if it is still there (else the SDK comes from crates.io).
const SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk-guest");

const RUST_EXPORTER: &str = r#"//! {name}: a wasmtel exporter that POSTs one `name{labels} value` line per point.

use wasmtel_guest::{Config, MetricBatch, Outbound, PerSet, prometheus};

#[wasmtel_guest::exporter]
fn encode(batch: &MetricBatch, config: &Config) -> Result<Vec<Outbound>, String> {
    let mut labels = PerSet::new(&batch.table); // rendered once per attribute set
    let mut lines = Vec::new();
    for metric in batch.metrics() {
        for point in metric.numbers() {
            let set = labels.get(point.attributes(), prometheus::labels);
            lines.push(format!("{}{set} {}", metric.name(), point.value));
        }
    }
    Ok(vec![Outbound::post(config.get_or("path", "/ingest"), lines.join("\n"))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_point() {
        let batch = wasmtel_guest::BatchBuilder::new().gauge("temp", "Cel", &[("gpu", "0".into())], 71.5).metrics();
        let out = encode(&batch, &Config::default()).expect("encodes");
        let Outbound::Http(request) = &out[0] else { panic!("an HTTP request") };
        assert_eq!(request.body, b"temp{gpu=\"0\"} 71.5");
    }
}
"#;

const RUST_TRANSFORM: &str = r#"//! {name}: a wasmtel transform that removes the attribute `key` (default `user.id`) from metrics.

use wasmtel_guest::{Config, Edits, MetricBatch};

#[wasmtel_guest::transform]
fn transform(batch: &MetricBatch, edits: &mut Edits, config: &Config) -> Result<(), String> {
    let key = config.get_or("key", "user.id");
    for set in batch.attribute_sets().filter(|set| set.get(key).is_some()) {
        edits.remove_attribute(&set, key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_the_key_once_per_set() {
        let user = [("user.id", "u1".into())];
        let batch = wasmtel_guest::BatchBuilder::new().counter("c", "1", &user, 1.0).counter("c", "1", &user, 2.0).metrics();
        let mut edits = Edits::new();
        transform(&batch, &mut edits, &Config::default()).expect("edits");
        assert_eq!(edits.as_slice().len(), 1);
    }
}
"#;

const RUST_VIEW: &str = r#"//! {name}: a wasmtel view that keeps only the attributes listed in `keep`.

use wasmtel_guest::{Config, InstrumentInfo, KeyValue};

#[wasmtel_guest::view]
fn view(_instrument: &InstrumentInfo, attributes: &[KeyValue], config: &Config) -> Option<Vec<KeyValue>> {
    let keep: Vec<&str> = config.get_or("keep", "gen_ai.request.model").split(',').collect();
    Some(attributes.iter().filter(|kv| keep.contains(&kv.key.as_str())).cloned().collect())
}
"#;

const PYTHON_TRANSFORM: &str = r#""""{name}: a wasmtel transform in Python that removes the attribute `key` (default user.id)."""
from wit_world import exports
from wit_world.exports.reader import Parts, Reads
from wit_world.exports.span_transformer import SpanEdit_RemoveAttribute
from wit_world.exports.transformer import Edit_RemoveAttribute, RemoveAttribute

settings = {}  # Each call gets a fresh Transformer: what init learns is kept here.


def sets_with(t, key):
    return [i for i, s in enumerate(t.sets) if any(t.strings[a.key] == key for a in t.attributes[s.start:s.start + s.len])]


class Transformer(exports.Transformer):
    def init(self, config):
        settings["key"] = dict(config).get("key", "user.id")

    def transform_metrics(self, batch):
        return [Edit_RemoveAttribute(RemoveAttribute(i, settings["key"])) for i in sets_with(batch.table, settings["key"])]

    def transform_logs(self, batch):
        return self.transform_metrics(batch)


class SpanTransformer(exports.SpanTransformer):
    def edits_spans(self):
        return True

    def transform_spans(self, batch):
        return [SpanEdit_RemoveAttribute(RemoveAttribute(i, settings["key"])) for i in sets_with(batch.table, settings["key"])]


class Reader(exports.Reader):
    def reading(self):
        # Only the attribute table crosses into the plugin: no points, records, bodies or spans.
        return Reads(Parts.ATTRIBUTES, Parts.ATTRIBUTES, Parts.ATTRIBUTES)


class KeyReader(exports.KeyReader):
    def attribute_keys(self):
        # Each attribute set crosses holding only `key`.
        return [settings["key"]]
"#;

const PYTHON_VIEW: &str = r#""""{name}: a wasmtel view in Python that keeps only the attributes listed in `keep`."""
from wit_world import exports

settings = {}  # Each call gets a fresh Viewer: what init learns is kept here.


class Viewer(exports.Viewer):
    def init(self, config):
        settings["keep"] = dict(config).get("keep", "gen_ai.request.model").split(",")

    def map_attributes(self, instrument, attributes):
        return [kv for kv in attributes if kv.key in settings["keep"]]
"#;

const JS_TRANSFORM: &str = r#"// {name}: a wasmtel transform in JavaScript that removes the attribute `key` (default user.id).
let key = "user.id";

const remove = (t) =>
  t.sets.flatMap((s, set) =>
    t.attributes.slice(s.start, s.start + s.len).some((a) => t.strings[a.key] === key) ? [{ tag: "remove-attribute", val: { set, key } }] : []);

export const transformer = {
  init(config) {
    key = new Map(config).get("key") ?? key;
  },
  transformMetrics(batch) {
    return remove(batch.table);
  },
  transformLogs(batch) {
    return remove(batch.table);
  },
};

export const spanTransformer = {
  editsSpans() {
    return true;
  },
  transformSpans(batch) {
    return remove(batch.table);
  },
};

// Only the attribute table crosses into the plugin: no points, records, bodies or spans.
const table = { attributes: true, entries: false, payload: false };
export const reader = {
  reading() {
    return { metrics: table, logs: table, spans: table };
  },
};

// Each attribute set crosses holding only `key`.
export const keyReader = {
  attributeKeys() {
    return [key];
  },
};
"#;

const JS_VIEW: &str = r#"// {name}: a wasmtel view in JavaScript that keeps only the attributes listed in `keep`.
let keep = ["gen_ai.request.model"];

export const viewer = {
  init(config) {
    keep = (new Map(config).get("keep") ?? keep.join(",")).split(",");
  },
  mapAttributes(instrument, attributes) {
    return attributes.filter((kv) => keep.includes(kv.key));
  },
};
"#;

impl Kind {
    /// The contract's world for the kind.
    fn world(self) -> &'static str {
        match self {
            Kind::Exporter => "exporter",
            Kind::Transform => "span-transform",
            Kind::View => "view",
        }
    }
}

/// A valid project name: lowercase letters, digits and `-`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        bail!(
            "{name:?} is not a plugin name: use lowercase letters, digits and `-`, starting with a letter"
        );
    }
    Ok(())
}

/// The files of a project, as (path relative to the project, contents).
fn files(name: &str, kind: Kind, lang: Lang) -> Vec<(PathBuf, String)> {
    let world = kind.world();
    let fill = |template: &str| template.replace("{name}", name);
    let build = |command: String| {
        format!(
            "#!/bin/sh\n# Builds {name}.wasm, a wasmtel {world} plugin.\nset -e\ncd \"$(dirname \"$0\")\"\n{command}\n"
        )
    };
    match lang {
        Lang::Rust => {
            let sdk = Path::new(SDK);
            let dependency = match sdk.join("Cargo.toml").exists() {
                true => format!("{{ version = \"0.2\", path = \"{}\" }}", sdk.display()),
                false => "\"0.2\"".to_owned(),
            };
            let source = match kind {
                Kind::Exporter => RUST_EXPORTER,
                Kind::Transform => RUST_TRANSFORM,
                Kind::View => RUST_VIEW,
            };
            let library = name.replace('-', "_");
            vec![
                (
                    "Cargo.toml".into(),
                    format!(
                        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nwasmtel-guest = {dependency}\n\n# A project of its own, even inside another workspace.\n[workspace]\n"
                    ),
                ),
                ("src/lib.rs".into(), fill(source)),
                (
                    "build.sh".into(),
                    build(format!(
                        "cargo build --release --target wasm32-wasip2\ncp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{library}.wasm\" {name}.wasm"
                    )),
                ),
            ]
        }
        Lang::Python => {
            let source = match kind {
                Kind::Exporter => include_str!("../../examples/python-exporter/app.py"),
                Kind::Transform => PYTHON_TRANSFORM,
                Kind::View => PYTHON_VIEW,
            };
            vec![
                ("app.py".into(), fill(source)),
                ("wit/plugin.wit".into(), WIT.to_owned()),
                (
                    "build.sh".into(),
                    build(format!(
                        "componentize-py -d wit -w {world} componentize app -o {name}.wasm"
                    )),
                ),
            ]
        }
        Lang::Js => {
            let source = match kind {
                Kind::Exporter => include_str!("../../examples/js-exporter/exporter.js"),
                Kind::Transform => JS_TRANSFORM,
                Kind::View => JS_VIEW,
            };
            // The runtime's fetch support would import wasi:http, which the sandbox does not grant.
            vec![
                ("plugin.js".into(), fill(source)),
                ("wit/plugin.wit".into(), WIT.to_owned()),
                (
                    "build.sh".into(),
                    build(format!(
                        "componentize-js plugin.js --wit wit --world-name {world} --disable http fetch-event -o {name}.wasm"
                    )),
                ),
            ]
        }
    }
}

/// Writes project `name` into `dir` (which must not exist, or be empty); the files written.
pub fn create(dir: &Path, name: &str, kind: Kind, lang: Lang) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let mut written = Vec::new();
    for (path, contents) in files(name, kind, lang) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_a_full_directory_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = create(dir.path(), "My_Plugin", Kind::View, Lang::Js).expect_err("bad name");
        assert_eq!(
            err.to_string(),
            "\"My_Plugin\" is not a plugin name: use lowercase letters, digits and `-`, starting with a letter"
        );
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
        let err = create(dir.path(), "ok", Kind::View, Lang::Js).expect_err("not empty");
        assert!(
            err.to_string().ends_with("exists and is not empty"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).expect("kept"),
            "mine"
        );
    }

    #[test]
    fn every_project_has_its_source_and_a_build_script_for_its_world() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for kind in [Kind::Exporter, Kind::Transform, Kind::View] {
                let files = files("gpu-lines", kind, lang);
                let build = &files
                    .iter()
                    .find(|(p, _)| p == Path::new("build.sh"))
                    .expect("build.sh")
                    .1;
                assert!(build.contains("gpu-lines.wasm"), "{build}");
                if lang != Lang::Rust {
                    assert!(build.contains(&format!(" {} ", kind.world())), "{build}");
                }
                assert!(!files.iter().any(|(_, text)| text.contains("{name}")));
            }
        }
    }
}
