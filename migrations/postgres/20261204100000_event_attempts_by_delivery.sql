-- Deleting an endpoint (or a delivery) removes its attempts through the foreign key: without
-- this index each removed delivery scanned the whole attempts table.
create index event_attempts_delivery_idx on event_attempts (delivery_id);
