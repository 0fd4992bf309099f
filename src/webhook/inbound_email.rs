//! SendGrid Inbound Parse: the fields of its multipart post, reduced to one inbound email.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A file attached to an inbound email, as recorded on the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachmentRecord {
    pub filename: String,
    pub content_type: Option<String>,
    pub size: usize,
    /// Where the content was written, when `INBOUND_ATTACHMENTS=store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_at: Option<String>,
}

/// The address inside `Name <addr>`, or the text itself.
pub fn bare_address(raw: &str) -> &str {
    let raw = raw.trim();
    match (raw.rfind('<'), raw.rfind('>')) {
        (Some(open), Some(close)) if open < close => raw[open + 1..close].trim(),
        _ => raw,
    }
}

/// The first address of a comma-separated header value.
pub fn first_address(raw: &str) -> &str {
    // Commas can sit inside a quoted display name: split only outside quotes.
    let mut in_quotes = false;
    for (i, c) in raw.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => return bare_address(&raw[..i]),
            _ => {}
        }
    }
    bare_address(raw)
}

/// Sender and recipient: the SMTP envelope when present (it names the mailbox that
/// really received the mail), else the headers.
pub fn addresses(
    envelope: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> (Option<String>, Option<String>) {
    let parsed: Option<Value> = envelope.and_then(|e| serde_json::from_str(e).ok());
    let env_from = parsed
        .as_ref()
        .and_then(|v| v.get("from"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let env_to = parsed
        .as_ref()
        .and_then(|v| v.get("to"))
        .and_then(|t| t.as_array().and_then(|a| a.first()).or(Some(t)))
        .and_then(Value::as_str)
        .map(str::to_owned);
    (
        env_from.or_else(|| from.map(|f| first_address(f).to_owned())),
        env_to.or_else(|| to.map(|t| first_address(t).to_owned())),
    )
}

/// The `Message-ID` header from the raw header block, without angle brackets.
pub fn message_id_header(headers: &str) -> Option<String> {
    let mut lines = headers.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("message-id") {
            let mut value = value.trim().to_owned();
            // Folded header: continuation lines start with whitespace.
            while let Some(next) = lines.peek() {
                if next.starts_with([' ', '\t']) {
                    value.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            let id = value
                .trim_matches(|c| c == '<' || c == '>' || c == ' ')
                .to_owned();
            return (!id.is_empty()).then_some(id);
        }
    }
    None
}

/// A stable id for an email without a Message-ID, so replays still deduplicate.
pub fn content_id(parts: &[Option<&str>]) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update(p.unwrap_or("").as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    format!(
        "sha256:{}",
        digest
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A file name safe to write: no directories, no dot-files, bounded length.
pub fn safe_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "attachment".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_stripped() {
        assert_eq!(
            bare_address("Jane Doe <jane@example.com>"),
            "jane@example.com"
        );
        assert_eq!(bare_address(" jane@example.com "), "jane@example.com");
        assert_eq!(
            first_address("\"Doe, Jane\" <jane@example.com>, bob@example.com"),
            "jane@example.com"
        );
    }

    #[test]
    fn the_envelope_wins_over_headers() {
        let (from, to) = addresses(
            Some(r#"{"to":["support@ours.example"],"from":"bounce@theirs.example"}"#),
            Some("Jane <jane@theirs.example>"),
            Some("Support <support@ours.example>, cc@ours.example"),
        );
        assert_eq!(from.as_deref(), Some("bounce@theirs.example"));
        assert_eq!(to.as_deref(), Some("support@ours.example"));
        let (from, to) = addresses(
            None,
            Some("Jane <jane@theirs.example>"),
            Some("a@ours.example, b@ours.example"),
        );
        assert_eq!(from.as_deref(), Some("jane@theirs.example"));
        assert_eq!(to.as_deref(), Some("a@ours.example"));
    }

    #[test]
    fn message_ids_are_read_from_headers_even_when_folded() {
        let headers = "Subject: hi\nMessage-ID:\n <abc.123@mail.example>\nTo: x@example.com\n";
        assert_eq!(
            message_id_header(headers).as_deref(),
            Some("abc.123@mail.example")
        );
        assert_eq!(
            message_id_header("message-id: <X@Y>").as_deref(),
            Some("X@Y")
        );
        assert_eq!(message_id_header("Subject: none"), None);
    }

    #[test]
    fn content_ids_are_stable_and_distinct() {
        let a = content_id(&[Some("a"), Some("b")]);
        assert_eq!(a, content_id(&[Some("a"), Some("b")]));
        assert_ne!(a, content_id(&[Some("ab"), None]));
    }

    #[test]
    fn filenames_cannot_escape_the_directory() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("..\\x.txt"), "x.txt");
        assert_eq!(safe_filename(".hidden"), "hidden");
        assert_eq!(safe_filename("résumé final.pdf"), "r_sum__final.pdf");
        assert_eq!(safe_filename(""), "attachment");
    }
}
