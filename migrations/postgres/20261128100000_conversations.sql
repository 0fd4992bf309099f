-- Conversations as a first-class resource: inbound messages (deduplicated by provider id),
-- read markers, listing and search.

alter table messages
    -- The time the provider (or the original API's client) gave for the message.
    add column provider_timestamp timestamptz,
    -- When an inbound message was marked read; null while unread.
    add column read_at timestamptz;

-- A replayed webhook carries the same provider id: the second insert is skipped by the
-- batch insert's `on conflict do nothing` (and the batch retried), so duplicates are
-- refused by the database even when two replays race.
create unique index messages_inbound_provider_id_idx
    on messages (provider, provider_message_id)
    where direction = 'inbound' and provider_message_id is not null;

-- Full-text search over message text. 'simple' does no stemming (messages are in any
-- language) and, unlike a trigram index, adds one entry per distinct word rather than per
-- three characters, which keeps the cost on every insert low. HTML tags are skipped by the
-- parser. Only the first 64 KiB are indexed so that a large email body can never exceed
-- the tsvector size limit and fail the batch it is written in. The search query uses the
-- same expression.
create index messages_text_search_idx on messages using gin (
    to_tsvector('simple', left(coalesce(subject, '') || ' ' || coalesce(body, ''), 65536))
);

-- Listing by participant (either side, exact or prefix) and by status.
create index conversations_participant_a_idx on conversations (participant_a text_pattern_ops);
create index conversations_participant_b_idx on conversations (participant_b text_pattern_ops);
create index conversations_status_idx on conversations (status, last_message_at desc nulls last, id);
