//! The HTTP server under every listener (HTTP/1.1, or HTTP/2 for OTLP/gRPC): a bounded number
//! of connections (the longest-idle one gives way to a newcomer, else the newcomer gets a 503),
//! header, body-rate, stall and idle timeouts, and one memory budget for the bodies being
//! received, so that no client can hold the host's connections, descriptors or memory hostage.

use std::collections::HashMap;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, Sleep};

use crate::config::ConnectionsConfig;

/// Descriptors kept back from the listeners for files, the store, exports and plugins.
const RESERVED_FDS: u64 = 128;

/// What a client gets when every connection slot is busy with a request.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 47\r\nconnection: close\r\n\r\nevery connection of this listener is in a request";

/// A request body that arrived more slowly than the listener allows, or stopped arriving.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct SlowBody {
    received: u64,
    elapsed: Duration,
    grace: Duration,
    rate: u64,
    /// Set when nothing arrived for this long, whatever came before.
    stalled: Option<Duration>,
}

impl SlowBody {
    fn describe(&self) -> String {
        let (received, elapsed) = (self.received, self.elapsed);
        match self.stalled {
            Some(stall) => format!(
                "the request body stopped arriving: {received} bytes in {elapsed:?}, then nothing for {stall:?} (connections.stall_timeout)"
            ),
            None => format!(
                "the request body arrived too slowly: {received} bytes in {elapsed:?} (a body must arrive within {:?} plus 1 s per {} bytes)",
                self.grace, self.rate
            ),
        }
    }
}

/// Bytes of each body that never count against the budget, so small requests always pass.
const FREE_BODY_BYTES: usize = 64 * 1024;
/// How long a body waits for room in the budget before it is refused.
const BUDGET_WAIT: Duration = Duration::from_secs(1);
/// How often a waiting body looks for room again.
const BUDGET_RETRY: Duration = Duration::from_millis(20);

/// The bytes of request bodies being received, all listeners together, against one budget.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` if they fit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// A request body refused because the bodies being received hold the whole memory budget.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request bodies being received hold the host's body memory budget ({limit} bytes, connections.max_body_memory); retry shortly"
)]
pub struct BudgetSpent {
    limit: usize,
}

/// The `E` that `error` is or wraps, if any: why a body failed ([`SlowBody`], [`BudgetSpent`]).
pub fn cause<'e, E: Error + 'static>(error: &'e (dyn Error + 'static)) -> Option<&'e E> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// What polling a body for its next frame gives.
type Polled = Poll<Option<Result<Frame<Bytes>, Box<dyn Error + Send + Sync>>>>;

/// A request body that fails with [`SlowBody`] once it falls behind its deadline — the grace
/// period plus the time its bytes so far take at the minimum rate — or once nothing has
/// arrived for the stall timeout, whatever arrived before (so a sender that was fast and then
/// stopped cannot hold its buffer for long).
///
/// Past its first [`FREE_BODY_BYTES`], what it received counts against the host's
/// [`BodyBudget`] until the body is dropped; a frame that does not fit waits up to
/// [`BUDGET_WAIT`] for room, then the body fails with [`BudgetSpent`].
struct TimedBody {
    inner: Incoming,
    started: Instant,
    last: Instant,
    received: u64,
    grace: Duration,
    rate: u64,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
    budget: Arc<BodyBudget>,
    /// The bytes it holds of the budget.
    held: usize,
    /// A frame waiting for room, the bytes it needs, and since when it waits.
    waiting: Option<(Frame<Bytes>, usize, Instant)>,
    /// How long its earlier frames waited for room.
    waited: Duration,
}

impl TimedBody {
    fn new(inner: Incoming, limits: &ConnectionsConfig, budget: Arc<BodyBudget>) -> Self {
        let started = Instant::now();
        let grace = limits.body_timeout();
        let stall = limits.stall_timeout();
        Self {
            inner,
            started,
            last: started,
            received: 0,
            grace,
            rate: limits.min_body_rate.max(1),
            stall,
            timer: Box::pin(tokio::time::sleep_until(started + grace.min(stall))),
            budget,
            held: 0,
            waiting: None,
            waited: Duration::ZERO,
        }
    }

