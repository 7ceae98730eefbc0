//! HTTPRoute filters in, route settings out: each Gateway API filter a
//! rule (or a backendRef) carries becomes the [`RouteOptions`] the proxy
//! already applies. Pure, like the rest of `translate`.

use crate::crd::gateway::{HeaderModifier, HttpRouteFilter, PathModifier};
use crate::settings::RouteOptions;
use std::collections::BTreeMap;

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
        "URLRewrite" => {
            let r = f.url_rewrite.as_ref().ok_or_else(missing)?;
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

/// `RequestHeaderModifier`: `set` and `remove` (`add` is refused: it would
/// replace, not append).
fn request_headers(m: &HeaderModifier, o: &mut RouteOptions) -> Result<(), String> {
    if !m.add.is_empty() {
        return Err("RequestHeaderModifier: add is not supported; use set".into());
    }
    for h in &m.set {
        o.set_request_headers
            .insert(h.name.clone(), h.value.clone());
    }
    o.remove_request_headers.extend(m.remove.iter().cloned());
    Ok(())
}

/// `ResponseHeaderModifier`: `set`, and `remove` as an empty value.
fn response_headers(m: &HeaderModifier, o: &mut RouteOptions) -> Result<(), String> {
    if !m.add.is_empty() {
        return Err("ResponseHeaderModifier: add is not supported; use set".into());
    }
    let headers = o.set_response_headers.get_or_insert_with(BTreeMap::new);
    for h in &m.set {
        headers.insert(h.name.clone(), h.value.clone());
    }
    for name in &m.remove {
        headers.insert(name.clone(), String::new());
    }
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
