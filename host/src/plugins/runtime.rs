//! The sandbox: one engine for all plugins, one store per plugin instance, a memory cap over
//! all of an instance's memories and tables, a per-call deadline that nothing can block past,
//! and no capabilities beyond the `host` interface.
//!
//! Deadlines are epoch interruptions, which fire only in guest code; a call into the host
//! would be out of their reach if it could block. So every WASI interface a language runtime
//! may import is linked to an implementation that grants nothing and returns at once: no
//! files (no preopens), no sockets, no environment or arguments, stdin empty, stdout
//! discarded, stderr kept (its last bytes only) to explain a crash, clocks that only read, and
//! `wasi:io/poll` replaced by a version whose `poll` and `block` never wait (a `sleep` returns
//! at once). See [`GRANTED`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{host, types};
use super::error::{Failure, Invalid, PluginError, WasmError};
use super::limits::Limits;
use super::stats::Stats;

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const TICK: Duration = Duration::from_millis(5);

/// Every interface a plugin may import (versions 0.2.x for WASI), and what it grants.
pub const GRANTED: &[(&str, &str)] = &[
    ("wasmtel:plugin/host", "log lines and the wall clock"),
    ("wasmtel:plugin/types", "the contract's types"),
    ("wasi:cli/environment", "no variables, no arguments"),
    ("wasi:cli/exit", "ends the call as a failure"),
    ("wasi:cli/stdin", "an empty stream"),
    ("wasi:cli/stdout", "discarded"),
    ("wasi:cli/stderr", "the last 4 KiB kept to explain a crash"),
    ("wasi:cli/terminal-input", "no terminal"),
    ("wasi:cli/terminal-output", "no terminal"),
    ("wasi:cli/terminal-stdin", "no terminal"),
    ("wasi:cli/terminal-stdout", "no terminal"),
    ("wasi:cli/terminal-stderr", "no terminal"),
    ("wasi:clocks/wall-clock", "reads the time"),
    (
        "wasi:clocks/monotonic-clock",
        "reads the time; its pollables never wait",
    ),
    ("wasi:io/error", "error values"),
    (
        "wasi:io/poll",
        "never waits: `poll` reports every pollable ready, `block` returns at once",
    ),
    ("wasi:io/streams", "the streams above; none can block"),
    ("wasi:random/random", "random bytes"),
    ("wasi:random/insecure", "random bytes"),
    ("wasi:random/insecure-seed", "a seed"),
    ("wasi:filesystem/types", "no file can be opened"),
    ("wasi:filesystem/preopens", "no directories"),
    ("wasi:sockets/network", "denied"),
    ("wasi:sockets/instance-network", "denied"),
    ("wasi:sockets/tcp", "denied"),
    ("wasi:sockets/tcp-create-socket", "denied"),
    ("wasi:sockets/udp", "denied"),
    ("wasi:sockets/udp-create-socket", "denied"),
    ("wasi:sockets/ip-name-lookup", "denied"),
];

/// How many bytes of a plugin's stderr are kept to explain a crash.
pub const STDERR_TAIL: usize = 4096;
/// The frames of a Python traceback a trap message keeps.
const PYTHON_FRAMES: usize = 3;

/// Caps an instance's memories and tables together, and records that the cap was hit, so the
/// failure can be named.
#[derive(Debug)]
struct MemoryCap {
    limit: usize,
    used: usize,
    hit: bool,
}

/// Bytes counted per table element.
const TABLE_ELEMENT: usize = 16;

impl MemoryCap {
    /// Books growing from `current` to `desired` bytes, if the total stays under the cap.
    fn grow(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let total = self.used.saturating_add(desired.saturating_sub(current));
        if total > self.limit {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached (all memories and tables of the instance)",
                self.limit
            ));
        }
        self.used = total;
        Ok(true)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current.saturating_mul(TABLE_ELEMENT),
            desired.saturating_mul(TABLE_ELEMENT),
        )
    }
}

