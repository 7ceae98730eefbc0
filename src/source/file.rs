//! The config-file source: reads the file and every file it names, turns a
//! reading into [`Inputs`] through [`crate::translate::config`], and watches
//! it so that every valid edit publishes a new snapshot. An invalid edit
//! keeps the last good snapshot and is logged with the reason.

use super::{read_one, read_referenced};
use crate::model::{Diagnostic, Severity};
use crate::proxy::dataplane::Addresses;
use crate::settings::ConfigFile;
use crate::translate::Inputs;
use crate::translate::config::{
    ConfigError, Files, Generated, Provenance, ReloadError, Unreadable, inputs_from_parts, locate,
};
use crate::translate::driver::Driver;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a reading of the config file is refused; the running configuration
/// (if any) stays. Every message starts with the file's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {error}")]
    Unreadable { path: String, error: String },
    /// The file is not UTF-8 text.
    #[error("{0}: not UTF-8 text")]
    NotText(String),
    /// The file does not parse (secret values are redacted from `message`).
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// The file is valid but would lose what the running configuration has.
    #[error("{path}: {error}")]
    Reload { path: String, error: ReloadError },
    /// A secret or a global setting cannot be used (secret values redacted).
    #[error("{path}: {error}")]
    Config { path: String, error: ConfigError },
    /// Routes with errors: a config file is all or nothing.
    #[error("{path}: {}", join(.errors))]
    Routes {
        path: String,
        errors: Vec<Diagnostic>,
    },
}

impl From<crate::settings::SettingsError> for FileError {
    fn from(e: crate::settings::SettingsError) -> Self {
        use crate::settings::SettingsError;
        match e {
            SettingsError::Read { path, source } => FileError::Unreadable {
                path,
                error: source.to_string(),
            },
            SettingsError::Parse { path, message } => FileError::Parse { path, message },
        }
    }
}

/// Diagnostics as one line, `; `-separated.
fn join(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// A listener address the file (or a flag) gives that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not `host:port`.
    #[error("address {0:?}: expected host:port, e.g. :8443 or 127.0.0.1:8443")]
    Address(String),
    /// `public_https_port: 0`.
    #[error("public_https_port 0: expected the HTTPS port users reach, e.g. 443")]
    PublicPortZero,
}

/// Parses `:443`, `0.0.0.0:443`, `127.0.0.1:8443`, `localhost:8443`, `[::1]:443`.
pub fn parse_address(text: &str) -> Result<SocketAddr, AddressError> {
    let t = text.trim();
    let t = if let Some(port) = t.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = t.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        t.to_string()
    };
    t.parse()
        .map_err(|_| AddressError::Address(text.to_string()))
}

/// The listeners named by the file, with defaults (changing them needs a
/// restart).
pub fn addresses(cfg: &ConfigFile) -> Result<Addresses, AddressError> {
    Ok(Addresses {
        https: parse_address(cfg.address.as_deref().unwrap_or(":8443"))?,
        http_redirect: cfg
            .http_redirect_address
            .as_deref()
            .map(parse_address)
            .transpose()?,
        internal: cfg
            .internal_address
            .as_deref()
            .or(cfg.metrics_address.as_deref())
            .map(parse_address)
            .transpose()?,
        insecure: cfg.insecure_server.unwrap_or(false),
        public_https_port: cfg.public_https_port.map(check_public_port).transpose()?,
        client_addr: crate::proxy::client_addr::ClientAddrSettings {
            proxy_protocol: cfg.use_proxy_protocol.unwrap_or(false),
            xff_trusted_hops: cfg.xff_num_trusted_hops.unwrap_or(0),
            skip_xff_append: cfg.skip_xff_append.unwrap_or(false),
        },
    })
}

/// Refuses port 0 as a public port (it names no port a browser can reach).
fn check_public_port(port: u16) -> Result<u16, AddressError> {
    match port {
        0 => Err(AddressError::PublicPortZero),
        p => Ok(p),
    }
}

/// Adds one referenced file, as read, to a reading's fingerprint.
fn hash_file(hash: &mut sha2::Sha256, name: &str, content: &Result<String, Unreadable>) {
    use sha2::Digest;
    hash.update(name.as_bytes());
    match content {
        Ok(c) => hash.update(c.as_bytes()),
        Err(e) => hash.update(e.0.as_bytes()),
    }
}

