//! Dynamic SQL written once: a list query is planned as conditions, an order and a page,
//! then rendered for a dialect. The dialect differences are data (`Dialect`): how a
//! placeholder is spelled and how "nulls last" is said. The backend only binds the values
//! in the order they are listed.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{ConversationFilter, MessageFilter, Page, Window};
use crate::domain::SearchQuery;

/// How one SQL dialect spells what the planned queries need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// Numbered placeholders: `$1` (PostgreSQL) or `?1` (SQLite).
    pub placeholder: char,
    /// `true`: `x desc nulls last`; `false`: `x desc`, where nulls sort as the smallest
    /// values (SQLite), so that a descending order puts them last and an index on `x desc`
    /// serves it.
    pub nulls_last_keyword: bool,
    /// `false`: UUIDs are bound as their hyphenated text.
    pub native_uuid: bool,
    /// How a timestamp is bound: as itself, or as the text the database stores.
    pub time: fn(OffsetDateTime) -> Bind,
}

pub(crate) const POSTGRES: Dialect = Dialect {
    placeholder: '$',
    nulls_last_keyword: true,
    native_uuid: true,
    time: Bind::Time,
};

pub(crate) const SQLITE: Dialect = Dialect {
    placeholder: '?',
    nulls_last_keyword: false,
    native_uuid: false,
    time: |at| Bind::Text(super::sqlite::ts(at).unwrap_or_default()),
};

/// A value a planned query binds (a UUID as the dialect keeps it: native on PostgreSQL, text
/// on SQLite).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Uuid(Uuid),
    Int(i64),
    Time(OffsetDateTime),
}

/// One `and` term of a `where` clause.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    /// `column = value`
    Eq(&'static str, Bind),
    /// `(a = value or b = value)`
    EitherEq(&'static str, &'static str, Bind),
}

