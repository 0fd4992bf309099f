-- The sweeper reads the status index; the index of unfinished messages goes.
--
-- `messages_unfinished_idx` (created_at, for pending, retry and sending messages) served only
-- the sweeper. Every stored message and every claim added an entry to it: one more index
-- write on the send path and on each claim. `messages_status_idx` (status, created_at, id)
-- answers the same question one status at a time, oldest first, and the sweeper now asks it
-- that way (see `sweep`).
drop index if exists messages_unfinished_idx;
