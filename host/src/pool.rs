//! Bounded worker pools for work that may call plugins: one for intake, one for export, each
//! with its own threads, so that neither can starve the other or tokio's shared blocking pool.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking jobs from a queue of bounded length.
pub(crate) struct Pool {
    name: &'static str,
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    limit: usize,
}

/// Why a job did not run to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PoolError {
    /// The queue held its limit of jobs waiting: the pool is overloaded.
    #[error("the {0} workers are busy ({1} jobs already waiting)")]
    Full(&'static str, usize),
    /// The job panicked.
    #[error("the {0} job failed unexpectedly")]
    Panicked(&'static str),
}

/// How many threads each pool has: the machine's cores, at least 2.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// The intake pool: parsing large bodies and recording through view plugins; at most 64 jobs
/// per thread wait, past that intake answers 503.
pub(crate) fn intake() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::start("intake", threads(), 64 * threads()))
}

/// The export pool: collecting, transforming, encoding and classifying for exporters (one job
/// per exporter and signal at a time, so its queue stays short).
pub(crate) fn export() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::start("export", threads(), usize::MAX))
}

impl Pool {
    /// A pool of `threads` threads named `wasmtel-<name>`, holding at most `limit` waiting jobs.
    pub(crate) fn start(name: &'static str, threads: usize, limit: usize) -> &'static Pool {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            name,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            limit,
        }));
        for i in 0..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("wasmtel-{name}-{i}"))
                .spawn(move || pool.work());
            if let Err(e) = spawned {
                tracing::error!(pool = name, "cannot start a worker thread: {e}");
            }
        }
        pool
    }

    /// Runs `f` on one of the pool's threads (inside the caller's tokio runtime, if any) and
    /// returns its result; refused at once when the queue is full.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Handle::try_current().ok();
        self.submit(Box::new(move || {
            let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
                let _ = tx.send(value);
            }
        }))?;
        rx.await.map_err(|_| PoolError::Panicked(self.name))
    }

    fn submit(&self, job: Job) -> Result<(), PoolError> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= self.limit {
            return Err(PoolError::Full(self.name, queue.len()));
        }
        queue.push_back(job);
        drop(queue);
        self.ready.notify_one();
        Ok(())
    }

    fn work(&self) {
        loop {
            let job = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if let Some(job) = queue.pop_front() {
                        break job;
                    }
                    queue = self
                        .ready
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            job();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_refuses_past_the_limit_and_survives_a_panic() {
        let pool = Pool::start("test", 1, 1);
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
        let panicked = pool.run(|| -> u8 { panic!("boom") }).await;
        assert_eq!(panicked, Err(PoolError::Panicked("test")));
        // One thread held by a job that waits for the go, one job waiting: the next is refused.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let held = tokio::spawn(pool.run(move || {
            let _ = started.send(());
            wait.recv().is_ok()
        }));
        while running.try_recv().is_err() {
            tokio::task::yield_now().await;
        }
        let queued = tokio::spawn(pool.run(|| 1));
        while pool.queue.lock().expect("queue").is_empty() {
            tokio::task::yield_now().await;
        }
        let full = pool.run(|| 2).await.expect_err("full");
        assert_eq!(full, PoolError::Full("test", 1));
        assert_eq!(
            full.to_string(),
            "the test workers are busy (1 jobs already waiting)"
        );
        go.send(()).expect("go");
        assert_eq!(held.await.expect("held"), Ok(true));
        assert_eq!(queued.await.expect("queued"), Ok(1));
    }
}
