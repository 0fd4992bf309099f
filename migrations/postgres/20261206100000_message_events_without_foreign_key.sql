-- A message's audit trail has no foreign key to the message.
--
-- Every status change inserts a row here in the same statement that changes the message (a
-- claim, an outcome, a receipt), so the trail cannot name a message that does not exist.
-- The foreign key checked that again with a query per inserted row — about 3 µs each, two
-- rows per delivered message, some 6% of PostgreSQL's time while a worker drains a backlog —
-- and locked the message row it had just updated. Deleting a conversation now removes its
-- messages' trails itself, in the same transaction (see `delete_conversation`).
alter table message_events drop constraint if exists message_events_message_id_fkey;
