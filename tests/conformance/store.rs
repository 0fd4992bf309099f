//! The `Store` story, run on PostgreSQL and on SQLite.

use std::sync::Arc;
use std::time::Duration;

use messaging_service::domain::{
    ErrorInfo, Message, MessageStatus, MessageType, NewMessage, OutboundContent,
};
use messaging_service::store::{
    Inserted, MessageFilter, Outcome, Page, Settlement, Store, SweepQuery, Waiting,
};
use messaging_service::worker::OutcomeWriters;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

on_every_store!(
    stored_messages_read_back_as_they_were_sent,
    replies_thread_into_the_same_conversation,
    an_idempotency_key_stores_one_message,
    lists_are_newest_first_filtered_paginated_and_counted,
    a_claim_is_exclusive_until_it_goes_stale,
    claims_racing_for_the_same_messages_take_each_once,
    outcomes_follow_the_lifecycle_and_schedule_retries,
    outcomes_under_a_lost_claim_are_not_applied,
    outcomes_of_several_claims_apply_each_under_its_own_token,
    the_outcome_writers_answer_each_claim_with_its_own_ids,
    deliveries_count_claims_since_the_last_outcome,
    the_sweep_finds_stranded_messages_and_marks_them,
    the_audit_trail_records_every_transition_in_order,
);

fn content(from: &str, to: &str, kind: &str) -> OutboundContent {
    OutboundContent {
        from: Some(from.into()),
        to: Some(to.into()),
        kind: Some(kind.into()),
        body: Some("hello".into()),
        ..Default::default()
    }
}

fn sms() -> NewMessage {
    NewMessage::outbound(content("+15551234567", "+15559876543", "sms")).unwrap()
}

fn email() -> NewMessage {
    NewMessage::outbound(content("a@example.com", "b@example.com", "email")).unwrap()
}

fn created(result: &Inserted) -> &Message {
    match result {
        Inserted::Created(m) => m,
        Inserted::Existing { .. } => panic!("expected a new message, got {result:?}"),
    }
}

fn micros(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1000
}

async fn insert_one(store: &Arc<dyn Store>, m: NewMessage) -> Message {
    let results = store.insert_messages(&[m]).await.unwrap();
    created(&results[0]).clone()
}

/// A lease longer than any test.
fn lease() -> Duration {
    Duration::from_secs(3600)
}

fn sent(id: Uuid) -> Outcome {
    Outcome::Sent {
        id,
        provider: "mock".into(),
        provider_message_id: format!("SM{}", id.simple()),
        num_segments: None,
    }
}

fn retry(id: Uuid, at: OffsetDateTime) -> Outcome {
    Outcome::Retry {
        id,
        provider: "mock".into(),
        error: ErrorInfo {
            code: "500".into(),
            message: "server error".into(),
        },
        next_attempt_at: at,
    }
}

async fn stored_messages_read_back_as_they_were_sent(store: Arc<dyn Store>) {
    let mut mms = NewMessage::outbound(OutboundContent {
        attachments: vec!["https://example.com/a.png".into()],
        metadata: Some(json!({"campaign": "spring", "n": 3})),
        ..content("+15551234567", "+15559876543", "mms")
    })
    .unwrap();
    mms.idempotency_key = Some("key-1".into());
    let mut mail = NewMessage::outbound(OutboundContent {
        subject: Some("Hi".into()),
        ..content("a@example.com", "b@example.com", "email")
    })
    .unwrap();
    mail.created_at += Duration::from_millis(1);
    let results = store
        .insert_messages(&[mms.clone(), mail.clone()])
        .await
        .unwrap();
    assert_eq!(results.len(), 2, "one result per message, in order");
    for (input, result) in [&mms, &mail].into_iter().zip(&results) {
        let returned = created(result);
        assert_eq!(returned.id, input.id);
        let stored = store.get_message(input.id).await.unwrap().expect("stored");
        assert_eq!(stored.id, input.id);
        assert_eq!(stored.conversation_id, returned.conversation_id);
        assert_eq!(stored.kind, input.kind);
        assert_eq!(stored.direction, input.direction);
        assert_eq!(stored.from, input.from.as_str());
        assert_eq!(stored.to, input.to.as_str());
        assert_eq!(stored.body, input.body);
        assert_eq!(stored.subject, input.subject);
        assert_eq!(stored.attachments, input.attachments);
        assert_eq!(stored.metadata, input.metadata);
        assert_eq!(stored.idempotency_key, input.idempotency_key);
        assert_eq!(stored.status, MessageStatus::Pending);
        assert_eq!(stored.retry_count, 0);
        assert_eq!(stored.error, None);
        assert_eq!(stored.provider, None);
        assert_eq!(micros(stored.created_at), micros(input.created_at));
        assert_eq!(stored.updated_at, stored.created_at);
        assert_eq!(
            (stored.sent_at, stored.failed_at, stored.next_attempt_at),
            (None, None, None)
        );
    }
    assert!(store.get_message(Uuid::now_v7()).await.unwrap().is_none());
}

