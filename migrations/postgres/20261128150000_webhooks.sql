-- Every provider callback, so an operator can answer "did Twilio call us?", and the
-- deduplication of replayed deliveries.

create table webhook_deliveries (
    id          bigint generated always as identity primary key,
    provider    text not null,
    -- 'status' (Twilio status callback), 'events' (a SendGrid event), 'inbound' (a message to us)
    kind        text not null,
    -- What makes a delivery a replay: MessageSid + status, sg_event_id, an inbound message id.
    -- Null for calls that were rejected before they could be trusted.
    dedupe_key  text,
    verified    boolean not null,
    -- applied | recorded | duplicate | unknown_message | rejected | stored
    outcome     text not null,
    -- No foreign key: the log outlives a deleted message.
    message_id  uuid,
    detail      jsonb not null default '{}'::jsonb,
    received_at timestamptz not null default now()
);

-- One "original" per key; replays are logged too, as outcome 'duplicate', outside the index.
create unique index webhook_deliveries_dedupe_idx on webhook_deliveries (provider, dedupe_key)
    where dedupe_key is not null and outcome <> 'duplicate';
create index webhook_deliveries_received_idx on webhook_deliveries (received_at desc, id desc);
create index webhook_deliveries_message_idx on webhook_deliveries (message_id) where message_id is not null;
