//! Dynamic SQL written once: a list query is planned as conditions, an order and a page,
//! then rendered for a dialect. The dialect differences are data (`Dialect`): how a
//! placeholder is spelled and how "nulls last" is said. The backend only binds the values
//! in the order they are listed.

use uuid::Uuid;

use super::{ConversationFilter, MessageFilter, Page};
use crate::domain::SearchQuery;

/// How one SQL dialect spells what the planned queries need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    /// Numbered placeholders: `$1` (PostgreSQL) or `?1` (SQLite).
    pub placeholder: char,
    /// `true`: `x desc nulls last`; `false`: `x is null, x desc` (same order, older syntax).
    pub nulls_last_keyword: bool,
    /// `false`: UUIDs are bound as their hyphenated text.
    pub native_uuid: bool,
}

pub(crate) const POSTGRES: Dialect = Dialect {
    placeholder: '$',
    nulls_last_keyword: true,
    native_uuid: true,
};

pub(crate) const SQLITE: Dialect = Dialect {
    placeholder: '?',
    nulls_last_keyword: false,
    native_uuid: false,
};

/// A value a planned query binds (a UUID as the dialect keeps it: native on PostgreSQL, text
/// on SQLite).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Text(String),
    Uuid(Uuid),
    Int(i64),
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
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub table: &'static str,
    pub columns: &'static str,
    pub conditions: Vec<Condition>,
    pub order: &'static [Sort],
    pub page: Page,
}

/// Rendered SQL and the values to bind to its placeholders, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Listing {
    pub(crate) fn messages(columns: &'static str, f: &MessageFilter, page: Page) -> Self {
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
            page,
        }
    }

    pub(crate) fn conversations(columns: &'static str, f: &ConversationFilter, page: Page) -> Self {
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
            page,
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
            page,
        }
    }

    /// The page: `select columns from table where … order by … limit … offset …`.
    pub(crate) fn page_sql(&self, dialect: Dialect) -> Sql {
        let mut w = Writer::new(
            dialect,
            format!("select {} from {}", self.columns, self.table),
        );
        w.conditions(&self.conditions);
        let order: Vec<String> = self.order.iter().map(|s| dialect.sort(*s)).collect();
        w.text.push_str(" order by ");
        w.text.push_str(&order.join(", "));
        w.text.push_str(" limit ");
        w.bind(Bind::Int(self.page.limit));
        w.text.push_str(" offset ");
        w.bind(Bind::Int(self.page.offset));
        w.finish()
    }

    /// The total: `select count(*) from table where …`.
    pub(crate) fn count_sql(&self, dialect: Dialect) -> Sql {
        let mut w = Writer::new(dialect, format!("select count(*) from {}", self.table));
        w.conditions(&self.conditions);
        w.finish()
    }
}

impl Dialect {
    fn sort(self, sort: Sort) -> String {
        match sort {
            Sort::Asc(c) => c.to_owned(),
            Sort::Desc(c) => format!("{c} desc"),
            Sort::DescNullsLast(c) if self.nulls_last_keyword => format!("{c} desc nulls last"),
            Sort::DescNullsLast(c) => format!("{c} is null, {c} desc"),
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

    const PAGE: Page = Page {
        limit: 20,
        offset: 40,
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
                Bind::Int(20),
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
                 order by last_message_at is null, last_message_at desc, id limit ?4 offset ?5",
                where_clause.replace('$', "?")
            )
        );
    }

    #[test]
    fn an_unfiltered_listing_matches_everything() {
        let listing = Listing::webhook_deliveries("id", None, PAGE);
        assert_eq!(
            listing.count_sql(POSTGRES),
            Sql {
                text: "select count(*) from webhook_deliveries where true".into(),
                binds: vec![]
            }
        );
        let one = Listing::webhook_deliveries("id", Some("twilio"), PAGE);
        assert_eq!(one.count_sql(SQLITE).binds, [Bind::Text("twilio".into())]);
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
