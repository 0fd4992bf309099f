-- Leases and a count of deliveries that ended without an outcome (see the PostgreSQL
-- migration of the same name).
alter table messages add column lease_until text;
alter table messages add column deliveries integer not null default 0;
