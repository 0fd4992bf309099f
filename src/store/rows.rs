//! Reading stored rows into domain values, written once for every backend. Both schemas
//! name and order their columns alike; they differ only in how a column holds an id, an
//! instant or a JSON document (native types on PostgreSQL, text on SQLite). A backend
//! implements `StoredRow` for its row type to say exactly that, and nothing more.

use anyhow::Context;
use serde_json::Value;
use sqlx::query::Query;
use sqlx::{
    AssertSqlSafe, Database, Decode, Encode, Executor, IntoArguments, Postgres, Sqlite, Type,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::query::{Bind, Dialect, Listing, Sql};
use super::webhooks::{ClaimedLogRow, ReceiptTarget};
use super::{Listed, SearchHit, StoreError, StoreResult, Stranded, Waiting, WebhookDelivery};
use crate::domain::{
    ApiKey, ChannelFamily, Conversation, ConversationStatistics, ConversationStatus, Direction,
    ErrorInfo, Message, MessageEvent, MessageStatus, MessageType,
};

/// A value both databases store the same way (text, integers, floats, booleans).
pub(crate) trait Plain:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl<T> Plain for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

/// A row as one backend stores it.
pub(crate) trait StoredRow {
    /// A column both databases store alike.
    fn get<T: Plain>(&self, column: &str) -> anyhow::Result<T>;

    fn opt_uuid(&self, column: &str) -> anyhow::Result<Option<Uuid>>;

    fn opt_instant(&self, column: &str) -> anyhow::Result<Option<OffsetDateTime>>;

    fn json(&self, column: &str) -> anyhow::Result<Value>;

    /// The first column, whatever its name (e.g. a `count(*)`).
    fn first<T: Plain>(&self) -> anyhow::Result<T>;

    fn uuid(&self, column: &str) -> anyhow::Result<Uuid> {
        self.opt_uuid(column)?
            .with_context(|| format!("{column} is null in the database"))
    }

    fn instant(&self, column: &str) -> anyhow::Result<OffsetDateTime> {
        self.opt_instant(column)?
            .with_context(|| format!("{column} is null in the database"))
    }

    /// A text column holding one of an enum's names.
    fn named<T>(&self, column: &str, parse: fn(&str) -> Option<T>) -> anyhow::Result<T> {
        let raw: String = self.get(column)?;
        parse(&raw).with_context(|| format!("unexpected {column} {raw:?} in the database"))
    }
}

/// Every row, read with `decode`.
pub(crate) fn decode_all<R, T>(
    rows: &[R],
    decode: fn(&R) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    rows.iter().map(decode).collect()
}

/// A row's `id`.
pub(crate) fn id<R: StoredRow>(row: &R) -> anyhow::Result<Uuid> {
    row.uuid("id")
}

/// An unclaimed message still waiting: `id`, and `due_at` when it is a retry not yet due
/// (null when a worker holds it).
pub(crate) fn waiting<R: StoredRow>(row: &R) -> anyhow::Result<(Uuid, Waiting)> {
    let waiting = match row.opt_instant("due_at")? {
        Some(at) => Waiting::DueAt(at),
        None => Waiting::Held,
    };
    Ok((row.uuid("id")?, waiting))
}

/// A `select count(*)`.
pub(crate) fn total<R: StoredRow>(row: &R) -> anyhow::Result<i64> {
    row.first()
}

pub(crate) const MESSAGE_COLUMNS: &str = "id, conversation_id, direction, type, from_address, to_address, body, subject, \
     attachments, status, provider, provider_message_id, num_segments, retry_count, error_code, error_message, metadata, \
     idempotency_key, created_at, updated_at, sent_at, delivered_at, failed_at, next_attempt_at, \
     provider_timestamp, read_at, send_at, status_callback";

pub(crate) fn message<R: StoredRow>(row: &R) -> anyhow::Result<Message> {
    let error_code: Option<String> = row.get("error_code")?;
    let error_message: Option<String> = row.get("error_message")?;
    Ok(Message {
        id: row.uuid("id")?,
        conversation_id: row.uuid("conversation_id")?,
        direction: row.named("direction", Direction::parse)?,
        kind: row.named("type", MessageType::parse)?,
        from: row.get("from_address")?,
        to: row.get("to_address")?,
        body: row.get("body")?,
        subject: row.get("subject")?,
        attachments: serde_json::from_value(row.json("attachments")?)
            .context("attachments column")?,
        status: row.named("status", MessageStatus::parse)?,
        provider: row.get("provider")?,
        provider_message_id: row.get("provider_message_id")?,
        num_segments: row.get("num_segments")?,
        retry_count: row.get("retry_count")?,
        error: error_code.map(|code| ErrorInfo {
            code,
            message: error_message.unwrap_or_default(),
        }),
        metadata: row.json("metadata")?,
        idempotency_key: row.get("idempotency_key")?,
        created_at: row.instant("created_at")?,
        updated_at: row.instant("updated_at")?,
        sent_at: row.opt_instant("sent_at")?,
        delivered_at: row.opt_instant("delivered_at")?,
        failed_at: row.opt_instant("failed_at")?,
        next_attempt_at: row.opt_instant("next_attempt_at")?,
        provider_timestamp: row.opt_instant("provider_timestamp")?,
        read_at: row.opt_instant("read_at")?,
        send_at: row.opt_instant("send_at")?,
        status_callback: row.get("status_callback")?,
        size: None,
    }
    .sized())
}

/// A stored message with the fingerprint of the request that created it.
pub(crate) fn message_and_hash<R: StoredRow>(row: &R) -> anyhow::Result<(Message, Option<String>)> {
    Ok((message(row)?, row.get("request_hash")?))
}

pub(crate) const EVENT_COLUMNS: &str =
    "id, message_id, event, from_status, to_status, detail, created_at";

pub(crate) fn event<R: StoredRow>(row: &R) -> anyhow::Result<MessageEvent> {
    // Lenient: an audit line with a status this version does not know is still shown.
    let status = |column: &str| -> anyhow::Result<Option<MessageStatus>> {
        let raw: Option<String> = row.get(column)?;
        Ok(raw.as_deref().and_then(MessageStatus::parse))
    };
    Ok(MessageEvent {
        id: row.get("id")?,
        message_id: row.uuid("message_id")?,
        event: row.get("event")?,
        from_status: status("from_status")?,
        to_status: status("to_status")?,
        detail: row.json("detail")?,
        created_at: row.instant("created_at")?,
    })
}

pub(crate) fn stranded<R: StoredRow>(row: &R) -> anyhow::Result<Stranded> {
    Ok(Stranded {
        id: row.uuid("id")?,
        kind: row.named("type", MessageType::parse)?,
    })
}

pub(crate) const CONVERSATION_COLUMNS: &str = "id, channel, participant_a, participant_b, status, title, \
     message_count, unread_count, last_message_at, metadata, created_at, updated_at";

pub(crate) fn conversation<R: StoredRow>(row: &R) -> anyhow::Result<Conversation> {
    Ok(Conversation {
        id: row.uuid("id")?,
        channel: row.named("channel", ChannelFamily::parse)?,
        participants: [row.get("participant_a")?, row.get("participant_b")?],
        status: row.named("status", ConversationStatus::parse)?,
        title: row.get("title")?,
        message_count: row.get("message_count")?,
        unread_count: row.get("unread_count")?,
        last_message_at: row.opt_instant("last_message_at")?,
        metadata: row.json("metadata")?,
        created_at: row.instant("created_at")?,
        updated_at: row.instant("updated_at")?,
    })
}

/// A conversation search hit: the conversation's columns, then `rank` and `hits`.
pub(crate) fn search_hit<R: StoredRow>(row: &R) -> anyhow::Result<SearchHit> {
    Ok(SearchHit {
        conversation: conversation(row)?,
        rank: row.get("rank")?,
        matching_messages: row.get("hits")?,
    })
}

/// `id, total, inbound, outbound, failed, avg_to_sent` of one conversation.
pub(crate) fn statistics<R: StoredRow>(row: &R) -> anyhow::Result<ConversationStatistics> {
    Ok(ConversationStatistics {
        conversation_id: row.uuid("id")?,
        total_messages: row.get("total")?,
        inbound: row.get("inbound")?,
        outbound: row.get("outbound")?,
        failed: row.get("failed")?,
        average_seconds_to_sent: row.get("avg_to_sent")?,
    })
}

/// A conversation's identity as the batch upsert returns it, with its id.
pub(crate) fn conversation_key<R: StoredRow>(
    row: &R,
) -> anyhow::Result<(super::batch::ConversationKey, Uuid)> {
    let channel = row.named("channel", ChannelFamily::parse)?;
    let key = (
        channel,
        row.get("participant_a")?,
        row.get("participant_b")?,
    );
    Ok((key, row.uuid("id")?))
}

pub(crate) const API_KEY_COLUMNS: &str = "id, name, prefix, created_at, revoked_at";

pub(crate) fn api_key<R: StoredRow>(row: &R) -> anyhow::Result<ApiKey> {
    Ok(ApiKey {
        id: row.uuid("id")?,
        name: row.get("name")?,
        prefix: row.get("prefix")?,
        created_at: row.instant("created_at")?,
        revoked_at: row.opt_instant("revoked_at")?,
    })
}

/// `id, provider, dedupe_key` of a log row a receipt claimed.
pub(crate) fn claimed_log_row<R: StoredRow>(row: &R) -> anyhow::Result<ClaimedLogRow> {
    let key = (row.get("provider")?, row.get("dedupe_key")?);
    Ok((key, row.get("id")?))
}

/// `id, status, provider_message_id` of a message a receipt names.
pub(crate) fn receipt_target<R: StoredRow>(row: &R) -> anyhow::Result<ReceiptTarget> {
    Ok(ReceiptTarget {
        provider_message_id: row.get("provider_message_id")?,
        id: row.uuid("id")?,
        status: row.get("status")?,
    })
}

/// `id, provider, provider_message_id, dedupe_key, log_id, event` of a kept early receipt.
pub(crate) fn kept_receipt<R: StoredRow>(
    row: &R,
) -> anyhow::Result<(i64, crate::store::webhooks::KeptRow)> {
    Ok((
        row.get("id")?,
        crate::store::webhooks::KeptRow {
            provider: row.get("provider")?,
            provider_message_id: row.get("provider_message_id")?,
            dedupe_key: row.get("dedupe_key")?,
            log_id: row.get("log_id")?,
            event: row.get("event")?,
        },
    ))
}

pub(crate) const DELIVERY_COLUMNS: &str =
    "id, provider, kind, dedupe_key, verified, outcome, message_id, detail, received_at";

pub(crate) fn delivery<R: StoredRow>(row: &R) -> anyhow::Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: row.get("id")?,
        provider: row.get("provider")?,
        kind: row.get("kind")?,
        dedupe_key: row.get("dedupe_key")?,
        verified: row.get("verified")?,
        outcome: row.get("outcome")?,
        message_id: row.opt_uuid("message_id")?,
        detail: row.json("detail")?,
        received_at: row.instant("received_at")?,
    })
}

