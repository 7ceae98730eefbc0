//! Traces: OpenTelemetry spans exported by OTLP over HTTP/protobuf, off
//! unless `tracing_provider: otlp` (or `OTEL_TRACES_EXPORTER=otlp`) asks for
//! them. [`init`] installs the one tracer provider of the process: a
//! parent-based ratio sampler, a batch processor on a thread of its own (a
//! full queue drops spans, it never waits) and an exporter whose HTTP calls
//! run on the Tokio runtime that called [`init`]. A failed export is a
//! counter ([`export_failures`], in `/metrics`) and at most one warning line
//! a minute; it never reaches a request.
//!
//! The request path asks [`enabled`] (one relaxed atomic load) before it
//! does anything else, so with tracing off a request pays for that load
//! only. What the spans carry is written in `proxy::trace`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter, Tracer,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The `service.name` of every span.
pub const SERVICE_NAME: &str = "jetbridge";

/// The path OTLP/HTTP receivers serve traces on, added to a base endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most one export-failure warning per this many seconds.
const WARN_EVERY_SECS: u64 = 60;

/// A tracing setting jetbridge cannot use (named by its config key).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TracesError {
    /// `tracing_provider` other than `otlp` or `none`.
    #[error("tracing_provider {0:?}: expected otlp or none")]
    Provider(String),
    /// `tracing_otlp_protocol` other than `http/protobuf`.
    #[error("tracing_otlp_protocol {0:?}: expected http/protobuf (grpc is not supported)")]
    Protocol(String),
    /// `tracing_sample_rate` outside 0..=1.
    #[error("tracing_sample_rate {0}: expected a ratio from 0 to 1")]
    SampleRate(f64),
    /// `tracing_otlp_endpoint` missing or not an http(s) URL.
    #[error(
        "tracing_otlp_endpoint {0:?}: expected an http:// or https:// URL of the OTLP receiver"
    )]
    Endpoint(String),
    /// The exporter could not be built (its message).
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// The tracing keys as written (config file first, then environment).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keys {
    /// `tracing_provider` / `OTEL_TRACES_EXPORTER`.
    pub provider: Option<String>,
    /// `tracing_sample_rate` / `OTEL_TRACES_SAMPLER_ARG`.
    pub sample_rate: Option<f64>,
    /// `tracing_otlp_endpoint` / `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `tracing_otlp_protocol` / `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: Option<String>,
}

/// Checked settings of an exporting process.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSettings {
    /// The full URL spans are posted to (`…/v1/traces`).
    pub traces_url: String,
    /// The ratio of new traces sampled; a client's sampled flag decides for
    /// the traces it continues.
    pub sample_rate: f64,
}

impl Keys {
    /// Fills what the config file left unset from the OpenTelemetry
    /// environment variables (`env` reads one).
    pub fn or_env(mut self, env: impl Fn(&str) -> Option<String>) -> Self {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        self.provider = self.provider.or_else(|| env("OTEL_TRACES_EXPORTER"));
        self.endpoint = self
            .endpoint
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").map(|u| u + "#signal"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        self.protocol = self
            .protocol
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
        self.sample_rate = self
            .sample_rate
            .or_else(|| env("OTEL_TRACES_SAMPLER_ARG").and_then(|v| v.trim().parse::<f64>().ok()));
        self
    }

    /// `None` when tracing is off (no provider, or `none`), else the
    /// checked settings.
    pub fn settings(&self) -> Result<Option<TraceSettings>, TracesError> {
        let provider = self
            .provider
            .as_deref()
            .map(|p| p.trim().to_ascii_lowercase());
        match provider.as_deref() {
            None | Some("" | "none") => return Ok(None),
            Some("otlp") => {}
            Some(other) => return Err(TracesError::Provider(other.to_string())),
        }
        if let Some(p) = &self.protocol
            && !p.trim().eq_ignore_ascii_case("http/protobuf")
        {
            return Err(TracesError::Protocol(p.clone()));
        }
        let sample_rate = self.sample_rate.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_rate) {
            return Err(TracesError::SampleRate(sample_rate));
        }
        let raw = self.endpoint.clone().unwrap_or_default();
        Ok(Some(TraceSettings {
            traces_url: traces_url(&raw)?,
            sample_rate,
        }))
    }
}

/// The URL spans are posted to: a base endpoint gets `/v1/traces`; the
/// signal's own endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, marked
/// `#signal` by [`Keys::or_env`]) and a URL already ending in it are used
/// as they are.
fn traces_url(raw: &str) -> Result<String, TracesError> {
    let bad = || TracesError::Endpoint(raw.to_string());
    let (raw_url, signal) = match raw.trim().strip_suffix("#signal") {
        Some(u) => (u, true),
        None => (raw.trim(), false),
    };
    let url = url::Url::parse(raw_url).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad());
    }
    let base = raw_url.trim_end_matches('/');
    if signal || base.ends_with(TRACES_PATH) {
        return Ok(raw_url.to_string());
    }
    Ok(format!("{base}{TRACES_PATH}"))
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static PROVIDER: OnceLock<(SdkTracerProvider, Tracer)> = OnceLock::new();
static EXPORT_FAILURES: AtomicU64 = AtomicU64::new(0);
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

/// Whether spans are made (tracing configured and [`init`] succeeded).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The process's tracer, once [`init`] installed one.
pub fn tracer() -> Option<&'static Tracer> {
    PROVIDER.get().map(|(_, t)| t)
}

/// Exports that failed since the process started.
pub fn export_failures() -> u64 {
    EXPORT_FAILURES.load(Ordering::Relaxed)
}

