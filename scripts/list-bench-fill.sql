-- Fills a scratch database (migrated by the service) with :n messages over n/50
-- conversations for measuring the list endpoints: psql -v n=10000000 -f this file.
-- Messages are spread over 180 days; statuses, directions and types in realistic shares.
-- The secondary indexes are dropped during the load and rebuilt after (the full-text
-- index is not rebuilt: the list endpoints do not use it).
\set ON_ERROR_STOP on
\timing on
set maintenance_work_mem = '256MB';
truncate messages, conversations cascade;
drop index if exists messages_text_search_idx;
drop index if exists messages_created_at_idx;
drop index if exists messages_conversation_idx;
drop index if exists messages_status_idx;
drop index if exists messages_unfinished_idx;
drop index if exists messages_provider_message_id_idx;
drop index if exists messages_inbound_provider_id_idx;
drop index if exists messages_scheduled_due_idx;

insert into conversations (id, channel, participant_a, participant_b, status, message_count,
                           last_message_at, created_at, updated_at)
select gen_random_uuid(),
       case when g % 10 = 0 then 'email' else 'phone' end,
       case when g % 10 = 0 then 'a' || g || '@example.com' else '+1555' || lpad(g::text, 7, '0') end,
       case when g % 10 = 0 then 'z' || g || '@example.com' else '+1666' || lpad(g::text, 7, '0') end,
       case when g % 20 = 0 then 'archived' else 'active' end,
       50,
       -- A few conversations were opened without a message yet.
       case when g % 100 = 0 then null else now() - (random() * interval '180 days') end,
       now() - interval '181 days', now()
from generate_series(1, (:n / 50)::int) g;

create temporary table conv as
select row_number() over (order by id) as n, id, channel, participant_a, participant_b
from conversations;
create index on conv (n);

insert into messages (id, conversation_id, direction, type, from_address, to_address, body,
                      status, provider, provider_message_id, num_segments, created_at,
                      updated_at, sent_at, delivered_at)
select gen_random_uuid(), c.id,
       case when g % 5 = 0 then 'inbound' else 'outbound' end,
       case when c.channel = 'email' then 'email' when g % 17 = 0 then 'mms' else 'sms' end,
       c.participant_a, c.participant_b,
       'message body number ' || g,
       case when g % 5 = 0 then 'received'
            when g % 23 = 0 then 'failed'
            when g % 7 = 0 then 'sent'
            else 'delivered' end,
       'mock', 'SM' || md5(g::text), 1,
       t, t, t + interval '1 second', t + interval '3 seconds'
from (select g, now() - interval '180 days' + (g::float8 / :n) * interval '180 days' as t,
             1 + (hashint4(g) & 2147483647) % ((:n / 50)::int) as cn
      from generate_series(1, :n) g) s
join conv c on c.n = s.cn;

create index messages_created_at_idx on messages (created_at desc, id desc);
create index messages_conversation_idx on messages (conversation_id, created_at desc, id desc);
create index messages_status_idx on messages (status, created_at desc, id desc);
create index messages_unfinished_idx on messages (created_at)
    where status in ('pending', 'retry', 'sending');
create index messages_provider_message_id_idx on messages (provider_message_id)
    where provider_message_id is not null;
create index messages_scheduled_due_idx on messages (send_at) where status = 'scheduled';
vacuum analyze messages;
vacuum analyze conversations;
