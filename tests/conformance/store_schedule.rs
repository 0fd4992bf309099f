//! Scheduled sends in the store, on PostgreSQL and on SQLite: promotion of due messages
//! (once, whatever the number of schedulers), cancel, and a cancel racing a promotion.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use messaging_service::domain::{MessageStatus, NewMessage, OutboundContent};
use messaging_service::store::{Inserted, Store, SweepQuery};
use time::OffsetDateTime;
use uuid::Uuid;

on_every_store!(
    a_scheduled_message_reads_back_with_its_time_and_is_neither_claimed_nor_swept,
    due_messages_are_promoted_once_by_concurrent_schedulers_and_later_ones_wait,
    cancel_takes_only_a_scheduled_message_and_records_it,
    a_cancel_racing_a_promotion_has_one_winner,
);

fn scheduled(at: OffsetDateTime, n: usize) -> NewMessage {
    NewMessage::outbound(OutboundContent {
        from: Some("+15551234567".into()),
        to: Some(format!("+1555{:07}", n)),
        kind: Some("sms".into()),
        body: Some(format!("scheduled {n}")),
        ..Default::default()
    })
    .unwrap()
    .scheduled(at)
}

async fn insert(store: &Arc<dyn Store>, batch: Vec<NewMessage>) -> Vec<Uuid> {
    store
        .insert_messages(&batch)
        .await
        .unwrap()
        .iter()
        .map(|r| match r {
            Inserted::Created(m) => m.id,
            Inserted::Existing { .. } => panic!("expected new messages"),
        })
        .collect()
}

fn micros(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1000
}

async fn a_scheduled_message_reads_back_with_its_time_and_is_neither_claimed_nor_swept(
    store: Arc<dyn Store>,
) {
    let at = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    let id = insert(&store, vec![scheduled(at, 1)]).await[0];
    let m = store.get_message(id).await.unwrap().unwrap();
    assert_eq!(m.status, MessageStatus::Scheduled);
    assert_eq!(m.send_at.map(micros), Some(micros(at)));
    let events = store.message_events(id).await.unwrap();
    assert_eq!(events[0].to_status, Some(MessageStatus::Scheduled));

    // Only the scheduler moves it: a claim and the sweeper leave it alone, even when due.
    let claim = store.claim(&[id], OffsetDateTime::now_utc()).await.unwrap();
    assert!(claim.messages.is_empty());
    let swept = store
        .sweep(SweepQuery {
            age: Duration::ZERO,
            visibility_timeout: Duration::ZERO,
            limit: 100,
        })
        .await
        .unwrap();
    assert!(swept.is_empty());
}

async fn due_messages_are_promoted_once_by_concurrent_schedulers_and_later_ones_wait(
    store: Arc<dyn Store>,
) {
    let now = OffsetDateTime::now_utc();
    let due: Vec<NewMessage> = (0..300)
        .map(|n| scheduled(now - Duration::from_millis(300 - n as u64), n))
        .collect();
    let due_ids: HashSet<Uuid> = insert(&store, due).await.into_iter().collect();
    let later = insert(
        &store,
        (0..5)
            .map(|n| scheduled(now + Duration::from_secs(3600), 1000 + n))
            .collect(),
    )
    .await;

    let schedulers = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.promote_due(40).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|s| s.id));
            }
        })
    });
    let mut promoted = Vec::new();
    for s in schedulers {
        promoted.extend(s.await.unwrap());
    }
    let unique: HashSet<Uuid> = promoted.iter().copied().collect();
    assert_eq!(
        promoted.len(),
        300,
        "each due message promoted exactly once"
    );
    assert_eq!(unique, due_ids);
    for id in &due_ids {
        let m = store.get_message(*id).await.unwrap().unwrap();
        assert_eq!(m.status, MessageStatus::Pending);
        let moves = store
            .message_events(*id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.to_status == Some(MessageStatus::Pending))
            .count();
        assert_eq!(moves, 1);
    }
    for id in later {
        let m = store.get_message(id).await.unwrap().unwrap();
        assert_eq!(m.status, MessageStatus::Scheduled);
    }
    // A promoted message is marked enqueued: the sweeper does not enqueue it a second time
    // until it has been pending for the sweep age.
    let swept = store
        .sweep(SweepQuery {
            age: Duration::from_secs(30),
            visibility_timeout: Duration::from_secs(30),
            limit: 1000,
        })
        .await
        .unwrap();
    assert!(swept.is_empty());
}

async fn cancel_takes_only_a_scheduled_message_and_records_it(store: Arc<dyn Store>) {
    let at = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let id = insert(&store, vec![scheduled(at, 1)]).await[0];
    let canceled = store.cancel_scheduled(id).await.unwrap().unwrap();
    assert_eq!(canceled.status, MessageStatus::Canceled);
    assert_eq!(canceled.id, id);
    assert!(store.cancel_scheduled(id).await.unwrap().is_none());
    assert!(
        store
            .cancel_scheduled(Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
    let last = store.message_events(id).await.unwrap().pop().unwrap();
    assert_eq!(last.from_status, Some(MessageStatus::Scheduled));
    assert_eq!(last.to_status, Some(MessageStatus::Canceled));

    let pending = NewMessage::outbound(OutboundContent {
        from: Some("+15551234567".into()),
        to: Some("+15559876543".into()),
        body: Some("now".into()),
        ..Default::default()
    })
    .unwrap();
    let id = insert(&store, vec![pending]).await[0];
    assert!(store.cancel_scheduled(id).await.unwrap().is_none());
    let m = store.get_message(id).await.unwrap().unwrap();
    assert_eq!(m.status, MessageStatus::Pending);
}

async fn a_cancel_racing_a_promotion_has_one_winner(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let ids = insert(
        &store,
        (0..60)
            .map(|n| scheduled(now - Duration::from_millis(10), n))
            .collect(),
    )
    .await;
    let cancels = ids.iter().map(|id| {
        let (store, id) = (store.clone(), *id);
        tokio::spawn(async move { (id, store.cancel_scheduled(id).await.unwrap().is_some()) })
    });
    let promoter = {
        let store = store.clone();
        tokio::spawn(async move { store.promote_due(1000).await.unwrap() })
    };
    let mut canceled = HashSet::new();
    for c in cancels {
        let (id, won) = c.await.unwrap();
        if won {
            canceled.insert(id);
        }
    }
    let mut promoted: HashSet<Uuid> = promoter.await.unwrap().iter().map(|s| s.id).collect();
    promoted.extend(store.promote_due(1000).await.unwrap().iter().map(|s| s.id));
    assert!(canceled.is_disjoint(&promoted));
    assert_eq!(canceled.len() + promoted.len(), ids.len());
    for id in ids {
        let status = store.get_message(id).await.unwrap().unwrap().status;
        let expected = if canceled.contains(&id) {
            MessageStatus::Canceled
        } else {
            MessageStatus::Pending
        };
        assert_eq!(status, expected);
    }
}
