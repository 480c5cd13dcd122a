//! Write wasmtel plugins in Rust: exporters, transforms and views, compiled to
//! WebAssembly components for `wasm32-wasip2` against `wasmtel:plugin@0.2.3`.
//!
//! A plugin never sees wit-bindgen or the batch's interning. A stateless exporter is one function:
//!
//! ```ignore
//! use wasmtel_guest::{Config, MetricBatch, Outbound};
//!
//! #[wasmtel_guest::exporter]
//! fn encode(batch: &MetricBatch, _config: &Config) -> Result<Vec<Outbound>, String> {
//!     let lines: Vec<&str> = batch.metrics().map(|m| m.name()).collect();
//!     Ok(vec![Outbound::post("/ingest", lines.join("\n"))])
//! }
//! ```
//!
//! A stateful one is a type implementing [`Exporter`] (or [`Transform`], or [`View`]) whose
//! `impl` block carries the same attribute. Batches are read through typed accessors
//! ([`MetricBatch::metrics`] → [`MetricRef::numbers`] → [`Point::attributes`] →
//! [`Attributes::get`]); [`PerSet`] renders something once per attribute set; a transform
//! answers with [`Edits`]. Plugin logic is plain Rust, unit-tested natively with batches from
//! [`BatchBuilder`]; outside WebAssembly, [`log`] writes to stderr and [`now_unix_nano`] reads
//! the system clock.

mod batch;
mod builder;
mod edits;
pub mod prometheus;
pub mod statsd;

/// The plugin's allocator: talc, faster than the default dlmalloc for the many small
/// allocations of a batch crossing the component boundary. Turn off the default
/// `allocator` feature to install your own `#[global_allocator]`.
#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

use std::cell::RefCell;

pub use batch::{
    Attributes, EventRef, HasAttributes, MetricKind, MetricRef, PerSet, Point, RecordRef, ScopeRef,
    SpanRef,
};
pub use builder::{BatchBuilder, Pairs};
pub use edits::{AttributeEdits, Edits, SpanEdits};
pub use wasmtel_guest_macro::{exporter, transform, view};

/// Generated bindings for the plugin worlds; authors use the re-exports instead. A Rust
/// exporter is built for the `trace-exporter` world and a transform for `span-transform`, whose
/// `takes-spans` and `edits-spans` answer whether it implements spans; a 0.2.1 host reads those,
/// and calls a plugin for spans only when they say yes. A transform's `reads` (0.2.3) says what
/// of each batch crosses into it.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, unreachable_pub, clippy::all)]
pub mod bindings {
    /// The `trace-exporter` world; it owns the shared `types` and `host` modules.
    pub mod exporter {
        wit_bindgen::generate!({
            world: "trace-exporter",
            path: "../wit",
            default_bindings_module: "wasmtel_guest::bindings::exporter",
            pub_export_macro: true,
            export_macro_name: "export_exporter_world",
            additional_derives: [PartialEq],
            generate_all,
        });
    }

    /// The `span-transform` world, sharing the exporter world's types.
    pub mod transform {
        wit_bindgen::generate!({
            world: "span-transform",
            path: "../wit",
            default_bindings_module: "wasmtel_guest::bindings::transform",
            pub_export_macro: true,
            export_macro_name: "export_transform_world",
            additional_derives: [PartialEq],
            with: {
                "wasmtel:plugin/types@0.2.3": crate::bindings::exporter::wasmtel::plugin::types,
                "wasmtel:plugin/host@0.2.3": crate::bindings::exporter::wasmtel::plugin::host,
            },
        });
    }

    /// The `view` world, sharing the exporter world's types.
    pub mod view {
        wit_bindgen::generate!({
            world: "view",
            path: "../wit",
            default_bindings_module: "wasmtel_guest::bindings::view",
            pub_export_macro: true,
            export_macro_name: "export_view_world",
            with: {
                "wasmtel:plugin/types@0.2.3": crate::bindings::exporter::wasmtel::plugin::types,
                "wasmtel:plugin/host@0.2.3": crate::bindings::exporter::wasmtel::plugin::host,
            },
        });
    }
}

use bindings::exporter::exports::wasmtel::plugin::encoder;
use bindings::exporter::wasmtel::plugin::host;

