//! Supervision of one plugin: a live instance, re-created with exponential backoff after a
//! failure, marked failed after a crash loop and tried again on its own after a cool-down that
//! doubles while it keeps failing, and the turns callers take on it.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::error::{CallError, Failure, Invalid, PluginError, WasmError};
use super::kind::{GuestCall, PluginKind};
use super::limits::{Budgets, Limits};
use super::runtime::{PluginState, Runtime, arm, failure};
use super::stats::{Stats, outcome};

/// Failures within [`CRASH_LOOP_WINDOW`] after which a plugin is marked failed, until its cool-down.
pub const CRASH_LOOP_LIMIT: usize = 5;
/// How far back failures count towards a crash loop; calls that succeed in between do not
/// clear them (a plugin whose `encode` works and whose `classify` always fails still loops).
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);
/// The first re-instantiation delay; it doubles per consecutive failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest re-instantiation delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest rest of a plugin marked failed: its cool-down ([`Limits::cool_down`]) doubles
/// each time it fails again, up to this, and is back to its own once a call succeeds.
pub const MAX_COOL_DOWN: Duration = Duration::from_secs(3600);

/// The health of a supervised plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Health {
    /// Serving.
    Running,
    /// Waiting to be re-created after a failure.
    Restarting(String),
    /// Failed too often in a row.
    Failed(String),
}

/// A live instance: its store and the interface of its kind.
type Live<K> = (Store<PluginState>, <K as PluginKind>::Guest);

/// One plugin's live instance and its failure history.
pub struct Supervised<K: PluginKind> {
    name: Arc<str>,
    runtime: Arc<Runtime>,
    pre: InstancePre<PluginState>,
    indices: K::Indices,
    config: Vec<(String, String)>,
    limits: Limits,
    stats: Stats,
    live: Option<Live<K>>,
    failures: std::collections::VecDeque<Instant>,
    last_failure: Option<Failure>,
    retry_at: Option<Instant>,
    /// Why it was marked failed, and when it is tried again.
    failed: Option<(String, Instant)>,
    cool_down: Duration,
    /// Bytes the instance held after its last call.
    memory: usize,
}

