-- Conversations, messages and their audit trail on SQLite: the same shape as
-- migrations/postgres, in SQLite's types.
--
-- Representations chosen to sort and compare as text:
--   ids         lower-case hyphenated UUID text (UUIDv7 sorts by creation time)
--   timestamps  UTC text with a fixed six-digit fraction, 'YYYY-MM-DDTHH:MM:SS.ffffffZ'
--   JSON        text (checked with json_valid)

create table conversations (
    id              text primary key,
    -- 'phone' for sms/mms, 'email' for email: the family a participant pair talks in.
    channel         text not null check (channel in ('phone', 'email')),
    -- The pair is stored ordered (participant_a <= participant_b) so A->B and B->A meet.
    participant_a   text not null,
    participant_b   text not null,
    status          text not null default 'active' check (status in ('active', 'archived', 'closed')),
    title           text,
    message_count   integer not null default 0,
    unread_count    integer not null default 0,
    last_message_at text,
    metadata        text not null default '{}' check (json_valid(metadata)),
    created_at      text not null,
    updated_at      text not null,
    constraint conversations_pair_ordered check (participant_a <= participant_b),
    constraint conversations_pair_unique unique (channel, participant_a, participant_b)
);

create index conversations_last_message_at_idx on conversations (last_message_at desc, id);

create table messages (
    id                  text primary key,
    conversation_id     text not null references conversations (id) on delete cascade,
    direction           text not null check (direction in ('outbound', 'inbound')),
    type                text not null check (type in ('sms', 'mms', 'email')),
    from_address        text not null,
    to_address          text not null,
    body                text,
    subject             text,
    attachments         text not null default '[]' check (json_valid(attachments)),
    status              text not null check (status in ('pending', 'sending', 'retry', 'sent', 'delivered', 'failed', 'received')),
    provider            text,
    provider_message_id text,
    retry_count         integer not null default 0,
    error_code          text,
    error_message       text,
    metadata            text not null default '{}' check (json_valid(metadata)),
    idempotency_key     text,
    request_hash        text,
    -- Queue bookkeeping: when a retry is due, who holds the message, when it was last
    -- (re-)enqueued by the sweeper.
    next_attempt_at     text,
    claimed_at          text,
    claim_token         text,
    enqueued_at         text,
    created_at          text not null,
    updated_at          text not null,
    sent_at             text,
    delivered_at        text,
    failed_at           text
);

create unique index messages_idempotency_key_idx on messages (idempotency_key) where idempotency_key is not null;
-- Listing newest first, alone or narrowed by conversation or status.
create index messages_created_at_idx on messages (created_at desc, id desc);
create index messages_conversation_idx on messages (conversation_id, created_at desc, id desc);
create index messages_status_idx on messages (status, created_at desc, id desc);
-- Webhook receipts find a message by its provider id.
create index messages_provider_message_id_idx on messages (provider_message_id) where provider_message_id is not null;
-- The sweeper only ever looks at unfinished messages: keep its index small.
create index messages_unfinished_idx on messages (created_at)
    where status in ('pending', 'retry', 'sending');

create table message_events (
    id          integer primary key autoincrement,
    message_id  text not null references messages (id) on delete cascade,
    event       text not null,
    from_status text,
    to_status   text,
    detail      text not null default '{}' check (json_valid(detail)),
    created_at  text not null
);

create index message_events_message_idx on message_events (message_id, id);
