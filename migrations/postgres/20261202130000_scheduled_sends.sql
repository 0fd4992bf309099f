-- Scheduled sends: a message stored with a due time (`send_at`) waits in status
-- `scheduled` until the worker's scheduler moves it to `pending` and enqueues it, or a
-- client cancels it (`canceled`, a resting state).

alter table messages add column send_at timestamptz;

-- The status list gains `scheduled` and `canceled`. Added `not valid` and validated
-- afterwards, so the check does not hold a lock that blocks writes while it scans.
alter table messages drop constraint messages_status_check;
alter table messages add constraint messages_status_check check (status in
    ('pending', 'sending', 'retry', 'sent', 'delivered', 'failed', 'received', 'scheduled', 'canceled'))
    not valid;
alter table messages validate constraint messages_status_check;

-- The scheduler asks only "which scheduled messages are due": an index of just those,
-- by due time, stays as small as the number of messages waiting.
create index messages_scheduled_due_idx on messages (send_at) where status = 'scheduled';
