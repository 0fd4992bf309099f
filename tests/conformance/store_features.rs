//! Conversations, inbound messages, dead letters, webhooks and API keys, run on PostgreSQL
//! and on SQLite.

use std::sync::Arc;
use std::time::Duration;

use messaging_service::domain::{
    ErrorInfo, InboundContent, Message, MessageStatus, MessageType, NewApiKey, NewMessage,
    OutboundContent, SearchQuery, hash_key,
};
use messaging_service::store::{EventOutcome, Inserted, Outcome, Page, ProviderEvent, Store};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

on_every_store!(
    conversations_count_messages_and_unread_until_marked_read,
    search_ranks_by_matching_messages_and_participants_first,
    an_inbound_message_is_stored_once_per_provider_id,
    a_failed_message_is_redriven_with_a_fresh_budget,
    a_deferral_is_not_a_retry_and_segments_are_kept,
    receipts_apply_once_and_replays_are_logged_as_duplicates,
    api_keys_are_found_by_hash_and_revoked_for_good,
);

const ALICE: &str = "+15551234567";
const BOB: &str = "+15559876543";

fn outbound(from: &str, to: &str, body: &str) -> NewMessage {
    NewMessage::outbound(OutboundContent {
        from: Some(from.into()),
        to: Some(to.into()),
        kind: Some("sms".into()),
        body: Some(body.into()),
        ..Default::default()
    })
    .unwrap()
}

fn inbound(from: &str, to: &str, provider: &str, id: &str) -> NewMessage {
    NewMessage::inbound(InboundContent {
        kind: MessageType::Sms,
        from: Some(from.into()),
        to: Some(to.into()),
        body: Some(format!("reply {id}")),
        subject: None,
        attachments: Vec::new(),
        provider: provider.into(),
        provider_message_id: Some(id.into()),
        provider_timestamp: Some(time::macros::datetime!(2026-11-28 10:00:00.123456 UTC)),
        metadata: None,
    })
    .unwrap()
}

fn created(result: &Inserted) -> &Message {
    match result {
        Inserted::Created(m) => m,
        Inserted::Existing { .. } => panic!("expected a new message, got {result:?}"),
    }
}

fn existing(result: &Inserted) -> &Message {
    match result {
        Inserted::Existing { message, .. } => message,
        Inserted::Created(_) => panic!("expected the stored message, got {result:?}"),
    }
}

async fn insert(store: &Arc<dyn Store>, batch: Vec<NewMessage>) -> Vec<Message> {
    store
        .insert_messages(&batch)
        .await
        .unwrap()
        .iter()
        .map(|r| created(r).clone())
        .collect()
}

/// A lease longer than any test.
fn lease() -> std::time::Duration {
    std::time::Duration::from_secs(3600)
}

/// Claims the message and records `outcome` for it.
async fn finish(store: &Arc<dyn Store>, outcome: Outcome) {
    let claim = store.claim(&[outcome.id()], lease()).await.unwrap();
    assert_eq!(claim.messages.len(), 1, "claimable");
    let applied = store
        .record_outcomes(claim.token, &[outcome])
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
}

fn error(code: &str) -> ErrorInfo {
    ErrorInfo {
        code: code.into(),
        message: format!("provider said {code}"),
    }
}