impl<K: PluginKind> std::fmt::Debug for Supervised<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervised")
            .field("name", &self.name)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<K: PluginKind> Supervised<K> {
    /// Finds the interface of `K`'s world in the linked component `pre` and creates the first
    /// instance, whose `init` takes `config`; a failure or refusal here rejects the plugin.
    pub fn start(
        name: Arc<str>,
        runtime: Arc<Runtime>,
        pre: InstancePre<PluginState>,
        config: Vec<(String, String)>,
        limits: Limits,
        stats: Stats,
    ) -> Result<(Self, K::Info), PluginError> {
        let indices = K::indices(&pre).map_err(|e| Invalid::World(WasmError::from_wasmtime(&e)))?;
        let mut supervised = Self {
            name,
            runtime,
            pre,
            indices,
            config,
            limits,
            stats,
            live: None,
            failures: std::collections::VecDeque::new(),
            last_failure: None,
            retry_at: None,
            failed: None,
            cool_down: limits.cool_down,
            memory: 0,
        };
        let (live, info) = supervised.instantiate()?;
        supervised.memory = live.0.data().memory_used();
        supervised.live = Some(live);
        Ok((supervised, info))
    }

    fn instantiate(&self) -> Result<(Live<K>, K::Info), CallError> {
        let began = Instant::now();
        let mut store = self.runtime.store(&self.name, self.limits, &self.stats);
        arm(&mut store);
        let started = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| K::start(&self.indices, &mut store, &instance, &self.config));
        let result = match started {
            Ok(Ok((guest, info))) => Ok(((store, guest), info)),
            Ok(Err(refusal)) => Err(CallError::Plugin(self.name.clone(), refusal)),
            Err(e) => Err(CallError::Failed(self.name.clone(), failure(&store, &e))),
        };
        self.stats
            .call(&self.name, "init", outcome(&result), began.elapsed());
        result
    }

    /// Bytes the instance held in its memories and tables after its last call.
    fn memory(&self) -> usize {
        self.memory
    }

    /// Calls into the live instance, re-creating it first if a backoff has passed.
    ///
    /// A trap, deadline or memory-cap hit drops the instance (a trapped
    /// instance cannot be entered again) and schedules its re-creation.
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&K::Guest, &mut Store<PluginState>) -> GuestCall<R>,
    ) -> Result<R, CallError> {
        if let Some((reason, again)) = &self.failed {
            if Instant::now() < *again {
                return Err(CallError::CrashLoop(self.name.clone(), reason.clone()));
            }
            tracing::info!(plugin = %self.name, "plugin marked failed is tried again after its cool-down");
            self.failed = None;
            self.failures.clear();
            self.retry_at = None;
        }
        if self.live.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(CallError::BackingOff(self.name.clone()));
            }
            match self.instantiate() {
                Ok((live, _)) => self.live = Some(live),
                Err(e) => {
                    self.record(&e);
                    return Err(e);
                }
            }
        }
        let Some((store, guest)) = self.live.as_mut() else {
            return Err(CallError::BackingOff(self.name.clone()));
        };
        arm(store);
        let outcome = f(guest, store);
        self.memory = store.data().memory_used();
        match outcome {
            Ok(Ok(value)) => {
                self.cool_down = self.limits.cool_down;
                // An instance past three quarters of its cap (a guest heap that never gives
                // memory back) is replaced before the next call rather than left to hit the
                // cap in the middle of one.
                if self.memory > self.limits.memory_bytes / 4 * 3 {
                    tracing::debug!(plugin = %self.name, memory = self.memory, "instance replaced: past three quarters of its memory cap");
                    self.live = None;
                }
                Ok(value)
            }
            Ok(Err(refusal)) => Err(CallError::Plugin(self.name.clone(), refusal)),
            Err(e) => {
                let error = CallError::Failed(self.name.clone(), failure(store, &e));
                self.live = None;
                self.record(&error);
                Err(error)
            }
        }
    }

    fn record(&mut self, error: &CallError) {
        let now = Instant::now();
        while self
            .failures
            .front()
            .is_some_and(|at| now.duration_since(*at) > CRASH_LOOP_WINDOW)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if let CallError::Failed(_, f) = error {
            self.last_failure = Some(f.clone());
        }
        let recent = self.failures.len();
        if recent >= CRASH_LOOP_LIMIT {
            let reason = format!(
                "{recent} failures within {}s, the last: {error}",
                CRASH_LOOP_WINDOW.as_secs()
            );
            let rest = self.cool_down;
            tracing::error!(plugin = %self.name, "plugin marked failed: {reason}; tried again in {rest:?}");
            self.failed = Some((reason, now + rest));
            self.cool_down = (rest * 2).min(MAX_COOL_DOWN);
            return;
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (recent - 1).min(16))
            .min(MAX_BACKOFF);
        tracing::warn!(plugin = %self.name, "{error}; re-instantiating in {backoff:?}");
        self.retry_at = Some(Instant::now() + backoff);
    }

    /// The plugin's health.
    pub fn health(&self) -> Health {
        match (&self.failed, &self.live, &self.last_failure) {
            (Some((reason, _)), _, _) => Health::Failed(reason.clone()),
            (None, None, Some(f)) => Health::Restarting(f.to_string()),
            _ => Health::Running,
        }
    }
}

/// A supervised plugin shared between threads: calls take turns on its one instance, and a
/// caller may bound how long it waits for its turn.
pub struct Shared<K: PluginKind> {
    name: Arc<str>,
    supervised: Mutex<Supervised<K>>,
    turn: Mutex<Turns>,
    freed: Condvar,
    health: Mutex<Health>,
    running: std::sync::atomic::AtomicBool,
    /// Bytes the instance held after the last call.
    memory: std::sync::atomic::AtomicUsize,
    limits: Limits,
    stats: Stats,
}

impl<K: PluginKind> std::fmt::Debug for Shared<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl<K: PluginKind> From<Supervised<K>> for Shared<K> {
    fn from(supervised: Supervised<K>) -> Self {
        Self {
            running: std::sync::atomic::AtomicBool::new(supervised.health() == Health::Running),
            health: Mutex::new(supervised.health()),
            memory: std::sync::atomic::AtomicUsize::new(supervised.memory()),
            limits: supervised.limits,
            stats: supervised.stats.clone(),
            name: supervised.name.clone(),
            supervised: Mutex::new(supervised),
            turn: Mutex::new(Turns::default()),
            freed: Condvar::new(),
        }
    }
}

