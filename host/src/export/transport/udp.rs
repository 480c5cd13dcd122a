//! The UDP transport: datagrams to one address, paced so that a receiver's socket buffer keeps
//! up. UDP acknowledges nothing: a datagram that leaves the host counts as sent, never as
//! delivered; only a refusal the kernel reports (nothing listening, ICMP port unreachable)
//! shows up as a failure.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{BoxFuture, Delivered, Request, SendError, Transport};
use crate::export::probe::Diagnosis;

/// The default pace: at most 4 MiB of datagrams per second.
pub const DEFAULT_BYTES_PER_SECOND: u64 = 4 * 1024 * 1024;
/// The default burst: 4 KiB of datagrams sent back to back before the pace applies, so
/// that even the smallest socket buffer a receiver can have holds a burst.
pub const DEFAULT_BURST_BYTES: u64 = 4 * 1024;
/// The default spread: a collection's datagrams go out over half the export interval.
pub const DEFAULT_SPREAD: f64 = 0.5;

/// A leaky bucket: how long to wait before sending so many bytes.
#[derive(Debug)]
pub struct Pacer {
    /// The fastest pace, in bytes per second.
    max_rate: f64,
    burst_bytes: f64,
    /// The time one batch's datagrams are spread over, if batches are spread.
    window: Option<Duration>,
    state: Mutex<Pace>,
}

/// The bucket's pace now and when it would be empty again.
#[derive(Debug)]
struct Pace {
    rate: f64,
    /// When the bucket would be empty again (the theoretical arrival time).
    empty_at: Option<Instant>,
}

impl Pacer {
    /// A pace of at most `bytes_per_second`, allowing `burst` bytes at once, spreading each
    /// batch over `window` where one is given.
    pub fn new(bytes_per_second: u64, burst: u64, window: Option<Duration>) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        Self {
            max_rate: rate,
            burst_bytes: burst as f64,
            window: window.filter(|w| !w.is_zero()),
            state: Mutex::new(Pace {
                rate,
                empty_at: None,
            }),
        }
    }

    /// Paces the next batch, of `bytes` in all, so that it takes its window (never faster
    /// than the fastest pace); without a window the pace stays the fastest.
    pub fn batch(&self, bytes: usize) {
        if let Some(window) = self.window {
            let rate = (bytes as f64 / window.as_secs_f64()).clamp(1.0, self.max_rate);
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .rate = rate;
        }
    }

    /// How long to wait at `now` before sending `bytes` (and books them).
    pub fn wait(&self, bytes: usize, now: Instant) -> Duration {
        let mut pace = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let start = pace.empty_at.map_or(now, |t| t.max(now));
        let burst = Duration::from_secs_f64(self.burst_bytes / pace.rate);
        let wait = (start - now).saturating_sub(burst);
        pace.empty_at = Some(start + Duration::from_secs_f64(bytes as f64 / pace.rate));
        wait
    }
}

/// Sends datagrams to one address from one connected socket.
#[derive(Debug)]
pub struct Udp {
    addr: SocketAddr,
    socket: tokio::sync::OnceCell<Arc<UdpSocket>>,
    pacer: Pacer,
}

/// Why the UDP socket could not be made.
#[derive(Debug, thiserror::Error)]
enum SocketError {
    /// No local socket could be bound.
    #[error("UDP bind: {0}")]
    Bind(std::io::Error),
    /// It could not be connected to the endpoint.
    #[error("UDP connect {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
}

impl Udp {
    /// A transport to `addr`, paced by `pacer`.
    pub fn new(addr: SocketAddr, pacer: Pacer) -> Self {
        Self {
            addr,
            socket: tokio::sync::OnceCell::new(),
            pacer,
        }
    }

