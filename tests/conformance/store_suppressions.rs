//! The suppression list and its audit trail, run on PostgreSQL and on SQLite.

use std::sync::Arc;

use messaging_service::domain::compliance::{
    SuppressedAddress, SuppressionCause, SuppressionReason,
};
use messaging_service::domain::{
    ChannelFamily, InboundContent, MessageType, NewMessage, OutboundContent,
};
use messaging_service::store::{
    Guarded, Inserted, Page, Store, Suppressed, SuppressionFilter, lookup_addresses, matched,
    suppressions_of,
};
use uuid::Uuid;

on_every_store!(
    an_address_is_suppressed_once_and_every_change_is_audited,
    suppressions_are_found_in_one_lookup_and_listed_with_filters,
    keyword_messages_change_the_list_in_the_transaction_that_stores_them,
    a_batch_with_a_suppressed_recipient_stores_nothing_and_answers_the_entry,
);

fn address(raw: &str) -> SuppressedAddress {
    SuppressedAddress::parse(raw).expect("a valid address")
}

async fn an_address_is_suppressed_once_and_every_change_is_audited(store: Arc<dyn Store>) {
    let phone = address("+15551234567");
    let keyword = Uuid::now_v7();
    let first = store
        .suppress(
            &phone,
            SuppressionReason::OptedOut,
            &SuppressionCause::Keyword(keyword),
        )
        .await
        .unwrap();
    let Suppressed::Added(entry) = &first else {
        panic!("expected a new entry, got {first:?}");
    };
    assert_eq!(entry.address, "+15551234567");
    assert_eq!(entry.channel, ChannelFamily::Phone);
    assert_eq!(entry.reason, SuppressionReason::OptedOut);

    // A second addition keeps the first reason and time and records nothing.
    let again = store
        .suppress(&phone, SuppressionReason::Manual, &SuppressionCause::Api)
        .await
        .unwrap();
    assert_eq!(again, Suppressed::Existing(entry.clone()));

    let removed = store
        .unsuppress(&phone, &SuppressionCause::Api)
        .await
        .unwrap();
    assert_eq!(removed.as_ref(), Some(entry));
    assert_eq!(
        store
            .unsuppress(&phone, &SuppressionCause::Api)
            .await
            .unwrap(),
        None,
        "removing an absent address changes nothing"
    );

    let history = store.suppression_history("+15551234567").await.unwrap();
    let summary: Vec<(&str, &str, Option<String>)> = history
        .iter()
        .map(|c| (c.action.as_str(), c.cause.as_str(), c.cause_ref.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("added", "keyword", Some(keyword.to_string())),
            ("removed", "api", None)
        ]
    );
    assert_eq!(history[0].reason, Some(SuppressionReason::OptedOut));

    let email = address("Jane@Example.com");
    let cause = SuppressionCause::ProviderEvent {
        provider: "sendgrid".into(),
        id: "evt-1".into(),
    };
    store
        .suppress(&email, SuppressionReason::Bounced, &cause)
        .await
        .unwrap();
    let history = store.suppression_history("jane@example.com").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].cause_ref.as_deref(), Some("sendgrid:evt-1"));
    assert_eq!(history[0].channel, ChannelFamily::Email);
}