/// The data of one plugin store: its name, its limits, the statistics its calls count in, a WASI
/// context that grants nothing, the tail of its stderr and its log-line budget.
pub struct PluginState {
    pub(super) name: Arc<str>,
    memory: MemoryCap,
    pub(super) limits: Limits,
    pub(super) stats: Stats,
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: StderrTail,
    pub(super) logs: LogBucket,
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PluginState {
    /// Bytes the instance holds in its memories and tables.
    pub(super) fn memory_used(&self) -> usize {
        self.memory.used
    }
}

/// A token bucket of log lines: `log_lines_per_second`, with a burst of as many.
#[derive(Debug, Default)]
pub(super) struct LogBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl LogBucket {
    /// Takes one line's token at `now`; `false` when the rate is spent.
    pub(super) fn take(&mut self, per_second: usize, now: Instant) -> bool {
        let rate = per_second as f64;
        let elapsed = self
            .last
            .map_or(1.0, |t| now.duration_since(t).as_secs_f64());
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The shared engine, the linker, and the thread that advances epochs.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// The version of `wasmtel:plugin` this host implements; it loads every `0.2.x` up to it, whose
/// interfaces 0.2.3 keeps unchanged (a 0.2.0, 0.2.1 or 0.2.2 component is served through wasmtime's
/// semver-compatible lookup, with no copy).
pub const CONTRACT_VERSION: &str = "0.2.3";

/// Whether a component built for contract `version` can be served as it is.
fn servable(version: &str) -> bool {
    version
        .strip_prefix("0.2.")
        .and_then(|patch| patch.parse::<u32>().ok())
        .is_some_and(|patch| patch <= 3)
}

impl Runtime {
    /// The process-wide runtime (one engine and its epoch thread), created on first use.
    pub fn shared() -> Result<Arc<Runtime>, PluginError> {
        static SHARED: OnceLock<Result<Arc<Runtime>, WasmError>> = OnceLock::new();
        SHARED
            .get_or_init(|| Runtime::new().map(Arc::new))
            .clone()
            .map_err(PluginError::Runtime)
    }

    /// An engine with the component model and epoch interruption (multi-memory off: one
    /// memory per core module), and a linker offering the `host` interface plus the WASI
    /// interfaces of [`GRANTED`], none of which can block.
    fn new() -> Result<Self, WasmError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .wasm_multi_memory(false)
            .epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| WasmError::from_wasmtime(&e))?;
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .and_then(|()| types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| wasmtime_wasi::p2::add_to_linker_sync(&mut linker))
            .and_then(|()| {
                // The one blocking interface a plugin could reach: replaced by one that never waits.
                linker.allow_shadowing(true);
                let poll = wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<
                    PluginState,
                    NeverWait,
                >(&mut linker, |s: &mut PluginState| {
                    NonBlockingPoll(&mut s.table)
                });
                linker.allow_shadowing(false);
                poll
            })
            .map_err(|e| WasmError::from_wasmtime(&e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, stopped) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasmtel-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| WasmError::new(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            engine,
            linker,
            stop,
        })
    }

    /// The engine, for compiling.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component from its bytes.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        Component::new(&self.engine, bytes)
            .map_err(|e| PluginError::Compile(WasmError::from_wasmtime(&e)))
    }

    /// The interfaces a component imports, as it names them (`wasi:io/poll@0.2.6`).
    pub fn imports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// The version of the plugin contract a component exports or imports (`0.1.0`), if any.
    pub fn contract(&self, component: &Component) -> Option<String> {
        let ty = component.component_type();
        let names: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .chain(self.imports(component))
            .collect();
        names.iter().find_map(|name| {
            let rest = name.strip_prefix("wasmtel:plugin/")?;
            Some(rest.split_once('@')?.1.to_owned())
        })
    }