/// One term of an `order by`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Sort {
    Desc(&'static str),
    /// Descending with nulls after every value.
    DescNullsLast(&'static str),
    Asc(&'static str),
}

/// A filtered, ordered page of one table, and the count of everything the filter matches.
/// The order is a timestamp key then the unique `id`, which is what a keyset page
/// (`window.after`) seeks past.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub table: &'static str,
    pub columns: &'static str,
    pub conditions: Vec<Condition>,
    pub order: &'static [Sort; 2],
    pub window: Window,
}

/// Rendered SQL and the values to bind to its placeholders, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Listing {
    pub(crate) fn messages(columns: &'static str, f: &MessageFilter, window: Window) -> Self {
        let mut conditions = Vec::new();
        if let Some(id) = f.conversation_id {
            conditions.push(Condition::Eq("conversation_id", Bind::Uuid(id)));
        }
        let text = |s: &str| Bind::Text(s.to_owned());
        if let Some(s) = f.status {
            conditions.push(Condition::Eq("status", text(s.as_str())));
        }
        if let Some(d) = f.direction {
            conditions.push(Condition::Eq("direction", text(d.as_str())));
        }
        if let Some(k) = f.kind {
            conditions.push(Condition::Eq("type", text(k.as_str())));
        }
        Self {
            table: "messages",
            columns,
            conditions,
            order: &[Sort::Desc("created_at"), Sort::Desc("id")],
            window,
        }
    }

    pub(crate) fn conversations(
        columns: &'static str,
        f: &ConversationFilter,
        window: Window,
    ) -> Self {
        let mut conditions = Vec::new();
        if let Some(s) = f.status {
            conditions.push(Condition::Eq("status", Bind::Text(s.as_str().to_owned())));
        }
        if let Some(c) = f.channel {
            conditions.push(Condition::Eq("channel", Bind::Text(c.as_str().to_owned())));
        }
        if let Some(p) = &f.participant {
            conditions.push(Condition::EitherEq(
                "participant_a",
                "participant_b",
                Bind::Text(p.clone()),
            ));
        }
        Self {
            table: "conversations",
            columns,
            conditions,
            order: &[Sort::DescNullsLast("last_message_at"), Sort::Asc("id")],
            window,
        }
    }

    pub(crate) fn webhook_deliveries(
        columns: &'static str,
        provider: Option<&str>,
        page: Page,
    ) -> Self {
        Self {
            table: "webhook_deliveries",
            columns,
            conditions: provider
                .map(|p| Condition::Eq("provider", Bind::Text(p.to_owned())))
                .into_iter()
                .collect(),
            order: &[Sort::Desc("received_at"), Sort::Desc("id")],
            window: Window::exact(page),
        }
    }

    /// The page, one row longer than asked so that the extra row tells whether more
    /// follow: `select columns from table where … order by … limit … offset …`.
    ///
    /// A keyset page seeks past `window.after` with a range on the sort key that an index
    /// on (key, id) serves: `key <= k and (key < k or id > i)` (directions per the order).
    /// Where the key may be null and nulls come last, the rows after a non-null key are
    /// the rest of the non-null ones and then every null one: two branches, each served
    /// by the index, merged by an outer sort of at most two pages. Every branch keeps the
    /// whole order, which is what lets the index serve it (PostgreSQL does not take
    /// `key is null` as fixing the key).
    pub(crate) fn page_sql(&self, dialect: Dialect) -> Sql {
        let [key, id] = *self.order;
        let Window { page, after, .. } = self.window;
        let mut w = Writer::new(dialect, String::new());
        let Some(after) = after else {
            self.branch(&mut w, &[], self.order);
            w.limit(page.limit + 1, page.offset);
            return w.finish();
        };
        let (key_column, key_cmp) = key.seek();
        let (id_column, id_cmp) = id.seek();
        let rest = (page.offset + page.limit + 1).max(0);
        match after.key {
            Some(at) => {
                let nulls_follow = matches!(key, Sort::DescNullsLast(_));
                if nulls_follow {
                    w.text.push_str("select * from (select * from (");
                }
                let after_key = Seek::AfterKey {
                    key: key_column,
                    key_cmp,
                    at,
                    id: id_column,
                    id_cmp,
                    after: after.id,
                };
                self.branch(&mut w, &[after_key], self.order);
                if nulls_follow {
                    w.limit(rest, 0);
                    w.text.push_str(") a union all select * from (");
                    self.branch(&mut w, &[Seek::Null(key_column)], self.order);
                    w.limit(rest, 0);
                    w.text.push_str(") b) u");
                    w.order(self.order);
                }
            }
            None => {
                let within_nulls = Seek::AfterNull {
                    key: key_column,
                    id: id_column,
                    id_cmp,
                    after: after.id,
                };
                self.branch(&mut w, &[within_nulls], self.order);
            }
        }
        w.limit(page.limit + 1, page.offset);
        w.finish()
    }

    /// `select columns from table where <filter> <seek> order by <order>`.
    fn branch(&self, w: &mut Writer, seek: &[Seek], order: &[Sort]) {
        w.text
            .push_str(&format!("select {} from {}", self.columns, self.table));
        w.conditions(&self.conditions);
        for s in seek {
            w.seek(*s);
        }
        w.order(order);
    }

    /// The total: `select count(*) from table where …`, or with a count limit, the count
    /// of at most limit + 1 rows (more than the limit: the total is estimated).
    pub(crate) fn count_sql(&self, dialect: Dialect) -> Sql {
        let Some(limit) = self.window.count_limit else {
            let mut w = Writer::new(dialect, format!("select count(*) from {}", self.table));
            w.conditions(&self.conditions);
            return w.finish();
        };
        let mut w = Writer::new(
            dialect,
            format!("select count(*) from (select 1 from {}", self.table),
        );
        w.conditions(&self.conditions);
        w.text.push_str(" limit ");
        w.bind(Bind::Int(limit.saturating_add(1)));
        w.text.push_str(") counted");
        w.finish()
    }

    /// The rows the filter matches, as a statement whose plan estimates their number:
    /// `select 1 from table where …`.
    pub(crate) fn matching_sql(&self, dialect: Dialect) -> Sql {
        let mut w = Writer::new(dialect, format!("select 1 from {}", self.table));
        w.conditions(&self.conditions);
        w.finish()
    }
}

