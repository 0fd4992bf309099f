-- The full-text search document of each message lives in a table of its own.
--
-- A message row changes status two or three times after it is stored (claimed, then sent or
-- failed, then perhaps delivered). The status is indexed (listing by status), so none of
-- those updates can be HOT: each writes a new entry into every index on the table. With
-- the search index on `messages`, that meant computing the message's text search vector
-- again and adding its words to the GIN index at every status change, for a text that never
-- changes. Here the document is written once, with the message, and a status change no
-- longer touches it.
--
-- `document` is the vector itself (not an expression over the text), so ranking reads it
-- rather than parsing the text again. Rows go with their conversation: deleting a
-- conversation deletes them in the same transaction (no foreign key: its check would run a
-- query per inserted row on the send path).
create table message_texts (
    message_id      uuid not null,
    conversation_id uuid not null,
    document        tsvector not null
);

insert into message_texts (message_id, conversation_id, document)
    select id, conversation_id,
           to_tsvector('simple', left(coalesce(subject, '') || ' ' || coalesce(body, ''), 65536))
    from messages;

-- The pending list (GIN `fastupdate`) as before: the API folds it into the index about once a
-- second, and the limit leaves room should none run for a while.
create index message_texts_document_idx on message_texts using gin (document)
    with (gin_pending_list_limit = 32768);
create index message_texts_conversation_idx on message_texts (conversation_id);

drop index messages_text_search_idx;
