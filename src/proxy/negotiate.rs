//! Content negotiation on `Accept` (RFC 9110 §12.5.1), as Pomerium does it:
//! a request without a session is sent to sign in unless the client prefers
//! something other than a page, and error bodies are JSON only for clients
//! that prefer JSON over HTML.
//!
//! Each offered type takes the quality of the most specific media range that
//! matches it (`type/subtype` before `type/*` before `*/*`; parameters other
//! than `q` are ignored); the offer with the highest quality above zero wins,
//! and on a tie the one offered first.

/// The types whose preference decides between a sign-in redirect and a
/// status code, in Pomerium's order (a page first, so `*/*` means a page).
const SIGN_IN_OFFERS: [&str; 6] = [
    "text/html",
    "application/json",
    "text/plain",
    "application/grpc-web-text",
    "application/grpc-web+proto",
    "application/grpc+proto",
];

/// One media range of an `Accept` header.
struct Range<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f32,
}

/// The media ranges of an `Accept` value; ranges that do not parse are skipped.
fn ranges(accept: &str) -> Vec<Range<'_>> {
    accept.split(',').filter_map(range).collect()
}

fn range(item: &str) -> Option<Range<'_>> {
    let mut parts = item.split(';');
    let (kind, subtype) = parts.next()?.trim().split_once('/')?;
    let (kind, subtype) = (kind.trim(), subtype.trim());
    if kind.is_empty() || subtype.is_empty() || (kind == "*" && subtype != "*") {
        return None;
    }
    let mut q = 1.0;
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("q")
        {
            q = v
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))?;
        }
    }
    Some(Range { kind, subtype, q })
}

/// The quality the client gives `offer`: that of the most specific range
/// matching it, 0 when none does.
fn quality(ranges: &[Range<'_>], offer: &str) -> f32 {
    let Some((kind, subtype)) = offer.split_once('/') else {
        return 0.0;
    };
    let specificity = |r: &Range<'_>| {
        let kind_ok = r.kind == "*" || r.kind.eq_ignore_ascii_case(kind);
        let sub_ok = r.subtype == "*" || r.subtype.eq_ignore_ascii_case(subtype);
        (kind_ok && sub_ok).then_some(usize::from(r.kind != "*") + usize::from(r.subtype != "*"))
    };
    ranges
        .iter()
        .filter_map(|r| specificity(r).map(|s| (s, r.q)))
        .max_by_key(|(s, _)| *s)
        .map_or(0.0, |(_, q)| q)
}

/// The offer the client prefers (an index into `offers`), `None` when it
/// accepts none of them.
pub fn preferred(accept: &str, offers: &[&str]) -> Option<usize> {
    let ranges = ranges(accept);
    let mut best: Option<(usize, f32)> = None;
    for (i, offer) in offers.iter().enumerate() {
        let q = quality(&ranges, offer);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((i, q));
        }
    }
    best.map(|(i, _)| i)
}

/// True when a request without a session should be sent to sign in: no
/// `Accept`, an `Accept` that takes none of the known types, or one that
/// prefers a page (`*/*` included). False when it prefers JSON, text or
/// gRPC-web.
pub fn prefers_sign_in_page(accept: Option<&str>) -> bool {
    match accept.map(str::trim).filter(|a| !a.is_empty()) {
        None => true,
        Some(a) => preferred(a, &SIGN_IN_OFFERS).is_none_or(|i| i == 0),
    }
}

/// True when the client prefers JSON to HTML (error bodies are then JSON).
pub fn prefers_json(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| preferred(a, &["text/html", "application/json"]) == Some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_redirect_follows_the_clients_preference() {
        for (accept, redirect) in [
            (None, true),
            (Some(""), true),
            (Some("*/*"), true),
            (Some("text/html,application/xhtml+xml,*/*;q=0.8"), true),
            (Some("application/json"), false),
            (Some("application/json, */*;q=0.5"), false),
            (Some("application/json;q=0.9, text/html"), true),
            (Some("text/*"), true),
            (Some("text/plain"), false),
            (Some("application/grpc-web-text"), false),
            (Some("image/png"), true),
            (Some("text/html;q=0, application/json;q=0"), true),
            (Some("application/*"), false),
            (Some("nonsense"), true),
            (Some("text/html;q=0, */*"), false),
        ] {
            assert_eq!(prefers_sign_in_page(accept), redirect, "{accept:?}");
        }
    }

    #[test]
    fn json_bodies_go_to_clients_preferring_json() {
        for (accept, json) in [
            (None, false),
            (Some("*/*"), false),
            (Some("application/json"), true),
            (Some("application/json, text/html"), false),
            (Some("application/json, text/html;q=0.5"), true),
            (Some("text/html"), false),
        ] {
            assert_eq!(prefers_json(accept), json, "{accept:?}");
        }
    }
}