/// What a backend says about its database's answers.
pub(crate) trait Backend: Database<Row: StoredRow> {
    fn rows_affected(done: &Self::QueryResult) -> u64;

    /// Whether an error other than the connection-level ones every backend shares means
    /// "the database cannot be used right now".
    fn unavailable(err: &sqlx::Error) -> bool;

    /// "Unavailable, try later" (503) or any other failure.
    fn classify(err: sqlx::Error) -> StoreError {
        let unavailable = matches!(
            err,
            sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::WorkerCrashed
        ) || Self::unavailable(&err);
        if unavailable {
            StoreError::Unavailable(err.into())
        } else {
            StoreError::Other(err.into())
        }
    }
}

/// A planned statement with its values bound, in order. Each value is bound as the
/// dialect planned it (a UUID is text on a database without a UUID type).
pub(crate) fn bound<DB>(sql: &Sql) -> Query<'_, DB, DB::Arguments>
where
    DB: Database,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Uuid: for<'t> Encode<'t, DB> + Type<DB>,
    OffsetDateTime: for<'t> Encode<'t, DB> + Type<DB>,
{
    let mut q = sqlx::query(AssertSqlSafe(sql.text.clone()));
    for value in &sql.binds {
        q = match value {
            Bind::Text(t) => q.bind(t.clone()),
            Bind::Uuid(id) => q.bind(*id),
            Bind::Int(n) => q.bind(*n),
            Bind::Time(at) => q.bind(*at),
        };
    }
    q
}

