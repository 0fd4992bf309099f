//! The `Queue` story, run on Redis Streams and on the in-process queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use messaging_service::domain::MessageType;
use messaging_service::queue::{DeadLetter, Queue, Task};
use time::OffsetDateTime;
use uuid::Uuid;

on_every_queue!(
    a_task_goes_to_one_consumer_and_acknowledging_removes_it,
    a_fetch_takes_at_most_max_entries_per_stream_oldest_first,
    a_blocking_fetch_returns_as_soon_as_a_task_arrives,
    a_blocking_fetch_on_an_empty_queue_waits_its_time_and_returns_nothing,
    unacknowledged_tasks_are_reclaimed_only_after_their_idle_time,
    scheduled_tasks_wait_until_they_are_due,
    a_scheduled_task_is_not_promoted_a_moment_early,
    dead_letters_are_counted,
);

fn task(kind: MessageType) -> Task {
    Task {
        message_id: Uuid::now_v7(),
        kind,
    }
}

async fn a_task_goes_to_one_consumer_and_acknowledging_removes_it(queue: Arc<dyn Queue>) {
    queue.ping().await.unwrap();
    let tasks = [
        task(MessageType::Sms),
        task(MessageType::Sms),
        task(MessageType::Email),
    ];
    queue.enqueue(&tasks).await.unwrap();
    let d = queue.depths().await.unwrap();
    assert_eq!((d.sms, d.mms, d.email), (2, 0, 1));

    let got = queue.fetch("one", 10, Duration::ZERO).await.unwrap();
    let mut seen: Vec<(Option<Uuid>, MessageType)> =
        got.iter().map(|d| (d.message_id, d.kind)).collect();
    seen.sort_by_key(|(id, _)| *id);
    let mut expected: Vec<(Option<Uuid>, MessageType)> =
        tasks.iter().map(|t| (Some(t.message_id), t.kind)).collect();
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(seen, expected);
    assert!(
        queue
            .fetch("other", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "a delivered task is not handed to a second consumer"
    );
    let d = queue.depths().await.unwrap();
    assert_eq!((d.sms, d.email), (2, 1), "held until acknowledged");

    queue.ack(&got).await.unwrap();
    let d = queue.depths().await.unwrap();
    assert_eq!((d.sms, d.mms, d.email), (0, 0, 0));
    queue.ack(&[]).await.unwrap();
    queue.enqueue(&[]).await.unwrap();
}

async fn a_fetch_takes_at_most_max_entries_per_stream_oldest_first(queue: Arc<dyn Queue>) {
    let tasks: Vec<Task> = (0..5).map(|_| task(MessageType::Sms)).collect();
    queue.enqueue(&tasks).await.unwrap();
    let mut order = Vec::new();
    for expected in [2, 2, 1, 0] {
        let got = queue.fetch("c", 2, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), expected);
        order.extend(got.iter().filter_map(|d| d.message_id));
    }
    let ids: Vec<Uuid> = tasks.iter().map(|t| t.message_id).collect();
    assert_eq!(order, ids, "first in, first out");
}

async fn a_blocking_fetch_returns_as_soon_as_a_task_arrives(queue: Arc<dyn Queue>) {
    let q = queue.clone();
    let t = task(MessageType::Mms);
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        q.enqueue(&[t]).await.unwrap();
    });
    let started = Instant::now();
    let mut got = Vec::new();
    // A blocking read may return empty-handed at the end of its wait; the task arrives once.
    while got.is_empty() && started.elapsed() < Duration::from_secs(5) {
        got = queue.fetch("c", 10, Duration::from_secs(5)).await.unwrap();
    }
    producer.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, Some(t.message_id));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "woke up when the task arrived, not at the end of the wait ({:?})",
        started.elapsed()
    );
}

