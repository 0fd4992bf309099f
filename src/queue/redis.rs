//! Redis Streams implementation of `Queue`.
//!
//! Streams `message_queue:{sms,mms,email}` are read by one consumer group shared by all
//! workers. Entries are acknowledged *and deleted* once their message rests, so `XLEN` is
//! the backlog. Retries wait in the sorted set `message_queue:delayed` (score = due time in
//! ms) and dead letters go to the stream `message_queue:dead_letter`.
//!
//! A stream entry has the fields `v` (encoding version), `id` (the message id, what the
//! worker reads) and `data`: JSON for the people and tools reading the queue, as the original
//! service wrote it (`super::entry_data`). The worker reads `id`, or `data.message_id` when
//! an entry has only `data`, so entries of either form are delivered during an upgrade.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncCommands, Client, Script};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    DeadLetter, DeadLetterEntry, Delivery, Queue, QueueDepths, TASK_VERSION, Task, entry_data,
    message_id_from_data,
};
use crate::config::ConnectionUrl;
use crate::domain::{Message, MessageType};

pub const CONSUMER_GROUP: &str = "message_workers";

const PROMOTE_SCRIPT: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local streams = { sms = KEYS[2], mms = KEYS[3], email = KEYS[4] }
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local stream = sep and streams[string.sub(member, 1, sep - 1)]
  if stream then
    local kind, id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
    local data = cjson.encode({ message_id = id, type = kind, queued_at = ARGV[4] })
    redis.call('XADD', stream, '*', 'v', ARGV[3], 'id', id, 'data', data)
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn stream(&self, kind: MessageType) -> String {
        format!("{}message_queue:{}", self.prefix, kind.as_str())
    }

    pub fn delayed(&self) -> String {
        format!("{}message_queue:delayed", self.prefix)
    }

    pub fn dead_letter(&self) -> String {
        format!("{}message_queue:dead_letter", self.prefix)
    }

    fn kind_of(&self, stream: &str) -> Option<MessageType> {
        stream
            .strip_prefix(&self.prefix)?
            .strip_prefix("message_queue:")
            .and_then(MessageType::parse)
    }
}

pub struct RedisQueue {
    keys: Keys,
    /// Shared, multiplexed connection for short commands.
    conn: ConnectionManager,
    /// Blocking reads hold a connection for up to `block`; they get their own.
    blocking: ConnectionManager,
    promote: Script,
    /// XAUTOCLAIM cursors, one per stream, so a long pending list is walked, not rescanned.
    cursors: Mutex<HashMap<MessageType, String>>,
}

impl RedisQueue {
    /// Connects lazily: the service starts even while Redis is down, and reconnects on its own.
    pub fn new(url: &ConnectionUrl, prefix: &str) -> anyhow::Result<Self> {
        let client = Client::open(url.expose()).context("REDIS_URL is not a valid Redis URL")?;
        let short = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        // Blocking reads are bounded by our own timeout around each call.
        let long = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            keys: Keys::new(prefix),
            conn: ConnectionManager::new_lazy_with_config(client.clone(), short)?,
            blocking: ConnectionManager::new_lazy_with_config(client, long)?,
            promote: Script::new(PROMOTE_SCRIPT),
            cursors: Mutex::new(HashMap::new()),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Creates the consumer group on every stream (idempotent). Reading from id 0 means
    /// entries written before the first worker started are not skipped.
    pub async fn ensure_groups(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        for kind in MessageType::ALL {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys.stream(*kind))
                .arg(CONSUMER_GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e).context("creating the consumer group"),
            }
        }
        Ok(())
    }

    fn delivery(&self, kind: MessageType, entry: &StreamId) -> Delivery {
        Delivery {
            kind,
            entry_id: entry.id.clone(),
            message_id: entry_message_id(entry),
        }
    }

    /// One `XADD` per task, pipelined: `v`, `id` and `data` (with the message's details when
    /// it is at hand).
    async fn add(&self, entries: &[(Task, Option<&Message>)]) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let mut pipe = redis::pipe();
        for (task, message) in entries {
            pipe.cmd("XADD")
                .arg(self.keys.stream(task.kind))
                .arg("*")
                .arg("v")
                .arg(TASK_VERSION)
                .arg("id")
                .arg(task.message_id.to_string())
                .arg("data")
                .arg(entry_data(task, *message, now))
                .ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await.context("XADD")?;
        Ok(())
    }

    async fn read_group(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> redis::RedisResult<StreamReadReply> {
        let mut conn = self.blocking.clone();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        if !block.is_zero() {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        for kind in MessageType::ALL {
            cmd.arg(self.keys.stream(*kind));
        }
        for _ in MessageType::ALL {
            cmd.arg(">");
        }
        cmd.query_async(&mut conn).await
    }
}

/// A delayed task's score: its due time in milliseconds, rounded up. `promote_due` compares
/// whole milliseconds, so a score rounded down would let a task out up to a millisecond
/// before its time; its claim then finds the row not yet due, and the retry would wait for
/// the sweeper.
fn due_score(due: OffsetDateTime) -> i64 {
    let nanos = due.unix_timestamp_nanos();
    (nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0)) as i64
}