/// A planned page and its total, read on `on` (a pool). Over the window's count limit,
/// the total is the limit + 1 rows counted, flagged as an estimate (a backend that can
/// estimate better refines it).
pub(crate) async fn list<'c, DB, E, T>(
    on: E,
    dialect: Dialect,
    listing: &Listing,
    decode: Decoder<DB, T>,
) -> StoreResult<Listed<T>>
where
    DB: Backend + sqlx::database::HasStatementCache,
    E: Executor<'c, Database = DB> + Copy,
    DB::Arguments: IntoArguments<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Uuid: for<'t> Encode<'t, DB> + Type<DB>,
    OffsetDateTime: for<'t> Encode<'t, DB> + Type<DB>,
{
    let (page, count) = (listing.page_sql(dialect), listing.count_sql(dialect));
    // Planned for their values each time (not prepared once): one statement serves filters
    // of very different selectivity (a status of 2% of the rows or of 90%), and the generic
    // plan PostgreSQL switches to after five calls counted `status = $1` by reading the
    // whole table (1 ms became 13 ms for 10,000 of 100,000 conversations).
    let mut items = bound(&page).persistent(false).all(on, decode).await?;
    let limit = usize::try_from(listing.window.page.limit).unwrap_or(usize::MAX);
    let more = items.len() > limit;
    items.truncate(limit);
    let total = bound(&count)
        .persistent(false)
        .optional(on, total::<DB::Row>)
        .await?
        .unwrap_or_default();
    let total_is_estimate = listing.window.count_limit.is_some_and(|cap| total > cap);
    Ok(Listed {
        items,
        total,
        total_is_estimate,
        more,
    })
}

