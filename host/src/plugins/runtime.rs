//! The sandbox: one engine for all plugins, one store per plugin instance, a memory
//! cap and a per-call deadline, and no capabilities beyond the `host` interface.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{host, types};

/// How often the engine's epoch advances; deadlines are counted in these ticks.
pub const TICK: Duration = Duration::from_millis(5);

/// The resources one plugin instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory and tables, in bytes (default 64 MiB).
    pub memory_bytes: usize,
    /// Wall-clock time one call may take (default 100 ms).
    pub call_timeout: Duration,
}

impl From<&crate::config::PluginsConfig> for Limits {
    fn from(config: &crate::config::PluginsConfig) -> Self {
        Self {
            memory_bytes: config.memory_limit_bytes,
            call_timeout: config.call_timeout(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            call_timeout: Duration::from_millis(100),
        }
    }
}

/// Why a call into a plugin did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The call ran past its deadline and was interrupted.
    #[error("call exceeded its {0:?} deadline")]
    Deadline(Duration),
    /// The instance tried to grow its memory past the cap.
    #[error("memory limit of {0} bytes reached")]
    MemoryLimit(usize),
    /// The instance trapped (panic, unreachable, out-of-bounds access, …).
    #[error("trapped: {0}")]
    Trap(String),
}

/// Caps memory growth and records that the cap was hit, so the failure can be named.
#[derive(Debug)]
struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached",
                self.limit
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one plugin store: its name, its limits and an empty WASI context.
pub struct PluginState {
    pub(super) name: Arc<str>,
    memory: MemoryCap,
    limits: Limits,
    wasi: WasiCtx,
    table: ResourceTable,
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

/// A failure to set up the engine or to compile or link a component.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

impl RuntimeError {
    fn from(context: &str, e: &wasmtime::Error) -> Self {
        let text = format!("{e:#}");
        Self(format!(
            "{context}: {}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ))
    }
}

impl Runtime {
    /// The process-wide runtime, created on first use.
    pub fn shared() -> Result<Arc<Runtime>, RuntimeError> {
        static SHARED: OnceLock<Result<Arc<Runtime>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Runtime::new().map(Arc::new).map_err(|e| e.0))
            .clone()
            .map_err(RuntimeError)
    }

    /// An engine with the component model and epoch interruption, and a linker offering
    /// the `host` interface plus WASI interfaces that grant nothing.
    pub fn new() -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)
            .map_err(|e| RuntimeError::from("cannot create the wasm engine", &e))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .and_then(|()| types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| wasmtime_wasi::p2::add_to_linker_sync(&mut linker))
            .map_err(|e| RuntimeError::from("cannot link the host interface", &e))?;
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
            .map_err(|e| RuntimeError(format!("cannot start the epoch thread: {e}")))?;
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
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, RuntimeError> {
        Component::new(&self.engine, bytes)
            .map_err(|e| RuntimeError::from("not a valid component", &e))
    }

    /// Resolves a component's imports; an import the host does not offer is an error.
    pub fn prepare(&self, component: &Component) -> Result<InstancePre<PluginState>, RuntimeError> {
        self.linker.instantiate_pre(component).map_err(|e| {
            RuntimeError::from("the component needs imports the host does not offer", &e)
        })
    }

    /// A fresh store for one instance of plugin `name`.
    ///
    /// Its WASI context has no arguments, no environment, no preopened
    /// directories, no network, and empty stdio; sockets are denied.
    pub fn store(&self, name: &Arc<str>, limits: Limits) -> Store<PluginState> {
        let state = PluginState {
            name: name.clone(),
            memory: MemoryCap {
                limit: limits.memory_bytes,
                hit: false,
            },
            limits,
            wasi: WasiCtx::builder()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build(),
            table: ResourceTable::new(),
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

/// Names why a call failed: deadline, memory cap, or another trap.
pub fn failure(store: &Store<PluginState>, error: &wasmtime::Error) -> Failure {
    let state = store.data();
    if state.memory.hit {
        return Failure::MemoryLimit(state.memory.limit);
    }
    if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return Failure::Deadline(state.limits.call_timeout);
    }
    let text = format!("{error:#}");
    Failure::Trap(text.lines().next().unwrap_or("unknown").to_owned())
}
