//! Scheduled sends: when a client may ask a message to go out (`send_at`).

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::message::{MessageStatus, NewMessage, ValidationError};

/// The furthest ahead a send may be scheduled.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(35);
/// How far in the past a `send_at` may lie and still be accepted (it is then due at once):
/// the client's clock and the request's trip are allowed this much.
pub const SEND_AT_SKEW: Duration = Duration::seconds(5);

/// Parses `send_at`: RFC 3339 with an offset (`2026-12-02T21:00:00Z`,
/// `2026-12-02T22:00:00+01:00`), not before `now` less [`SEND_AT_SKEW`], at most
/// [`MAX_SCHEDULE_AHEAD`] after `now`. Kept to the microsecond, as both databases store it.
pub fn parse_send_at(raw: &str, now: OffsetDateTime) -> Result<OffsetDateTime, ValidationError> {
    let at = OffsetDateTime::parse(raw.trim(), &Rfc3339).map_err(|_| {
        ValidationError::new(
            "send_at",
            "must be an RFC 3339 time with an offset, e.g. 2026-12-02T21:00:00Z",
        )
    })?;
    if at < now - SEND_AT_SKEW {
        return Err(ValidationError::new("send_at", "must not be in the past"));
    }
    if at > now + MAX_SCHEDULE_AHEAD {
        return Err(ValidationError::new(
            "send_at",
            "must be at most 35 days ahead",
        ));
    }
    let at = at.to_offset(time::UtcOffset::UTC);
    Ok(at
        .replace_nanosecond(at.nanosecond() / 1000 * 1000)
        .unwrap_or(at))
}

impl NewMessage {
    /// The message held back until `send_at`: stored `scheduled`, promoted when due.
    pub fn scheduled(self, send_at: OffsetDateTime) -> Self {
        Self {
            status: MessageStatus::Scheduled,
            send_at: Some(send_at),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-02 20:00:00 UTC);

    #[test]
    fn a_time_ahead_within_35_days_is_accepted_in_utc() {
        let at = parse_send_at("2026-12-02T22:00:00+01:00", NOW).unwrap();
        assert_eq!(at, datetime!(2026-12-02 21:00:00 UTC));
        assert_eq!(at.offset(), time::UtcOffset::UTC);
        assert!(parse_send_at("2027-01-06T20:00:00Z", NOW).is_ok());
    }

    #[test]
    fn the_past_beyond_the_skew_and_more_than_35_days_ahead_are_refused() {
        for raw in [
            "2026-12-02T19:59:54Z",
            "2026-11-01T00:00:00Z",
            "2027-01-06T20:00:01Z",
            "2027-01-07T20:00:00Z",
        ] {
            let err = parse_send_at(raw, NOW).unwrap_err();
            assert_eq!(err.field, "send_at", "{raw}");
        }
        // Within the skew: due at once.
        assert!(parse_send_at("2026-12-02T19:59:56Z", NOW).is_ok());
    }

    #[test]
    fn a_time_without_an_offset_or_not_a_time_is_refused() {
        for raw in ["2026-12-02T21:00:00", "tomorrow", "", "2026-12-02"] {
            assert_eq!(parse_send_at(raw, NOW).unwrap_err().field, "send_at");
        }
    }

    #[test]
    fn a_scheduled_message_becomes_pending_or_canceled_and_nothing_else() {
        use crate::domain::MessageStatus::{self, *};
        for next in MessageStatus::ALL.iter().copied() {
            let allowed = matches!(next, Pending | Canceled);
            assert_eq!(
                Scheduled.transition_to(next).is_ok(),
                allowed,
                "scheduled -> {next}"
            );
            // Nothing moves into `scheduled`, and nothing leaves `canceled`.
            assert!(
                next.transition_to(Scheduled).is_err(),
                "{next} -> scheduled"
            );
            assert!(Canceled.transition_to(next).is_err(), "canceled -> {next}");
        }
        assert_eq!(MessageStatus::predecessors(Canceled), vec![Scheduled]);
        assert!(Canceled.is_resting());
        assert!(!Scheduled.is_resting());
        assert_eq!(MessageStatus::parse("scheduled"), Some(Scheduled));
        assert_eq!(MessageStatus::parse("canceled"), Some(Canceled));
    }
}
