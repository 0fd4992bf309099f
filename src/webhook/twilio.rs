//! Twilio's callbacks, parsed: status callbacks become receipts, everything else with a
//! body or media is an inbound message.

use serde_json::{Value, json};

use crate::domain::{ErrorInfo, MessageStatus};
use crate::store::ProviderEvent;

/// An inbound SMS/MMS as Twilio posts it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundSms {
    pub message_sid: String,
    pub from: String,
    pub to: String,
    pub body: Option<String>,
    /// Media URLs with their content types, `MediaUrl{N}` / `MediaContentType{N}`.
    pub media: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
pub enum TwilioCallback {
    Status(ProviderEvent),
    Inbound(InboundSms),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TwilioParseError(pub String);

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Our lifecycle's view of a Twilio message status. `None`: informational only.
pub fn target_status(twilio_status: &str) -> Option<MessageStatus> {
    match twilio_status {
        "sent" => Some(MessageStatus::Sent),
        "delivered" | "read" => Some(MessageStatus::Delivered),
        "undelivered" | "failed" | "canceled" => Some(MessageStatus::Failed),
        // queued, accepted, scheduled, sending, partially_delivered: nothing to move.
        _ => None,
    }
}

pub fn parse(params: &[(String, String)]) -> Result<TwilioCallback, TwilioParseError> {
    let sid = get(params, "MessageSid")
        .or_else(|| get(params, "SmsSid"))
        .ok_or_else(|| TwilioParseError("MessageSid is missing".into()))?;
    let status = get(params, "MessageStatus").or_else(|| get(params, "SmsStatus"));
    let is_inbound = matches!(status, None | Some("received") | Some("receiving"));
    if !is_inbound {
        let status = status.unwrap_or_default().to_ascii_lowercase();
        let error = get(params, "ErrorCode").map(|code| ErrorInfo {
            code: code.to_owned(),
            message: get(params, "ErrorMessage")
                .map(str::to_owned)
                .unwrap_or_else(|| format!("Twilio reported {status} with error {code}")),
        });
        let mut detail = json!({ "message_status": status });
        if let Some(e) = &error {
            detail["error_code"] = Value::from(e.code.clone());
        }
        if let Some(done) = get(params, "RawDlrDoneDate") {
            detail["raw_dlr_done_date"] = Value::from(done);
        }
        return Ok(TwilioCallback::Status(ProviderEvent {
            provider: "twilio",
            dedupe_key: format!("{sid}:{status}"),
            provider_message_id: sid.to_owned(),
            target: target_status(&status),
            event: status,
            error,
            detail,
        }));
    }

    let from = get(params, "From").ok_or_else(|| TwilioParseError("From is missing".into()))?;
    let to = get(params, "To").ok_or_else(|| TwilioParseError("To is missing".into()))?;
    let num_media: usize = get(params, "NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(10);
    let media = (0..num_media)
        .filter_map(|i| {
            get(params, &format!("MediaUrl{i}")).map(|url| {
                (
                    url.to_owned(),
                    get(params, &format!("MediaContentType{i}")).map(str::to_owned),
                )
            })
        })
        .collect();
    Ok(TwilioCallback::Inbound(InboundSms {
        message_sid: sid.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        body: params
            .iter()
            .find(|(k, _)| k == "Body")
            .map(|(_, v)| v.clone()),
        media,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_status_callback_becomes_a_receipt() {
        let cb = parse(&p(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]))
        .unwrap();
        let TwilioCallback::Status(e) = cb else {
            panic!("expected a status callback")
        };
        assert_eq!(e.target, Some(MessageStatus::Failed));
        assert_eq!(e.error.unwrap().code, "30003");
        assert_eq!(e.dedupe_key, "SM1:undelivered");
    }

    #[test]
    fn an_inbound_message_carries_its_media() {
        let cb = parse(&p(&[
            ("MessageSid", "MM1"),
            ("SmsStatus", "received"),
            ("From", "+15551234567"),
            ("To", "+15559876543"),
            ("Body", "hi"),
            ("NumMedia", "2"),
            ("MediaUrl0", "https://api.twilio.com/a"),
            ("MediaContentType0", "image/jpeg"),
            ("MediaUrl1", "https://api.twilio.com/b"),
        ]))
        .unwrap();
        let TwilioCallback::Inbound(m) = cb else {
            panic!("expected an inbound message")
        };
        assert_eq!(m.media.len(), 2);
        assert_eq!(m.media[0].1.as_deref(), Some("image/jpeg"));
        assert_eq!(m.body.as_deref(), Some("hi"));
    }

    #[test]
    fn informational_statuses_move_nothing() {
        for s in ["queued", "accepted", "sending", "scheduled"] {
            assert_eq!(target_status(s), None, "{s}");
        }
    }

    #[test]
    fn a_callback_without_a_sid_is_rejected() {
        assert!(parse(&p(&[("MessageStatus", "sent")])).is_err());
    }
}
