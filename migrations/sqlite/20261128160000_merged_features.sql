-- Conversations (inbound dedupe, read markers, search), real providers (segments), API keys
-- and the webhook delivery log on SQLite: the same shape as the PostgreSQL migrations
-- 20261128100000_conversations, 20261128110000_providers, 20261128140000_api_keys and
-- 20261128150000_webhooks, in SQLite's types (see 20261128130000_init.sql).

-- The time the provider (or the original API's client) gave for the message.
alter table messages add column provider_timestamp text;
-- When an inbound message was marked read; null while unread.
alter table messages add column read_at text;
-- Real providers: the billed segment count Twilio reports for an sms/mms.
alter table messages add column num_segments integer;

-- A replayed webhook carries the same provider id: the batch insert skips it, and the
-- database refuses a duplicate even if one slipped past.
create unique index messages_inbound_provider_id_idx
    on messages (provider, provider_message_id)
    where direction = 'inbound' and provider_message_id is not null;

-- Listing by participant (either side) and by status.
create index conversations_participant_a_idx on conversations (participant_a);
create index conversations_participant_b_idx on conversations (participant_b);
create index conversations_status_idx on conversations (status, last_message_at desc, id);

-- Full-text search over message text (FTS5, compiled into the bundled SQLite). Words are
-- split on anything that is not a letter or digit and folded to lower case (no stemming:
-- messages are in any language). Only the first 64 KiB are indexed, as on PostgreSQL.
-- Contentless: the text itself stays in `messages`; an entry's rowid is its message's.
create virtual table message_text using fts5(
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

insert into message_text (rowid, text)
    select rowid, substr(coalesce(subject, '') || ' ' || coalesce(body, ''), 1, 65536) from messages;

create trigger messages_text_insert after insert on messages begin
    insert into message_text (rowid, text)
        values (new.rowid, substr(coalesce(new.subject, '') || ' ' || coalesce(new.body, ''), 1, 65536));
end;

-- Also fired by the cascade when a conversation is deleted.
create trigger messages_text_delete after delete on messages begin
    delete from message_text where rowid = old.rowid;
end;

-- API keys: only a SHA-256 hash of each key is stored; the key itself is shown once.
create table api_keys (
    id          text primary key,
    name        text not null,
    prefix      text not null,
    key_hash    text not null,
    revoked_at  text,
    created_at  text not null,
    updated_at  text not null,
    constraint api_keys_key_hash_unique unique (key_hash)
);

create index api_keys_created_at_idx on api_keys (created_at, id);

-- Every provider callback, and the deduplication of replayed deliveries.
create table webhook_deliveries (
    id          integer primary key autoincrement,
    provider    text not null,
    -- 'status', 'events', 'inbound', 'receipt'
    kind        text not null,
    -- What makes a delivery a replay; null for calls rejected before they could be trusted.
    dedupe_key  text,
    verified    integer not null check (verified in (0, 1)),
    -- applied | recorded | duplicate | unknown_message | rejected | stored
    outcome     text not null,
    -- No foreign key: the log outlives a deleted message.
    message_id  text,
    detail      text not null default '{}' check (json_valid(detail)),
    received_at text not null
);

-- One "original" per key; replays are logged too, as outcome 'duplicate', outside the index.
create unique index webhook_deliveries_dedupe_idx on webhook_deliveries (provider, dedupe_key)
    where dedupe_key is not null and outcome <> 'duplicate';
create index webhook_deliveries_received_idx on webhook_deliveries (received_at desc, id desc);
create index webhook_deliveries_message_idx on webhook_deliveries (message_id) where message_id is not null;