#[async_trait]
impl Queue for RedisQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .context("PING")?;
        Ok(())
    }

    async fn enqueue(&self, tasks: &[Task]) -> anyhow::Result<()> {
        let entries: Vec<(Task, Option<&Message>)> = tasks.iter().map(|t| (*t, None)).collect();
        self.add(&entries).await
    }

    async fn enqueue_messages(&self, messages: &[&Message]) -> anyhow::Result<()> {
        let entries: Vec<(Task, Option<&Message>)> =
            messages.iter().map(|m| (Task::of(m), Some(*m))).collect();
        self.add(&entries).await
    }

    async fn fetch(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> anyhow::Result<Vec<Delivery>> {
        let read = tokio::time::timeout(
            block + Duration::from_secs(5),
            self.read_group(consumer, max, block),
        )
        .await
        .context("XREADGROUP timed out")?;
        let reply = match read {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("NOGROUP") => {
                self.ensure_groups().await?;
                self.read_group(consumer, max, Duration::ZERO)
                    .await
                    .context("XREADGROUP")?
            }
            Err(e) => return Err(e).context("XREADGROUP"),
        };
        let mut out = Vec::new();
        for stream in &reply.keys {
            let Some(kind) = self.keys.kind_of(&stream.key) else {
                continue;
            };
            out.extend(stream.ids.iter().map(|entry| self.delivery(kind, entry)));
        }
        Ok(out)
    }

    async fn reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> anyhow::Result<Vec<Delivery>> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        for kind in MessageType::ALL {
            let start = self
                .cursors
                .lock()
                .map_err(|_| anyhow::anyhow!("cursor lock poisoned"))?
                .get(kind)
                .cloned()
                .unwrap_or_else(|| "0-0".to_owned());
            let reply: redis::RedisResult<StreamAutoClaimReply> = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.stream(*kind))
                .arg(CONSUMER_GROUP)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) if e.code() == Some("NOGROUP") => continue,
                Err(e) => return Err(e).context("XAUTOCLAIM"),
            };
            self.cursors
                .lock()
                .map_err(|_| anyhow::anyhow!("cursor lock poisoned"))?
                .insert(*kind, reply.next_stream_id.clone());
            out.extend(
                reply
                    .claimed
                    .iter()
                    .map(|entry| self.delivery(*kind, entry)),
            );
        }
        Ok(out)
    }

    async fn ack(&self, deliveries: &[Delivery]) -> anyhow::Result<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut by_stream: HashMap<MessageType, Vec<&str>> = HashMap::new();
        for d in deliveries {
            by_stream.entry(d.kind).or_default().push(&d.entry_id);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (kind, ids) in by_stream {
            let stream = self.keys.stream(kind);
            pipe.cmd("XACK")
                .arg(&stream)
                .arg(CONSUMER_GROUP)
                .arg(&ids)
                .ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&ids).ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe.query_async(&mut conn).await.context("XACK/XDEL")?;
        Ok(())
    }

    async fn schedule(&self, tasks: &[(Task, OffsetDateTime)]) -> anyhow::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let items: Vec<(i64, String)> = tasks
            .iter()
            .map(|(t, due)| (due_score(*due), format!("{}:{}", t.kind, t.message_id)))
            .collect();
        let mut conn = self.conn.clone();
        let _: i64 = conn
            .zadd_multiple(self.keys.delayed(), &items)
            .await
            .context("ZADD")?;
        Ok(())
    }

    async fn promote_due(&self, limit: usize) -> anyhow::Result<usize> {
        let now = OffsetDateTime::now_utc();
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let queued_at = now.format(&time::format_description::well_known::Rfc3339)?;
        let mut conn = self.conn.clone();
        let moved: usize = self
            .promote
            .key(self.keys.delayed())
            .key(self.keys.stream(MessageType::Sms))
            .key(self.keys.stream(MessageType::Mms))
            .key(self.keys.stream(MessageType::Email))
            .arg(now_ms)
            .arg(limit)
            .arg(TASK_VERSION)
            .arg(queued_at)
            .invoke_async(&mut conn)
            .await
            .context("promoting due retries")?;
        Ok(moved)
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> anyhow::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let now =
            OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
        let mut pipe = redis::pipe();
        for letter in letters {
            pipe.cmd("XADD")
                .arg(self.keys.dead_letter())
                .arg("*")
                .arg("v")
                .arg(TASK_VERSION)
                .arg("id")
                .arg(letter.task.message_id.to_string())
                .arg("type")
                .arg(letter.task.kind.as_str())
                .arg("reason")
                .arg(&letter.reason)
                .arg("failed_at")
                .arg(&now)
                .ignore();
        }
        let mut conn = self.conn.clone();
        let () = pipe
            .query_async(&mut conn)
            .await
            .context("XADD dead letter")?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> anyhow::Result<Vec<DeadLetterEntry>> {
        let mut conn = self.conn.clone();
        // An exclusive start ("(id") continues after the previous page.
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys.dead_letter())
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await
            .context("XRANGE dead letters")?;
        Ok(reply
            .ids
            .iter()
            .map(|e| DeadLetterEntry {
                entry_id: e.id.clone(),
                message_id: e
                    .get::<String>("id")
                    .and_then(|raw| Uuid::parse_str(&raw).ok()),
                kind: e
                    .get::<String>("type")
                    .and_then(|raw| MessageType::parse(&raw)),
                reason: e.get::<String>("reason").unwrap_or_default(),
                failed_at: e.get::<String>("failed_at").unwrap_or_default(),
            })
            .collect())
    }

    async fn remove_dead_letters(&self, message_ids: &[Uuid]) -> anyhow::Result<usize> {
        if message_ids.is_empty() {
            return Ok(0);
        }
        let wanted: std::collections::HashSet<Uuid> = message_ids.iter().copied().collect();
        // The stream is indexed by time only: walk it a page at a time (an operator's
        // command, not a hot path).
        let mut removed = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.dead_letters(after.as_deref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.entry_id.clone());
            let doomed: Vec<&str> = page
                .iter()
                .filter(|e| e.message_id.is_some_and(|id| wanted.contains(&id)))
                .map(|e| e.entry_id.as_str())
                .collect();
            if !doomed.is_empty() {
                let mut conn = self.conn.clone();
                let n: usize = redis::cmd("XDEL")
                    .arg(self.keys.dead_letter())
                    .arg(&doomed)
                    .query_async(&mut conn)
                    .await
                    .context("XDEL dead letters")?;
                removed += n;
            }
        }
        Ok(removed)
    }

    async fn depths(&self) -> anyhow::Result<QueueDepths> {
        let mut conn = self.conn.clone();
        let (sms, mms, email, delayed, dead_letter): (u64, u64, u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(self.keys.stream(MessageType::Sms))
            .cmd("XLEN")
            .arg(self.keys.stream(MessageType::Mms))
            .cmd("XLEN")
            .arg(self.keys.stream(MessageType::Email))
            .cmd("ZCARD")
            .arg(self.keys.delayed())
            .cmd("XLEN")
            .arg(self.keys.dead_letter())
            .query_async(&mut conn)
            .await
            .context("reading queue depths")?;
        Ok(QueueDepths {
            sms,
            mms,
            email,
            delayed,
            dead_letter,
        })
    }
}