/// Whether a call holds the instance, and how many wait for it.
#[derive(Default)]
struct Turns {
    busy: bool,
    waiting: usize,
}

/// Holds the turn on a [`Shared`] instance; passes it on when dropped.
struct Turn<'a>(&'a Mutex<Turns>, &'a Condvar);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        turns.busy = false;
        let waiting = turns.waiting > 0;
        drop(turns);
        // Waking is a system call: only when someone waits.
        if waiting {
            self.1.notify_one();
        }
    }
}

impl<K: PluginKind> Shared<K> {
    /// The plugin's health after its last call (never waits for a call in progress).
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The statistics the plugin's calls count in.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The plugin's result budgets.
    pub fn budgets(&self) -> Budgets {
        self.limits.budgets
    }

    /// The plugin's deadline per call.
    pub fn call_timeout(&self) -> Duration {
        self.limits.call_timeout
    }

    /// The bytes the instance held after the last call, and its memory cap.
    pub fn memory(&self) -> (usize, usize) {
        let used = self.memory.load(std::sync::atomic::Ordering::Relaxed);
        (used, self.limits.memory_bytes)
    }

    /// Calls `function` of the instance (`f` makes the call), as [`Supervised::call`] does,
    /// waiting as long as it takes for the calls before it (each bounded by the deadline).
    pub fn call<R>(
        &self,
        function: &'static str,
        f: impl FnOnce(&K::Guest, &mut Store<PluginState>) -> GuestCall<R>,
    ) -> Result<R, CallError> {
        self.call_within(function, None, f)
    }

    /// Calls `function` of the instance, waiting at most `wait` (when given) for another call
    /// to end ([`CallError::Busy`] past it); every call is counted in the plugin's statistics,
    /// with its outcome, duration and the instance's memory after it.
    pub fn call_within<R>(
        &self,
        function: &'static str,
        wait: Option<Duration>,
        f: impl FnOnce(&K::Guest, &mut Store<PluginState>) -> GuestCall<R>,
    ) -> Result<R, CallError> {
        let began = Instant::now();
        let result = self.call_counted(function, wait, f);
        self.stats
            .call(&self.name, function, outcome(&result), began.elapsed());
        if let Err(CallError::Failed(_, failure)) = &result {
            self.stats.trap(&self.name, failure);
        }
        result
    }

    fn call_counted<R>(
        &self,
        function: &'static str,
        wait: Option<Duration>,
        f: impl FnOnce(&K::Guest, &mut Store<PluginState>) -> GuestCall<R>,
    ) -> Result<R, CallError> {
        let _turn = self
            .take_turn(wait)
            .ok_or_else(|| CallError::Busy(self.name.clone()))?;
        let mut supervised = self
            .supervised
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _span = tracing::trace_span!("plugin call", plugin = %self.name, function).entered();
        let result = supervised.call(f);
        let memory = supervised.memory();
        self.stats.memory(&self.name, memory);
        self.memory
            .store(memory, std::sync::atomic::Ordering::Relaxed);
        // A call that succeeds on a running instance leaves its health as it was.
        if result.is_err() || !self.running.load(std::sync::atomic::Ordering::Relaxed) {
            let health = supervised.health();
            self.running.store(
                health == Health::Running,
                std::sync::atomic::Ordering::Relaxed,
            );
            *self.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
        }
        result
    }

    fn take_turn(&self, wait: Option<Duration>) -> Option<Turn<'_>> {
        let mut turns = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let deadline = turns
            .busy
            .then(|| wait.map(|w| Instant::now() + w))
            .flatten();
        while turns.busy {
            let left = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return None,
                },
            };
            turns.waiting += 1;
            turns = match left {
                None => self
                    .freed
                    .wait(turns)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    self.freed
                        .wait_timeout(turns, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            turns.waiting -= 1;
        }
        turns.busy = true;
        Some(Turn(&self.turn, &self.freed))
    }
}
