-- Events to the application: webhook endpoints, the outbox of events (written in the same
-- transaction as the change that causes them) and their deliveries, one chain per
-- (event, destination), with every attempt kept for `GET …/attempts`.

-- Per-message status callback URL (`status_callback` on send).
alter table messages add column status_callback text;

create table webhook_endpoints (
    id                          uuid primary key,
    url                         text not null,
    -- A JSON array of event types; null means every type (including ones added later).
    event_types                 jsonb,
    description                 text,
    enabled                     boolean not null default true,
    secret                      text not null,
    -- After a rotation the previous secret keeps signing alongside the new one until then.
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    -- Start of the current run of failed attempts; null after a success.
    failing_since               timestamptz,
    disabled_reason             text,
    created_at                  timestamptz not null default now(),
    updated_at                  timestamptz not null default now()
);

create table events (
    -- `evt_…`, sent as `webhook-id`: stable across retries.
    id              text primary key,
    type            text not null,
    message_id      uuid,
    -- The message's status the event reports.
    status          text,
    -- Set for `test.ping`: only this endpoint receives it.
    endpoint_id     uuid,
    -- The body, frozen at the first attempt so retries send the same data.
    payload         jsonb,
    dispatched      boolean not null default false,
    created_at      timestamptz not null default now()
);
create index events_undispatched_idx on events (created_at) where not dispatched;

create table event_deliveries (
    id              bigserial primary key,
    event_id        text not null references events (id) on delete cascade,
    -- Null for a message's status callback (then `url` is set).
    endpoint_id     uuid references webhook_endpoints (id) on delete cascade,
    url             text,
    -- pending | delivered | failed
    status          text not null default 'pending',
    attempts        integer not null default 0,
    -- When due; while an attempt is in flight, the end of its lease.
    next_attempt_at timestamptz not null default now(),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index event_deliveries_due_idx on event_deliveries (next_attempt_at) where status = 'pending';
create index event_deliveries_failed_idx on event_deliveries (id) where status = 'failed';

create table event_attempts (
    id              bigserial primary key,
    delivery_id     bigint not null references event_deliveries (id) on delete cascade,
    endpoint_id     uuid,
    event_id        text not null,
    event_type      text not null,
    attempt         integer not null,
    status_code     integer,
    error           text,
    duration_ms     bigint not null,
    attempted_at    timestamptz not null default now(),
    next_attempt_at timestamptz
);
create index event_attempts_endpoint_idx on event_attempts (endpoint_id, id desc);