async fn a_blocking_fetch_on_an_empty_queue_waits_its_time_and_returns_nothing(
    queue: Arc<dyn Queue>,
) {
    let started = Instant::now();
    let got = queue
        .fetch("c", 10, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(got.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

async fn unacknowledged_tasks_are_reclaimed_only_after_their_idle_time(queue: Arc<dyn Queue>) {
    let t = task(MessageType::Sms);
    queue.enqueue(&[t]).await.unwrap();
    let fetched_from = Instant::now();
    let held = queue.fetch("dead", 10, Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 1);
    let idle = Duration::from_millis(300);
    assert!(
        queue.reclaim("rescuer", idle, 10).await.unwrap().is_empty(),
        "a fresh holder keeps its task"
    );
    // Asked again and again, the queue hands the task over once it has idled long enough
    // (a scan that started past the entry comes round again from the beginning).
    let reclaimed = crate::wait::until(
        "the idle task to be reclaimed",
        Duration::from_secs(10),
        async || {
            let got = queue.reclaim("rescuer", idle, 10).await.unwrap();
            (!got.is_empty()).then_some(got)
        },
    )
    .await;
    // Redis keeps both times in whole milliseconds, so the idle time it computes can be up
    // to a millisecond more than the time that really passed (seen: 299.6 ms for 300).
    assert!(
        fetched_from.elapsed() + Duration::from_millis(1) >= idle,
        "reclaimed after {:?}, before its idle time",
        fetched_from.elapsed()
    );
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].message_id, Some(t.message_id));
    assert_eq!(reclaimed[0].entry_id, held[0].entry_id);
    assert!(
        queue.reclaim("third", idle, 10).await.unwrap().is_empty(),
        "reclaiming resets the idle time"
    );
    queue.ack(&reclaimed).await.unwrap();
    assert_eq!(queue.depths().await.unwrap().sms, 0);
    // Asking for no idle time at all, a task still held would be handed over at once.
    for _ in 0..2 {
        assert!(
            queue
                .reclaim("third", Duration::ZERO, 10)
                .await
                .unwrap()
                .is_empty(),
            "an acknowledged task is gone"
        );
    }
}

async fn scheduled_tasks_wait_until_they_are_due(queue: Arc<dyn Queue>) {
    let now = OffsetDateTime::now_utc();
    let later = task(MessageType::Email);
    let overdue = task(MessageType::Sms);
    let later_due = now + Duration::from_millis(400);
    queue
        .schedule(&[(later, later_due), (overdue, now - Duration::from_secs(1))])
        .await
        .unwrap();
    assert_eq!(queue.depths().await.unwrap().delayed, 2);
    assert!(
        queue
            .fetch("c", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(queue.promote_due(100).await.unwrap(), 1);
    let d = queue.depths().await.unwrap();
    assert_eq!((d.delayed, d.sms, d.email), (1, 1, 0));
    let got = queue.fetch("c", 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, Some(overdue.message_id));

    let promoted = crate::wait::until(
        "the later task to fall due",
        Duration::from_secs(10),
        async || {
            let n = queue.promote_due(100).await.unwrap();
            (n > 0).then_some(n)
        },
    )
    .await;
    assert_eq!(promoted, 1);
    assert!(
        OffsetDateTime::now_utc() >= later_due,
        "promoted before due"
    );
    assert_eq!(queue.promote_due(100).await.unwrap(), 0, "promoted once");
    let got = queue.fetch("c", 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].message_id, got[0].kind),
        (Some(later.message_id), MessageType::Email)
    );
    assert_eq!(queue.depths().await.unwrap().delayed, 0);
}

/// Due 0.999 ms past a millisecond boundary: a queue that compares whole milliseconds must
/// round the due time up, or it lets the task out almost a millisecond early (and the claim
/// then refuses a row that is not due yet). Promotion is tried back to back, without pauses,
/// so a promotion in that last millisecond would be caught.
async fn a_scheduled_task_is_not_promoted_a_moment_early(queue: Arc<dyn Queue>) {
    let t = task(MessageType::Sms);
    let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000 + 30;
    let due = OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000 + 999_000).unwrap();
    queue.schedule(&[(t, due)]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let moved = queue.promote_due(10).await.unwrap();
        let after = OffsetDateTime::now_utc();
        if moved > 0 {
            assert!(after >= due, "promoted at {after} at the latest, due {due}");
            break;
        }
        assert!(Instant::now() < deadline, "never promoted");
    }
    let got = queue.fetch("c", 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, Some(t.message_id));
}

async fn dead_letters_are_counted(queue: Arc<dyn Queue>) {
    assert_eq!(queue.depths().await.unwrap().dead_letter, 0);
    let letters = [
        DeadLetter {
            task: task(MessageType::Sms),
            reason: "21211".into(),
        },
        DeadLetter {
            task: task(MessageType::Email),
            reason: "503".into(),
        },
    ];
    queue.dead_letter(&letters).await.unwrap();
    queue.dead_letter(&[]).await.unwrap();
    let d = queue.depths().await.unwrap();
    assert_eq!(d.dead_letter, 2);
    assert_eq!((d.sms, d.email), (0, 0), "a dead letter is not work");
}

/// The Redis entry format: what operators and the original service's tools read with
/// `XRANGE`/`XREVRANGE`, and what the worker accepts during an upgrade.
mod redis_entries {
    use std::collections::HashMap;
    use std::time::Duration;