    /// Resolves a component's imports; an import the host does not offer is an error.
    /// A component built for another version of the contract is refused by name.
    pub fn prepare(&self, component: &Component) -> Result<InstancePre<PluginState>, Invalid> {
        if let Some(version) = self.contract(component).filter(|v| !servable(v)) {
            return Err(Invalid::Contract(version));
        }
        self.linker
            .instantiate_pre(component)
            .map_err(|e| Invalid::Imports(WasmError::from_wasmtime(&e)))
    }

    /// A fresh store for one instance of plugin `name`, its calls counted in `stats`.
    ///
    /// Its WASI context has no arguments, no environment, no preopened directories and no
    /// network (sockets and name lookup are denied); stdin is empty, stdout discarded, and
    /// the last [`STDERR_TAIL`] bytes of stderr are kept.
    pub fn store(&self, name: &Arc<str>, limits: Limits, stats: &Stats) -> Store<PluginState> {
        let stderr = StderrTail::default();
        let state = PluginState {
            name: name.clone(),
            memory: MemoryCap {
                limit: limits.memory_bytes,
                used: 0,
                hit: false,
            },
            limits,
            stats: stats.clone(),
            wasi: WasiCtx::builder()
                .stderr(stderr.clone())
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
            stderr,
            logs: LogBucket::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.epoch_deadline_trap();
        store
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Arms the deadline for the next call into `store`.
pub fn arm(store: &mut Store<PluginState>) {
    let ticks = store
        .data()
        .limits
        .call_timeout
        .as_nanos()
        .div_ceil(TICK.as_nanos())
        .max(1);
    store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
}

/// Names why a call failed: deadline, memory cap, or another trap — with the trap's cause,
/// the first frames of the wasm backtrace and what the guest last wrote to stderr (a Rust
/// panic's message), each bounded and with control characters escaped.
pub fn failure(store: &Store<PluginState>, error: &wasmtime::Error) -> Failure {
    let state = store.data();
    if state.memory.hit {
        return Failure::MemoryLimit(state.memory.limit);
    }
    let trap = error.downcast_ref::<Trap>();
    if matches!(trap, Some(Trap::Interrupt)) {
        return Failure::Deadline(state.limits.call_timeout);
    }
    let mut text = match trap {
        Some(code) => code.to_string(),
        None => error
            .chain()
            .map(ToString::to_string)
            .find(|line| !line.starts_with("error while executing"))
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    if let Some(bt) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .take(3)
            .map(|f| match f.func_name() {
                // Without the hash: `std::process::abort`, not `…abort::h5e0f…`.
                Some(name) => format!("{:#}", rustc_demangle::demangle(name)),
                None => format!("wasm function {}", f.func_index()),
            })
            .collect();
        if !frames.is_empty() {
            text.push_str(&format!(" (in {})", frames.join(" < ")));
        }
    }
    if let Some(exception) = state.stderr.python_exception() {
        // What the author wrote comes first: the exception and where it was raised.
        text = format!("{exception}; {text}");
    } else if let Some(said) = state.stderr.last_words() {
        text.push_str(&format!("; the plugin said: {said}"));
    }
    Failure::Trap(crate::redact::escape(&text, 1024))
}

/// `wasi:io/poll` that never waits: every pollable counts as ready at once.
struct NonBlockingPoll<'a>(&'a mut ResourceTable);

/// The host data of [`NonBlockingPoll`].
struct NeverWait;

impl wasmtime::component::HasData for NeverWait {
    type Data<'a> = NonBlockingPoll<'a>;
}

impl wasmtime_wasi::p2::bindings::sync::io::poll::Host for NonBlockingPoll<'_> {
    fn poll(
        &mut self,
        pollables: Vec<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>>,
    ) -> wasmtime::Result<Vec<u32>> {
        Ok((0..u32::try_from(pollables.len()).unwrap_or(u32::MAX)).collect())
    }
}

impl wasmtime_wasi::p2::bindings::sync::io::poll::HostPollable for NonBlockingPoll<'_> {
    fn ready(
        &mut self,
        pollable: wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>,
    ) -> wasmtime::Result<bool> {
        wasmtime_wasi::p2::bindings::sync::io::poll::HostPollable::ready(self.0, pollable)
    }