async fn replies_thread_into_the_same_conversation(store: Arc<dyn Store>) {
    let first = insert_one(&store, sms()).await;
    let reply = insert_one(
        &store,
        NewMessage::outbound(content("+15559876543", "+15551234567", "sms")).unwrap(),
    )
    .await;
    let mms = insert_one(
        &store,
        NewMessage::outbound(OutboundContent {
            attachments: vec!["https://example.com/x.jpg".into()],
            ..content("+15559876543", "+15551234567", "mms")
        })
        .unwrap(),
    )
    .await;
    let other = insert_one(
        &store,
        NewMessage::outbound(content("+15551234567", "+15550000000", "sms")).unwrap(),
    )
    .await;
    let mail = insert_one(&store, email()).await;
    assert_eq!(
        reply.conversation_id, first.conversation_id,
        "B→A joins A↔B"
    );
    assert_eq!(
        mms.conversation_id, first.conversation_id,
        "sms and mms share phone"
    );
    assert_ne!(other.conversation_id, first.conversation_id);
    assert_ne!(mail.conversation_id, first.conversation_id);
    let filter = MessageFilter {
        conversation_id: Some(first.conversation_id),
        ..Default::default()
    };
    let (_, total) = store
        .list_messages(
            &filter,
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 3);
}

async fn an_idempotency_key_stores_one_message(store: Arc<dyn Store>) {
    let keyed = |hash: &str| {
        let mut m = sms();
        m.idempotency_key = Some("order-42".into());
        m.request_hash = Some(hash.into());
        m
    };
    let first = keyed("h1");
    let results = store
        .insert_messages(&[first.clone(), keyed("h2"), sms()])
        .await
        .unwrap();
    created(&results[0]);
    match &results[1] {
        Inserted::Existing {
            message,
            request_hash,
        } => {
            assert_eq!(
                message.id, first.id,
                "a repeat in the same batch gets the first"
            );
            assert_eq!(request_hash.as_deref(), Some("h1"));
        }
        other => panic!("expected the first message, got {other:?}"),
    }
    created(&results[2]);

    let again = store.insert_messages(&[keyed("h3")]).await.unwrap();
    match &again[0] {
        Inserted::Existing {
            message,
            request_hash,
        } => {
            assert_eq!(message.id, first.id, "a later repeat gets the first");
            assert_eq!(message.status, MessageStatus::Pending);
            assert_eq!(request_hash.as_deref(), Some("h1"));
        }
        other => panic!("expected the first message, got {other:?}"),
    }
    let (_, total) = store
        .list_messages(
            &MessageFilter::default(),
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 2, "the key stored one message");
}