/// Installs the tracer provider (once per process; later calls keep the
/// first). Must run inside the Tokio runtime the exports are to use.
pub fn init(settings: &TraceSettings) -> Result<(), TracesError> {
    if PROVIDER.get().is_some() {
        return Ok(());
    }
    let runtime =
        tokio::runtime::Handle::try_current().map_err(|e| TracesError::Exporter(e.to_string()))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = opentelemetry_http::hyper::HyperClient::new(connector, EXPORT_TIMEOUT, None);
    let otlp = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(settings.traces_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TracesError::Exporter(e.to_string()))?;
    let exporter = CountingExporter {
        inner: Arc::new(otlp),
        runtime,
    };
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(SERVICE_NAME)
        .build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_rate)));
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_sampler(sampler)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(SERVICE_NAME);
    if PROVIDER.set((provider, tracer)).is_ok() {
        ENABLED.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Stops making spans and exports what is queued (blocks up to the export
/// timeout; call it off the runtime's worker threads).
pub fn shutdown() {
    ENABLED.store(false, Ordering::Relaxed);
    if let Some((provider, _)) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "traces: flushing the last spans failed");
    }
}

/// Counts a failed export and warns, at most once a minute.
fn export_failed(error: &OTelSdkError) {
    let failures = EXPORT_FAILURES.fetch_add(1, Ordering::Relaxed) + 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now.saturating_sub(last) < WARN_EVERY_SECS && last != 0 {
        return;
    }
    if LAST_WARNING
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        tracing::warn!(
            error = %error,
            failures,
            "traces: exporting spans to the OTLP receiver failed; the spans are dropped \
             (jetbridge_trace_export_failures_total counts failures)"
        );
    }
}

/// The OTLP exporter, run on the Tokio runtime (the batch processor's
/// thread has none), with its failures counted.
#[derive(Debug)]
struct CountingExporter {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        let result = match self
            .runtime
            .spawn(async move { inner.export(batch).await })
            .await
        {
            Ok(r) => r,
            Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
        };
        if let Err(e) = &result {
            export_failed(e);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(provider: Option<&str>, endpoint: Option<&str>) -> Keys {
        Keys {
            provider: provider.map(str::to_string),
            endpoint: endpoint.map(str::to_string),
            ..Keys::default()
        }
    }

    #[test]
    fn tracing_is_off_unless_a_provider_is_named() {
        assert_eq!(keys(None, Some("http://c:4318")).settings(), Ok(None));
        assert_eq!(
            keys(Some("none"), Some("http://c:4318")).settings(),
            Ok(None)
        );
        assert_eq!(keys(Some(""), None).settings(), Ok(None));
        let on = keys(Some("OTLP"), Some("http://c:4318"))
            .settings()
            .unwrap();
        let on = on.expect("on");
        assert_eq!(on.traces_url, "http://c:4318/v1/traces");
        assert_eq!(on.sample_rate, 1.0);
    }

    #[test]
    fn endpoints_get_the_traces_path_once_and_bad_ones_are_refused() {
        for (raw, want) in [
            ("http://c:4318", "http://c:4318/v1/traces"),
            ("http://c:4318/", "http://c:4318/v1/traces"),
            ("https://c/otel", "https://c/otel/v1/traces"),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
        ] {
            assert_eq!(traces_url(raw).as_deref(), Ok(want), "{raw}");
        }
        for bad in [
            "",
            "c:4318",
            "ftp://c/",
            "http://",
            "http://c/?k=v",
            "not a url",
        ] {
            let e = keys(Some("otlp"), Some(bad)).settings().unwrap_err();
            assert!(
                e.to_string().contains("tracing_otlp_endpoint"),
                "{bad}: {e}"
            );
        }
        assert!(keys(Some("otlp"), None).settings().is_err());
    }

    #[test]
    fn unknown_providers_protocols_and_rates_are_refused_by_key() {
        let e = keys(Some("jaeger"), Some("http://c"))
            .settings()
            .unwrap_err();
        assert!(e.to_string().contains("tracing_provider \"jaeger\""), "{e}");
        let mut k = keys(Some("otlp"), Some("http://c"));
        k.protocol = Some("grpc".into());
        assert!(matches!(k.settings(), Err(TracesError::Protocol(_))));
        k.protocol = Some("HTTP/protobuf".into());
        assert!(k.settings().is_ok());
        for rate in [-0.1, 1.5, f64::NAN] {
            k.sample_rate = Some(rate);
            let e = k.settings().unwrap_err();
            assert!(e.to_string().contains("tracing_sample_rate"), "{rate}: {e}");
        }
        k.sample_rate = Some(0.0);
        assert_eq!(k.settings().unwrap().unwrap().sample_rate, 0.0);
    }

    #[test]
    fn the_environment_fills_only_what_the_file_left_unset() {
        let env = |k: &str| match k {
            "OTEL_TRACES_EXPORTER" => Some("otlp".to_string()),
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://env:4318".to_string()),
            "OTEL_TRACES_SAMPLER_ARG" => Some("0.25".to_string()),
            _ => None,
        };
        let s = Keys::default().or_env(env).settings().unwrap().unwrap();
        assert_eq!(s.traces_url, "http://env:4318/v1/traces");
        assert_eq!(s.sample_rate, 0.25);
        let file = keys(Some("none"), Some("http://file:4318")).or_env(env);
        assert_eq!(file.settings(), Ok(None));
        let file = keys(None, Some("http://file:4318")).or_env(env);
        let s = file.settings().unwrap().unwrap();
        assert_eq!(s.traces_url, "http://file:4318/v1/traces");
        let signal = |k: &str| match k {
            "OTEL_TRACES_EXPORTER" => Some("otlp".to_string()),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some("http://env:4318/custom".to_string()),
            _ => None,
        };
        let s = Keys::default().or_env(signal).settings().unwrap().unwrap();
        assert_eq!(s.traces_url, "http://env:4318/custom");
    }
}
