-- Early receipts: a status callback (Twilio can call back within milliseconds of the create
-- call) or a SendGrid event that names a provider message id no message carries yet — the
-- worker has not written the outcome — is kept here and applied when the outcome is written,
-- in the same transaction. `log_id` is its row in the delivery log, settled then. Kept rows
-- older than UNMATCHED_RECEIPT_TTL are purged. (Search needs no change on PostgreSQL: its
-- index is on the messages table itself.)
create table unmatched_receipts (
    id                  bigint generated always as identity primary key,
    provider            text not null,
    provider_message_id text not null,
    dedupe_key          text not null,
    log_id              bigint not null,
    -- The event: {"event", "target", "error": {"code", "message"}, "detail"}.
    event               text not null,
    received_at         timestamptz not null default now(),
    constraint unmatched_receipts_key_unique unique (provider, dedupe_key)
);

create index unmatched_receipts_provider_message_id_idx on unmatched_receipts (provider_message_id);
create index unmatched_receipts_received_at_idx on unmatched_receipts (received_at);