async fn conversations_count_messages_and_unread_until_marked_read(store: Arc<dyn Store>) {
    let sent = insert(
        &store,
        vec![outbound(ALICE, BOB, "one"), outbound(ALICE, BOB, "two")],
    )
    .await;
    let replies = insert(
        &store,
        vec![
            inbound(BOB, ALICE, "twilio", "SM1"),
            inbound(BOB, ALICE, "twilio", "SM2"),
        ],
    )
    .await;
    let id = sent[0].conversation_id;
    assert!(replies.iter().all(|m| m.conversation_id == id));
    let c = store.get_conversation(id).await.unwrap().unwrap();
    assert_eq!((c.message_count, c.unread_count), (4, 2));
    assert!(c.last_message_at.is_some());

    let (c, marked) = store.mark_conversation_read(id).await.unwrap().unwrap();
    assert_eq!((marked, c.unread_count, c.message_count), (2, 0, 4));
    for reply in &replies {
        let m = store.get_message(reply.id).await.unwrap().unwrap();
        assert!(m.read_at.is_some(), "inbound marked read");
    }
    let outbound_read = store
        .get_message(sent[0].id)
        .await
        .unwrap()
        .unwrap()
        .read_at;
    assert_eq!(outbound_read, None, "only inbound messages are read");
    let (_, again) = store.mark_conversation_read(id).await.unwrap().unwrap();
    assert_eq!(again, 0);

    insert(&store, vec![inbound(BOB, ALICE, "twilio", "SM3")]).await;
    let c = store.get_conversation(id).await.unwrap().unwrap();
    assert_eq!((c.message_count, c.unread_count), (5, 1));
    assert!(
        store
            .mark_conversation_read(Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );

    let (messages, total) = store
        .conversation_messages(
            id,
            Default::default(),
            Page {
                limit: 2,
                offset: 0,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, 5);
    assert_eq!(messages[0].id, sent[0].id, "oldest first");

    let found = |text: &'static str| {
        let store = store.clone();
        async move {
            let query = SearchQuery::parse(Some(text)).unwrap();
            let hits = store.search_conversations(&query, 10).await.unwrap();
            hits.iter()
                .filter(|h| h.conversation.id == id)
                .map(|h| h.matching_messages)
                .sum::<i64>()
        }
    };
    assert_eq!(found("two").await, 1, "found before the delete");
    let claim = store
        .claim(&[sent[0].id], Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claim.messages.len(), 1);
    assert!(!store.message_events(sent[0].id).await.unwrap().is_empty());
    assert!(store.delete_conversation(id).await.unwrap());
    assert!(
        store.get_message(sent[0].id).await.unwrap().is_none(),
        "messages go too"
    );
    assert!(
        store.message_events(sent[0].id).await.unwrap().is_empty(),
        "and their history"
    );
    assert_eq!(found("two").await, 0, "and so does their text");
    assert!(!store.delete_conversation(id).await.unwrap());
}

async fn search_ranks_by_matching_messages_and_participants_first(store: Arc<dyn Store>) {
    let (carol, dave, erin) = ("+15550000001", "+15550000002", "+15550000003");
    let many = insert(
        &store,
        vec![
            outbound(ALICE, carol, "Your invoice is ready"),
            outbound(ALICE, carol, "invoice #2 attached"),
            outbound(ALICE, carol, "Reminder: unpaid invoice"),
        ],
    )
    .await;
    let one = insert(
        &store,
        vec![outbound(ALICE, dave, "Lunch? Also the INVOICE")],
    )
    .await;
    insert(
        &store,
        vec![outbound(ALICE, erin, "invoices are not invoice-free")],
    )
    .await;
    insert(
        &store,
        vec![outbound(ALICE, BOB, "call Carol at +15550000001")],
    )
    .await;

    let search = |text: &str| {
        let store = store.clone();
        let query = SearchQuery::parse(Some(text)).unwrap();
        async move { store.search_conversations(&query, 10).await.unwrap() }
    };
    let hits = search("invoice").await;
    let ids: Vec<Uuid> = hits.iter().map(|h| h.conversation.id).collect();
    assert_eq!(ids.len(), 3, "words, case-insensitive: {ids:?}");
    assert_eq!(ids[0], many[0].conversation_id);
    assert_eq!(hits[0].matching_messages, 3);
    assert!(ids.contains(&one[0].conversation_id));
    assert!(hits[0].rank > hits[2].rank);
    assert!(hits.windows(2).all(|w| w[0].rank >= w[1].rank));

    let both = search("lunch invoice").await;
    assert_eq!(both.len(), 1, "every word must be present");
    assert_eq!(both[0].conversation.id, one[0].conversation_id);
    // Sending changes the message's status, not its text: it is still found, once.
    finish(
        &store,
        Outcome::Sent {
            id: one[0].id,
            provider: "twilio".into(),
            provider_message_id: "SMlunch".into(),
            num_segments: None,
        },
    )
    .await;
    let sent = search("lunch invoice").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].matching_messages, 1, "{sent:?}");
    assert!(search("voice").await.is_empty(), "not substrings");

    // Carol's own conversation ranks above one that merely mentions her number.
    let by_address = search("+1 (555) 000-0001").await;
    assert_eq!(by_address.len(), 2);
    assert_eq!(by_address[0].conversation.id, many[0].conversation_id);
    assert!(by_address[0].rank >= 1.0);
    assert_eq!(search("+1555000000").await.len(), 3, "a participant prefix");
    assert!(search("\"unbalanced & | ! ( :* NEAR").await.is_empty());
}

