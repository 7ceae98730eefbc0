//! HTTPRoute filters in, route settings out: each Gateway API filter a
//! rule (or a backendRef) carries becomes the [`RouteOptions`] the proxy
//! already applies, and so do a rule's `timeouts`. Pure, like the rest of
//! `translate`.
//!
//! - `RequestHeaderModifier` / `ResponseHeaderModifier`: `set` replaces,
//!   `add` appends another line, `remove` removes (`set_request_headers`,
//!   `add_request_headers`, `remove_request_headers`, and their response
//!   counterparts).
//! - `URLRewrite`: `host_rewrite`, `prefix_rewrite` or a whole-path rewrite.
//! - `RequestRedirect`: the route's `redirect` (status 302 unless given).
//! - `RequestMirror`: the route's `mirror_to`, the mirror Service's
//!   endpoints (one mirror per rule; every request, so no `percent` or
//!   `fraction` below 100%).
//! - Filters on `backendRefs[]` apply when every backendRef of the rule
//!   carries the same ones (one backend, or equal lists); filters that
//!   differ between backends are refused.
//! - `timeouts.request` / `timeouts.backendRequest`: the route's `timeout`
//!   (the shorter of the two; `0s`: none).

use crate::crd::gateway::{
    HeaderModifier, HttpBackendRef, HttpRouteFilter, HttpRouteRule, HttpRouteTimeouts,
    PathModifier, RequestMirror, RequestRedirect,
};
use crate::settings::{RouteOptions, RouteRedirect};
use std::collections::BTreeMap;
use std::time::Duration;

/// Puts one filter into the settings (`ExtensionRef`, access, is the
/// caller's).
pub(super) fn apply_filter(
    f: &HttpRouteFilter,
    prefix_match: bool,
    o: &mut RouteOptions,
) -> Result<(), String> {
    let missing = || format!("filter {}: its settings are missing", f.type_);
    match f.type_.as_str() {
        "RequestHeaderModifier" => {
            let m = f.request_header_modifier.as_ref().ok_or_else(missing)?;
            request_headers(m, o)
        }
        "ResponseHeaderModifier" => {
            let m = f.response_header_modifier.as_ref().ok_or_else(missing)?;
            response_headers(m, o)
        }
        "RequestMirror" => {
            let m = f.request_mirror.as_ref().ok_or_else(missing)?;
            mirror_share(m)
        }
        "RequestRedirect" => {
            let r = f.request_redirect.as_ref().ok_or_else(missing)?;
            request_redirect(r, prefix_match, o)
        }
        "URLRewrite" => {
            let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
            if o.redirect.is_some() {
                return Err("URLRewrite and RequestRedirect cannot be combined".into());
            }
            if let Some(h) = &r.hostname {
                o.host_rewrite = Some(h.clone());
            }
            match r.path.as_ref() {
                None => Ok(()),
                Some(p) => path_rewrite(p, prefix_match, o),
            }
        }
        other => Err(format!("filter {other} is not supported")),
    }
}

/// `RequestHeaderModifier`: `set`, `add` and `remove`.
fn request_headers(m: &HeaderModifier, o: &mut RouteOptions) -> Result<(), String> {
    for h in &m.set {
        o.set_request_headers
            .insert(h.name.clone(), h.value.clone());
    }
    for h in &m.add {
        o.add_request_headers
            .insert(h.name.clone(), h.value.clone());
    }
    o.remove_request_headers.extend(m.remove.iter().cloned());
    Ok(())
}

/// `ResponseHeaderModifier`: `set`, `add`, and `remove` as an empty value.
fn response_headers(m: &HeaderModifier, o: &mut RouteOptions) -> Result<(), String> {
    let headers = o.set_response_headers.get_or_insert_with(BTreeMap::new);
    for h in &m.set {
        headers.insert(h.name.clone(), h.value.clone());
    }
    for name in &m.remove {
        headers.insert(name.clone(), String::new());
    }
    for h in &m.add {
        o.add_response_headers
            .insert(h.name.clone(), h.value.clone());
    }
    Ok(())
}

