//! The user's email address as the `email` and `domain` criteria see it.
//!
//! An address is usable only when it is a single `local@domain`: exactly one
//! `@`, a non-empty local part, a domain of non-empty dot-separated labels
//! (letters, digits, `-`; internationalised labels are read as their
//! punycode form), and no whitespace or control characters anywhere. An
//! address the identity provider marks `email_verified: false` is not usable
//! either. A program whose rules name `email` or `domain` denies a user
//! whose address is not usable (see [`unusable`]), whatever the polarity of
//! those criteria, so a crafted address can neither pass an allow nor slip
//! past a deny.
//!
//! Domains compare in lower case and ASCII (punycode): DNS names are
//! case-insensitive, and `bücher.example` and `xn--bcher-kva.example` are
//! one name.

use std::borrow::Cow;

use super::User;

/// Why the user's address cannot be used by `email`/`domain` criteria, or
/// `None` when it can (or when there is no address at all: then those
/// criteria are simply false, as in Pomerium).
pub(crate) fn unusable(u: &User) -> Option<&'static str> {
    if u.email.is_empty() {
        return None;
    }
    if domain(&u.email).is_none() {
        return Some("the user's email address is not a single local@domain");
    }
    match u.claims.get("email_verified") {
        Some(serde_json::Value::Bool(false)) => {
            Some("the identity provider says the user's email address is not verified")
        }
        Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Some("the identity provider says the user's email address is not verified")
        }
        _ => None,
    }
}

/// The domain of a single `local@domain` address, in lower-case ASCII, or
/// `None` when the address is not one.
pub(crate) fn domain(email: &str) -> Option<Cow<'_, str>> {
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.contains('@') {
        return None;
    }
    normalize_domain(domain)
}

/// A DNS name in lower-case ASCII, or `None` when `d` is not one: empty,
/// an empty label (leading, trailing or doubled dot), or a character other
/// than a letter, digit or `-` in an ASCII label.
fn normalize_domain(d: &str) -> Option<Cow<'_, str>> {
    if d.is_empty() || d.split('.').any(str::is_empty) {
        return None;
    }
    let d: Cow<'_, str> = if d.is_ascii() {
        Cow::Borrowed(d)
    } else {
        match url::Host::parse(d).ok()? {
            url::Host::Domain(a) if only_labels_encoded(d, &a) => Cow::Owned(a),
            _ => return None,
        }
    };
    let ldh = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if !d.chars().all(ldh) || d.split('.').any(str::is_empty) {
        return None;
    }
    if d.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(d.to_ascii_lowercase()))
    } else {
        Some(d)
    }
}

/// True when IDNA turned `original` into `ascii` label by label, encoding
/// only the non-ASCII labels as punycode: no label was split or joined (a
/// full-width dot), and no label was mapped to plain ASCII (full-width
/// letters), so that only a genuinely internationalised name compares equal
/// to its punycode.
fn only_labels_encoded(original: &str, ascii: &str) -> bool {
    let (mut o, mut a) = (original.split('.'), ascii.split('.'));
    loop {
        match (o.next(), a.next()) {
            (None, None) => return true,
            (Some(ol), Some(al)) if ol.is_ascii() => {
                if !ol.eq_ignore_ascii_case(al) {
                    return false;
                }
            }
            (Some(_), Some(al)) if al.starts_with("xn--") => {}
            _ => return false,
        }
    }
}

/// A `domain` matcher value as it is compared: lower case, and each
/// non-ASCII label in punycode. Partial values (`ends_with: .example.com`)
/// keep their dots; a label that is not a valid name stays as written
/// (lower-cased) and so matches nothing.
pub(crate) fn domain_literal(s: &str) -> String {
    s.split('.')
        .map(|label| {
            if label.is_ascii() {
                return label.to_ascii_lowercase();
            }
            match url::Host::parse(label) {
                Ok(url::Host::Domain(a)) => a,
                _ => label.to_lowercase(),
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}