pub use bindings::exporter::wasmtel::plugin::types::{
    Attribute, Exemplar, ExponentialHistogramPoint, HistogramPoint, KeyValue, LogBatch, LogRecord,
    Metric, MetricBatch, NumberPoint, Points, Resource, Scope, Span, SpanBatch, SpanEvent,
    SpanKind, SpanLink, StatusCode, Table, Temporality, TraceContext, TraceSpan, Value,
};
/// What a transform reads of each kind of batch ([`Transform::reads`]).
pub use bindings::transform::exports::wasmtel::plugin::reader::{Parts, Reads};
/// The edits of the `span-transformer` interface; [`SpanEdits`] builds them.
pub use bindings::transform::exports::wasmtel::plugin::span_transformer::SpanEdit;
/// The edits of the `transformer` interface; [`Edits`] builds them.
pub use bindings::transform::exports::wasmtel::plugin::transformer as transform_types;
pub use bindings::view::exports::wasmtel::plugin::viewer::{InstrumentInfo, InstrumentKind};
pub use encoder::{
    ExporterInfo, HttpRequest, Method, Outbound, Outcome, PartialSuccess, Response, Signals,
};

/// A plugin's configuration: dotted keys with string values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config(Vec<(String, String)>);

impl Config {
    /// A configuration from key-value pairs.
    pub fn new(pairs: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key` parsed as `T`, or `default` when unset; an unparsable value is an error naming the key.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("config `{key}`: cannot parse {v:?}")),
        }
    }

    /// Every key-value pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The comma-separated name patterns of `key` (`default` when unset): see [`Patterns`].
    pub fn patterns(&self, key: &str, default: &str) -> Patterns {
        Patterns(
            self.get_or(key, default)
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }
}

/// Name patterns: a name, or a prefix ending in `*` (`gen_ai.prompt*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// Whether some pattern matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The patterns, as configured.
    pub fn list(&self) -> &[String] {
        &self.0
    }
}

impl ExporterInfo {
    /// An exporter of metrics only, in the given temporality.
    pub fn metrics(temporality: Temporality) -> Self {
        Self {
            signals: Signals::METRICS,
            temporality,
        }
    }

    /// An exporter of logs only.
    pub fn logs() -> Self {
        Self {
            signals: Signals::LOGS,
            temporality: Temporality::Cumulative,
        }
    }

    /// An exporter of both metrics and logs.
    pub fn metrics_and_logs(temporality: Temporality) -> Self {
        Self {
            signals: Signals::METRICS | Signals::LOGS,
            temporality,
        }
    }
}

impl Outbound {
    /// A POST of `body` to `path` (relative to the integration's endpoint).
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Outbound::Http(HttpRequest {
            method: Method::Post,
            path: path.into(),
            headers: Vec::new(),
            body: body.into(),
        })
    }

    /// Adds a header to an HTTP request (no effect on a datagram).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Outbound::Http(request) = &mut self {
            request.headers.push((name.into(), value.into()));
        }
        self
    }
}

impl Outcome {
    /// The usual reading of an HTTP status: 2xx success, 429/502/503/504 retry (honouring a
    /// numeric `Retry-After`), anything else a rejection whose reason keeps at most the first
    /// 200 characters of the body, control characters escaped.
    pub fn from_status(response: &Response) -> Self {
        match response.status {
            200..=299 => Outcome::Success,
            429 | 502 | 503 | 504 => Outcome::Retry(response.retry_after_ms()),
            status => {
                let body = String::from_utf8_lossy(&response.body);
                let mut prefix: String = body
                    .chars()
                    .take(200)
                    .flat_map(|c| {
                        let escaped: Vec<char> = if c.is_control() {
                            c.escape_default().collect()
                        } else {
                            vec![c]
                        };
                        escaped
                    })
                    .collect();
                if body.chars().count() > 200 {
                    prefix.push('…');
                }
                Outcome::Reject(format!("HTTP {status}: {prefix}"))
            }
        }
    }
}

impl Response {
    /// A numeric `Retry-After` header, in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
            .map(|seconds| seconds.saturating_mul(1000))
    }
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::String(s) | Value::Json(s) => f.write_str(s),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => write!(f, "{d}"),
            Value::Bytes(b) => write!(f, "{b:?}"),
        }
    }
}

impl KeyValue {
    /// A string attribute.
    pub fn string(key: &str, value: &str) -> Self {
        Self {
            key: key.into(),
            value: Value::String(value.into()),
        }
    }
}

/// Log severities, for [`log`].
pub use host::Level;

/// Writes a line to the host's log (stderr outside WebAssembly).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// The host's wall clock in Unix nanoseconds (the system clock outside WebAssembly).
pub fn now_unix_nano() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return host::now_unix_nano();
    #[cfg(not(target_arch = "wasm32"))]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A stateful exporter: built once by `init`, then called for every batch.
