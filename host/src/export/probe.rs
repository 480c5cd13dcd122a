//! Test connection: one real request to an integration's endpoint, and a diagnosis a person
//! can act on.

use std::time::{Duration, Instant};

use reqwest::RequestBuilder;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Diagnosis {
    /// The endpoint accepted the request.
    Ok {
        /// The HTTP status.
        status: u16,
        /// How long the request took, in milliseconds.
        latency_ms: u64,
    },
    /// 401 or 403: the credentials are missing, wrong or lack permission.
    Credentials {
        /// The HTTP status.
        status: u16,
    },
    /// 404: the URL or its path is wrong.
    NotFound,
    /// Nothing answered: DNS, a refused connection, or a timeout.
    Unreachable {
        /// Which of them, in words.
        reason: String,
    },
    /// The TLS handshake failed (certificate, protocol).
    Tls {
        /// What the TLS layer said.
        reason: String,
    },
    /// The integration's settings cannot make a request at all.
    Settings {
        /// What is wrong.
        reason: String,
    },
    /// Datagrams left the host and nothing refused them; UDP cannot confirm more.
    Sent,
    /// Another status.
    Status {
        /// The HTTP status.
        status: u16,
    },
}

impl Diagnosis {
    /// Whether the endpoint works.
    pub fn is_ok(&self) -> bool {
        matches!(self, Diagnosis::Ok { .. } | Diagnosis::Sent)
    }

    /// One sentence for a person.
    pub fn message(&self) -> String {
        match self {
            Diagnosis::Ok { status, latency_ms } => {
                format!("connected: HTTP {status} in {latency_ms} ms")
            }
            Diagnosis::Credentials { status } => format!(
                "HTTP {status}: the endpoint refused the credentials; check the API key or token headers"
            ),
            Diagnosis::NotFound => {
                "HTTP 404: nothing at this URL; check the endpoint and its path".to_owned()
            }
            Diagnosis::Unreachable { reason } => format!("unreachable: {reason}"),
            Diagnosis::Tls { reason } => format!("TLS failed: {reason}"),
            Diagnosis::Settings { reason } => format!("no request was sent: {reason}"),
            Diagnosis::Sent => {
                "datagrams left the host and nothing refused them; UDP cannot confirm that they arrived".to_owned()
            }
            Diagnosis::Status { status } => {
                format!("HTTP {status}: the endpoint answered with an error")
            }
        }
    }
}

/// Sends `request` (given at most `timeout`) and diagnoses the outcome.
pub async fn probe(request: RequestBuilder, timeout: Duration) -> Diagnosis {
    let started = Instant::now();
    match request.timeout(timeout).send().await {
        Ok(response) => match response.status().as_u16() {
            status @ (401 | 403) => Diagnosis::Credentials { status },
            404 => Diagnosis::NotFound,
            status if response.status().is_success() => Diagnosis::Ok {
                status,
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
            status => Diagnosis::Status { status },
        },
        Err(e) => failure(&e, timeout),
    }
}

/// Diagnoses a request that got no answer.
fn failure(e: &reqwest::Error, timeout: Duration) -> Diagnosis {
    if e.is_timeout() {
        return Diagnosis::Unreachable {
            reason: format!("no answer within {} s", timeout.as_secs_f64()),
        };
    }
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let text = chain.join(": ").to_ascii_lowercase();
    let innermost = chain.last().cloned().unwrap_or_default();
    if text.contains("dns error") || text.contains("failed to lookup address") {
        return Diagnosis::Unreachable {
            reason: format!("the host name does not resolve ({innermost})"),
        };
    }
    if text.contains("connection refused") {
        return Diagnosis::Unreachable {
            reason: "the connection was refused: nothing listens at this address and port".into(),
        };
    }
    let tls = ["tls", "certificate", "handshake", "corrupt message", "ssl"];
    if tls.iter().any(|t| text.contains(t)) {
        return Diagnosis::Tls { reason: innermost };
    }
    Diagnosis::Unreachable { reason: innermost }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    /// A server answering every POST with `status` after `delay`.
    async fn server(status: u16, delay: Duration) -> std::net::SocketAddr {
        let app = axum::Router::new().fallback(move || async move {
            tokio::time::sleep(delay).await;
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    async fn probe_status(status: u16) -> Diagnosis {
        let addr = server(status, Duration::ZERO).await;
        probe(
            reqwest::Client::new().post(format!("http://{addr}/v1/metrics")),
            Duration::from_secs(5),
        )
        .await
    }

    #[tokio::test]
    async fn each_outcome_gets_a_diagnosis_a_person_can_act_on() {
        let ok = probe_status(200).await;
        assert!(matches!(ok, Diagnosis::Ok { status: 200, .. }), "{ok:?}");
        assert!(ok.message().starts_with("connected: HTTP 200 in "));
        assert_eq!(
            probe_status(401).await,
            Diagnosis::Credentials { status: 401 }
        );
        assert_eq!(
            probe_status(403).await,
            Diagnosis::Credentials { status: 403 }
        );
        assert_eq!(probe_status(404).await, Diagnosis::NotFound);
        assert_eq!(probe_status(500).await, Diagnosis::Status { status: 500 });
        assert!(probe_status(401).await.message().contains("credentials"));

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let refused = probe(
            reqwest::Client::new().post(format!("http://{closed}/")),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            refused.message(),
            "unreachable: the connection was refused: nothing listens at this address and port"
        );

        let slow = server(200, Duration::from_secs(5)).await;
        let timeout = probe(
            reqwest::Client::new().post(format!("http://{slow}/")),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(timeout.message(), "unreachable: no answer within 0.2 s");

        let dns = probe(
            reqwest::Client::new().post("http://no-such-host.invalid/"),
            Duration::from_secs(5),
        )
        .await;
        assert!(
            dns.message()
                .starts_with("unreachable: the host name does not resolve"),
            "{dns:?}"
        );

        // An https:// URL at a plain-HTTP server fails in the handshake.
        let plain = server(200, Duration::ZERO).await;
        let tls = probe(
            reqwest::Client::new().post(format!("https://{plain}/")),
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(tls, Diagnosis::Tls { .. }), "{tls:?}");
    }
}
