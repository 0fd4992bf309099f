-- Scheduled sends, as on PostgreSQL (20261202130000_scheduled_sends.sql): a due time
-- (`send_at`), the statuses `scheduled` and `canceled`, and an index of the scheduled
-- messages by due time.

-- SQLite cannot alter a CHECK constraint. Widening the status list changes nothing stored
-- on disk, so the table's definition is edited in place, the procedure SQLite documents for
-- constraint changes (https://www.sqlite.org/lang_altertable.html#otheralter), instead of
-- copying the whole table. `reset` reloads the schema on this connection; the statements
-- below bump the schema version, so every other connection reloads it too.
pragma writable_schema = on;
update sqlite_master
    set sql = replace(sql, '''received'')', '''received'', ''scheduled'', ''canceled'')')
    where type = 'table' and name = 'messages';
pragma writable_schema = reset;

alter table messages add column send_at text;

create index messages_scheduled_due_idx on messages (send_at) where status = 'scheduled';