/// Builds translation inputs from a parsed config file. Errors here are
/// global (the whole file is rejected); per-route problems become
/// diagnostics in translation.
pub fn inputs_from_config(
    cfg: &ConfigFile,
    generated: &mut Generated,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Inputs, ConfigError> {
    inputs_from_parts(cfg, &read_referenced(cfg), generated, warnings)
}

/// One reading of the config file and of every file it names, with a
/// fingerprint of all of their bytes (a change to a certificate or key file
/// is a change too).
pub struct Reading {
    pub fingerprint: [u8; 32],
    /// The parsed file and its referenced files, or why it cannot be used.
    pub parsed: Result<(ConfigFile, Files), FileError>,
    /// SHA-256 of the config file's bytes alone.
    text: [u8; 32],
}

/// What the watch loop keeps of the last full reading, so that a file whose
/// bytes have not changed is not parsed again on every tick (with 10 000
/// routes a parse is tens of milliseconds, five times a second).
struct Seen {
    text: [u8; 32],
    /// The files it named (none when it did not parse).
    files: Vec<String>,
}

impl Seen {
    fn of(r: &Reading) -> Seen {
        Seen {
            text: r.text,
            files: match &r.parsed {
                Ok((_, files)) => files.keys().cloned().collect(),
                Err(_) => Vec::new(),
            },
        }
    }

    /// The fingerprint [`Reading::read`] would give now, without parsing,
    /// if the config file's bytes are those seen; `None` when they differ
    /// or cannot be read (a full reading is due).
    fn fingerprint(&self, path: &str) -> Option<[u8; 32]> {
        use sha2::Digest;
        let bytes = std::fs::read(path).ok()?;
        if <[u8; 32]>::from(sha2::Sha256::digest(&bytes)) != self.text {
            return None;
        }
        let mut hash = sha2::Sha256::new();
        hash.update(&bytes);
        for name in &self.files {
            hash_file(&mut hash, name, &read_one(name));
        }
        Some(hash.finalize().into())
    }
}

impl Reading {
    /// Reads `path` (following symlinks, so Kubernetes' atomic `..data`
    /// swap of mounted ConfigMaps and Secrets is seen as one change).
    pub fn read(path: &str) -> Reading {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        let text = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                hash.update(b"unreadable");
                return Reading {
                    fingerprint: hash.finalize().into(),
                    parsed: Err(FileError::Unreadable {
                        path: path.to_string(),
                        error: e.to_string(),
                    }),
                    text: [0; 32],
                };
            }
        };
        let text_hash = sha2::Sha256::digest(&text).into();
        hash.update(&text);
        let parsed = String::from_utf8(text)
            .map_err(|_| FileError::NotText(path.to_string()))
            .and_then(|text| {
                ConfigFile::parse(path, &text)
                    .map_err(FileError::from)
                    .map(|cfg| {
                        let files = read_referenced(&cfg);
                        for (name, content) in &files {
                            hash_file(&mut hash, name, content);
                        }
                        (cfg, files)
                    })
            });
        Reading {
            fingerprint: hash.finalize().into(),
            parsed,
            text: text_hash,
        }
    }
}

/// Loads, translates and publishes the file. Returns the warnings, or the
/// reason the file was rejected (the current snapshot then stays).
pub fn load_and_publish(
    path: &str,
    driver: &mut Driver,
    generated: &mut Generated,
    now: i64,
) -> Result<(Option<u64>, Vec<Diagnostic>), FileError> {
    apply(path, &Reading::read(path), driver, generated, now)
}

/// Translates and publishes one reading, unless it is unusable or would
/// lose what the running configuration has (see [`Provenance::check_reload`]).
pub fn apply(
    path: &str,
    reading: &Reading,
    driver: &mut Driver,
    generated: &mut Generated,
    now: i64,
) -> Result<(Option<u64>, Vec<Diagnostic>), FileError> {
    let (cfg, files) = reading.parsed.as_ref().map_err(Clone::clone)?;
    let provenance = Provenance::of(cfg);
    if let Some(running) = generated.running() {
        running
            .check_reload(&provenance)
            .map_err(|error| FileError::Reload {
                path: path.to_string(),
                error,
            })?;
    }
    let mut warnings = Vec::new();
    let inputs =
        inputs_from_parts(cfg, files, generated, &mut warnings).map_err(|e| FileError::Config {
            path: path.to_string(),
            error: e.redacted(),
        })?;
    // A config file is all or nothing: any error refuses the whole reading.
    let applied = driver.apply(inputs, now, |snapshot| {
        let errors: Vec<Diagnostic> = snapshot
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| redacted(locate(d, cfg)))
            .collect();
        match errors.is_empty() {
            true => Ok(()),
            false => Err(FileError::Routes {
                path: path.to_string(),
                errors,
            }),
        }
    })?;
    warnings.extend(applied.diagnostics.iter().map(|d| locate(d, cfg)));
    generated.set_running(provenance);
    Ok((applied.generation, warnings))
}