    fn block(
        &mut self,
        _pollable: wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>,
    ) -> wasmtime::Result<()> {
        Ok(())
    }

    fn drop(
        &mut self,
        pollable: wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>,
    ) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::bindings::sync::io::poll::HostPollable::drop(self.0, pollable)
    }
}

/// A plugin's stderr: the last [`STDERR_TAIL`] bytes, never blocking, never full.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<std::sync::Mutex<std::collections::VecDeque<u8>>>);

impl StderrTail {
    fn append(&self, bytes: &[u8]) {
        let mut tail = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.extend(bytes.iter().rev().take(STDERR_TAIL).rev());
        let excess = tail.len().saturating_sub(STDERR_TAIL);
        tail.drain(..excess);
    }

    /// The tail as text.
    fn text(&self) -> String {
        let tail = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&tail.iter().copied().collect::<Vec<u8>>()).into_owned()
    }

    /// What the plugin last wrote (from its last panic message on, if any), on one line
    /// without the backtrace hint.
    fn last_words(&self) -> Option<String> {
        let text = self.text();
        let from = text.rfind("panicked at").unwrap_or(0);
        let said: Vec<&str> = text[from..]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        (!said.is_empty()).then(|| said.join(" "))
    }

    /// The last Python exception the plugin printed, on one line: the exception, then where
    /// it was raised — the innermost [`PYTHON_FRAMES`] frames of its traceback, innermost
    /// first, as `file:line in function`.
    fn python_exception(&self) -> Option<String> {
        let text = self.text();
        let start = text.rfind("Traceback (most recent call last):")?;
        let traceback = &text[start..];
        let end = traceback.find("panicked at").unwrap_or(traceback.len());
        let lines: Vec<&str> = traceback[..end]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("thread '"))
            .collect();
        let exception = lines
            .iter()
            .rev()
            .find(|l| !l.starts_with("File \"") && !l.starts_with("Traceback"))?;
        let frames: Vec<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("File \""))
            .filter_map(|l| {
                let (file, rest) = l.split_once("\", line ")?;
                let (line, function) = rest.split_once(", in ").unwrap_or((rest, "?"));
                let file = file.rsplit('/').next().unwrap_or(file);
                Some(format!("{file}:{line} in {function}"))
            })
            .rev()
            .take(PYTHON_FRAMES)
            .collect();
        Some(match frames.is_empty() {
            true => (*exception).to_owned(),
            false => format!("{exception} (at {})", frames.join(" < ")),
        })
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_words_name_the_panic_and_a_python_exception_comes_first_with_its_frames() {
        let rust = StderrTail::default();
        rust.append(b"some log line\nthread '<unnamed>' (1) panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n");
        assert_eq!(
            rust.last_words().as_deref(),
            Some("panicked at src/lib.rs:3:5: boom")
        );
        assert_eq!(rust.python_exception(), None);
        let python = StderrTail::default();
        python.append(b"Traceback (most recent call last):\n  File \"/0/app.py\", line 14, in encode_metrics\n    helper(batch)\n  File \"/0/app.py\", line 31, in helper\n    return deeper(batch)\n  File \"/0/lib/util.py\", line 35, in deeper\n    raise ValueError(\"no such metric\")\nValueError: no such metric\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\n");
        assert_eq!(
            python.python_exception().as_deref(),
            Some(
                "ValueError: no such metric (at util.py:35 in deeper < app.py:31 in helper < app.py:14 in encode_metrics)"
            )
        );
    }

    #[test]
    fn the_log_rate_allows_a_burst_then_refills() {
        let mut bucket = LogBucket::default();
        let start = Instant::now();
        let allowed = (0..150).filter(|_| bucket.take(100, start)).count();
        assert_eq!(allowed, 100, "a burst of one second's lines");
        let later = start + Duration::from_millis(500);
        let allowed = (0..150).filter(|_| bucket.take(100, later)).count();
        assert_eq!(allowed, 50, "half a second refills half");
    }
}
