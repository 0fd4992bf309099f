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
    assert!(
        fetched_from.elapsed() >= idle,
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