/// `d` with secret-looking values removed from its message, to be logged.
fn redacted(mut d: Diagnostic) -> Diagnostic {
    d.message = crate::settings::redact_secrets(&d.message, "");
    d
}

/// Applies `log_level` and `access_log` of a reading that was accepted.
fn apply_log_settings(path: &str, reading: &Reading) {
    if let Ok((cfg, _)) = &reading.parsed {
        cfg.apply_decision_log();
        match crate::telemetry::set_level(cfg.log_level.as_deref(), cfg.access_log.unwrap_or(true))
        {
            Ok(true) => {
                tracing::info!(path = %path, level = cfg.log_level.as_deref().unwrap_or("info"), "log level changed")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(path = %path, "{e}"),
        }
    }
}

/// How often the file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a changed file must stay unchanged before it is read as the new
/// configuration (an in-place rewrite is never caught half-way).
pub const SETTLE_TIME: Duration = Duration::from_millis(600);

/// Polls the file and republishes on change until `shutdown` is cancelled.
/// A change is applied once the file (and every file it names) has stayed
/// the same for [`SETTLE_TIME`]; an unusable reading is a reload failure
/// that keeps the running configuration.
/// `applied` is the fingerprint of the reading already published.
pub async fn watch(
    path: String,
    applied: [u8; 32],
    mut driver: Driver,
    mut generated: Generated,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut look = Look {
        applied,
        pending: None,
        seen: None,
    };
    // The last reading was refused: the next accepted one says so.
    let mut rejected = false;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = crate::proxy::clock::unix_now();
        let retired_due = driver.next_key_expiry(now).is_some_and(|s| s == 0);
        let Some(reading) = look.settled(&path, retired_due) else {
            continue;
        };
        let outcome = apply(&path, &reading, &mut driver, &mut generated, now);
        if outcome.is_ok() && std::mem::take(&mut rejected) {
            tracing::info!(path = %path, "configuration accepted again: the file that was rejected is fixed");
        }
        rejected = outcome.is_err();
        report_reload(&path, &reading, &driver, outcome);
        drop(reading);
        crate::memory::release();
    }
}

/// What the watch loop knows between ticks.
struct Look {
    /// The fingerprint of the reading last applied.
    applied: [u8; 32],
    /// A changed fingerprint and since when it has been the same.
    pending: Option<([u8; 32], tokio::time::Instant)>,
    /// The last full reading, to look again without parsing.
    seen: Option<Seen>,
}

impl Look {
    /// A full reading, remembered for the next quick look.
    fn read(&mut self, path: &str) -> Reading {
        let r = Reading::read(path);
        self.seen = Some(Seen::of(&r));
        r
    }

    /// The reading to apply now: one that changed and then stayed the same
    /// for [`SETTLE_TIME`], or the running one again when a retired key is
    /// due to go. The file is parsed only when its bytes changed since the
    /// last full reading; otherwise its and its files' bytes are hashed.
    fn settled(&mut self, path: &str, retired_due: bool) -> Option<Reading> {
        let quick = self.seen.as_ref().and_then(|s| s.fingerprint(path));
        let (fingerprint, mut reading) = match quick {
            Some(fp) => (fp, None),
            None => {
                let r = self.read(path);
                (r.fingerprint, Some(r))
            }
        };
        if fingerprint == self.applied && !retired_due {
            self.pending = None;
            return None;
        }
        if fingerprint != self.applied {
            match self.pending {
                Some((fp, since)) if fp == fingerprint => {
                    if since.elapsed() < SETTLE_TIME {
                        return None;
                    }
                }
                _ => {
                    self.pending = Some((fingerprint, tokio::time::Instant::now()));
                    return None;
                }
            }
        }
        if reading.is_none() {
            let r = self.read(path);
            if r.fingerprint != fingerprint {
                // Changed again since the quick look: wait for it to settle.
                self.pending = Some((r.fingerprint, tokio::time::Instant::now()));
                return None;
            }
            reading = Some(r);
        }
        self.pending = None;
        let reading = reading?;
        self.applied = reading.fingerprint;
        Some(reading)
    }
}