/// The row a planned lookup finds, if any.
pub(crate) async fn find<'c, DB, E, T>(
    on: E,
    sql: &Sql,
    decode: Decoder<DB, T>,
) -> StoreResult<Option<T>>
where
    DB: Backend,
    E: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    String: for<'t> Encode<'t, DB> + Type<DB>,
    i64: for<'t> Encode<'t, DB> + Type<DB>,
    Uuid: for<'t> Encode<'t, DB> + Type<DB>,
    OffsetDateTime: for<'t> Encode<'t, DB> + Type<DB>,
{
    bound(sql).optional(on, decode).await
}

/// Running a statement and reading what it returns with a decoder above, its errors
/// classified: the one way every backend fetches rows.
pub(crate) trait Fetch<DB: Backend>: Sized {
    /// Every row, decoded.
    async fn all<'c, E, T>(self, on: E, decode: Decoder<DB, T>) -> StoreResult<Vec<T>>
    where
        E: Executor<'c, Database = DB>;

    /// The one row the statement returns, decoded.
    async fn one<'c, E, T>(self, on: E, decode: Decoder<DB, T>) -> StoreResult<T>
    where
        E: Executor<'c, Database = DB>;

    /// The row if there is one, decoded.
    async fn optional<'c, E, T>(self, on: E, decode: Decoder<DB, T>) -> StoreResult<Option<T>>
    where
        E: Executor<'c, Database = DB>;

    /// How many rows the statement changed.
    async fn run<'c, E>(self, on: E) -> StoreResult<u64>
    where
        E: Executor<'c, Database = DB>;
}

/// Reads one row of `DB` into a `T`.
pub(crate) type Decoder<DB, T> = fn(&<DB as Database>::Row) -> anyhow::Result<T>;

impl<'q, DB, A> Fetch<DB> for Query<'q, DB, A>
where
    DB: Backend,
    A: 'q + Send + IntoArguments<DB>,
{
    async fn all<'c, E, T>(self, on: E, decode: Decoder<DB, T>) -> StoreResult<Vec<T>>
    where
        E: Executor<'c, Database = DB>,
    {
        let rows = self.fetch_all(on).await.map_err(DB::classify)?;
        Ok(decode_all(&rows, decode)?)
    }

    async fn one<'c, E, T>(self, on: E, decode: Decoder<DB, T>) -> StoreResult<T>
    where
        E: Executor<'c, Database = DB>,
    {
        let row = self.fetch_one(on).await.map_err(DB::classify)?;
        Ok(decode(&row)?)
    }

    async fn optional<'c, E, T>(self, on: E, decode: Decoder<DB, T>) -> StoreResult<Option<T>>
    where
        E: Executor<'c, Database = DB>,
    {
        let row = self.fetch_optional(on).await.map_err(DB::classify)?;
        Ok(row.as_ref().map(decode).transpose()?)
    }

    async fn run<'c, E>(self, on: E) -> StoreResult<u64>
    where
        E: Executor<'c, Database = DB>,
    {
        let done = self.execute(on).await.map_err(DB::classify)?;
        Ok(DB::rows_affected(&done))
    }
}

/// A row a claim took: the message, its deliveries, and the previous claim's time when it
/// was taken over from an expired lease (`previous_claimed_at`).
pub(crate) fn claimed<R: StoredRow>(row: &R) -> anyhow::Result<super::ClaimedRow> {
    Ok(super::ClaimedRow {
        message: message(row)?,
        deliveries: row.get("deliveries")?,
        previous_claim: row.opt_instant("previous_claimed_at")?,
    })
}