/// `RequestRedirect` as the route's `redirect`.
fn request_redirect(
    r: &RequestRedirect,
    prefix_match: bool,
    o: &mut RouteOptions,
) -> Result<(), String> {
    if o.redirect.is_some() {
        return Err("RequestRedirect: only one per rule".into());
    }
    if o.prefix_rewrite.is_some() || o.regex_rewrite_pattern.is_some() || o.host_rewrite.is_some() {
        return Err("URLRewrite and RequestRedirect cannot be combined".into());
    }
    let mut redirect = RouteRedirect {
        scheme_redirect: r.scheme.clone(),
        host_redirect: r.hostname.clone(),
        port_redirect: r.port.map(|p| u32::try_from(p).unwrap_or(0)),
        response_code: Some(u32::from(r.status_code.unwrap_or(302))),
        ..RouteRedirect::default()
    };
    match r.path.as_ref().map(|p| {
        (
            p.type_.as_str(),
            &p.replace_prefix_match,
            &p.replace_full_path,
        )
    }) {
        None => {}
        Some(("ReplacePrefixMatch", Some(v), _)) if prefix_match => {
            redirect.prefix_rewrite = Some(v.clone())
        }
        Some(("ReplacePrefixMatch", Some(_), _)) => {
            return Err("RequestRedirect: ReplacePrefixMatch needs a PathPrefix match".into());
        }
        Some(("ReplaceFullPath", _, Some(v))) => redirect.path_redirect = Some(v.clone()),
        Some((t, _, _)) => {
            return Err(format!(
                "RequestRedirect: path {t:?} is incomplete or not supported"
            ));
        }
    }
    o.redirect = Some(redirect);
    Ok(())
}

/// `URLRewrite.path`: a prefix replacement (only on a `PathPrefix` match)
/// or the whole path.
fn path_rewrite(p: &PathModifier, prefix_match: bool, o: &mut RouteOptions) -> Result<(), String> {
    match (
        p.type_.as_str(),
        &p.replace_prefix_match,
        &p.replace_full_path,
    ) {
        ("ReplacePrefixMatch", Some(v), _) if prefix_match => {
            o.prefix_rewrite = Some(v.clone());
            Ok(())
        }
        ("ReplacePrefixMatch", Some(_), _) => {
            Err("URLRewrite: ReplacePrefixMatch needs a PathPrefix match".into())
        }
        ("ReplaceFullPath", _, Some(v)) => {
            o.regex_rewrite_pattern = Some("^.*$".into());
            o.regex_rewrite_substitution = Some(v.clone());
            Ok(())
        }
        (t, _, _) => Err(format!(
            "URLRewrite: path {t:?} is incomplete or not supported"
        )),
    }
}

/// A mirror takes every request: a `percent` or `fraction` below 100% is
/// refused.
fn mirror_share(m: &RequestMirror) -> Result<(), String> {
    let all = match (&m.percent, &m.fraction) {
        (None, None) => true,
        (Some(p), None) => *p >= 100,
        (None, Some(f)) => f.numerator >= f.denominator.unwrap_or(100),
        (Some(_), Some(_)) => false,
    };
    match all {
        true => Ok(()),
        false => Err("RequestMirror: only mirroring every request is supported \
                      (no percent or fraction below 100%)"
            .into()),
    }
}

/// The backendRef of the rule's one `RequestMirror` filter, if any; more
/// than one is refused.
pub(super) fn mirror_ref<'a>(
    filters: impl Iterator<Item = &'a HttpRouteFilter>,
) -> Result<Option<&'a HttpBackendRef>, String> {
    let mut refs = filters
        .filter(|f| f.type_ == "RequestMirror")
        .filter_map(|f| f.request_mirror.as_ref().map(|m| &m.backend_ref));
    match (refs.next(), refs.next()) {
        (first, None) => Ok(first),
        _ => Err("RequestMirror: one mirror per rule is supported".into()),
    }
}

/// The filters of a rule's backendRefs that apply to the whole rule: the
/// list every backendRef carries, when they all carry the same one.
pub(super) fn backend_filters(rule: &HttpRouteRule) -> Result<&[HttpRouteFilter], String> {
    let mut lists = rule.backend_refs.iter().map(|b| b.filters.as_slice());
    let first = lists.next().unwrap_or(&[]);
    match lists.all(|l| l == first) {
        true => Ok(first),
        false => Err(
            "backendRef filters that differ between the backends of a rule \
                      are not supported; put them on the rule"
                .into(),
        ),
    }
}

