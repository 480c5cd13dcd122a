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

use super::super::spec::BuildError;
use super::otlp_http::describe;
use super::{BoxFuture, Delivered, Request, SendError, Transport};
use crate::export::plugin::PluginSlot;
use crate::export::probe::{Diagnosis, probe};
use crate::plugins::bindings::encoder::{HttpRequest, Method, Outcome, Response};
use crate::redact::redact;

/// Headers the host sets itself; a plugin's values for them are dropped (as are its values for
/// the integration's credential headers).
const HOST_OWNED: [HeaderName; 4] = [
    reqwest::header::HOST,
    reqwest::header::CONTENT_LENGTH,
    reqwest::header::TRANSFER_ENCODING,
    reqwest::header::CONNECTION,
];

/// The most bytes of a backend's answer the host reads and hands to the plugin.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Sends a plugin's requests to one HTTP(S) base URL.
#[derive(Debug)]
pub struct PluginHttp {
    base: reqwest::Url,
    http: reqwest::Client,
    credentials: HeaderMap,
    plugin: Arc<PluginSlot>,
}

/// Builds the URL for a plugin's path (and query): the path is split into segments, each
/// percent-decoded and checked, and the clean segments are joined under the endpoint's base
/// path. Refused, and named: anything but an absolute path, empty, `.` or `..` segments
/// (encoded or not), backslashes, control characters, a fragment, or bytes that are not UTF-8.
/// An empty path is the endpoint itself.
pub fn url_for(base: &reqwest::Url, path: &str) -> Result<reqwest::Url, String> {
    let refuse = |why: &str| {
        format!(
            "plugin path `{}` is refused: {why}",
            crate::redact::escape(path, 200)
        )
    };
    let (path_part, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    if path.contains('#') {
        return Err(refuse("a fragment is not part of a request"));
    }
    if path.chars().any(char::is_control) {
        return Err(refuse("it holds control characters"));
    }
    if path_part.is_empty() {
        // The endpoint itself (a remote-write URL given whole).
        let mut url = base.clone();
        url.set_query(query);
        url.set_fragment(None);
        return Ok(url);
    }
    let Some(rest) = path_part.strip_prefix('/') else {
        return Err(refuse(
            "it must start with `/` (or be empty: the endpoint itself)",
        ));
    };
    let mut segments = Vec::new();
    let parts: Vec<&str> = rest.split('/').collect();
    for (i, raw) in parts.iter().enumerate() {
        let segment = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| refuse("a segment is not UTF-8 once decoded"))?;
        let last = i + 1 == parts.len();
        match &*segment {
            "" if last => {}
            "" => return Err(refuse("it has an empty segment (`//`)")),
            "." | ".." => return Err(refuse("it has a `.` or `..` segment")),
            s if s.contains(['/', '\\']) || s.chars().any(char::is_control) => {
                return Err(refuse(
                    "a segment holds a slash, a backslash or a control character",
                ));
            }
            _ => {}
        }
        segments.push(segment);
    }
    let mut url = base.clone();
    url.set_query(query);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| refuse("the endpoint cannot take a path"))?
        .pop_if_empty()
        .extend(segments.iter().map(|s| &**s));
    Ok(url)
}

impl PluginHttp {
    /// A transport to `base` for `plugin`, adding `credentials` to every request.
    pub fn new(
        base: reqwest::Url,
        credentials: HeaderMap,
        plugin: Arc<PluginSlot>,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        credentials
            .values()
            .filter_map(|v| v.to_str().ok())
            .for_each(crate::redact::register);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("wasmtel/", env!("CARGO_PKG_VERSION")))
            .build()?;
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
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &request.headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| refused(format!("invalid request: header `{}`", k.escape_debug())))?;
            if HOST_OWNED.contains(&name) || self.credentials.contains_key(&name) {
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
                (k.as_str().to_owned(), redact(text).into_owned())
            })
            .collect();
        let body = read_capped(response).await;
        let body = redact(&String::from_utf8_lossy(&body))
            .into_owned()
            .into_bytes();
        let answer = Response {
            status,
            headers,
            body,
        };
        let plugin = self.plugin.clone();
        // A plugin call, so on the export pool, off the async worker threads.
        let outcome = crate::pool::export()
            .run(move || plugin.classify(&answer))
            .await
            .unwrap_or_else(|_| Outcome::Reject("the classify task failed".into()));
        match outcome {
            Outcome::Success => Ok(Delivered::default()),
            Outcome::Partial(p) => Ok(Delivered {
                rejected: p.rejected,
                message: Some(redact(&p.message).into_owned()),
            }),
            _ if status == 413 => Err(SendError::TooLarge(format!("{url}: HTTP 413"))),
            Outcome::Reject(reason) => Err(SendError::Rejected(format!(
                "{url}: rejected: {}",
                redact(&reason)
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
        let ok = |path: &str| url_for(&base, path).expect(path).to_string();
        assert_eq!(
            ok("/api/v2/series?x=1"),
            "https://api.example.com/base/api/v2/series?x=1"
        );
        // Decoded, checked, and encoded again the one canonical way.
        assert_eq!(
            ok("/api/se%72ies/a%20b"),
            "https://api.example.com/base/api/series/a%20b"
        );
        assert_eq!(ok("/v1/"), "https://api.example.com/base/v1/");
        assert_eq!(
            ok(""),
            "https://api.example.com/base/",
            "the endpoint itself"
        );
        assert_eq!(ok("?a=1"), "https://api.example.com/base/?a=1");
        let refused = |path: &str, why: &str| {
            let e = url_for(&base, path).expect_err(path);
            assert!(e.ends_with(why), "{path}: {e}");
        };
        for dots in [
            "/../basement/x",
            "/./../basement",
            "/%2e%2e/basement/x",
            "/%2E./basement",
            "/.%2e/basement",
            "/a/../../basement",
            "/a/./b",
        ] {
            refused(dots, "it has a `.` or `..` segment");
        }
        for empty in ["//evil.com/x", "/a//b", "///"] {
            refused(empty, "it has an empty segment (`//`)");
        }
        for smuggled in [
            "/x/..%2fbasement",
            "/x/%2F..",
            "/x%5c..%5cbasement",
            "/\\evil",
        ] {
            refused(
                smuggled,
                "a segment holds a slash, a backslash or a control character",
            );
        }
        refused(
            "/x/%00",
            "a segment holds a slash, a backslash or a control character",
        );
        refused("/x/%ff", "a segment is not UTF-8 once decoded");
        refused(
            "api",
            "it must start with `/` (or be empty: the endpoint itself)",
        );
        refused(
            "http://evil.com/",
            "it must start with `/` (or be empty: the endpoint itself)",
        );
        refused(
            "@evil.com/",
            "it must start with `/` (or be empty: the endpoint itself)",
        );
        refused("/x#frag", "a fragment is not part of a request");
        let e = url_for(&base, "/a\nb\u{1b}[31m").expect_err("control");
        assert_eq!(
            e,
            "plugin path `/a\\nb\\u{1b}[31m` is refused: it holds control characters"
        );
        let root = reqwest::Url::parse("http://127.0.0.1:9/").expect("url");
        assert_eq!(
            url_for(&root, "/v1/x").expect("path").as_str(),
            "http://127.0.0.1:9/v1/x"
        );
    }
}
