//! The pages a person sees from the proxy itself: errors, access denied,
//! who-am-I (`/.pomerium/`), signed out. Each says what happened, who is
//! signed in (when someone is), and what to do next, in one page shell
//! whose every piece of text is escaped here, so no caller writes HTML.

use super::body::{Body, own_response};
use crate::identity::session::Session;
use http::{HeaderValue, Response, StatusCode};
use std::fmt::Write as _;

/// The colour of a page's heading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// Things are as they should be (signed in, signed out).
    Good,
    /// Something stopped the request.
    Bad,
}

/// What a person can do next: a link, or a button posting a form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Link { label: String, href: String },
    Post { label: String, action: String },
}

impl Action {
    /// A link.
    pub fn link(label: &str, href: impl Into<String>) -> Self {
        Action::Link {
            label: label.into(),
            href: href.into(),
        }
    }
    /// A button posting an empty form to `action`.
    pub fn post(label: &str, action: impl Into<String>) -> Self {
        Action::Post {
            label: label.into(),
            action: action.into(),
        }
    }
}

/// One page: plain text in, escaped HTML out.
#[derive(Clone, Debug)]
pub struct Page {
    pub status: StatusCode,
    pub tone: Tone,
    /// What happened, in a few words (the title and the heading).
    pub heading: String,
    /// Paragraphs of explanation.
    pub text: Vec<String>,
    /// "Signed in as …", when someone is.
    pub who: Option<String>,
    /// Name/value rows (e.g. the session's claims).
    pub rows: Vec<(String, String)>,
    /// The next steps offered.
    pub actions: Vec<Action>,
    /// Shown at the foot so a user can quote it.
    pub request_id: String,
}

impl Page {
    /// A page with a heading and one paragraph.
    pub fn new(status: StatusCode, tone: Tone, heading: &str, text: &str, id: &str) -> Self {
        Page {
            status,
            tone,
            heading: heading.into(),
            text: if text.is_empty() {
                vec![]
            } else {
                vec![text.into()]
            },
            who: None,
            rows: vec![],
            actions: vec![],
            request_id: id.into(),
        }
    }

    /// The page as an HTML response (`no-store`, a strict CSP, the request id).
    pub fn response(&self) -> Response<Body> {
        let mut r = own_response(
            self.status,
            "text/html; charset=utf-8",
            self.render(),
            Some(&self.request_id),
        );
        r.headers_mut().insert(
            "content-security-policy",
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
        );
        r
    }

    /// The page's HTML.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let heading = html_escape(&self.heading);
        let tone = match self.tone {
            Tone::Good => "good",
            Tone::Bad => "bad",
        };
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{heading}</title><style>{STYLE}</style></head><body><main>\n\
             <h1 class=\"{tone}\">{heading}</h1>\n"
        );
        for p in &self.text {
            let _ = writeln!(out, "<p>{}</p>", html_escape(p));
        }
        if let Some(who) = &self.who {
            let _ = writeln!(
                out,
                "<p class=\"who\">Signed in as <strong>{}</strong></p>",
                html_escape(who)
            );
        }
        push_rows(&mut out, &self.rows);
        push_actions(&mut out, &self.actions);
        let _ = write!(
            out,
            "<p class=\"foot\">HTTP {} &middot; request id <code>{}</code></p>\n</main></body></html>\n",
            self.status.as_u16(),
            html_escape(&self.request_id)
        );
        out
    }
}

fn push_rows(out: &mut String, rows: &[(String, String)]) {
    if rows.is_empty() {
        return;
    }
    out.push_str("<table>");
    for (k, v) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            html_escape(k),
            html_escape(v)
        );
    }
    out.push_str("</table>\n");
}

fn push_actions(out: &mut String, actions: &[Action]) {
    if actions.is_empty() {
        return;
    }
    out.push_str("<div class=\"actions\">");
    for a in actions {
        let _ = match a {
            Action::Link { label, href } => write!(
                out,
                "<a class=\"button\" href=\"{}\">{}</a>",
                html_escape(href),
                html_escape(label)
            ),
            Action::Post { label, action } => write!(
                out,
                "<form method=\"post\" action=\"{}\"><button type=\"submit\">{}</button></form>",
                html_escape(action),
                html_escape(label)
            ),
        };
    }
    out.push_str("</div>\n");
}

/// How a session's user is named on a page: `Name <email>`, or whichever
/// of them (or the subject) there is.
pub fn who(s: &Session) -> String {
    match (s.name.is_empty(), s.email.is_empty()) {
        (false, false) => format!("{} <{}>", s.name, s.email),
        (true, false) => s.email.clone(),
        (false, true) => s.name.clone(),
        (true, true) => s.sub.clone(),
    }
}

/// The link that signs out, then comes back to `here` (which then asks to
/// sign in): "sign in as someone else".
pub fn switch_user_url(here: &str) -> String {
    format!(
        "/.pomerium/sign_out?pomerium_redirect_uri={}",
        url::form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>()
    )
}

/// A claim's value as text: strings bare, lists of strings joined with
/// `, `, anything else as JSON.
pub fn claim_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A unix time as an RFC 3339 date (the number itself if it is out of range).
pub fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// The heading of an error page with this status.
pub fn heading_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "This request cannot be served",
        401 => "Sign-in required",
        403 => "Access denied",
        404 => "Page not found",
        405 => "Method not allowed",
        421 | 495 => "Client certificate required",
        502 | 504 => "The app is unavailable",
        503 => "Temporarily unavailable",
        s if s >= 500 => "Something went wrong",
        _ => "Request stopped",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f5f6f8;color:#222;margin:0;padding:2rem 1rem}\
main{background:#fff;max-width:44rem;margin:2rem auto;padding:1.5rem 2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}\
h1{font-size:1.5rem;margin-top:0}h1.good{color:#17692e}h1.bad{color:#a11}\
.who{background:#f0f4ff;padding:.5rem .8rem;border-radius:4px}\
table{border-collapse:collapse;margin:1rem 0;width:100%}th,td{border:1px solid #ddd;padding:.3rem .6rem;\
text-align:left;vertical-align:top;word-break:break-all}th{background:#f4f4f4;width:25%}\
.actions{display:flex;gap:.6rem;flex-wrap:wrap;margin:1.2rem 0}.actions form{margin:0}\
.button,button{display:inline-block;font:inherit;padding:.45rem 1rem;border-radius:4px;border:1px solid #2456c7;\
background:#2456c7;color:#fff;text-decoration:none;cursor:pointer}\
.foot{color:#777;font-size:.85rem;margin-bottom:0}";

/// Escapes text for HTML element and attribute content.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_of_text_is_escaped() {
        let mut p = Page::new(
            StatusCode::FORBIDDEN,
            Tone::Bad,
            "<h>",
            "<script>x</script>",
            "<id>",
        );
        p.who = Some("\"Eve\" <eve@example.com>".into());
        p.rows = vec![("<k>".into(), "<v>".into())];
        p.actions = vec![
            Action::link("<a>", "https://h/?a=1&b=\"2\""),
            Action::post("<b>", "/x\""),
        ];
        let html = p.render();
        for raw in [
            "<script>", "<h>", "<id>", "<k>", "<v>", "<a>", "<b>", "\"2\"", "<eve",
        ] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("href=\"https://h/?a=1&amp;b=&quot;2&quot;\""));
    }
}
