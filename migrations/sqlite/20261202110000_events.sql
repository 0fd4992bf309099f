-- Events to the application, as migrations/postgres/20261202110000_events.sql in SQLite's types.

-- Per-message status callback URL (`status_callback` on send).
alter table messages add column status_callback text;

create table webhook_endpoints (
    id                          text primary key,
    url                         text not null,
    -- A JSON array of event types; null means every type (including ones added later).
    event_types                 text,
    description                 text,
    enabled                     integer not null default 1,
    secret                      text not null,
    -- After a rotation the previous secret keeps signing alongside the new one until then.
    previous_secret             text,
    previous_secret_expires_at  text,
    -- Start of the current run of failed attempts; null after a success.
    failing_since               text,
    disabled_reason             text,
    created_at                  text not null,
    updated_at                  text not null
);

create table events (
    -- `evt_…`, sent as `webhook-id`: stable across retries.
    id              text primary key,
    type            text not null,
    message_id      text,
    -- The message's status the event reports.
    status          text,
    -- Set for `test.ping`: only this endpoint receives it.
    endpoint_id     text,
    -- The body, frozen at the first attempt so retries send the same data.
    payload         text,
    dispatched      integer not null default 0,
    created_at      text not null
);
create index events_undispatched_idx on events (created_at) where dispatched = 0;

create table event_deliveries (
    id              integer primary key autoincrement,
    event_id        text not null references events (id) on delete cascade,
    -- Null for a message's status callback (then `url` is set).
    endpoint_id     text references webhook_endpoints (id) on delete cascade,
    url             text,
    -- pending | delivered | failed
    status          text not null default 'pending',
    attempts        integer not null default 0,
    -- When due; while an attempt is in flight, the end of its lease.
    next_attempt_at text not null,
    created_at      text not null,
    updated_at      text not null
);
create index event_deliveries_due_idx on event_deliveries (next_attempt_at) where status = 'pending';
create index event_deliveries_failed_idx on event_deliveries (id) where status = 'failed';

create table event_attempts (
    id              integer primary key autoincrement,
    delivery_id     integer not null references event_deliveries (id) on delete cascade,
    endpoint_id     text,
    event_id        text not null,
    event_type      text not null,
    attempt         integer not null,
    status_code     integer,
    error           text,
    duration_ms     integer not null,
    attempted_at    text not null,
    next_attempt_at text
);
create index event_attempts_endpoint_idx on event_attempts (endpoint_id, id desc);