async fn suppressions_are_found_in_one_lookup_and_listed_with_filters(store: Arc<dyn Store>) {
    let entries = [
        ("+15550000001", SuppressionReason::OptedOut),
        ("+15550000002", SuppressionReason::Manual),
        ("a@example.com", SuppressionReason::Bounced),
        ("b@example.com", SuppressionReason::Complained),
    ];
    for (raw, reason) in entries {
        store
            .suppress(&address(raw), reason, &SuppressionCause::Api)
            .await
            .unwrap();
    }

    let keys = [
        Some(address("+15550000001")),
        None,
        Some(address("+15559999999")),
        Some(address("A@EXAMPLE.COM")),
    ];
    let found = suppressions_of(store.as_ref(), &keys).await.unwrap();
    let reasons: Vec<Option<SuppressionReason>> =
        found.iter().map(|s| s.as_ref().map(|s| s.reason)).collect();
    assert_eq!(
        reasons,
        [
            Some(SuppressionReason::OptedOut),
            None,
            None,
            Some(SuppressionReason::Bounced)
        ]
    );

    let page = Page {
        limit: 2,
        offset: 0,
    };
    let (all, total) = store
        .list_suppressions(&SuppressionFilter::default(), page)
        .await
        .unwrap();
    assert_eq!((all.len(), total), (2, 4));
    assert!(all[0].since >= all[1].since, "newest first");

    let phones = SuppressionFilter {
        channel: Some(ChannelFamily::Phone),
        ..Default::default()
    };
    let (listed, total) = store
        .list_suppressions(
            &phones,
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert!(listed.iter().all(|s| s.channel == ChannelFamily::Phone));

    let bounced = SuppressionFilter {
        reason: Some(SuppressionReason::Bounced),
        address: Some("a@example.com".into()),
        ..Default::default()
    };
    let (listed, total) = store
        .list_suppressions(
            &bounced,
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 1);
    assert_eq!(listed[0].address, "a@example.com");
}

fn inbound(from: &str, id: &str, body: &str) -> NewMessage {
    NewMessage::inbound(InboundContent {
        kind: MessageType::Sms,
        from: Some(from.into()),
        to: Some("+15550009999".into()),
        body: Some(body.into()),
        subject: None,
        attachments: Vec::new(),
        provider: "twilio".into(),
        provider_message_id: Some(id.into()),
        provider_timestamp: None,
        metadata: None,
    })
    .expect("a valid inbound message")
}

async fn keyword_messages_change_the_list_in_the_transaction_that_stores_them(
    store: Arc<dyn Store>,
) {
    let stop = inbound("+15550000001", "SM1", " stop ");
    let chat = inbound("+15550000002", "SM2", "please stop calling");
    store.insert_messages(&[stop.clone(), chat]).await.unwrap();
    let found = suppressions_of(
        store.as_ref(),
        &[Some(address("+15550000001")), Some(address("+15550000002"))],
    )
    .await
    .unwrap();
    assert_eq!(
        found[0].as_ref().map(|s| s.reason),
        Some(SuppressionReason::OptedOut)
    );
    assert!(found[1].is_none(), "a keyword inside a sentence is not one");
    let history = store.suppression_history("+15550000001").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].cause, "keyword");
    assert_eq!(history[0].cause_ref, Some(stop.id.to_string()));

    // A replay stores nothing and changes nothing; STOP then START in one batch, in order.
    store.insert_messages(&[stop]).await.unwrap();
    let again = inbound("+15550000003", "SM3", "STOPALL");
    let start = inbound("+15550000003", "SM4", "Unstop");
    store.insert_messages(&[again, start]).await.unwrap();
    assert_eq!(
        store
            .suppression_history("+15550000001")
            .await
            .unwrap()
            .len(),
        1
    );
    let actions: Vec<String> = store
        .suppression_history("+15550000003")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.action)
        .collect();
    assert_eq!(actions, ["added", "removed"]);
    let (_, total) = store
        .list_suppressions(
            &SuppressionFilter::default(),
            Page {
                limit: 10,
                offset: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 1);
}

/// The send path's batch write: a batch with a suppressed recipient stores nothing and
/// answers the entry; the rest of it then stores; a repeated request (its idempotency key
/// already stored) to a recipient suppressed since is refused as well.
async fn a_batch_with_a_suppressed_recipient_stores_nothing_and_answers_the_entry(
    store: Arc<dyn Store>,
) {
    let to = |raw: &str| {
        NewMessage::outbound(OutboundContent {
            from: Some("+15551234567".into()),
            to: Some(raw.into()),
            body: Some("hello".into()),
            ..Default::default()
        })
        .expect("a valid message")
    };
    store
        .suppress(
            &address("+15550000001"),
            SuppressionReason::OptedOut,
            &SuppressionCause::Api,
        )
        .await
        .unwrap();

    let batch = [to("+15550000001"), to("+15550000002")];
    let keys: Vec<Option<SuppressedAddress>> = batch
        .iter()
        .map(|m| Some(SuppressedAddress::of(&m.to)))
        .collect();
    let answer = store
        .insert_messages_unless_suppressed(&batch, &lookup_addresses(&keys))
        .await
        .unwrap();
    let Guarded::Suppressed(found) = answer else {
        panic!("expected the batch to be refused, got {answer:?}");
    };
    let matched = matched(&keys, &found);
    assert_eq!(
        matched[0].as_ref().map(|s| (s.address.as_str(), s.reason)),
        Some(("+15550000001", SuppressionReason::OptedOut))
    );
    assert!(matched[1].is_none(), "{matched:?}");
    for m in &batch {
        assert!(
            store.get_message(m.id).await.unwrap().is_none(),
            "a refused batch stores nothing"
        );
    }

    // The others, on their own, are stored.
    let rest = &batch[1..];
    let answer = store
        .insert_messages_unless_suppressed(rest, &["+15550000002".to_owned()])
        .await
        .unwrap();
    let Guarded::Stored(results) = answer else {
        panic!("expected the message to be stored, got {answer:?}");
    };
    assert!(matches!(results[..], [Inserted::Created(_)]), "{results:?}");
    let stored = store
        .get_message(rest[0].id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.to, "+15550000002");

    // Stored with a key, then its recipient suppressed: the repeat is refused too.
    let mut keyed = to("+15550000003");
    keyed.idempotency_key = Some("repeat".into());
    let guard = ["+15550000003".to_owned()];
    let first = store
        .insert_messages_unless_suppressed(std::slice::from_ref(&keyed), &guard)
        .await
        .unwrap();
    assert!(matches!(first, Guarded::Stored(_)), "{first:?}");
    store
        .suppress(
            &address("+15550000003"),
            SuppressionReason::Manual,
            &SuppressionCause::Api,
        )
        .await
        .unwrap();
    let mut repeat = to("+15550000003");
    repeat.idempotency_key = Some("repeat".into());
    let again = store
        .insert_messages_unless_suppressed(&[repeat], &guard)
        .await
        .unwrap();
    assert!(
        matches!(again, Guarded::Suppressed(ref f) if f.len() == 1),
        "{again:?}"
    );
}