    async fn socket(&self) -> Result<&Arc<UdpSocket>, SocketError> {
        self.socket
            .get_or_try_init(|| async {
                let local: SocketAddr = if self.addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local).await.map_err(SocketError::Bind)?;
                socket
                    .connect(self.addr)
                    .await
                    .map_err(|e| SocketError::Connect(self.addr, e))?;
                Ok(Arc::new(socket))
            })
            .await
    }

    async fn datagram(&self, bytes: &[u8]) -> Result<Delivered, SendError> {
        let wait = self.pacer.wait(bytes.len(), Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let socket = self
            .socket()
            .await
            .map_err(|e| SendError::retryable(e.to_string()))?;
        match socket.send(bytes).await {
            Ok(_) => Ok(Delivered::default()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(SendError::retryable(format!(
                    "udp://{}: nothing is listening (port unreachable)",
                    self.addr
                )))
            }
            Err(e) => Err(SendError::retryable(format!("udp://{}: {e}", self.addr))),
        }
    }
}

impl Transport for Udp {
    fn batch(&self, requests: &VecDeque<Request>) {
        self.pacer.batch(requests.iter().map(Request::len).sum());
    }

    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            match request {
                Request::Datagram(bytes) => self.datagram(bytes).await,
                other => Err(SendError::wrong_kind(other, "a UDP endpoint")),
            }
        })
    }

    fn endpoint(&self) -> String {
        format!("udp://{}", self.addr)
    }

    fn acknowledged(&self) -> bool {
        false
    }

    /// Sends two empty datagrams 50 ms apart: a refusal of the second means nothing listens.
    fn probe(&self, _timeout: Duration) -> BoxFuture<'_, Diagnosis> {
        Box::pin(async move {
            let socket = match self.socket().await {
                Ok(s) => s,
                Err(e) => {
                    return Diagnosis::Settings {
                        reason: e.to_string(),
                    };
                }
            };
            let refused = |e: std::io::Error| Diagnosis::Unreachable {
                reason: format!("nothing is listening at udp://{} ({e})", self.addr),
            };
            if let Err(e) = socket.send(&[]).await {
                return refused(e);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Err(e) = socket.send(&[]).await {
                return refused(e);
            }
            Diagnosis::Sent
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_lets_a_burst_through_then_spaces_datagrams() {
        // 1000 bytes per second with a 2000-byte burst.
        let pacer = Pacer::new(1000, 2000, None);
        let now = Instant::now();
        assert_eq!(pacer.wait(1000, now), Duration::ZERO);
        assert_eq!(pacer.wait(1000, now), Duration::ZERO);
        assert_eq!(
            pacer.wait(1000, now),
            Duration::ZERO,
            "the burst is full now"
        );
        assert_eq!(pacer.wait(500, now), Duration::from_secs(1));
        assert_eq!(pacer.wait(500, now), Duration::from_millis(1500));
        // Idle long enough, the bucket is empty again.
        let later = now + Duration::from_secs(60);
        assert_eq!(pacer.wait(1000, later), Duration::ZERO);
    }

    #[test]
    fn a_batch_is_spread_over_the_window_but_never_faster_than_the_pace() {
        // At most 1000 bytes per second, a 500-byte burst, batches over 2 seconds.
        let pacer = Pacer::new(1000, 500, Some(Duration::from_secs(2)));
        let now = Instant::now();
        // 400 bytes over 2 s: 200 bytes per second, so 100-byte datagrams 0.5 s apart
        // once the 500-byte burst (2.5 s at this pace) has gone.
        pacer.batch(400);
        for _ in 0..4 {
            assert_eq!(pacer.wait(100, now), Duration::ZERO, "within the burst");
        }
        let later = now + Duration::from_secs(60);
        pacer.batch(4000);
        assert_eq!(pacer.wait(1000, later), Duration::ZERO);
        assert_eq!(
            pacer.wait(1000, later),
            Duration::from_millis(500),
            "2000 bytes per second is faster than the pace allows: 1000"
        );
        let much_later = later + Duration::from_secs(60);
        pacer.batch(400);
        assert_eq!(pacer.wait(500, much_later), Duration::ZERO, "the burst");
        assert_eq!(
            pacer.wait(100, much_later),
            Duration::ZERO,
            "the bucket was empty: 500 bytes at 200 per second is within the 2.5 s burst"
        );
        assert_eq!(pacer.wait(100, much_later), Duration::from_millis(500));
    }
}