/// The message an entry is about: its `id` field, else `data.message_id` (an entry written
/// by the original service, or by a later version that dropped `id`).
fn entry_message_id(entry: &StreamId) -> Option<Uuid> {
    entry
        .get::<String>("id")
        .and_then(|raw| Uuid::parse_str(&raw).ok())
        .or_else(|| {
            entry
                .get::<String>("data")
                .and_then(|raw| message_id_from_data(&raw))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> StreamId {
        StreamId {
            id: "1-0".to_owned(),
            map: fields
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        redis::Value::BulkString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
            ..StreamId::default()
        }
    }

    #[test]
    fn entries_of_every_form_name_their_message() {
        let id = Uuid::now_v7();
        let old = entry(&[("v", "1"), ("id", &id.to_string())]);
        assert_eq!(
            entry_message_id(&old),
            Some(id),
            "entries written before data"
        );
        let data = format!(r#"{{"message_id":"{id}","type":"sms"}}"#);
        let current = entry(&[("v", "2"), ("id", &id.to_string()), ("data", &data)]);
        assert_eq!(entry_message_id(&current), Some(id));
        let data_only = entry(&[("data", &data)]);
        assert_eq!(
            entry_message_id(&data_only),
            Some(id),
            "the original's form"
        );
        assert_eq!(entry_message_id(&entry(&[("data", "not json")])), None);
        assert_eq!(entry_message_id(&entry(&[("id", "not-a-uuid")])), None);
        assert_eq!(entry_message_id(&entry(&[])), None);
    }
}
