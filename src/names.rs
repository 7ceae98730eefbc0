//! Kubernetes object names, checked the way the API server checks them
//! (RFC 1123 labels and subdomains), so text that becomes part of a
//! manifest can never add keys or documents to it.

/// A name the API server would refuse. `value` is the name as shown in the
/// message: quoted, escaped and shortened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a DNS-1123 label.
    #[error(
        "{what} {value}: must be 1-63 lowercase letters, digits or '-', starting and ending \
         with a letter or digit"
    )]
    Label { what: String, value: String },
    /// Not a DNS-1123 subdomain.
    #[error(
        "{what} {value}: must be lowercase letters, digits, '-' and '.', at most 253 \
         characters, each dot-separated part starting and ending with a letter or digit"
    )]
    Subdomain { what: String, value: String },
}

/// A DNS-1123 label: 1–63 lowercase letters, digits or `-`, starting and
/// ending with a letter or digit (namespaces, Service names).
pub fn check_label(what: &str, value: &str) -> Result<(), NameError> {
    if is_label(value) {
        Ok(())
    } else {
        Err(NameError::Label {
            what: what.to_string(),
            value: shown(value),
        })
    }
}

/// A DNS-1123 subdomain: up to 253 characters of labels joined by `.`
/// (most object names: Secrets, Ingresses, Policies).
pub fn check_subdomain(what: &str, value: &str) -> Result<(), NameError> {
    if !value.is_empty() && value.len() <= 253 && value.split('.').all(is_label) {
        Ok(())
    } else {
        Err(NameError::Subdomain {
            what: what.to_string(),
            value: shown(value),
        })
    }
}

/// A DNS-1123 label: 1–63 of `a-z 0-9 -`, alphanumeric at both ends.
pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The value for an error message: quoted, escaped, shortened.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(70).collect();
    let more = if cut.len() < value.len() { "…" } else { "" };
    format!("{:?}{more}", cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_api_server_would_refuse_are_refused() {
        for ok in ["jetbridge", "a", "a-b", "x1", &"a".repeat(63)] {
            assert!(check_label("n", ok).is_ok(), "{ok}");
            assert!(check_subdomain("n", ok).is_ok(), "{ok}");
        }
        assert!(check_subdomain("n", "jetbridge.bootstrap").is_ok());
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a b",
            "a\nb: c",
            "a\"",
            "a:b",
            "a/b",
            "ä",
            &"a".repeat(64),
        ] {
            assert!(check_label("n", bad).is_err(), "{bad:?}");
            assert!(check_subdomain("n", bad).is_err(), "{bad:?}");
        }
        for bad in ["a..b", ".a", "a.", &format!("{}.a", "a".repeat(253))] {
            assert!(check_subdomain("n", bad).is_err(), "{bad:?}");
        }
        let e = check_subdomain("name", "x\nkind: Pod")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\\n"), "the newline is shown escaped: {e}");
    }
}
