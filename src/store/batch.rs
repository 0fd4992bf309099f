//! The backend-neutral half of storing a batch of new messages: which entries are new,
//! which repeat an idempotency key or an inbound provider id, how conversations are counted,
//! and what each request is answered. Every backend runs its SQL around these decisions.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Inserted;
use crate::domain::{ChannelFamily, Direction, Message, NewMessage};

/// A conversation's identity: the channel family and the ordered participant pair.
pub(crate) type ConversationKey = (ChannelFamily, String, String);

/// The messages to insert with their conversations, and each entry's conversation.
pub(crate) type Placement<'a> = (Vec<(&'a NewMessage, Uuid)>, Vec<Uuid>);

/// What makes a new message a repeat of a stored one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum DedupeKey {
    Idempotency(String),
    Inbound { provider: String, id: String },
}

impl DedupeKey {
    fn of(
        idempotency_key: &Option<String>,
        direction: Direction,
        provider: &Option<String>,
        provider_message_id: &Option<String>,
    ) -> Option<Self> {
        if let Some(k) = idempotency_key {
            return Some(Self::Idempotency(k.clone()));
        }
        match (direction, provider, provider_message_id) {
            (Direction::Inbound, Some(provider), Some(id)) => Some(Self::Inbound {
                provider: provider.clone(),
                id: id.clone(),
            }),
            _ => None,
        }
    }

    pub(crate) fn of_new(m: &NewMessage) -> Option<Self> {
        Self::of(
            &m.idempotency_key,
            m.direction,
            &m.provider,
            &m.provider_message_id,
        )
    }

    pub(crate) fn of_stored(m: &Message) -> Option<Self> {
        Self::of(
            &m.idempotency_key,
            m.direction,
            &m.provider,
            &m.provider_message_id,
        )
    }
}

/// Stored messages found for the batch's keys, with their request fingerprints.
pub(crate) type Existing = HashMap<DedupeKey, (Message, Option<String>)>;

/// The keys of a batch to look up among stored messages, by kind (each kind has its own
/// unique index).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LookupKeys {
    pub idempotency: Vec<String>,
    /// (provider, provider message id) of inbound messages.
    pub inbound: Vec<(String, String)>,
}

impl LookupKeys {
    pub(crate) fn of(dedupe: &[Option<DedupeKey>]) -> Self {
        let mut keys = Self::default();
        for key in dedupe.iter().flatten() {
            match key {
                DedupeKey::Idempotency(k) => keys.idempotency.push(k.clone()),
                DedupeKey::Inbound { provider, id } => {
                    keys.inbound.push((provider.clone(), id.clone()));
                }
            }
        }
        keys
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.idempotency.is_empty() && self.inbound.is_empty()
    }
}

/// The stored messages a lookup found (with their request fingerprints), by key.
pub(crate) fn existing_of(found: Vec<(Message, Option<String>)>) -> Existing {
    found
        .into_iter()
        .filter_map(|(message, hash)| DedupeKey::of_stored(&message).map(|k| (k, (message, hash))))
        .collect()
}

/// One conversation row of the batch's upsert: a fresh id (used only if the pair is new)
/// and the batch's own totals, added to the stored ones.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConversationRow {
    pub id: Uuid,
    pub key: ConversationKey,
    pub messages: i64,
    /// Inbound messages; more than none re-opens an archived conversation.
    pub unread: i64,
    pub last_message_at: OffsetDateTime,
}

