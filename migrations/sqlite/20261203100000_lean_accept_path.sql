-- The accept path writes the minimum (as on PostgreSQL, see its migration of the same name):
-- a message's creation is recorded by its row alone, the `created` entry of its audit trail
-- is derived from the row when the trail is read.
--
-- The listing indexes ascend: new messages have the newest time, so they are appended at
-- the index's right edge (SQLite's cheapest insert) instead of at its left edge. Reading
-- newest first scans the same index backwards.
drop index messages_created_at_idx;
create index messages_created_at_idx on messages (created_at, id);
drop index messages_conversation_idx;
create index messages_conversation_idx on messages (conversation_id, created_at, id);
drop index messages_status_idx;
create index messages_status_idx on messages (status, created_at, id);
