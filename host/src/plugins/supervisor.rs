//! Supervision of one plugin: a live instance, re-created with exponential backoff
//! after a failure, and marked failed after a crash loop.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{Component, Instance, InstancePre};

use super::runtime::{Budgets, Failure, Limits, PluginState, Runtime, RuntimeError, arm, failure};
use super::stats;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a component, or not linkable.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The component does not export the interface of the expected world.
    #[error("wrong world: {0}")]
    WrongWorld(String),
    /// Instantiation or `init` failed.
    #[error(transparent)]
    Start(#[from] CallError),
}

/// Failures within [`CRASH_LOOP_WINDOW`] after which a plugin is marked failed for good.
pub const CRASH_LOOP_LIMIT: usize = 5;
/// How far back failures count towards a crash loop; calls that succeed in between do not
/// clear them (a plugin whose `encode` works and whose `classify` always fails still loops).
pub const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);
/// The first re-instantiation delay; it doubles per consecutive failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest re-instantiation delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a call did not happen or did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The instance failed during this call (or while being re-created for it).
    #[error("plugin `{0}` {1}")]
    Failed(Arc<str>, Failure),
    /// The plugin returned an error.
    #[error("plugin `{0}` returned an error: {1}")]
    Plugin(Arc<str>, String),
    /// The instance failed recently and waits before being re-created.
    #[error("plugin `{0}` is restarting after a failure")]
    BackingOff(Arc<str>),
    /// The plugin failed too often in a row and is no longer called.
    #[error("plugin `{0}` is marked failed: {1}")]
    CrashLoop(Arc<str>, String),
    /// The call's result was refused: it was larger than the plugin's budget allows.
    #[error("plugin `{0}` result refused: {1}")]
    OverBudget(Arc<str>, String),
    /// Another call held the instance for longer than a caller could wait.
    #[error("plugin `{0}` is busy")]
    Busy(Arc<str>),
}

/// Loads the exported interface from a fresh instance and initialises it; `Err(text)` is the plugin's refusal.
pub type Starter<G> = Box<
    dyn Fn(&mut Store<PluginState>, &Instance) -> wasmtime::Result<Result<G, String>> + Send + Sync,
>;

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

/// One plugin's live instance and its failure history.
pub struct Supervised<G> {
    name: Arc<str>,
    runtime: Arc<Runtime>,
    pre: InstancePre<PluginState>,
    limits: Limits,
    start: Starter<G>,
    live: Option<(Store<PluginState>, G)>,
    failures: std::collections::VecDeque<Instant>,
    last_failure: Option<Failure>,
    retry_at: Option<Instant>,
    failed: Option<String>,
}

