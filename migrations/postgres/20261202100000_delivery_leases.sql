-- Leases on the database's clock and a count of deliveries that ended without an outcome.
-- `lease_until`: a `sending` message belongs to its claim until then (renewed while the
-- provider call is in flight). `claimed_at` stays the time the claim was taken (what a
-- re-send asks the provider about). `deliveries`: claims since the last recorded outcome;
-- past QUEUE_MAX_DELIVERIES the message is dead-lettered as a poison message.
alter table messages add column lease_until timestamptz;
alter table messages add column deliveries integer not null default 0;
