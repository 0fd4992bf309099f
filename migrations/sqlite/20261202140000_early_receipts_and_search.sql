-- Early receipts (as on PostgreSQL, see its migration of the same name): receipts that name a
-- provider message id no message carries yet, applied when the outcome is written.
create table unmatched_receipts (
    id                  integer primary key,
    provider            text not null,
    provider_message_id text not null,
    dedupe_key          text not null,
    log_id              integer not null,
    event               text not null check (json_valid(event)),
    received_at         text not null,
    constraint unmatched_receipts_key_unique unique (provider, dedupe_key)
);

create index unmatched_receipts_provider_message_id_idx on unmatched_receipts (provider_message_id);
create index unmatched_receipts_received_at_idx on unmatched_receipts (received_at);

-- Search that survives VACUUM: the full-text index was keyed on the messages' implicit
-- rowid, which VACUUM may renumber (and a dump and restore does). Each message now gets a
-- stable search key, an INTEGER PRIMARY KEY (which VACUUM keeps), and the index is keyed on
-- it. Existing files are re-indexed from their messages.
drop trigger messages_text_insert;
drop trigger messages_text_delete;
drop table message_text;

create table message_search_keys (
    key        integer primary key,
    message_id text not null,
    constraint message_search_keys_message_unique unique (message_id)
);

insert into message_search_keys (message_id) select id from messages order by rowid;

create virtual table message_text using fts5(
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

insert into message_text (rowid, text)
    select k.key, substr(coalesce(m.subject, '') || ' ' || coalesce(m.body, ''), 1, 65536)
    from messages m join message_search_keys k on k.message_id = m.id;

create trigger messages_text_insert after insert on messages begin
    insert into message_search_keys (message_id) values (new.id);
    insert into message_text (rowid, text)
        values ((select key from message_search_keys where message_id = new.id),
                substr(coalesce(new.subject, '') || ' ' || coalesce(new.body, ''), 1, 65536));
end;

-- Also fired by the cascade when a conversation is deleted.
create trigger messages_text_delete after delete on messages begin
    delete from message_text where rowid = (select key from message_search_keys where message_id = old.id);
    delete from message_search_keys where message_id = old.id;
end;