/// A keyset condition of a page (see `Listing::page_sql`).
#[derive(Debug, Clone, Copy)]
enum Seek {
    /// Rows after (`at`, `after`) in the order whose comparisons are `key_cmp`, `id_cmp`.
    AfterKey {
        key: &'static str,
        key_cmp: char,
        at: OffsetDateTime,
        id: &'static str,
        id_cmp: char,
        after: Uuid,
    },
    /// Rows with a null key.
    Null(&'static str),
    /// Rows with a null key after `after`.
    AfterNull {
        key: &'static str,
        id: &'static str,
        id_cmp: char,
        after: Uuid,
    },
}

impl Sort {
    /// The column, and the comparison that holds for the rows after a value of it.
    fn seek(self) -> (&'static str, char) {
        match self {
            Sort::Desc(c) | Sort::DescNullsLast(c) => (c, '<'),
            Sort::Asc(c) => (c, '>'),
        }
    }
}

impl Dialect {
    fn sort(self, sort: Sort) -> String {
        match sort {
            Sort::Asc(c) => c.to_owned(),
            Sort::Desc(c) => format!("{c} desc"),
            Sort::DescNullsLast(c) if self.nulls_last_keyword => format!("{c} desc nulls last"),
            Sort::DescNullsLast(c) => format!("{c} desc"),
        }
    }
}

/// SQL text with numbered placeholders, and the values they stand for.
struct Writer {
    dialect: Dialect,
    text: String,
    binds: Vec<Bind>,
}

impl Writer {
    fn new(dialect: Dialect, text: String) -> Self {
        Self {
            dialect,
            text,
            binds: Vec::new(),
        }
    }

    /// Appends a placeholder for `value` (a value bound twice gets two placeholders, as
    /// the sequential `?` style would need).
    fn bind(&mut self, value: Bind) {
        let value = match value {
            Bind::Uuid(id) if !self.dialect.native_uuid => Bind::Text(id.to_string()),
            other => other,
        };
        self.binds.push(value);
        self.text.push(self.dialect.placeholder);
        self.text.push_str(&self.binds.len().to_string());
    }

    fn seek(&mut self, seek: Seek) {
        match seek {
            Seek::AfterKey {
                key,
                key_cmp,
                at,
                id,
                id_cmp,
                after,
            } => {
                let time = (self.dialect.time)(at);
                self.text.push_str(&format!(" and {key} {key_cmp}= "));
                self.bind(time.clone());
                self.text.push_str(&format!(" and ({key} {key_cmp} "));
                self.bind(time);
                self.text.push_str(&format!(" or {id} {id_cmp} "));
                self.bind(Bind::Uuid(after));
                self.text.push(')');
            }
            Seek::Null(key) => self.text.push_str(&format!(" and {key} is null")),
            Seek::AfterNull {
                key,
                id,
                id_cmp,
                after,
            } => {
                self.text
                    .push_str(&format!(" and {key} is null and {id} {id_cmp} "));
                self.bind(Bind::Uuid(after));
            }
        }
    }

    fn order(&mut self, order: &[Sort]) {
        let order: Vec<String> = order.iter().map(|s| self.dialect.sort(*s)).collect();
        self.text.push_str(" order by ");
        self.text.push_str(&order.join(", "));
    }

    fn limit(&mut self, limit: i64, offset: i64) {
        self.text.push_str(" limit ");
        self.bind(Bind::Int(limit));
        self.text.push_str(" offset ");
        self.bind(Bind::Int(offset));
    }

    fn conditions(&mut self, conditions: &[Condition]) {
        self.text.push_str(" where true");
        for c in conditions {
            match c {
                Condition::Eq(column, value) => {
                    self.text.push_str(&format!(" and {column} = "));
                    self.bind(value.clone());
                }
                Condition::EitherEq(a, b, value) => {
                    self.text.push_str(&format!(" and ({a} = "));
                    self.bind(value.clone());
                    self.text.push_str(&format!(" or {b} = "));
                    self.bind(value.clone());
                    self.text.push(')');
                }
            }
        }
    }

