-- Real providers: the billed segment count Twilio reports for an sms/mms.
alter table messages add column num_segments integer;