async fn an_inbound_message_is_stored_once_per_provider_id(store: Arc<dyn Store>) {
    let first = insert(&store, vec![inbound(BOB, ALICE, "twilio", "SMabc")]).await;
    assert_eq!(first[0].provider.as_deref(), Some("twilio"));
    assert_eq!(first[0].provider_message_id.as_deref(), Some("SMabc"));
    assert_eq!(first[0].status, MessageStatus::Received);
    let stored = store.get_message(first[0].id).await.unwrap().unwrap();
    assert_eq!(
        stored.provider_timestamp,
        Some(time::macros::datetime!(2026-11-28 10:00:00.123456 UTC))
    );

    // A replay in a later batch, twice in one batch, and the same id from another provider.
    let results = store
        .insert_messages(&[
            inbound(BOB, ALICE, "twilio", "SMabc"),
            inbound(BOB, ALICE, "twilio", "SMnew"),
            inbound(BOB, ALICE, "twilio", "SMnew"),
            inbound(BOB, ALICE, "sendgrid", "SMabc"),
        ])
        .await
        .unwrap();
    assert_eq!(existing(&results[0]).id, first[0].id);
    let new = created(&results[1]).id;
    assert_eq!(existing(&results[2]).id, new);
    created(&results[3]);

    let c = store
        .get_conversation(first[0].conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.message_count, c.unread_count),
        (3, 3),
        "replays count once"
    );
}