impl<G> Supervised<G> {
    /// Links `component`, finds the interface its world must export with `indices`, and starts it with `start`.
    pub fn load<I: Send + Sync + 'static>(
        runtime: &Arc<Runtime>,
        name: &Arc<str>,
        component: &Component,
        limits: Limits,
        indices: impl FnOnce(&InstancePre<PluginState>) -> wasmtime::Result<I>,
        start: impl Fn(&I, &mut Store<PluginState>, &Instance) -> wasmtime::Result<Result<G, String>>
        + Send
        + Sync
        + 'static,
    ) -> Result<Self, LoadError> {
        let pre = runtime.prepare(component)?;
        let indices = indices(&pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let starter: Starter<G> = Box::new(move |store, instance| start(&indices, store, instance));
        Ok(Self::start(
            name.clone(),
            runtime.clone(),
            pre,
            limits,
            starter,
        )?)
    }

    /// Creates the first instance; a failure or refusal here rejects the plugin.
    pub fn start(
        name: Arc<str>,
        runtime: Arc<Runtime>,
        pre: InstancePre<PluginState>,
        limits: Limits,
        start: Starter<G>,
    ) -> Result<Self, CallError> {
        let mut supervised = Self {
            name,
            runtime,
            pre,
            limits,
            start,
            live: None,
            failures: std::collections::VecDeque::new(),
            last_failure: None,
            retry_at: None,
            failed: None,
        };
        let live = supervised.instantiate()?;
        supervised.live = Some(live);
        Ok(supervised)
    }

    fn instantiate(&self) -> Result<(Store<PluginState>, G), CallError> {
        let began = Instant::now();
        let mut store = self.runtime.store(&self.name, self.limits);
        arm(&mut store);
        let started = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| (self.start)(&mut store, &instance));
        let result = match started {
            Ok(Ok(guest)) => Ok((store, guest)),
            Ok(Err(refusal)) => Err(CallError::Plugin(self.name.clone(), refusal)),
            Err(e) => Err(CallError::Failed(self.name.clone(), failure(&store, &e))),
        };
        stats::call(
            self.limits.scope,
            &self.name,
            "init",
            stats::outcome(&result),
            began.elapsed(),
        );
        result
    }

    /// Bytes the live instance holds in its memories and tables (0 without one).
    fn memory(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |(store, _)| store.data().memory_used())
    }

    /// Calls into the live instance, re-creating it first if a backoff has passed.
    ///
    /// A trap, deadline or memory-cap hit drops the instance (a trapped
    /// instance cannot be entered again) and schedules its re-creation.
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&G, &mut Store<PluginState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, CallError> {
        if let Some(reason) = &self.failed {
            return Err(CallError::CrashLoop(self.name.clone(), reason.clone()));
        }
        if self.live.is_none() {
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                return Err(CallError::BackingOff(self.name.clone()));
            }
            match self.instantiate() {
                Ok(live) => self.live = Some(live),
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
        match f(guest, store) {
            Ok(Ok(value)) => Ok(value),
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
            tracing::error!(plugin = %self.name, "plugin marked failed: {reason}");
            self.failed = Some(reason);
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
            (Some(reason), _, _) => Health::Failed(reason.clone()),
            (None, None, Some(f)) => Health::Restarting(f.to_string()),
            _ => Health::Running,
        }
    }
}

/// A supervised plugin shared between threads: calls take turns on its one instance, and a
/// caller may bound how long it waits for its turn.
pub struct Shared<G> {
    name: Arc<str>,
    supervised: Mutex<Supervised<G>>,
    turn: Mutex<Turns>,
    freed: Condvar,
    health: Mutex<Health>,
    running: std::sync::atomic::AtomicBool,
    limits: Limits,
}

impl<G> From<Supervised<G>> for Shared<G> {
    fn from(supervised: Supervised<G>) -> Self {
        Self {
            running: std::sync::atomic::AtomicBool::new(supervised.health() == Health::Running),
            health: Mutex::new(supervised.health()),
            limits: supervised.limits,
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

impl<G> Shared<G> {
    /// The plugin's health after its last call (never waits for a call in progress).
    pub fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The self-telemetry scope counting the plugin's calls.
    pub fn scope(&self) -> u64 {
        self.limits.scope
    }

    /// The plugin's result budgets.
    pub fn budgets(&self) -> Budgets {
        self.limits.budgets
    }

    /// The plugin's deadline per call.
    pub fn call_timeout(&self) -> Duration {
        self.limits.call_timeout
    }

    /// Calls `function` of the instance (`f` makes the call), as [`Supervised::call`] does,
    /// waiting as long as it takes for the calls before it (each bounded by the deadline).
    pub fn call<R>(
        &self,
        function: &'static str,
        f: impl FnOnce(&G, &mut Store<PluginState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, CallError> {
        self.call_within(function, None, f)
    }

    /// Calls `function` of the instance, waiting at most `wait` (when given) for another call
    /// to end ([`CallError::Busy`] past it); every call is counted in [`stats`], with its
    /// outcome, duration and the instance's memory after it.
    pub fn call_within<R>(
        &self,
        function: &'static str,
        wait: Option<Duration>,
        f: impl FnOnce(&G, &mut Store<PluginState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, CallError> {
        let began = Instant::now();
        let result = self.call_counted(function, wait, f);
        let scope = self.limits.scope;
        stats::call(
            scope,
            &self.name,
            function,
            stats::outcome(&result),
            began.elapsed(),
        );
        if let Err(CallError::Failed(_, failure)) = &result {
            stats::trap(scope, &self.name, failure);
        }
        result
    }

    fn call_counted<R>(
        &self,
        function: &'static str,
        wait: Option<Duration>,
        f: impl FnOnce(&G, &mut Store<PluginState>) -> wasmtime::Result<Result<R, String>>,
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
        stats::memory(self.limits.scope, &self.name, supervised.memory());
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