pub trait Exporter: Sized + 'static {
    /// Validates the configuration and says which signals and temporality it wants.
    fn init(config: Config) -> Result<(Self, ExporterInfo), String>;

    /// Encodes a metric batch; by default, nothing.
    fn encode_metrics(&mut self, _batch: &MetricBatch) -> Result<Vec<Outbound>, String> {
        Ok(Vec::new())
    }

    /// Encodes a log batch; by default, nothing.
    fn encode_logs(&mut self, _batch: &LogBatch) -> Result<Vec<Outbound>, String> {
        Ok(Vec::new())
    }

    /// Whether it takes spans as configured; `#[exporter]` answers yes for an `impl` that
    /// defines [`Exporter::encode_spans`] and not this.
    fn takes_spans(&self) -> bool {
        false
    }

    /// Encodes a span batch; by default, nothing (and the host sends none).
    fn encode_spans(&mut self, _batch: &SpanBatch) -> Result<Vec<Outbound>, String> {
        Ok(Vec::new())
    }

    /// Classifies a backend response; by default [`Outcome::from_status`].
    fn classify(&self, response: &Response) -> Outcome {
        Outcome::from_status(response)
    }
}

/// A stateful transform: it reads a batch and answers with the edits the host applies.
pub trait Transform: Sized + 'static {
    /// Validates the configuration.
    fn init(config: Config) -> Result<Self, String>;

    /// Adds the edits a metric batch needs; by default, none.
    fn transform_metrics(
        &mut self,
        _batch: &MetricBatch,
        _edits: &mut Edits,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Adds the edits a log batch needs; by default, none.
    fn transform_logs(&mut self, _batch: &LogBatch, _edits: &mut Edits) -> Result<(), String> {
        Ok(())
    }

    /// Whether it edits spans as configured; `#[transform]` answers yes for an `impl` that
    /// defines [`Transform::transform_spans`] and not this.
    fn edits_spans(&self) -> bool {
        false
    }

    /// What it reads of each kind of batch, as configured; by default everything. The host
    /// lowers only these [`Parts`] (the others arrive as empty lists, and log records without
    /// bodies) and does not call it for a kind it reads nothing of, so a transform that needs
    /// only the attribute sets says so and crosses only the table.
    fn reads(&self) -> Reads {
        Reads {
            metrics: Parts::all(),
            logs: Parts::all(),
            spans: Parts::all(),
        }
    }

    /// The attribute keys it reads of every batch, as configured (each a key, or a prefix
    /// ending in `*`); by default every key. The host lowers each attribute set of a batch
    /// holding only these keys, and sets equal once cut down are one set, so an edit of one
    /// applies to everything whose set it is.
    fn attribute_keys(&self) -> Option<Vec<String>> {
        None
    }

    /// Adds the edits a span batch needs; by default, none (and the host sends none).
    fn transform_spans(
        &mut self,
        _batch: &SpanBatch,
        _edits: &mut SpanEdits,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// A view: the attribute set a series is recorded under.
pub trait View: Sized + 'static {
    /// Validates the configuration.
    fn init(config: Config) -> Result<Self, String>;

    /// The attributes to use, or `None` to keep them as they are.
    fn map_attributes(
        &self,
        instrument: &InstrumentInfo,
        attributes: &[KeyValue],
    ) -> Option<Vec<KeyValue>>;
}

/// Glue between the generated traits and the author's types; used by the export macros.
#[doc(hidden)]
pub mod __glue {
    use super::*;

    /// The plugin instance's one state slot.
    pub type Slot<T> = RefCell<Option<T>>;

    const NOT_INITIALISED: &str = "the plugin was called before init succeeded";

    /// Runs `f` on the initialised state.
    pub fn with<T, R>(
        slot: &Slot<T>,
        f: impl FnOnce(&mut T) -> Result<R, String>,
    ) -> Result<R, String> {
        match slot.borrow_mut().as_mut() {
            Some(state) => f(state),
            None => Err(NOT_INITIALISED.into()),
        }
    }

    /// `init` for an exporter.
    pub fn exporter_init<T: Exporter>(
        slot: &Slot<T>,
        config: Vec<(String, String)>,
    ) -> Result<ExporterInfo, String> {
        let (state, info) = T::init(Config(config))?;
        *slot.borrow_mut() = Some(state);
        Ok(info)
    }

    /// Asks the initialised state; uninitialised, the answer is no.
    pub fn ask<T>(slot: &Slot<T>, f: impl FnOnce(&T) -> bool) -> bool {
        slot.borrow().as_ref().is_some_and(f)
    }

    /// `reads` for a transform; uninitialised, nothing.
    pub fn reads<T: Transform>(slot: &Slot<T>) -> Reads {
        match slot.borrow().as_ref() {
            Some(state) => state.reads(),
            None => Reads {
                metrics: Parts::empty(),
                logs: Parts::empty(),
                spans: Parts::empty(),
            },
        }
    }

    /// `attribute-keys` for a transform; uninitialised, every key.
    pub fn attribute_keys<T: Transform>(slot: &Slot<T>) -> Option<Vec<String>> {
        slot.borrow().as_ref().and_then(Transform::attribute_keys)
    }

    /// `classify` for an exporter; uninitialised, it falls back to the status code.
    pub fn exporter_classify<T: Exporter>(slot: &Slot<T>, response: &Response) -> Outcome {
        match slot.borrow().as_ref() {
            Some(state) => state.classify(response),
            None => Outcome::from_status(response),
        }
    }

    /// `init` for a transform or a view.
    pub fn init<T>(slot: &Slot<T>, state: Result<T, String>) -> Result<(), String> {
        *slot.borrow_mut() = Some(state?);
        Ok(())
    }
}

/// Registers a type implementing [`Exporter`] as this component's exporter; `#[exporter]` expands to it.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_exporter {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static STATE: $crate::__glue::Slot<$ty> = const { ::std::cell::RefCell::new(None) };
            }
            #[allow(dead_code)]
            struct Glue;
            impl $crate::bindings::exporter::exports::wasmtel::plugin::encoder::Guest for Glue {
                fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<$crate::ExporterInfo, ::std::string::String> {
                    STATE.with(|s| $crate::__glue::exporter_init::<$ty>(s, config))
                }
                fn encode_metrics(batch: $crate::MetricBatch) -> ::std::result::Result<::std::vec::Vec<$crate::Outbound>, ::std::string::String> {
                    STATE.with(|s| $crate::__glue::with(s, |e: &mut $ty| $crate::Exporter::encode_metrics(e, &batch)))
                }
                fn encode_logs(batch: $crate::LogBatch) -> ::std::result::Result<::std::vec::Vec<$crate::Outbound>, ::std::string::String> {
                    STATE.with(|s| $crate::__glue::with(s, |e: &mut $ty| $crate::Exporter::encode_logs(e, &batch)))
                }
                fn classify(response: $crate::Response) -> $crate::Outcome {
                    STATE.with(|s| $crate::__glue::exporter_classify::<$ty>(s, &response))
                }
            }
            impl $crate::bindings::exporter::exports::wasmtel::plugin::span_encoder::Guest for Glue {
                fn takes_spans() -> bool {
                    STATE.with(|s| $crate::__glue::ask(s, |e: &$ty| $crate::Exporter::takes_spans(e)))
                }
                fn encode_spans(batch: $crate::SpanBatch) -> ::std::result::Result<::std::vec::Vec<$crate::Outbound>, ::std::string::String> {
                    STATE.with(|s| $crate::__glue::with(s, |e: &mut $ty| $crate::Exporter::encode_spans(e, &batch)))
                }
            }
            // Component exports exist only in WebAssembly; natively the glue is plain, testable code.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::exporter::export_exporter_world!(Glue with_types_in $crate::bindings::exporter);
        };
    };
}