/// Logs what one reload did and counts it (metrics, readiness).
fn report_reload(
    path: &str,
    reading: &Reading,
    driver: &Driver,
    outcome: Result<(Option<u64>, Vec<Diagnostic>), FileError>,
) {
    match outcome {
        Ok((Some(generation), warnings)) => {
            for w in warnings {
                tracing::warn!(path = %path, "{w}");
            }
            apply_log_settings(path, reading);
            driver.record_success();
            tracing::info!(path = %path, generation, "configuration reloaded");
        }
        Ok((None, _)) => {
            apply_log_settings(path, reading);
            driver.record_success();
            tracing::debug!(path = %path, "configuration unchanged")
        }
        Err(e) => {
            driver.record_failure();
            tracing::error!(path = %path, error = %e, "configuration rejected; keeping the running one");
        }
    }
}

/// The revocation file of the config-file mode: the same table a cluster
/// keeps in its ConfigMap, as one JSON object (`{"<key>": "<value>"}`).
/// Writers take `<path>.lock` (an advisory lock) around read-modify-write
/// and replace the file in one rename, so `jetbridge revoke --file` and a
/// running `standalone` never lose each other's entries.
pub mod revocation_file {
    use crate::identity::revocation::{self, Revocations, Table};
    use std::collections::BTreeMap;
    use std::io;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    /// The file's entries (none when it does not exist yet).
    pub fn read(path: &str) -> io::Result<BTreeMap<String, String>> {
        match std::fs::read(path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(BTreeMap::new()),
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }

    /// Under the file's lock: reads it, applies what `change` returns and
    /// writes it back (when anything changed). Returns the entries read.
    pub fn update(
        path: &str,
        change: impl FnOnce(&BTreeMap<String, String>) -> BTreeMap<String, Option<String>>,
    ) -> io::Result<BTreeMap<String, String>> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(format!("{path}.lock"))?;
        lock.lock()?;
        let current = read(path)?;
        let changes = change(&current);
        if !changes.is_empty() {
            let mut next = current.clone();
            for (k, v) in changes {
                match v {
                    Some(v) => next.insert(k, v),
                    None => next.remove(&k),
                };
            }
            let tmp = format!("{path}.tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec_pretty(&next).map_err(io::Error::other)?,
            )?;
            std::fs::rename(&tmp, path)?;
        }
        Ok(current)
    }

    /// When the file last changed (`None` while it does not exist).
    fn stamp(path: &str) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Keeps `revocations` and the file in step until `shutdown`: what this
    /// process revokes is written, what others write is read within a second.
    pub async fn sync(
        path: String,
        revocations: Arc<Revocations>,
        lifetime: i64,
        max_bytes: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        revocations.stats.max_bytes.store(max_bytes as u64, Relaxed);
        let mut seen = None;
        let mut tick = 0u32;
        loop {
            let pending = revocations.take_pending();
            let now = crate::proxy::clock::unix_now();
            let stamp_now = stamp(&path);
            // Expired entries are dropped once a minute; news at once.
            if !pending.is_empty() || stamp_now != seen || tick.is_multiple_of(60) {
                let (p, r) = (path.clone(), revocations.clone());
                let done = tokio::task::spawn_blocking(move || {
                    round(&p, &r, &pending, now, lifetime, max_bytes)
                        .inspect_err(|_| r.restore_pending(&pending))
                })
                .await;
                match done {
                    Ok(Ok(())) => seen = stamp(&path),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, file = %path, "cannot update the revocation file; retrying")
                    }
                    Err(e) => tracing::warn!(error = %e, "revocation file task failed"),
                }
            }
            tick = tick.wrapping_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = revocations.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One round of [`sync`]: merge the file, write this process's news.
    fn round(
        path: &str,
        revocations: &Revocations,
        pending: &Table,
        now: i64,
        lifetime: i64,
        max_bytes: usize,
    ) -> io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut plan = revocation::Plan::default();
        let current = update(path, |current| {
            plan = revocation::plan(current, pending, now, lifetime, max_bytes);
            plan.changes.clone()
        })?;
        let added = revocations.merge(&Table::decode(&current, lifetime), now);
        if added > 0 {
            tracing::info!(added, file = %path, "revocations read from the revocation file");
        }
        let stats = &revocations.stats;
        stats.bytes.store(plan.size as u64, Relaxed);
        if !plan.changes.is_empty() {
            Revocations::count(&stats.writes);
            if plan.size * 100 >= max_bytes * revocation::NEAR_LIMIT_PERCENT {
                tracing::warn!(file = %path, bytes = plan.size, limit = max_bytes, "revocation file near its limit");
            }
        }
        if plan.compaction.users > 0 {
            Revocations::count(&stats.compactions);
            tracing::warn!(file = %path, users = plan.compaction.users, removed = plan.compaction.removed, "revocation file over its limit: signed-out sessions replaced by one not-before entry per user");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
