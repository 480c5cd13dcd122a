//! The host's periodic tasks: something done now and every interval until the host stops.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs `tick` now and every `interval` (a late tick waits, none is doubled) until `stopped`.
pub fn every<F, Fut>(interval: Duration, stopped: watch::Receiver<bool>, tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    from(tokio::time::Instant::now(), interval, stopped, tick)
}

/// Runs `tick` every `interval`, the first time one interval from now, until `stopped`.
pub fn after<F, Fut>(interval: Duration, stopped: watch::Receiver<bool>, tick: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    from(
        tokio::time::Instant::now() + interval,
        interval,
        stopped,
        tick,
    )
}

fn from<F, Fut>(
    start: tokio::time::Instant,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
    mut tick: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(start, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            tick().await;
        }
    })
}

/// Runs blocking work (NVML calls, file reads) now and every `interval` on a blocking thread
/// until `stopped`.
pub fn blocking_every(
    interval: Duration,
    stopped: watch::Receiver<bool>,
    work: impl FnMut() + Send + 'static,
) -> JoinHandle<()> {
    let work = Arc::new(Mutex::new(work));
    every(interval, stopped, move || {
        let work = work.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || {
                (work.lock().unwrap_or_else(PoisonError::into_inner))();
            })
            .await;
        }
    })
}
