//! The in-memory JWKS cache: fetch once, re-fetch on an unknown `kid`,
//! rate-limited, one fetch at a time shared by every waiting caller.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use p256::ecdsa::VerifyingKey;
use url::Url;

use super::VerifyError;
use super::jwks::{self, KeySet};

/// Whole-fetch deadline: connect, TLS, headers and body.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS body accepted.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// After a failed fetch, callers wait at least this long (or the re-fetch
/// interval, if shorter) before the next attempt; they get the failure meanwhile.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

pub(crate) struct JwksCache {
    url: Url,
    client: HttpClient,
    refetch_min_interval: Duration,
    /// `None` until the first successful fetch. Read without locking.
    keys: ArcSwapOption<KeySet>,
    /// Counts finished fetches; a caller that waited for the fetch lock and
    /// sees it changed shares that fetch's outcome instead of fetching again.
    fetches: AtomicU64,
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    /// Start of the last re-fetch caused by an unknown `kid` (the initial load does not count).
    last_refetch: Option<Instant>,
    /// When and why the last attempt failed; cleared by a success.
    last_failure: Option<(Instant, VerifyError)>,
}

impl JwksCache {
    pub(crate) fn new(url: Url, refetch_min_interval: Duration) -> Result<Self, VerifyError> {
        Ok(Self {
            client: http_client()?,
            url,
            refetch_min_interval,
            keys: ArcSwapOption::empty(),
            fetches: AtomicU64::new(0),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        })
    }

    /// The keys published under `kid`, fetching the JWKS if it is not loaded
    /// yet or does not contain `kid` (subject to the rate limit).
    pub(crate) async fn keys_for(&self, kid: &str) -> Result<Vec<VerifyingKey>, VerifyError> {
        if let Some(found) = lookup(self.keys.load_full().as_deref(), kid) {
            return Ok(found);
        }
        let seen = self.fetches.load(Ordering::Acquire);
        let mut state = self.fetch.lock().await;
        let current = self.keys.load_full();
        if let Some(found) = lookup(current.as_deref(), kid) {
            return Ok(found);
        }
        if self.fetches.load(Ordering::Acquire) != seen {
            // Someone fetched while we waited for the lock: share their outcome.
            return Err(self.shared_outcome_error(&state, current.is_some(), kid));
        }

        let now = Instant::now();
        let backoff = FAILURE_BACKOFF.min(self.refetch_min_interval);
        if let Some((at, err)) = &state.last_failure
            && now.duration_since(*at) < backoff
        {
            return Err(err.clone());
        }
        let refetch = current.is_some();
        if refetch
            && let Some(at) = state.last_refetch
            && now.duration_since(at) < self.refetch_min_interval
        {
            tracing::debug!(kid, "unknown kid; JWKS re-fetch is rate-limited");
            return Err(VerifyError::UnknownKid(kid.to_owned()));
        }

        // Nothing is recorded before the fetch finishes, so a caller dropped
        // mid-fetch leaves the next waiter free to fetch instead.
        let outcome = self.fetch_once().await;
        if refetch {
            state.last_refetch = Some(now);
        }
        let result = match outcome {
            Ok(set) => {
                tracing::debug!(url = %self.url, keys = set.len(), "fetched JWKS");
                if set.len() == 0 {
                    tracing::warn!(url = %self.url, "the JWKS holds no usable ES256 key");
                }
                let set = Arc::new(set);
                self.keys.store(Some(set.clone()));
                state.last_failure = None;
                lookup(Some(&set), kid).ok_or_else(|| VerifyError::UnknownKid(kid.to_owned()))
            }
            Err(err) => {
                tracing::warn!(url = %self.url, "{err}");
                state.last_failure = Some((now, err.clone()));
                Err(err)
            }
        };
        // Counted once its outcome is recorded, still under the lock: every
        // caller that read the count before this and is waiting for the lock
        // shares this outcome instead of fetching again.
        self.fetches.fetch_add(1, Ordering::Release);
        result
    }

    fn shared_outcome_error(&self, state: &FetchState, loaded: bool, kid: &str) -> VerifyError {
        match &state.last_failure {
            Some((_, err)) => err.clone(),
            None if loaded => VerifyError::UnknownKid(kid.to_owned()),
            None => VerifyError::JwksFetch {
                url: self.url.to_string(),
                reason: "the JWKS is not loaded".into(),
            },
        }
    }

    async fn fetch_once(&self) -> Result<KeySet, VerifyError> {
        let fail = |reason: String| VerifyError::JwksFetch {
            url: self.url.to_string(),
            reason,
        };
        let fetch = async {
            let request = Request::get(self.url.as_str())
                .header(ACCEPT, "application/json")
                .header(
                    USER_AGENT,
                    concat!("jetbridge-verify/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::<Bytes>::new())
                .map_err(|e| fail(e.to_string()))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(error_chain(&e)))?;
            if response.status() != StatusCode::OK {
                return Err(fail(format!("HTTP status {}", response.status())));
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_BODY as u64) {
                return Err(fail(format!("the body is larger than {MAX_BODY} bytes")));
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        fail(format!("the body is larger than {MAX_BODY} bytes"))
                    } else {
                        fail(format!("reading the body: {}", error_chain(&*e)))
                    }
                })?
                .to_bytes();
            jwks::parse(&body).map_err(|e| fail(e.to_string()))
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| fail(format!("no complete answer within {FETCH_TIMEOUT:?}")))?
    }
}

fn lookup(set: Option<&KeySet>, kid: &str) -> Option<Vec<VerifyingKey>> {
    set.and_then(|s| s.get(kid)).map(<[VerifyingKey]>::to_vec)
}

/// An HTTP(S) client with its own rustls configuration (aws-lc-rs), trusting the
/// system's roots when there are any (`SSL_CERT_FILE` is honoured), else Mozilla's.
fn http_client() -> Result<HttpClient, VerifyError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| VerifyError::InvalidConfig(format!("TLS client set-up: {e}")))
    };
    let tls = match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) => {
            tracing::debug!("no system root certificates ({e}); using the Mozilla roots");
            builder()?.with_webpki_roots().with_no_client_auth()
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// `error: cause: cause`, because hyper's top-level messages are terse.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