    fn finish(self) -> Sql {
        Sql {
            text: self.text,
            binds: self.binds,
        }
    }
}

/// One row of `table` by its id: `select columns from table where id = …`.
pub(crate) fn by_id(table: &str, columns: &str, id: Uuid, dialect: Dialect) -> Sql {
    let mut w = Writer::new(
        dialect,
        format!("select {columns} from {table} where id = "),
    );
    w.bind(Bind::Uuid(id));
    w.finish()
}

/// What a conversation search binds, whatever the text index: the words to match in
/// message text, the exact address for participants, and the participant prefix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SearchTerms<'a> {
    /// An address is searched in its normalised form, the form it takes in message text.
    pub words: &'a str,
    pub address: Option<&'a str>,
    /// A one-word query also matches participants it begins (a LIKE pattern).
    pub prefix: Option<String>,
}

impl<'a> SearchTerms<'a> {
    pub(crate) fn of(query: &'a SearchQuery) -> Self {
        Self {
            words: query.address.as_deref().unwrap_or(&query.text),
            address: query.address.as_deref(),
            prefix: (!query.text.contains(char::is_whitespace)).then(|| like_prefix(&query.text)),
        }
    }
}

/// `value` as a LIKE prefix pattern (escape character `\`), pattern characters escaped.
pub(crate) fn like_prefix(value: &str) -> String {
    let mut pattern = String::with_capacity(value.len() + 1);
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationStatus, MessageStatus};
    use crate::store::After;

    const PAGE: Window = Window {
        page: Page {
            limit: 20,
            offset: 40,
        },
        after: None,
        count_limit: None,
    };

    #[test]
    fn a_message_listing_binds_each_filter_once_in_order() {
        let id = Uuid::now_v7();
        let filter = MessageFilter {
            conversation_id: Some(id),
            status: Some(MessageStatus::Failed),
            ..Default::default()
        };
        let listing = Listing::messages("id", &filter, PAGE);
        let page = listing.page_sql(POSTGRES);
        assert_eq!(
            page.text,
            "select id from messages where true and conversation_id = $1 and status = $2 \
             order by created_at desc, id desc limit $3 offset $4"
        );
        assert_eq!(
            page.binds,
            [
                Bind::Uuid(id),
                Bind::Text("failed".into()),
                Bind::Int(21),
                Bind::Int(40)
            ]
        );
        let count = listing.count_sql(SQLITE);
        assert_eq!(
            count.text,
            "select count(*) from messages where true and conversation_id = ?1 and status = ?2"
        );
        assert_eq!(count.binds.len(), 2, "the page is not bound in the count");
    }

    #[test]
    fn nulls_come_last_in_either_dialect() {
        let filter = ConversationFilter {
            status: Some(ConversationStatus::Active),
            participant: Some("+15551234567".into()),
            ..Default::default()
        };
        let listing = Listing::conversations("id", &filter, PAGE);
        let where_clause =
            " where true and status = $1 and (participant_a = $2 or participant_b = $3)";
        assert_eq!(
            listing.page_sql(POSTGRES).text,
            format!(
                "select id from conversations{where_clause} \
                 order by last_message_at desc nulls last, id limit $4 offset $5"
            )
        );
        assert_eq!(
            listing.page_sql(SQLITE).text,
            format!(
                "select id from conversations{} \
                 order by last_message_at desc, id limit ?4 offset ?5",
                where_clause.replace('$', "?")
            )
        );
    }

    #[test]
    fn an_unfiltered_listing_matches_everything() {
        let listing = Listing::webhook_deliveries("id", None, PAGE.page);
        assert_eq!(
            listing.count_sql(POSTGRES),
            Sql {
                text: "select count(*) from webhook_deliveries where true".into(),
                binds: vec![]
            }
        );
        let one = Listing::webhook_deliveries("id", Some("twilio"), PAGE.page);
        assert_eq!(one.count_sql(SQLITE).binds, [Bind::Text("twilio".into())]);
    }

    #[test]
    fn a_keyset_page_seeks_past_the_cursor_on_the_sort_key() {
        let at = OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap();
        let id = Uuid::now_v7();
        let window = Window {
            page: Page {
                limit: 10,
                offset: 0,
            },
            after: Some(After { key: Some(at), id }),
            count_limit: Some(100),
        };
        let filter = MessageFilter {
            status: Some(MessageStatus::Sent),
            ..Default::default()
        };
        let listing = Listing::messages("id", &filter, window);
        let pg = listing.page_sql(POSTGRES);
        assert_eq!(
            pg.text,
            "select id from messages where true and status = $1 \
             and created_at <= $2 and (created_at < $3 or id < $4) \
             order by created_at desc, id desc limit $5 offset $6"
        );
        assert_eq!(
            pg.binds,
            [
                Bind::Text("sent".into()),
                Bind::Time(at),
                Bind::Time(at),
                Bind::Uuid(id),
                Bind::Int(11),
                Bind::Int(0)
            ]
        );
        let sqlite = listing.page_sql(SQLITE);
        assert_eq!(
            sqlite.binds[1],
            Bind::Text("2025-11-24T16:00:00.000000Z".into()),
            "SQLite compares the stored text"
        );
    }

    #[test]
    fn after_a_dated_conversation_come_the_older_ones_then_the_undated() {
        let at = OffsetDateTime::from_unix_timestamp(1_764_000_000).unwrap();
        let id = Uuid::now_v7();
        let mut window = Window {
            page: Page {
                limit: 10,
                offset: 0,
            },
            after: Some(After { key: Some(at), id }),
            count_limit: None,
        };
        let filter = ConversationFilter::default();
        let listing = Listing::conversations("id", &filter, window);
        assert_eq!(
            listing.page_sql(POSTGRES).text,
            "select * from (select * from (select id from conversations where true \
             and last_message_at <= $1 and (last_message_at < $2 or id > $3) \
             order by last_message_at desc nulls last, id limit $4 offset $5) a \
             union all select * from (select id from conversations where true \
             and last_message_at is null order by last_message_at desc nulls last, id \
             limit $6 offset $7) b) u \
             order by last_message_at desc nulls last, id limit $8 offset $9"
        );
        window.after = Some(After { key: None, id });
        let listing = Listing::conversations("id", &filter, window);
        assert_eq!(
            listing.page_sql(SQLITE).text,
            "select id from conversations where true and last_message_at is null and id > ?1 \
             order by last_message_at desc, id limit ?2 offset ?3"
        );
    }

    #[test]
    fn a_count_limit_counts_one_row_more_than_the_limit() {
        let window = Window {
            count_limit: Some(500),
            ..PAGE
        };
        let listing = Listing::webhook_deliveries("id", Some("twilio"), PAGE.page);
        let capped = Listing { window, ..listing };
        let count = capped.count_sql(POSTGRES);
        assert_eq!(
            count.text,
            "select count(*) from (select 1 from webhook_deliveries where true \
             and provider = $1 limit $2) counted"
        );
        assert_eq!(count.binds[1], Bind::Int(501));
        assert_eq!(
            capped.matching_sql(POSTGRES).text,
            "select 1 from webhook_deliveries where true and provider = $1"
        );
    }

    #[test]
    fn a_lookup_by_id_binds_the_id_as_the_dialect_keeps_it() {
        let id = Uuid::now_v7();
        let pg = by_id("messages", "id, body", id, POSTGRES);
        assert_eq!(pg.text, "select id, body from messages where id = $1");
        assert_eq!(pg.binds, [Bind::Uuid(id)]);
        let sqlite = by_id("messages", "id, body", id, SQLITE);
        assert_eq!(sqlite.text, "select id, body from messages where id = ?1");
        assert_eq!(sqlite.binds, [Bind::Text(id.to_string())]);
    }

    #[test]
    fn like_prefixes_escape_the_pattern_characters() {
        assert_eq!(like_prefix("+1555"), "+1555%");
        assert_eq!(like_prefix(r"a%b_c\d"), r"a\%b\_c\\d%");
    }

    #[test]
    fn an_address_is_searched_normalised_and_only_one_word_is_a_prefix() {
        let query = SearchQuery {
            text: "(555) 123".into(),
            address: Some("+1555123".into()),
        };
        let terms = SearchTerms::of(&query);
        assert_eq!(terms.words, "+1555123");
        assert_eq!(terms.prefix, None);
        let word = SearchQuery {
            text: "ali_".into(),
            address: None,
        };
        let terms = SearchTerms::of(&word);
        assert_eq!((terms.words, terms.address), ("ali_", None));
        assert_eq!(terms.prefix.as_deref(), Some(r"ali\_%"));
    }
}
