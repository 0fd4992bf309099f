-- A message has no foreign key to its conversation.
--
-- Messages are stored by one statement that upserts their conversations first and gives
-- each message the id the upsert returned (`conversation_id` is not null, so a message the
-- upsert did not cover fails the whole statement): a message cannot name a missing
-- conversation. The foreign key checked that again with a query per stored message and
-- locked the conversation row the statement had just written, one more WAL record each.
-- Deleting a conversation now deletes its messages itself, in the same transaction (see
-- `delete_conversation`).
alter table messages drop constraint if exists messages_conversation_id_fkey;