/// Timestamps as both databases keep them: to the microsecond.
fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// The message as it was just stored.
pub(crate) fn created_message(m: &NewMessage, conversation_id: Uuid) -> Message {
    let created_at = truncate_to_micros(m.created_at);
    Message {
        id: m.id,
        conversation_id,
        direction: m.direction,
        kind: m.kind,
        from: m.from.as_str().to_owned(),
        to: m.to.as_str().to_owned(),
        body: m.body.clone(),
        subject: m.subject.clone(),
        attachments: m.attachments.clone(),
        status: m.status,
        provider: m.provider.clone(),
        provider_message_id: m.provider_message_id.clone(),
        num_segments: None,
        retry_count: 0,
        error: None,
        metadata: m.metadata.clone(),
        idempotency_key: m.idempotency_key.clone(),
        created_at,
        updated_at: created_at,
        sent_at: None,
        delivered_at: None,
        failed_at: None,
        next_attempt_at: None,
        provider_timestamp: m.provider_timestamp.map(truncate_to_micros),
        read_at: None,
        send_at: m.send_at.map(truncate_to_micros),
        size: None,
    }
    .sized()
}

/// The decisions about one batch, before any row is written.
pub(crate) struct BatchPlan {
    pub dedupe: Vec<Option<DedupeKey>>,
    /// Entries to store: not stored yet and the first of their key in this batch.
    pub fresh: Vec<bool>,
    first_of_key: HashMap<DedupeKey, usize>,
    /// Per conversation: messages, unread (inbound) messages, newest message time. Sorted,
    /// so that concurrent batches lock conversations in one order.
    pub conversations: BTreeMap<ConversationKey, (i64, i64, OffsetDateTime)>,
}

impl BatchPlan {
    pub(crate) fn new(
        batch: &[NewMessage],
        dedupe: Vec<Option<DedupeKey>>,
        existing: &Existing,
    ) -> Self {
        let mut first_of_key: HashMap<DedupeKey, usize> = HashMap::new();
        let mut fresh = vec![false; batch.len()];
        for (i, key) in dedupe.iter().enumerate() {
            match key {
                Some(k) if existing.contains_key(k) => {}
                Some(k) => {
                    if !first_of_key.contains_key(k) {
                        first_of_key.insert(k.clone(), i);
                        fresh[i] = true;
                    }
                }
                None => fresh[i] = true,
            }
        }
        let mut conversations: BTreeMap<ConversationKey, (i64, i64, OffsetDateTime)> =
            BTreeMap::new();
        for (m, _) in batch.iter().zip(&fresh).filter(|(_, f)| **f) {
            let unread = i64::from(m.direction == Direction::Inbound);
            let entry = conversations
                .entry(m.conversation_key())
                .or_insert((0, 0, m.created_at));
            entry.0 += 1;
            entry.1 += unread;
            entry.2 = entry.2.max(m.created_at);
        }
        Self {
            dedupe,
            fresh,
            first_of_key,
            conversations,
        }
    }

    /// The conversation upsert, in key order.
    pub(crate) fn conversation_rows(&self) -> Vec<ConversationRow> {
        self.conversations
            .iter()
            .map(|(key, (messages, unread, at))| ConversationRow {
                id: Uuid::now_v7(),
                key: key.clone(),
                messages: *messages,
                unread: *unread,
                last_message_at: *at,
            })
            .collect()
    }

