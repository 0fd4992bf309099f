-- The suppression list and its audit trail on SQLite: the same shape as the PostgreSQL
-- migration 20261202120000_suppressions, in SQLite's types (timestamps are fixed-width UTC
-- text, see 20261128130000_init.sql).

create table suppressions (
    address     text primary key,
    channel     text not null check (channel in ('phone', 'email')),
    reason      text not null
        check (reason in ('opted_out', 'bounced', 'complained', 'unsubscribed', 'manual')),
    since       text not null,
    created_at  text not null,
    updated_at  text not null
) without rowid;

create index suppressions_since_idx on suppressions (since desc, address);
create index suppressions_channel_reason_idx on suppressions (channel, reason);

create table suppression_events (
    id          integer primary key autoincrement,
    address     text not null,
    channel     text not null,
    action      text not null check (action in ('added', 'removed')),
    reason      text,
    cause       text not null check (cause in ('keyword', 'provider_event', 'api')),
    cause_ref   text,
    created_at  text not null
);

create index suppression_events_address_idx on suppression_events (address, id);