async fn a_failed_message_is_redriven_with_a_fresh_budget(store: Arc<dyn Store>) {
    let [failed, pending] = insert(
        &store,
        vec![outbound(ALICE, BOB, "fails"), outbound(ALICE, BOB, "waits")],
    )
    .await
    .try_into()
    .unwrap();
    let at = OffsetDateTime::now_utc() - std::time::Duration::from_secs(1);
    finish(
        &store,
        Outcome::Retry {
            id: failed.id,
            provider: "mock".into(),
            error: error("500"),
            next_attempt_at: at,
        },
    )
    .await;
    finish(
        &store,
        Outcome::Failed {
            id: failed.id,
            provider: Some("mock".into()),
            error: error("21211"),
        },
    )
    .await;
    let before = store.get_message(failed.id).await.unwrap().unwrap();
    assert_eq!(
        (before.status, before.retry_count),
        (MessageStatus::Failed, 1)
    );

    let moved = store
        .redrive(&[failed.id, pending.id, Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(moved.len(), 1, "only failed messages move");
    let m = &moved[0];
    assert_eq!(m.id, failed.id);
    assert_eq!((m.status, m.retry_count), (MessageStatus::Pending, 0));
    assert_eq!((m.error.clone(), m.failed_at), (None, None));
    assert_eq!(
        store.get_message(failed.id).await.unwrap().unwrap().status,
        MessageStatus::Pending
    );

    let events = store.message_events(failed.id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.event, "redriven");
    assert_eq!(
        (last.from_status, last.to_status),
        (Some(MessageStatus::Failed), Some(MessageStatus::Pending))
    );
    assert_eq!(last.detail["previous_error_code"], "21211");
    assert_eq!(last.detail["previous_retry_count"], 1);
    assert!(
        store.redrive(&[failed.id]).await.unwrap().is_empty(),
        "once"
    );
    // Claimable again.
    assert_eq!(
        store
            .claim(&[failed.id], lease())
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
}

async fn a_deferral_is_not_a_retry_and_segments_are_kept(store: Arc<dyn Store>) {
    let [paced, sent] = insert(
        &store,
        vec![outbound(ALICE, BOB, "paced"), outbound(ALICE, BOB, "sent")],
    )
    .await
    .try_into()
    .unwrap();
    let due = OffsetDateTime::now_utc() - std::time::Duration::from_millis(1);
    finish(
        &store,
        Outcome::Deferred {
            id: paced.id,
            reason: "pacing: 1 per second".into(),
            next_attempt_at: due,
        },
    )
    .await;
    let m = store.get_message(paced.id).await.unwrap().unwrap();
    assert_eq!((m.status, m.retry_count), (MessageStatus::Retry, 0));
    assert_eq!(m.error.map(|e| e.code), Some("paced".to_owned()));
    assert!(m.next_attempt_at.is_some());

    finish(
        &store,
        Outcome::Sent {
            id: sent.id,
            provider: "twilio".into(),
            provider_message_id: "SMseg".into(),
            num_segments: Some(3),
        },
    )
    .await;
    let m = store.get_message(sent.id).await.unwrap().unwrap();
    assert_eq!((m.status, m.num_segments), (MessageStatus::Sent, Some(3)));
}

fn receipt(key: &str, pmid: &str, target: Option<MessageStatus>) -> ProviderEvent {
    ProviderEvent {
        provider: "twilio",
        dedupe_key: key.into(),
        provider_message_id: pmid.into(),
        event: target.map_or("queued".into(), |t| t.as_str().to_owned()),
        target,
        error: None,
        detail: json!({"raw": key}),
    }
}

async fn receipts_apply_once_and_replays_are_logged_as_duplicates(store: Arc<dyn Store>) {
    let [m] = insert(&store, vec![outbound(ALICE, BOB, "tracked")])
        .await
        .try_into()
        .unwrap();
    finish(
        &store,
        Outcome::Sent {
            id: m.id,
            provider: "twilio".into(),
            provider_message_id: "SMtracked".into(),
            num_segments: None,
        },
    )
    .await;

    let outcomes = store
        .apply_provider_events(&[
            receipt("SMtracked:queued", "SMtracked", None),
            receipt(
                "SMtracked:delivered",
                "SMtracked",
                Some(MessageStatus::Delivered),
            ),
            receipt(
                "SMtracked:delivered",
                "SMtracked",
                Some(MessageStatus::Delivered),
            ),
            receipt(
                "SMnobody:delivered",
                "SMnobody",
                Some(MessageStatus::Delivered),
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            EventOutcome::Recorded,
            EventOutcome::Applied,
            EventOutcome::Duplicate,
            EventOutcome::UnknownMessage
        ]
    );
    let stored = store.get_message(m.id).await.unwrap().unwrap();
    assert_eq!(stored.status, MessageStatus::Delivered);
    assert!(stored.delivered_at.is_some());

    // A replay in a later batch changes nothing; a late `sent` never moves it backwards.
    let later = store
        .apply_provider_events(&[
            receipt(
                "SMtracked:delivered",
                "SMtracked",
                Some(MessageStatus::Delivered),
            ),
            receipt("SMtracked:sent", "SMtracked", Some(MessageStatus::Sent)),
        ])
        .await
        .unwrap();
    assert_eq!(later, [EventOutcome::Duplicate, EventOutcome::Recorded]);
    assert_eq!(
        store.get_message(m.id).await.unwrap().unwrap().status,
        MessageStatus::Delivered
    );

    let history: Vec<_> = store
        .message_events(m.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "provider_event")
        .collect();
    assert_eq!(history.len(), 3, "every original event, no replay");
    assert_eq!(history[1].to_status, Some(MessageStatus::Delivered));
    assert_eq!(history[1].detail["event"], "delivered");

    let (log, total) = store
        .webhook_deliveries(
            Some("twilio"),
            Page {
                limit: 100,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 6);
    let count = |outcome: &str| log.iter().filter(|d| d.outcome == outcome).count();
    assert_eq!(
        (
            count("applied"),
            count("recorded"),
            count("duplicate"),
            count("unknown_message")
        ),
        (1, 2, 2, 1)
    );
    let applied = log.iter().find(|d| d.outcome == "applied").unwrap();
    assert_eq!(applied.message_id, Some(m.id));
    assert!(applied.verified);
    let (none, zero) = store
        .webhook_deliveries(
            Some("sendgrid"),
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert!(none.is_empty() && zero == 0);
}

async fn api_keys_are_found_by_hash_and_revoked_for_good(store: Arc<dyn Store>) {
    let (first_key, first) = NewApiKey::generate("billing").unwrap();
    let (_, second) = NewApiKey::generate("reports").unwrap();
    let a = store.create_api_key(&first).await.unwrap();
    let b = store.create_api_key(&second).await.unwrap();
    assert_eq!((a.name.as_str(), a.revoked_at), ("billing", None));
    assert!(first_key.starts_with(&a.prefix));

    let found = store
        .find_api_key(&hash_key(&first_key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, a);
    assert!(
        store
            .find_api_key(&hash_key("msk_unknown"))
            .await
            .unwrap()
            .is_none()
    );
    let listed: Vec<Uuid> = store
        .list_api_keys()
        .await
        .unwrap()
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, [a.id, b.id], "oldest first");

    let revoked = store.revoke_api_key(a.id).await.unwrap().unwrap();
    let at = revoked.revoked_at.expect("revoked");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = store.revoke_api_key(a.id).await.unwrap().unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at),
        "keeps its first revocation time"
    );
    assert!(
        store
            .find_api_key(&hash_key(&first_key))
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );
    assert!(
        store
            .revoke_api_key(Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
}