    use messaging_service::domain::MessageType;
    use messaging_service::queue::Task;
    use serde_json::Value;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    use uuid::Uuid;

    use crate::backends::redis;
    use crate::scratch::REDIS_URL;

    async fn conn() -> redis::aio::MultiplexedConnection {
        redis::Client::open(REDIS_URL)
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis")
    }

    /// Every entry of a stream, oldest first, as field maps.
    async fn entries(stream: &str) -> Vec<HashMap<String, String>> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(&mut conn().await)
            .await
            .expect("XRANGE");
        reply
            .ids
            .iter()
            .map(|e| {
                e.map
                    .keys()
                    .map(|k| (k.clone(), e.get::<String>(k).expect("string field")))
                    .collect()
            })
            .collect()
    }

    fn data(entry: &HashMap<String, String>) -> Value {
        serde_json::from_str(entry.get("data").expect("a data field")).expect("data is JSON")
    }

    #[tokio::test]
    async fn every_entry_carries_data_json_with_its_message_id_beside_the_workers_fields() {
        let (queue, prefix) = redis().await;
        let stream = format!("{}message_queue:sms", prefix.as_str());
        let task = Task {
            message_id: Uuid::now_v7(),
            kind: MessageType::Sms,
        };
        let before = OffsetDateTime::now_utc() - Duration::from_secs(1);
        queue.enqueue(&[task]).await.unwrap();
        let found = entries(&stream).await;
        assert_eq!(found.len(), 1);
        let entry = &found[0];
        assert_eq!(entry["v"], "2");
        assert_eq!(entry["id"], task.message_id.to_string());
        let data = data(entry);
        assert_eq!(data["message_id"], task.message_id.to_string());
        assert_eq!(data["type"], "sms");
        let queued_at = OffsetDateTime::parse(data["queued_at"].as_str().unwrap(), &Rfc3339)
            .expect("queued_at is RFC 3339");
        assert!(queued_at >= before);
        for hidden in ["body", "subject", "attachments", "metadata"] {
            assert!(data.get(hidden).is_none(), "{hidden} is never in data");
        }
    }

    #[tokio::test]
    async fn a_retry_moved_from_the_delayed_set_carries_data_too() {
        let (queue, prefix) = redis().await;
        let stream = format!("{}message_queue:email", prefix.as_str());
        let task = Task {
            message_id: Uuid::now_v7(),
            kind: MessageType::Email,
        };
        queue
            .schedule(&[(task, OffsetDateTime::now_utc() - Duration::from_secs(1))])
            .await
            .unwrap();
        assert_eq!(queue.promote_due(10).await.unwrap(), 1);
        let found = entries(&stream).await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["id"], task.message_id.to_string());
        let data = data(&found[0]);
        assert_eq!(data["message_id"], task.message_id.to_string());
        assert_eq!(data["type"], "email");
        assert!(
            OffsetDateTime::parse(data["queued_at"].as_str().unwrap(), &Rfc3339).is_ok(),
            "{data}"
        );
    }

    #[tokio::test]
    async fn the_worker_reads_old_entries_and_data_only_entries_during_an_upgrade() {
        let (queue, prefix) = redis().await;
        let stream = format!("{}message_queue:sms", prefix.as_str());
        let (old, original, current) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut c = conn().await;
        // As written before entries carried data.
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("v")
            .arg("1")
            .arg("id")
            .arg(old.to_string())
            .query_async(&mut c)
            .await
            .unwrap();
        // As the original service wrote them: one field, `data`.
        let original_data = serde_json::json!({
            "message_id": original.to_string(),
            "type": "sms",
            "from": "+15551234567",
            "to": "+15559876543",
            "timestamp": "2026-11-28T10:00:00Z",
        })
        .to_string();
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("data")
            .arg(original_data)
            .query_async(&mut c)
            .await
            .unwrap();
        queue
            .enqueue(&[Task {
                message_id: current,
                kind: MessageType::Sms,
            }])
            .await
            .unwrap();

        let got = queue.fetch("upgrading", 10, Duration::ZERO).await.unwrap();
        let ids: Vec<Option<Uuid>> = got.iter().map(|d| d.message_id).collect();
        assert_eq!(ids, vec![Some(old), Some(original), Some(current)]);
        assert!(got.iter().all(|d| d.kind == MessageType::Sms));
        queue.ack(&got).await.unwrap();
        assert_eq!(queue.depths().await.unwrap().sms, 0);
    }
}