async fn lists_are_newest_first_filtered_paginated_and_counted(store: Arc<dyn Store>) {
    let start = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let mut batch = Vec::new();
    for i in 0..5u64 {
        let mut m = sms();
        m.created_at = start + Duration::from_millis(10 * i);
        batch.push(m);
    }
    for i in 0..2u64 {
        let mut m = email();
        m.created_at = start + Duration::from_millis(100 + 10 * i);
        batch.push(m);
    }
    store.insert_messages(&batch).await.unwrap();
    let newest_first: Vec<Uuid> = batch.iter().rev().map(|m| m.id).collect();

    let all = MessageFilter::default();
    let (page, total) = store
        .list_messages(
            &all,
            Page {
                limit: 3,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 7);
    assert_eq!(
        page.iter().map(|m| m.id).collect::<Vec<_>>(),
        newest_first[..3]
    );
    let (page, total) = store
        .list_messages(
            &all,
            Page {
                limit: 3,
                offset: 6,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 7, "the total ignores the page");
    assert_eq!(
        page.iter().map(|m| m.id).collect::<Vec<_>>(),
        newest_first[6..]
    );
    let (page, _) = store
        .list_messages(
            &all,
            Page {
                limit: 3,
                offset: 7,
            },
        )
        .await
        .unwrap();
    assert!(page.is_empty());

    let emails = MessageFilter {
        kind: Some(MessageType::Email),
        ..Default::default()
    };
    let (page, total) = store
        .list_messages(
            &emails,
            Page {
                limit: 50,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert!(page.iter().all(|m| m.kind == MessageType::Email));

    let claimed = store.claim(&[batch[0].id], lease()).await.unwrap();
    assert_eq!(claimed.messages.len(), 1);
    let sending = MessageFilter {
        status: Some(MessageStatus::Sending),
        direction: Some(messaging_service::domain::Direction::Outbound),
        ..Default::default()
    };
    let (page, total) = store
        .list_messages(
            &sending,
            Page {
                limit: 50,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!((total, page[0].id), (1, batch[0].id));
    let inbound = MessageFilter {
        direction: Some(messaging_service::domain::Direction::Inbound),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_messages(
                &inbound,
                Page {
                    limit: 50,
                    offset: 0
                }
            )
            .await
            .unwrap()
            .1,
        0
    );
}

async fn a_claim_is_exclusive_until_it_goes_stale(store: Arc<dyn Store>) {
    let a = insert_one(&store, sms()).await;
    let b = insert_one(&store, sms()).await;
    let ids = [a.id, b.id];
    let first = store.claim(&ids, lease()).await.unwrap();
    assert_eq!(first.messages.len(), 2);
    assert!(
        first
            .messages
            .iter()
            .all(|m| m.status == MessageStatus::Sending)
    );
    let mut held = store.unclaimed(&ids).await.unwrap();
    held.sort_by_key(|(id, _)| *id);
    let mut expected: Vec<(Uuid, Waiting)> = ids.iter().map(|id| (*id, Waiting::Held)).collect();
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(held, expected);

    let again = store.claim(&ids, lease()).await.unwrap();
    assert!(again.messages.is_empty(), "a live claim is not taken twice");
    assert_ne!(again.token, first.token);

    // A renewal keeps the claim; once its lease runs out, another worker takes over.
    assert_eq!(
        store.renew_leases(&[first.token], lease()).await.unwrap(),
        2
    );
    assert!(
        store
            .claim(&ids, lease())
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    store
        .renew_leases(&[first.token], Duration::ZERO)
        .await
        .unwrap();
    let taken = store.claim(&[a.id], lease()).await.unwrap();
    assert_eq!(taken.messages.len(), 1);
    assert_eq!(taken.messages[0].id, a.id);
    assert_eq!(taken.deliveries[&a.id], 2, "two claims, no outcome yet");
    assert!(
        taken.reclaimed.contains_key(&a.id),
        "the taker learns the earlier claim's time"
    );
    assert!(first.reclaimed.is_empty());
    let events = store.message_events(a.id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (last.from_status, last.to_status),
        (Some(MessageStatus::Sending), Some(MessageStatus::Sending))
    );
    assert_eq!(last.detail["reclaimed"], true);

    // Resting messages and unknown ids are never claimed.
    let applied = store
        .record_outcomes(taken.token, &[sent(a.id)])
        .await
        .unwrap();
    assert_eq!(applied, vec![a.id]);
    let none = store
        .claim(&[a.id, Uuid::now_v7()], Duration::ZERO)
        .await
        .unwrap();
    assert!(none.messages.is_empty());
    assert_eq!(
        store.unclaimed(&ids).await.unwrap(),
        vec![(b.id, Waiting::Held)]
    );
}

async fn outcomes_follow_the_lifecycle_and_schedule_retries(store: Arc<dyn Store>) {
    let a = insert_one(&store, sms()).await;
    let b = insert_one(&store, sms()).await;
    let c = insert_one(&store, email()).await;
    let claim = store.claim(&[a.id, b.id, c.id], lease()).await.unwrap();
    assert_eq!(claim.messages.len(), 3);
    let due = OffsetDateTime::now_utc() + Duration::from_millis(400);
    let failed = Outcome::Failed {
        id: c.id,
        provider: Some("mock".into()),
        error: ErrorInfo {
            code: "21211".into(),
            message: "invalid number".into(),
        },
    };
    let mut applied = store
        .record_outcomes(claim.token, &[sent(a.id), retry(b.id, due), failed])
        .await
        .unwrap();
    applied.sort();
    let mut all = vec![a.id, b.id, c.id];
    all.sort();
    assert_eq!(applied, all);

    let a = store.get_message(a.id).await.unwrap().unwrap();
    assert_eq!(a.status, MessageStatus::Sent);
    assert_eq!(a.provider.as_deref(), Some("mock"));
    assert_eq!(a.provider_message_id, Some(format!("SM{}", a.id.simple())));
    assert!(a.sent_at.is_some());
    assert!(a.updated_at >= a.created_at);

    let b_now = store.get_message(b.id).await.unwrap().unwrap();
    assert_eq!(b_now.status, MessageStatus::Retry);
    assert_eq!(b_now.retry_count, 1);
    assert_eq!(b_now.error.as_ref().unwrap().code, "500");
    assert_eq!(micros(b_now.next_attempt_at.unwrap()), micros(due));

    let c = store.get_message(c.id).await.unwrap().unwrap();
    assert_eq!(c.status, MessageStatus::Failed);
    assert_eq!(c.error.as_ref().unwrap().code, "21211");
    assert!(c.failed_at.is_some());
    assert_eq!(c.retry_count, 0);

    // A retry is not claimable before it is due, resting messages never are. The retry's
    // task came early and still has work to do; the resting messages' tasks have none.
    let early = store.claim(&[a.id, b.id, c.id], lease()).await.unwrap();
    assert!(early.messages.is_empty());
    let waiting = store.unclaimed(&[a.id, b.id, c.id]).await.unwrap();
    if OffsetDateTime::now_utc() < due {
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        let (id, Waiting::DueAt(at)) = waiting[0] else {
            panic!("an early retry is not due yet: {waiting:?}");
        };
        assert_eq!((id, micros(at)), (b.id, micros(due)));
    } else {
        eprintln!("the retry fell due before the store was asked; not checking what it waits for");
    }
    let due_claim = crate::wait::until(
        "the retry to fall due",
        Duration::from_secs(10),
        async || {
            let claim = store.claim(&[b.id], lease()).await.unwrap();
            (!claim.messages.is_empty()).then_some(claim)
        },
    )
    .await;
    assert!(OffsetDateTime::now_utc() >= due, "claimed before due");
    assert_eq!(due_claim.messages.len(), 1);
    assert_eq!(due_claim.messages[0].next_attempt_at, None);
    store
        .record_outcomes(due_claim.token, &[sent(b.id)])
        .await
        .unwrap();
    let b = store.get_message(b.id).await.unwrap().unwrap();
    assert_eq!(b.status, MessageStatus::Sent);
    assert_eq!(b.retry_count, 1, "the count of retries stays");
    assert_eq!(b.error, None, "a success clears the error");
}

/// Sixteen claims at once over the same messages, each naming them in its own order (as
/// duplicate tasks read by several workers would): every message is claimed exactly once,
/// and no claim fails (two claims locking the same rows in opposite orders would deadlock).
async fn claims_racing_for_the_same_messages_take_each_once(store: Arc<dyn Store>) {
    let batch: Vec<NewMessage> = (0..1000).map(|_| sms()).collect();
    store.insert_messages(&batch).await.unwrap();
    let ids: Vec<Uuid> = batch.iter().map(|m| m.id).collect();
    let claims = (0..16usize).map(|i| {
        let store = store.clone();
        let mut mine = ids.clone();
        mine.rotate_left(i * 61 % ids.len());
        if i % 2 == 1 {
            mine.reverse();
        }
        tokio::spawn(async move { store.claim(&mine, lease()).await })
    });
    let mut taken: Vec<Uuid> = Vec::new();
    for claim in futures_util::future::join_all(claims).await {
        let claim = claim.expect("the claim task ran").expect("no claim fails");
        taken.extend(claim.messages.iter().map(|m| m.id));
    }
    let claims_made = taken.len();
    taken.sort();
    taken.dedup();
    assert_eq!(
        (claims_made, taken.len()),
        (ids.len(), ids.len()),
        "(claims made, messages claimed): each message claimed once, none missed"
    );
    let history = store.message_events(ids[0]).await.unwrap();
    let claimed: Vec<_> = history
        .iter()
        .filter(|e| e.to_status == Some(MessageStatus::Sending))
        .collect();
    assert_eq!(claimed.len(), 1, "one claim in the trail: {history:?}");
    assert_eq!(claimed[0].from_status, Some(MessageStatus::Pending));
}

async fn deliveries_count_claims_since_the_last_outcome(store: Arc<dyn Store>) {
    let m = insert_one(&store, sms()).await;
    for n in 1..=3 {
        let claim = store.claim(&[m.id], Duration::ZERO).await.unwrap();
        assert_eq!(claim.deliveries[&m.id], n, "claim {n}");
    }
    let at = OffsetDateTime::now_utc() - Duration::from_secs(1);
    let claim = store.claim(&[m.id], lease()).await.unwrap();
    assert_eq!(claim.deliveries[&m.id], 4);
    store
        .record_outcomes(claim.token, &[retry(m.id, at)])
        .await
        .unwrap();
    let claim = store.claim(&[m.id], lease()).await.unwrap();
    assert_eq!(
        claim.deliveries[&m.id], 1,
        "an outcome starts the count again"
    );
    assert!(claim.reclaimed.is_empty(), "a due retry is not a reclaim");
}

async fn outcomes_under_a_lost_claim_are_not_applied(store: Arc<dyn Store>) {
    let m = insert_one(&store, sms()).await;
    let first = store.claim(&[m.id], Duration::ZERO).await.unwrap();
    let second = store.claim(&[m.id], lease()).await.unwrap();
    assert_eq!(second.messages.len(), 1);
    let applied = store
        .record_outcomes(first.token, &[sent(m.id)])
        .await
        .unwrap();
    assert!(applied.is_empty(), "the first worker lost its claim");
    assert_eq!(
        store.get_message(m.id).await.unwrap().unwrap().status,
        MessageStatus::Sending
    );
    let applied = store
        .record_outcomes(second.token, &[sent(m.id)])
        .await
        .unwrap();
    assert_eq!(applied, vec![m.id]);
    let again = store
        .record_outcomes(second.token, &[sent(m.id)])
        .await
        .unwrap();
    assert!(again.is_empty(), "an outcome is recorded once");
}

async fn outcomes_of_several_claims_apply_each_under_its_own_token(store: Arc<dyn Store>) {
    let (a, b, c) = (
        insert_one(&store, sms()).await,
        insert_one(&store, sms()).await,
        insert_one(&store, sms()).await,
    );
    let one = store.claim(&[a.id, b.id], lease()).await.unwrap();
    // `c` is claimed twice: the first claim is lost to the second.
    let lost = store.claim(&[c.id], Duration::ZERO).await.unwrap();
    let other = store.claim(&[c.id], lease()).await.unwrap();
    let settle = |token, outcomes| Settlement { token, outcomes };
    let mut applied = store
        .record_settlements(&[
            settle(one.token, vec![sent(a.id), sent(b.id)]),
            settle(lost.token, vec![sent(c.id)]),
        ])
        .await
        .unwrap();
    applied.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(applied, expected, "the lost claim's outcome is not applied");
    let status = |m: Uuid| {
        let store = store.clone();
        async move { store.get_message(m).await.unwrap().unwrap().status }
    };
    assert_eq!(status(a.id).await, MessageStatus::Sent);
    assert_eq!(status(c.id).await, MessageStatus::Sending);
    let applied = store
        .record_settlements(&[
            settle(other.token, vec![sent(c.id)]),
            settle(one.token, vec![sent(a.id)]),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![c.id], "an outcome is recorded once");
    assert_eq!(status(c.id).await, MessageStatus::Sent);
}

async fn the_outcome_writers_answer_each_claim_with_its_own_ids(store: Arc<dyn Store>) {
    let (a, b, c) = (
        insert_one(&store, sms()).await,
        insert_one(&store, sms()).await,
        insert_one(&store, sms()).await,
    );
    let one = store.claim(&[a.id], lease()).await.unwrap();
    let two = store.claim(&[b.id], lease()).await.unwrap();
    let lost = store.claim(&[c.id], Duration::ZERO).await.unwrap();
    store.claim(&[c.id], lease()).await.unwrap();
    // One writer: whatever arrives while it writes goes into its next transaction together.
    let writers = OutcomeWriters::start(store.clone(), 1);
    let (sent_a, sent_b, sent_c) = ([sent(a.id)], [sent(b.id)], [sent(c.id)]);
    let (first, second, third) = tokio::join!(
        writers.record(one.token, &sent_a),
        writers.record(two.token, &sent_b),
        writers.record(lost.token, &sent_c),
    );
    assert_eq!(first.unwrap(), vec![a.id]);
    assert_eq!(second.unwrap(), vec![b.id]);
    assert!(
        third.unwrap().is_empty(),
        "the lost claim's outcome is not applied"
    );
    assert_eq!(
        store.get_message(b.id).await.unwrap().unwrap().status,
        MessageStatus::Sent
    );
}

async fn the_sweep_finds_stranded_messages_and_marks_them(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let mut old = sms();
    old.created_at = now - Duration::from_secs(120);
    let mut old_retry = email();
    old_retry.created_at = now - Duration::from_secs(120);
    let mut old_sending = sms();
    old_sending.created_at = now - Duration::from_secs(120);
    let fresh = sms();
    store
        .insert_messages(&[
            old.clone(),
            old_retry.clone(),
            old_sending.clone(),
            fresh.clone(),
        ])
        .await
        .unwrap();
    let claim = store
        .claim(&[old_retry.id, old_sending.id], lease())
        .await
        .unwrap();
    assert_eq!(claim.messages.len(), 2);
    store
        .record_outcomes(
            claim.token,
            &[retry(old_retry.id, now - Duration::from_secs(60))],
        )
        .await
        .unwrap();

    let query = SweepQuery {
        age: Duration::from_secs(30),
        visibility_timeout: Duration::from_secs(60),
        limit: 100,
    };
    let mut found: Vec<(Uuid, MessageType)> = store
        .sweep(query)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.id, s.kind))
        .collect();
    found.sort_by_key(|(id, _)| *id);
    let mut expected = vec![
        (old.id, MessageType::Sms),
        (old_retry.id, MessageType::Email),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(
        found, expected,
        "old pending and overdue retry; not the fresh one, not a live claim"
    );
    assert!(
        store.sweep(query).await.unwrap().is_empty(),
        "marked as enqueued: a second sweep does not repeat them"
    );

    // With no age and no visibility timeout everything unfinished is found, at most `limit`.
    let everything = SweepQuery {
        age: Duration::ZERO,
        visibility_timeout: Duration::ZERO,
        limit: 1,
    };
    assert_eq!(store.sweep(everything).await.unwrap().len(), 1);
    let rest = store
        .sweep(SweepQuery {
            limit: 100,
            ..everything
        })
        .await
        .unwrap();
    let ids: Vec<Uuid> = rest.iter().map(|s| s.id).collect();
    assert!(ids.contains(&old_sending.id), "an abandoned claim is found");
}

async fn the_audit_trail_records_every_transition_in_order(store: Arc<dyn Store>) {
    let m = insert_one(&store, sms()).await;
    let claim = store.claim(&[m.id], lease()).await.unwrap();
    store
        .record_outcomes(claim.token, &[retry(m.id, OffsetDateTime::now_utc())])
        .await
        .unwrap();
    let claim = store.claim(&[m.id], lease()).await.unwrap();
    store
        .record_outcomes(claim.token, &[sent(m.id)])
        .await
        .unwrap();
    let events = store.message_events(m.id).await.unwrap();
    let path: Vec<(Option<MessageStatus>, Option<MessageStatus>)> = events
        .iter()
        .map(|e| (e.from_status, e.to_status))
        .collect();
    use MessageStatus::*;
    assert_eq!(
        path,
        [
            (None, Some(Pending)),
            (Some(Pending), Some(Sending)),
            (Some(Sending), Some(Retry)),
            (Some(Retry), Some(Sending)),
            (Some(Sending), Some(Sent)),
        ]
    );
    assert_eq!(events[0].event, "created");
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert!(events.iter().all(|e| e.message_id == m.id));
    assert_eq!(events[2].detail["error_code"], "500");
    assert_eq!(events[4].detail["provider"], "mock");
    assert!(events[4].detail.get("error_code").is_none());
    assert!(
        store
            .message_events(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
}
