//! The config file parser never panics, and an error message never quotes
//! the value of a secret-bearing key (`is_secret_key`) present in the input:
//! no substring of 12 or more characters of such a value appears in it,
//! unless that text also appears in the input outside secret values (as a
//! key, say), where the message may rightly quote it. A `did you mean`
//! suggestion names a known key, not the input, and is not checked.
//!
//! Text the message holds whatever the value (the file name, the parser's
//! own words) is not a leak even when a secret happens to contain it, so a
//! piece counts only if it follows the value: the input is parsed again with
//! each secret value's letters and digits shifted by one, and a piece quoted
//! the first time but not the second came from the value.
#![no_main]

use jetbridge::settings::{ConfigFile, is_secret_key};
use libfuzzer_sys::fuzz_target;

const MIN_LEAK: usize = 12;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(err) = ConfigFile::parse("config.yaml", text) else {
        return;
    };
    let message = without_suggestions(&err.to_string());
    let secrets = secret_values(text);
    let mut shifted_text = text.to_string();
    for value in secrets.iter().filter(|v| v.chars().count() >= MIN_LEAK) {
        shifted_text = shifted_text.replace(value.as_str(), &shifted(value));
    }
    let shifted_message = match ConfigFile::parse("config.yaml", &shifted_text) {
        Ok(_) => String::new(),
        Err(err) => without_suggestions(&err.to_string()),
    };
    for value in &secrets {
        let chars: Vec<char> = value.chars().collect();
        for window in chars.windows(MIN_LEAK) {
            let piece: String = window.iter().collect();
            let in_secrets: usize = secrets.iter().map(|s| s.matches(&piece).count()).sum();
            if text.matches(&piece).count() > in_secrets {
                continue;
            }
            assert!(
                !message.contains(&piece) || shifted_message.contains(&piece),
                "error message quotes a secret: {piece:?} in {message:?}"
            );
        }
    }
});

/// Values of `key: value` lines whose key is secret-bearing, as written
/// (quotes removed). Block scalars are followed by their indented lines.
/// As in YAML, the key ends at the first `:` followed by a blank or the end
/// of the line (`a:b: c` is the key `a:b`).
fn secret_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<usize> = None;
    // YAML breaks lines at CR as well as LF.
    for line in text.split(['\n', '\r']) {
        let indent = line.len() - line.trim_start().len();
        if let Some(min) = block {
            if line.trim().is_empty() || indent > min {
                out.push(line.trim().to_string());
                continue;
            }
            block = None;
        }
        let body = line.trim_start().trim_start_matches("- ");
        // A comment is not a key (its text may still look like one).
        if body.starts_with('#') {
            continue;
        }
        let Some((key, value)) = split_key(body) else {
            continue;
        };
        // A tag, anchor, alias or flow collection before the key, or a value
        // holding another `key: `, is not a plain `key: value` line: skipped.
        if !is_secret_key(key) || key.starts_with(['!', '&', '*', '?', '{', '[', '|', '>']) {
            continue;
        }
        let value = value.trim();
        if value.contains(": ") {
            continue;
        }
        if value.starts_with('|') || value.starts_with('>') || value.is_empty() {
            block = Some(indent);
        } else {
            out.push(value.trim_matches(|c| c == '"' || c == '\'').to_string());
        }
    }
    out
}

fn split_key(line: &str) -> Option<(&str, &str)> {
    let at = line.match_indices(':').map(|(i, _)| i).find(|&i| {
        line[i + 1..]
            .chars()
            .next()
            .is_none_or(|c| c == ' ' || c == '\t')
    })?;
    Some((&line[..at], &line[at + 1..]))
}

/// `value` with each ASCII letter and digit replaced by the next one
/// (`z` by `a`, `9` by `0`): the same shape, none of the same text.
fn shifted(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            c if c.is_ascii_alphanumeric() => char::from(c as u8 + 1),
            c => c,
        })
        .collect()
}

/// The message without its `(did you mean "...")` suggestions.
fn without_suggestions(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(start) = rest.find("(did you mean \"") {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        match rest.find("\"?)") {
            Some(end) => rest = &rest[end + 3..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}