    /// Passes `frame` on once the budget has room for the `needs` bytes it adds; until then
    /// it waits (at most [`BUDGET_WAIT`] for the whole body, looking again every
    /// [`BUDGET_RETRY`]).
    fn admit(
        &mut self,
        frame: Frame<Bytes>,
        needs: usize,
        since: Instant,
        cx: &mut Context<'_>,
    ) -> Polled {
        let now = Instant::now();
        if self.budget.take(needs) {
            self.held += needs;
            self.waited += now - since;
            let deadline = self.deadline().min(self.last + self.stall);
            self.timer.as_mut().reset(deadline);
            return Poll::Ready(Some(Ok(frame)));
        }
        if self.waited + (now - since) >= BUDGET_WAIT {
            let limit = self.budget.limit;
            return Poll::Ready(Some(Err(Box::new(BudgetSpent { limit }))));
        }
        self.waiting = Some((frame, needs, since));
        self.timer.as_mut().reset(now + BUDGET_RETRY);
        let _ = self.timer.as_mut().poll(cx);
        Poll::Pending
    }

    /// When the rate rule cuts the body.
    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
        self.started + self.grace + earned
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = &mut *self;
        if let Some((frame, needs, since)) = this.waiting.take() {
            if this.timer.as_mut().poll(cx).is_pending() {
                this.waiting = Some((frame, needs, since));
                return Poll::Pending;
            }
            return this.admit(frame, needs, since, cx);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Some(data) = frame.data_ref() else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                let before = this.received as usize;
                this.received += data.len() as u64;
                this.last = Instant::now();
                let beyond = |n: usize| n.saturating_sub(FREE_BODY_BYTES);
                let needs = beyond(this.received as usize) - beyond(before);
                this.admit(frame, needs, this.last, cx)
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let now = Instant::now();
                    let stalled = (now < this.deadline()).then_some(this.stall);
                    Poll::Ready(Some(Err(Box::new(SlowBody {
                        received: this.received,
                        elapsed: this.started.elapsed(),
                        grace: this.grace,
                        rate: this.rate,
                        stalled,
                    }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

/// Raises the soft open-file limit to the hard one and returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(soft) = limit.current else {
        return u64::MAX;
    };
    if limit.maximum.is_some_and(|hard| hard <= soft) {
        return soft;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            let now = limit.maximum.unwrap_or(u64::MAX);
            tracing::info!("raised the open-file limit from {soft} to {now}");
            now
        }
        Err(e) => {
            tracing::warn!("could not raise the open-file limit of {soft}: {e}");
            soft
        }
    }
}

/// The connections each of `listeners` may hold under the open-file limit `fds`.
pub fn connections_per_listener(wanted: usize, fds: u64, listeners: usize) -> usize {
    let room = fds.saturating_sub(RESERVED_FDS) / listeners.max(1) as u64;
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if room < wanted {
        tracing::warn!(
            "connections.max_connections lowered from {wanted} to {room} per listener to fit the open-file limit of {fds}"
        );
    }
    wanted.min(room)
}

/// One open connection's state, as the listener sees it.
struct Conn {
    requests: AtomicUsize,
    idle_since: AtomicU64,
    close: Notify,
}

/// A listener's open connections.
struct Conns {
    epoch: Instant,
    max: usize,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Conns {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers connection `id`, asking the longest-idle one to close when all slots are
    /// taken; `None` when every open connection is in a request.
    fn admit(&self, id: u64) -> Option<Arc<Conn>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            let (&victim, _) = open
                .iter()
                .filter(|(_, c)| c.requests.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.idle_since.load(Ordering::Relaxed))?;
            if let Some(conn) = open.remove(&victim) {
                conn.close.notify_one();
            }
        }
        let conn = Arc::new(Conn {
            requests: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now()),
            close: Notify::new(),
        });
        open.insert(id, conn.clone());
        Some(conn)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// The HTTP version a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (gRPC).
    Http2,
}

/// What every connection of every listener shares: the limits, the body budget, the stop signal.
#[derive(Clone)]
struct Shared {
    limits: Arc<ConnectionsConfig>,
    budget: Arc<BodyBudget>,
    stopped: watch::Receiver<bool>,
}

/// Serves `app` speaking `protocol` on `listener` (with `max` connections) until stopped.
fn serve(
    listener: TcpListener,
    app: Router,
    protocol: Protocol,
    max: usize,
    shared: Shared,
) -> JoinHandle<()> {
    let mut stopped = shared.stopped.clone();
    tokio::spawn(async move {
        let conns = Arc::new(Conns {
            epoch: Instant::now(),
            max,
            open: Mutex::default(),
        });
        let mut tasks = JoinSet::new();
        let mut failures = 0u64;
        for id in 0u64.. {
            while tasks.try_join_next().is_some() {}
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.wait_for(|s| *s) => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, most often: wait for some to close.
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::warn!("accepting a connection failed ({failures} times): {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match conns.admit(id) {
                Some(conn) => {
                    let task = connection(
                        stream,
                        (app.clone(), protocol, max),
                        (conns.clone(), conn),
                        shared.clone(),
                    );
                    let conns = conns.clone();
                    tasks.spawn(async move {
                        task.await;
                        conns.remove(id);
                    });
                }
                None => {
                    tasks.spawn(refuse(stream));
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    })
}

/// Answers 503 on a connection that found every slot in a request, and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(FULL)).await;
}

/// Serves one connection until it closes, goes idle past the idle timeout, gives way to a
/// newcomer, or the listener stops; a closing connection gets one header timeout to finish.
async fn connection(
    stream: TcpStream,
    (app, protocol, max_streams): (Router, Protocol, usize),
    (conns, conn): (Arc<Conns>, Arc<Conn>),
    shared: Shared,
) {
    let service = {
        let (conns, conn, shared) = (conns.clone(), conn.clone(), shared.clone());
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            conn.requests.fetch_add(1, Ordering::AcqRel);
            let budget = shared.budget.clone();
            let request =
                request.map(|body| Body::new(TimedBody::new(body, &shared.limits, budget)));
            let mut app = app.clone();
            let (conns, conn) = (conns.clone(), conn.clone());
            async move {
                let response = tower_service::Service::call(&mut app, request).await;
                conn.idle_since.store(conns.now(), Ordering::Relaxed);
                conn.requests.fetch_sub(1, Ordering::AcqRel);
                response
            }
        })
    };
    let io = TokioIo::new(stream);
    match protocol {
        Protocol::Http1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(shared.limits.header_timeout());
            let served = builder.serve_connection(io, service);
            until_closed(served, |c| c.graceful_shutdown(), (&conns, &conn), &shared).await;
        }
        Protocol::Http2 => {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(u32::try_from(max_streams).ok())
                .keep_alive_interval(Some(Duration::from_secs(60)));
            let served = builder.serve_connection(io, service);
            until_closed(served, |c| c.graceful_shutdown(), (&conns, &conn), &shared).await;
        }
    }
}

/// Drives a connection until it closes, goes idle past the idle timeout (a connection that
/// never sends a request included), gives way to a newcomer, or the listener stops; a closing
/// connection is shut down gracefully and gets one header timeout to finish.
async fn until_closed<F: Future>(
    served: F,
    shutdown: impl Fn(Pin<&mut F>),
    (conns, conn): (&Conns, &Conn),
    shared: &Shared,
) {
    tokio::pin!(served);
    let mut stopped = shared.stopped.clone();
    let idle = shared.limits.idle_timeout();
    let idle_at =
        || conns.epoch + Duration::from_millis(conn.idle_since.load(Ordering::Relaxed)) + idle;
    let mut wake = idle_at();
    let mut closing = false;
    loop {
        tokio::select! {
            _ = served.as_mut() => return,
            _ = conn.close.notified(), if !closing => closing = true,
            _ = stopped.wait_for(|s| *s), if !closing => closing = true,
            _ = tokio::time::sleep_until(wake) => {
                if closing {
                    return;
                }
                let now = Instant::now();
                if conn.requests.load(Ordering::Acquire) > 0 {
                    wake = now + idle;
                } else if now >= idle_at() {
                    closing = true;
                } else {
                    wake = idle_at();
                }
                if !closing {
                    continue;
                }
            }
        }
        shutdown(served.as_mut());
        wake = Instant::now() + shared.limits.header_timeout();
    }
}

/// A listener that could not bind.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}: {source}")]
pub struct BindError {
    /// Which listener.
    pub what: &'static str,
    /// The address.
    pub addr: std::net::SocketAddr,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Binds `addr` for the listener `what`; returns it with the address it got (a port of 0 picks
/// a free one).
pub async fn bind(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> Result<(TcpListener, std::net::SocketAddr), BindError> {
    let error = |source| BindError { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let local = listener.local_addr().map_err(error)?;
    Ok((listener, local))
}

/// The host's listeners as they start: each bound, served under the same connection limits
/// and body budget, and stopped together.
pub struct Listeners {
    shared: Shared,
    /// Connections per listener, within the open-file limit.
    max: usize,
    /// The tasks serving them.
    pub tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Listeners {
    /// Listeners under `limits`, `count` of them sharing the open-file limit, until `stopped`.
    pub fn new(limits: &ConnectionsConfig, count: usize, stopped: watch::Receiver<bool>) -> Self {
        let max = connections_per_listener(limits.max_connections, raise_fd_limit(), count);
        Self {
            shared: Shared {
                limits: Arc::new(limits.clone()),
                budget: Arc::new(BodyBudget::new(limits.max_body_memory)),
                stopped,
            },
            max,
            tasks: Vec::new(),
        }
    }

    /// Connections each listener may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The signal they stop on.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.shared.stopped.clone()
    }

    /// The memory budget of the bodies being received.
    pub fn budget(&self) -> Arc<BodyBudget> {
        self.shared.budget.clone()
    }

    /// Binds `addr` and serves `app` on it as `what`, speaking `protocol`; the address it got.
    pub async fn serve(
        &mut self,
        what: &'static str,
        addr: std::net::SocketAddr,
        app: Router,
        protocol: Protocol,
    ) -> Result<std::net::SocketAddr, BindError> {
        let (listener, local) = bind(what, addr).await?;
        self.serve_bound(listener, app, protocol);
        Ok(local)
    }

    /// Serves `app` speaking `protocol` on a listener bound before.
    pub fn serve_bound(&mut self, listener: TcpListener, app: Router, protocol: Protocol) {
        let shared = self.shared.clone();
        self.tasks
            .push(serve(listener, app, protocol, self.max, shared));
    }
}

/// Where each of the host's listeners listens; `None` when it is off.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// Events and OTLP/HTTP.
    pub intake: std::net::SocketAddr,
    /// OTLP/gRPC.
    pub grpc: Option<std::net::SocketAddr>,
    /// `/metrics`.
    pub prometheus: Option<std::net::SocketAddr>,
    /// The admin API and status page.
    pub admin: Option<std::net::SocketAddr>,
}

impl Addresses {
    /// Each listener that is on, by what it serves.
    pub fn listed(&self) -> std::collections::BTreeMap<&'static str, String> {
        [
            ("intake", Some(self.intake)),
            ("otlp_grpc", self.grpc),
            ("prometheus", self.prometheus),
            ("admin", self.admin),
        ]
        .into_iter()
        .filter_map(|(what, a)| Some((what, a?.to_string())))
        .collect()
    }
}