/// `timeouts.request` and `timeouts.backendRequest` as the route's
/// `timeout`: the shorter one that is set (`0s`: none). `backendRequest`
/// may not exceed `request`.
pub(super) fn timeouts(t: Option<&HttpRouteTimeouts>, o: &mut RouteOptions) -> Result<(), String> {
    let Some(t) = t else {
        return Ok(());
    };
    let read = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map(|text| duration(text).map_err(|e| format!("timeouts.{key} {text:?}: {e}")))
            .transpose()
    };
    let request = read("request", &t.request)?.filter(|d| !d.is_zero());
    let backend = read("backendRequest", &t.backend_request)?;
    if let (Some(r), Some(b)) = (request, backend)
        && (b.is_zero() || b > r)
    {
        return Err("timeouts.backendRequest must not be longer than timeouts.request".into());
    }
    o.timeout = match (request, backend) {
        (None, None) => return Ok(()),
        (Some(r), None) => Some(r),
        (r, Some(b)) => Some(r.map_or(b, |r| r.min(b))),
    };
    Ok(())
}

/// A Gateway API duration: one to four `<1-5 digits><h|m|s|ms>` parts.
fn duration(text: &str) -> Result<Duration, String> {
    let mut parts = 0;
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let (unit, scale_ms, tail) = match tail {
            t if t.starts_with("ms") => ("ms", 1, &t[2..]),
            t if t.starts_with('h') => ("h", 3_600_000, &t[1..]),
            t if t.starts_with('m') => ("m", 60_000, &t[1..]),
            t if t.starts_with('s') => ("s", 1_000, &t[1..]),
            _ => return Err("expected digits followed by h, m, s or ms (e.g. 10s, 1m30s)".into()),
        };
        let n: u64 = match number.len() {
            1..=5 => number.parse().map_err(|_| "bad number".to_string())?,
            _ => return Err(format!("each part has 1 to 5 digits before {unit}")),
        };
        total += Duration::from_millis(n * scale_ms);
        parts += 1;
        rest = tail;
    }
    match parts {
        1..=4 => Ok(total),
        _ => Err("one to four parts (e.g. 10s, 1h30m)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_durations_follow_the_api_format() {
        let ok = [
            ("0s", 0),
            ("10s", 10_000),
            ("500ms", 500),
            ("1h30m", 5_400_000),
            ("1m1s1ms", 61_001),
            ("99999ms", 99_999),
        ];
        for (text, ms) in ok {
            assert_eq!(duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for text in [
            "",
            "10",
            "1.5s",
            "100000s",
            "1d",
            "s",
            "1h1m1s1ms1h",
            "-1s",
            "1 s",
        ] {
            assert!(duration(text).is_err(), "{text} parsed");
        }
    }

    fn t(request: Option<&str>, backend: Option<&str>) -> Result<Option<Duration>, String> {
        let mut o = RouteOptions::default();
        let t = HttpRouteTimeouts {
            request: request.map(str::to_string),
            backend_request: backend.map(str::to_string),
        };
        timeouts(Some(&t), &mut o).map(|()| o.timeout)
    }

    #[test]
    fn rule_timeouts_become_the_route_timeout() {
        let s = Duration::from_secs;
        assert_eq!(t(None, None), Ok(None));
        assert_eq!(t(Some("10s"), None), Ok(Some(s(10))));
        assert_eq!(t(None, Some("2s")), Ok(Some(s(2))));
        assert_eq!(t(Some("10s"), Some("2s")), Ok(Some(s(2))));
        // 0s: no timeout at all.
        assert_eq!(t(Some("0s"), None), Ok(None));
        assert_eq!(t(None, Some("0s")), Ok(Some(s(0))));
        assert_eq!(t(Some("0s"), Some("3s")), Ok(Some(s(3))));
        assert!(t(Some("2s"), Some("10s")).is_err());
        assert!(t(Some("2s"), Some("0s")).is_err());
        assert!(
            t(Some("ten"), None)
                .unwrap_err()
                .contains("timeouts.request")
        );
    }
}