/// Registers a type implementing [`Transform`] as this component's transform; `#[transform]` expands to it.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_transform {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static STATE: $crate::__glue::Slot<$ty> = const { ::std::cell::RefCell::new(None) };
            }
            #[allow(dead_code)]
            struct Glue;
            impl $crate::bindings::transform::exports::wasmtel::plugin::transformer::Guest for Glue {
                fn init(config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> ::std::result::Result<(), ::std::string::String> {
                    STATE.with(|s| $crate::__glue::init(s, <$ty as $crate::Transform>::init($crate::Config::new(config))))
                }
                fn transform_metrics(batch: $crate::MetricBatch) -> ::std::result::Result<::std::vec::Vec<$crate::transform_types::Edit>, ::std::string::String> {
                    STATE.with(|s| $crate::__glue::with(s, |t: &mut $ty| {
                        let mut edits = $crate::Edits::new();
                        $crate::Transform::transform_metrics(t, &batch, &mut edits).map(|()| edits.into_inner())
                    }))
                }
                fn transform_logs(batch: $crate::LogBatch) -> ::std::result::Result<::std::vec::Vec<$crate::transform_types::Edit>, ::std::string::String> {
                    STATE.with(|s| $crate::__glue::with(s, |t: &mut $ty| {
                        let mut edits = $crate::Edits::new();
                        $crate::Transform::transform_logs(t, &batch, &mut edits).map(|()| edits.into_inner())
                    }))
                }
            }
            impl $crate::bindings::transform::exports::wasmtel::plugin::reader::Guest for Glue {
                fn reading() -> $crate::Reads {
                    STATE.with(|s| $crate::__glue::reads::<$ty>(s))
                }
            }
            impl $crate::bindings::transform::exports::wasmtel::plugin::key_reader::Guest for Glue {
                fn attribute_keys() -> ::std::option::Option<::std::vec::Vec<::std::string::String>> {
                    STATE.with(|s| $crate::__glue::attribute_keys::<$ty>(s))
                }
            }
            impl $crate::bindings::transform::exports::wasmtel::plugin::span_transformer::Guest for Glue {
                fn edits_spans() -> bool {
                    STATE.with(|s| $crate::__glue::ask(s, |t: &$ty| $crate::Transform::edits_spans(t)))
                }
                fn transform_spans(batch: $crate::SpanBatch) -> ::std::result::Result<::std::vec::Vec<$crate::SpanEdit>, ::std::string::String> {
                    STATE.with(|s| $crate::__glue::with(s, |t: &mut $ty| {
                        let mut edits = $crate::SpanEdits::new();
                        $crate::Transform::transform_spans(t, &batch, &mut edits).map(|()| edits.into_inner())
                    }))
                }
            }
            // Component exports exist only in WebAssembly; natively the glue is plain, testable code.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::transform::export_transform_world!(Glue with_types_in $crate::bindings::transform);
        };
    };
}