    /// The messages to insert with the conversation each goes to, and that conversation
    /// for every entry of the batch (nil for those not stored), as `results` wants it.
    pub(crate) fn placed<'a>(
        &self,
        batch: &'a [NewMessage],
        conversation_ids: &HashMap<ConversationKey, Uuid>,
    ) -> anyhow::Result<Placement<'a>> {
        let mut rows = Vec::new();
        let mut conversation_of = vec![Uuid::nil(); batch.len()];
        for (i, m) in batch.iter().enumerate().filter(|(i, _)| self.fresh[*i]) {
            let conversation_id = *conversation_ids
                .get(&m.conversation_key())
                .context("conversation upsert returned no row for a message")?;
            conversation_of[i] = conversation_id;
            rows.push((m, conversation_id));
        }
        Ok((rows, conversation_of))
    }

    /// The answer for each entry, in batch order: created (with the conversation it was
    /// stored in), or the message its key already names.
    pub(crate) fn results(
        &self,
        batch: &[NewMessage],
        existing: &Existing,
        conversation_of: &[Uuid],
    ) -> anyhow::Result<Vec<Inserted>> {
        batch
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if self.fresh[i] {
                    return Ok(Inserted::Created(created_message(m, conversation_of[i])));
                }
                let key = self.dedupe[i]
                    .as_ref()
                    .context("a skipped message without a deduplication key")?;
                if let Some((message, request_hash)) = existing.get(key) {
                    return Ok(Inserted::Existing {
                        message: message.clone(),
                        request_hash: request_hash.clone(),
                    });
                }
                let first = *self
                    .first_of_key
                    .get(key)
                    .context("duplicate key without a first occurrence")?;
                Ok(Inserted::Existing {
                    message: created_message(&batch[first], conversation_of[first]),
                    request_hash: batch[first].request_hash.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutboundContent;

    fn sms(to: &str, key: Option<&str>) -> NewMessage {
        let mut m = NewMessage::outbound(OutboundContent {
            from: Some("+15551234567".into()),
            to: Some(to.into()),
            body: Some("x".into()),
            ..Default::default()
        })
        .unwrap();
        m.idempotency_key = key.map(str::to_owned);
        m
    }

    #[test]
    fn repeats_in_a_batch_point_at_the_first_and_count_once() {
        let batch = [
            sms("+15559876543", Some("k")),
            sms("+15559876543", Some("k")),
            sms("+15550000000", None),
        ];
        let dedupe: Vec<_> = batch.iter().map(DedupeKey::of_new).collect();
        let plan = BatchPlan::new(&batch, dedupe, &Existing::new());
        assert_eq!(plan.fresh, [true, false, true]);
        assert_eq!(plan.conversations.len(), 2);
        assert!(plan.conversations.values().all(|c| c.0 == 1));
        let ids = [Uuid::now_v7(), Uuid::nil(), Uuid::now_v7()];
        let results = plan.results(&batch, &Existing::new(), &ids).unwrap();
        let (Inserted::Created(first), Inserted::Existing { message, .. }) =
            (&results[0], &results[1])
        else {
            panic!("expected created then existing");
        };
        assert_eq!(first.id, message.id);
    }

    #[test]
    fn keys_are_looked_up_by_kind_and_fresh_messages_placed_in_their_conversation() {
        let batch = [sms("+15559876543", Some("k")), sms("+15550000000", None)];
        let dedupe: Vec<_> = batch.iter().map(DedupeKey::of_new).collect();
        let keys = LookupKeys::of(&dedupe);
        assert_eq!(keys.idempotency, ["k"]);
        assert!(keys.inbound.is_empty());
        assert!(LookupKeys::of(&[None]).is_empty());

        let plan = BatchPlan::new(&batch, dedupe, &Existing::new());
        let rows = plan.conversation_rows();
        assert_eq!(rows.len(), 2);
        assert!(
            rows.windows(2).all(|w| w[0].key < w[1].key),
            "locked in key order"
        );
        let ids: HashMap<_, _> = rows.iter().map(|r| (r.key.clone(), r.id)).collect();
        let (placed, conversation_of) = plan.placed(&batch, &ids).unwrap();
        assert_eq!(placed.len(), 2);
        assert_eq!(conversation_of[0], ids[&batch[0].conversation_key()]);
        assert!(plan.placed(&batch, &HashMap::new()).is_err());
    }

    #[test]
    fn a_key_already_stored_is_not_stored_again() {
        let batch = [sms("+15559876543", Some("k"))];
        let stored = created_message(&sms("+15559876543", Some("k")), Uuid::now_v7());
        let existing = existing_of(vec![(stored.clone(), None)]);
        let dedupe: Vec<_> = batch.iter().map(DedupeKey::of_new).collect();
        let plan = BatchPlan::new(&batch, dedupe, &existing);
        assert_eq!(plan.fresh, [false]);
        assert!(plan.conversations.is_empty());
        let results = plan.results(&batch, &existing, &[Uuid::nil()]).unwrap();
        assert!(
            matches!(&results[0], Inserted::Existing { message, .. } if message.id == stored.id)
        );
    }
}
