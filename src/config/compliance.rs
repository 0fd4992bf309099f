//! Compliance settings: the optional replies to opt-out, opt-in and help keywords, and how
//! SMS bodies are sized (smart encoding, the most segments one message may take).

use super::{ConfigError, Env};

/// Longest reply text accepted (one concatenated SMS of ten segments is about 1,530 characters).
const MAX_REPLY_CHARS: usize = 1600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceSettings {
    /// Sent to a number that replied with an opt-out keyword (`OPT_OUT_REPLY`).
    pub opt_out_reply: Option<String>,
    /// Sent to a number that opted back in (`OPT_IN_REPLY`).
    pub opt_in_reply: Option<String>,
    /// Sent to a number that asked for `HELP` or `INFO` (`HELP_REPLY`).
    pub help_reply: Option<String>,
    /// Replace typographic look-alikes with GSM characters before sending
    /// (`SMS_SMART_ENCODING`).
    pub sms_smart_encoding: bool,
    /// An sms/mms body taking more segments is refused (`SMS_MAX_SEGMENTS`).
    pub sms_max_segments: u32,
}

impl Default for ComplianceSettings {
    fn default() -> Self {
        Self {
            opt_out_reply: None,
            opt_in_reply: None,
            help_reply: None,
            sms_smart_encoding: false,
            sms_max_segments: 10,
        }
    }
}

impl ComplianceSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let reply = |name: &str| -> Result<Option<String>, ConfigError> {
            match env.raw(name).map(str::trim) {
                Some(text) if text.chars().count() > MAX_REPLY_CHARS => Err(ConfigError(format!(
                    "{name} must be at most {MAX_REPLY_CHARS} characters"
                ))),
                other => Ok(other.map(str::to_owned)),
            }
        };
        let sms_max_segments: u32 = env.parse("SMS_MAX_SEGMENTS", 10, "a positive integer")?;
        if sms_max_segments == 0 {
            return Err(ConfigError("SMS_MAX_SEGMENTS must be at least 1".into()));
        }
        Ok(Self {
            opt_out_reply: reply("OPT_OUT_REPLY")?,
            opt_in_reply: reply("OPT_IN_REPLY")?,
            help_reply: reply("HELP_REPLY")?,
            sms_smart_encoding: env.flag("SMS_SMART_ENCODING", false)?,
            sms_max_segments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_send_no_replies_and_allow_ten_segments() {
        let s = ComplianceSettings::from_env(&Env::from_pairs([("X", "1")])).unwrap();
        assert_eq!(s, ComplianceSettings::default());
    }

    #[test]
    fn replies_and_limits_are_read_and_checked() {
        let s = ComplianceSettings::from_env(&Env::from_pairs([
            ("OPT_OUT_REPLY", " You are unsubscribed. "),
            ("HELP_REPLY", "Reply STOP to stop."),
            ("SMS_SMART_ENCODING", "true"),
            ("SMS_MAX_SEGMENTS", "3"),
        ]))
        .unwrap();
        assert_eq!(s.opt_out_reply.as_deref(), Some("You are unsubscribed."));
        assert_eq!(s.opt_in_reply, None);
        assert!(s.sms_smart_encoding);
        assert_eq!(s.sms_max_segments, 3);
        for bad in [("SMS_MAX_SEGMENTS", "0"), ("SMS_MAX_SEGMENTS", "x")] {
            let e = ComplianceSettings::from_env(&Env::from_pairs([bad])).unwrap_err();
            assert!(e.to_string().contains("SMS_MAX_SEGMENTS"), "{e}");
        }
        let long = "a".repeat(MAX_REPLY_CHARS + 1);
        assert!(ComplianceSettings::from_env(&Env::from_pairs([("OPT_IN_REPLY", long)])).is_err());
    }
}
