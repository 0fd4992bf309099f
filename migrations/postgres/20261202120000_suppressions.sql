-- The suppression list: addresses that must not be messaged (opt-out keywords, bounces,
-- complaints, unsubscribes, manual entries), keyed by the normalised address (E.164, or the
-- whole email address lower-cased). The send path looks a batch of recipients up by the
-- primary key in one query.

create table suppressions (
    address     text primary key,
    channel     text not null check (channel in ('phone', 'email')),
    reason      text not null
        check (reason in ('opted_out', 'bounced', 'complained', 'unsubscribed', 'manual')),
    since       timestamptz not null default now(),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

-- Listing (newest first) and filtering by channel and reason.
create index suppressions_since_idx on suppressions (since desc, address);
create index suppressions_channel_reason_idx on suppressions (channel, reason);

-- Every addition and removal, and what caused it: a keyword message (its id), a provider
-- event (`sendgrid:<sg_event_id>`, `smtp:<message id>`) or the API. Append-only.
create table suppression_events (
    id          bigserial primary key,
    address     text not null,
    channel     text not null,
    action      text not null check (action in ('added', 'removed')),
    reason      text,
    cause       text not null check (cause in ('keyword', 'provider_event', 'api')),
    cause_ref   text,
    created_at  timestamptz not null default now()
);

create index suppression_events_address_idx on suppression_events (address, id);