/// Registers a type implementing [`View`] as this component's view; `#[view]` expands to it.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_view {
    ($ty:ty) => {
        const _: () = {
            ::std::thread_local! {
                static STATE: $crate::__glue::Slot<$ty> = const { ::std::cell::RefCell::new(None) };
            }
            #[allow(dead_code)]
            struct Glue;
            impl $crate::bindings::view::exports::wasmtel::plugin::viewer::Guest for Glue {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    STATE.with(|s| {
                        $crate::__glue::init(
                            s,
                            <$ty as $crate::View>::init($crate::Config::new(config)),
                        )
                    })
                }
                fn map_attributes(
                    instrument: $crate::InstrumentInfo,
                    attributes: ::std::vec::Vec<$crate::KeyValue>,
                ) -> ::std::option::Option<::std::vec::Vec<$crate::KeyValue>> {
                    STATE.with(|s| {
                        s.borrow()
                            .as_ref()
                            .and_then(|v| $crate::View::map_attributes(v, &instrument, &attributes))
                    })
                }
            }
            // Component exports exist only in WebAssembly; natively the glue is plain, testable code.
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::view::export_view_world!(Glue with_types_in $crate::bindings::view);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names_and_prefixes() {
        let c = Config::new([("keys", " user.id, gen_ai.prompt* ,")]);
        let p = c.patterns("keys", "");
        assert!(
            p.matches("user.id")
                && p.matches("gen_ai.prompt")
                && p.matches("gen_ai.prompt.0.content")
        );
        assert!(!p.matches("user.ids") && !p.matches("gen_ai.completion"));
        assert!(c.patterns("unset", "").is_empty());
        assert!(c.patterns("unset", "a*").matches("ab"));
    }

    #[test]
    fn config_reads_the_last_value_and_names_bad_keys() {
        let c = Config::new([("a", "1"), ("a", "2"), ("b", "x")]);
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.parse_or("a", 0u32), Ok(2));
        assert_eq!(c.parse_or("missing", 7u32), Ok(7));
        assert_eq!(
            c.parse_or::<u32>("b", 0),
            Err("config `b`: cannot parse \"x\"".to_owned())
        );
    }

    #[test]
    fn outcome_follows_the_status() {
        let r = |status, headers: &[(&str, &str)]| Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: b"nope".to_vec(),
        };
        assert!(matches!(
            Outcome::from_status(&r(202, &[])),
            Outcome::Success
        ));
        assert!(matches!(
            Outcome::from_status(&r(503, &[("Retry-After", "3")])),
            Outcome::Retry(Some(3000))
        ));
        assert!(matches!(
            Outcome::from_status(&r(429, &[])),
            Outcome::Retry(None)
        ));
        assert!(
            matches!(Outcome::from_status(&r(403, &[])), Outcome::Reject(m) if m == "HTTP 403: nope")
        );
    }
}
