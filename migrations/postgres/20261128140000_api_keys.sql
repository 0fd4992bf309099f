-- API keys: only a SHA-256 hash of each key is stored; the key itself is shown once.

create table api_keys (
    id          uuid primary key,
    name        text not null,
    -- The key's first characters, so operators can tell keys apart in `keys list`.
    prefix      text not null,
    key_hash    text not null,
    revoked_at  timestamptz,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    constraint api_keys_key_hash_unique unique (key_hash)
);

-- `keys list` shows keys oldest first.
create index api_keys_created_at_idx on api_keys (created_at, id);
