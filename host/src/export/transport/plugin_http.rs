//! The plugin HTTP transport: an exporter plugin's request sent to the integration's endpoint.
//!
//! A plugin chooses only the path (and query) of a request, never the scheme, host or port,
//! and the path stays under the endpoint's own path. The host adds the integration's
//! credential headers after the plugin's own, so a plugin can neither read nor override them,
//! and the plugin classifies the answer (retry, reject, partial success). A backend's answer
//! is cut to [`MAX_ANSWER`] bytes, and any credential it echoes is redacted before the plugin
//! or a log line sees it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::otlp_http::describe;
use super::{BoxFuture, Delivered, Request, SendError, Transport};
use crate::export::plugin::PluginSlot;
use crate::export::probe::{Diagnosis, probe};
use crate::plugins::bindings::encoder::{HttpRequest, Outcome, Response};

/// The most bytes of a backend's answer the host reads and hands to the plugin.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Sends a plugin's requests to one HTTP(S) base URL.
pub struct PluginHttp {
    base: reqwest::Url,
    http: reqwest::Client,
    credentials: HeaderMap,
    plugin: Arc<PluginSlot>,
}

/// Builds the URL for a plugin's path: only a path (and query) under the endpoint's base path.
pub fn url_for(base: &reqwest::Url, path: &str) -> Result<reqwest::Url, String> {
    let bad = || {
        format!(
            "plugin path `{}` is not a path on the endpoint",
            path.escape_debug()
        )
    };
    let (path_part, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let dot_segment = path_part.split('/').any(|seg| {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    let lower = path.to_ascii_lowercase();
    if !path.starts_with('/')
        || path.starts_with("//")
        || dot_segment
        || path.contains(['\\', '#'])
        || lower.contains("%2f")
        || lower.contains("%5c")
        || path.chars().any(char::is_control)
    {
        return Err(bad());
    }
    let base_path = base.path().trim_end_matches('/');
    let mut url = base.clone();
    url.set_path(&format!("{base_path}{path_part}"));
    url.set_query(query);
    url.set_fragment(None);
    let same_origin = url.scheme() == base.scheme()
        && url.host() == base.host()
        && url.port_or_known_default() == base.port_or_known_default();
    let under = url.path() == base_path || url.path().starts_with(&format!("{base_path}/"));
    if !same_origin || !under {
        return Err(bad());
    }
    Ok(url)
}

/// `text` with every credential value in it replaced, so that an echo never leaves the host.
pub fn redact(text: &str, credentials: &HeaderMap) -> String {
    let mut out = text.to_owned();
    for value in credentials.values() {
        if let Ok(v) = value.to_str()
            && v.len() >= 4
        {
            out = out.replace(v, "[redacted]");
        }
    }
    out
}

impl PluginHttp {
    /// A transport to `base` for `plugin`, adding `credentials` to every request.
    pub fn new(
        base: reqwest::Url,
        credentials: HeaderMap,
        plugin: Arc<PluginSlot>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("wasmtel/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base,
            http,
            credentials,
            plugin,
        })
    }

    /// The request a plugin asked for, with the host's credentials: or why it cannot be sent.
    fn build(&self, request: &HttpRequest) -> Result<reqwest::RequestBuilder, SendError> {
        let refused = SendError::Rejected;
        let url = url_for(&self.base, &request.path).map_err(refused)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| refused(format!("invalid request: method `{}`", request.method)))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &request.headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| refused(format!("invalid request: header `{}`", k.escape_debug())))?;
            if name == reqwest::header::HOST {
                continue;
            }
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|_| refused(format!("invalid request: value of `{k}`")))?;
            headers.append(name, value);
        }
        for (name, value) in &self.credentials {
            headers.insert(name.clone(), value.clone());
        }
        Ok(self
            .http
            .request(method, url)
            .headers(headers)
            .body(request.body.clone()))
    }

    /// Sends one plugin request and lets the plugin classify the answer.
    async fn post(&self, request: &HttpRequest) -> Result<Delivered, SendError> {
        let url = url_for(&self.base, &request.path).map_err(SendError::Rejected)?;
        let response = match self.build(request)?.send().await {
            Ok(r) => r,
            Err(e) => return Err(SendError::retryable(format!("{url}: {}", describe(&e)))),
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let text = v.to_str().unwrap_or("");
                (k.as_str().to_owned(), redact(text, &self.credentials))
            })
            .collect();
        let body = read_capped(response).await;
        let body = redact(&String::from_utf8_lossy(&body), &self.credentials).into_bytes();
        let answer = Response {
            status,
            headers,
            body,
        };
        let plugin = self.plugin.clone();
        // A plugin call, so off the async worker threads.
        let outcome = tokio::task::spawn_blocking(move || plugin.classify(&answer))
            .await
            .unwrap_or_else(|_| Outcome::Reject("the classify task failed".into()));
        let redacted = |text: &str| redact(text, &self.credentials);
        match outcome {
            Outcome::Success => Ok(Delivered::default()),
            Outcome::Partial(p) => Ok(Delivered {
                rejected: p.rejected,
                message: Some(redacted(&p.message)),
            }),
            _ if status == 413 => Err(SendError::TooLarge(format!("{url}: HTTP 413"))),
            Outcome::Reject(reason) => Err(SendError::Rejected(format!(
                "{url}: rejected: {}",
                redacted(&reason)
            ))),
            Outcome::Retry(after) => Err(SendError::Retryable {
                reason: format!("{url}: HTTP {status}"),
                after: after.map(Duration::from_millis),
            }),
        }
    }
}

/// Reads at most [`MAX_ANSWER`] bytes of a response body.
async fn read_capped(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER {
            break;
        }
    }
    body
}

impl Transport for PluginHttp {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            match request {
                Request::Http(r) => self.post(r).await,
                other => Err(SendError::wrong_kind(other, "an HTTP endpoint")),
            }
        })
    }

    fn endpoint(&self) -> String {
        self.base.to_string()
    }

    /// POSTs an empty body with the credentials to the endpoint's base URL.
    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Diagnosis> {
        let request = self
            .http
            .post(self.base.clone())
            .headers(self.credentials.clone());
        Box::pin(probe(request, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_paths_stay_under_the_endpoint_path() {
        let base = reqwest::Url::parse("https://api.example.com/base/").expect("url");
        assert_eq!(
            url_for(&base, "/api/v2/series?x=1").expect("path").as_str(),
            "https://api.example.com/base/api/v2/series?x=1"
        );
        for bad in [
            "api",
            "//evil.com/x",
            "http://evil.com/",
            "/\\evil",
            "/x#frag",
            "/a\nb",
            "@evil.com/",
            "/../basement/x",
            "/./../basement",
            "/%2e%2e/basement/x",
            "/%2E./basement",
            "/x/..%2fbasement",
            "/a/../../basement",
        ] {
            assert!(url_for(&base, bad).is_err(), "{bad} must be refused");
        }
        let root = reqwest::Url::parse("http://127.0.0.1:9/").expect("url");
        assert_eq!(
            url_for(&root, "/v1/x").expect("path").as_str(),
            "http://127.0.0.1:9/v1/x"
        );
    }

    #[test]
    fn echoed_credentials_are_redacted() {
        let mut creds = HeaderMap::new();
        creds.insert("dd-api-key", HeaderValue::from_static("s3cr3t-key"));
        assert_eq!(
            redact("bad request: header DD-API-KEY=s3cr3t-key", &creds),
            "bad request: header DD-API-KEY=[redacted]"
        );
    }
}
