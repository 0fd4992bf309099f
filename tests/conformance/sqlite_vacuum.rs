//! SQLite documents that `VACUUM`, its standard maintenance, may change the implicit rowids
//! of a table without an `INTEGER PRIMARY KEY` (so do a dump and restore, or `.recover`); the
//! full-text index must not care. Messages are inserted, some deleted (by deleting their
//! conversations), the file is vacuumed while the service has it open, as an operator would,
//! and search must still find exactly what is left. The SQLite bundled here happens to keep
//! rowids through `VACUUM` in this schema (it copies tables row by row with their rowids when
//! it can), so the test then renumbers every message's rowid itself — what `VACUUM` is
//! allowed to do — and searches again.

use std::sync::Arc;

use messaging_service::config::ConnectionUrl;
use messaging_service::domain::{NewMessage, OutboundContent, SearchQuery};
use messaging_service::store::sqlite::SqliteStore;
use messaging_service::store::{Inserted, Store};
use sqlx::Connection;
use uuid::Uuid;

use crate::scratch::ScratchDir;

fn outbound(to: &str, body: &str) -> NewMessage {
    NewMessage::outbound(OutboundContent {
        from: Some("+15551234567".into()),
        to: Some(to.into()),
        kind: Some("sms".into()),
        body: Some(body.into()),
        ..Default::default()
    })
    .expect("valid message")
}

async fn search(store: &Arc<dyn Store>, text: &str) -> Vec<Uuid> {
    let query = SearchQuery::parse(Some(text)).expect("query");
    let mut ids: Vec<Uuid> = store
        .search_conversations(&query, 100)
        .await
        .expect("search")
        .iter()
        .map(|h| h.conversation.id)
        .collect();
    ids.sort();
    ids
}

async fn rowids(url: &str) -> Vec<(String, i64)> {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("open");
    sqlx::query_as("select id, rowid from messages order by id")
        .fetch_all(&mut conn)
        .await
        .expect("rowids")
}

#[tokio::test]
async fn search_finds_the_right_messages_after_deletes_and_vacuum() {
    let dir = ScratchDir::new("vacuum");
    let url = dir.sqlite_url();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&ConnectionUrl::new(url.clone()), 4)
            .await
            .expect("open SQLite"),
    );
    // 40 conversations, each with two messages naming its own word.
    let mut conversations = Vec::new();
    for i in 0..40 {
        let to = format!("+1555100{i:04}");
        let batch = vec![
            outbound(&to, &format!("first note word{i}")),
            outbound(&to, &format!("second note word{i} again")),
        ];
        let inserted = store.insert_messages(&batch).await.expect("insert");
        let conversation = match &inserted[0] {
            Inserted::Created(m) => m.conversation_id,
            other => panic!("not created: {other:?}"),
        };
        conversations.push(conversation);
    }
    // Delete every other one from the first half: the table gets holes at its start.
    let mut deleted = Vec::new();
    for i in (0..20).step_by(2) {
        assert!(
            store
                .delete_conversation(conversations[i])
                .await
                .expect("delete")
        );
        deleted.push(i);
    }

    let before = rowids(&url).await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
    sqlx::query("vacuum")
        .execute(&mut conn)
        .await
        .expect("VACUUM");
    drop(conn);
    let after = rowids(&url).await;
    assert_eq!(before.len(), after.len());
    let by_vacuum = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.1 != a.1)
        .count();
    check(&store, &conversations, &deleted).await;

    // What VACUUM may do: every message gets another rowid.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
    sqlx::query("update messages set rowid = rowid + 1000000")
        .execute(&mut conn)
        .await
        .expect("renumber");
    sqlx::query("vacuum")
        .execute(&mut conn)
        .await
        .expect("VACUUM");
    drop(conn);
    let renumbered = rowids(&url).await;
    assert!(before.iter().zip(&renumbered).all(|(b, a)| b.1 != a.1));
    check(&store, &conversations, &deleted).await;

    // A message stored after the vacuum is found too.
    store
        .insert_messages(&[outbound("+15551009999", "late word-after-vacuum")])
        .await
        .expect("insert after vacuum");

    assert_eq!(search(&store, "vacuum").await.len(), 1);
    println!(
        "sqlite_vacuum: VACUUM renumbered {by_vacuum} of {} messages; search intact after it \
         and after renumbering all of them",
        after.len()
    );
}

async fn check(store: &Arc<dyn Store>, conversations: &[Uuid], deleted: &[usize]) {
    for (i, conversation) in conversations.iter().enumerate() {
        let found = search(store, &format!("word{i}")).await;
        if deleted.contains(&i) {
            assert!(found.is_empty(), "word{i} was deleted, found {found:?}");
        } else {
            assert_eq!(found, vec![*conversation], "word{i}");
        }
    }
    assert_eq!(
        search(store, "note").await.len(),
        30,
        "every surviving conversation"
    );
}

/// A file made before the search key existed (its index keyed on rowids, the migration not
/// applied) is re-indexed by the migration: search works, also after the rowids change.
#[tokio::test]
async fn the_migration_reindexes_a_file_made_before_it() {
    let dir = ScratchDir::new("vacuum-upgrade");
    let url = dir.sqlite_url();
    let conversations = {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&ConnectionUrl::new(url.clone()), 2)
                .await
                .expect("open SQLite"),
        );
        let mut conversations = Vec::new();
        for i in 0..10 {
            let to = format!("+1555200{i:04}");
            let inserted = store
                .insert_messages(&[outbound(&to, &format!("old note word{i}"))])
                .await
                .expect("insert");
            match &inserted[0] {
                Inserted::Created(m) => conversations.push(m.conversation_id),
                other => panic!("not created: {other:?}"),
            }
        }
        conversations
    };
    // Back to the schema of 20261128160000: index keyed on rowids, migration not recorded.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
    for sql in [
        "drop trigger messages_text_insert",
        "drop trigger messages_text_delete",
        "drop table message_text",
        "drop table message_search_keys",
        "drop table unmatched_receipts",
        "create virtual table message_text using fts5(text, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2')",
        "insert into message_text (rowid, text) select rowid, substr(coalesce(subject, '') || ' ' || coalesce(body, ''), 1, 65536) from messages",
        "create trigger messages_text_insert after insert on messages begin insert into message_text (rowid, text) values (new.rowid, substr(coalesce(new.subject, '') || ' ' || coalesce(new.body, ''), 1, 65536)); end",
        "create trigger messages_text_delete after delete on messages begin delete from message_text where rowid = old.rowid; end",
        "delete from _sqlx_migrations where version = 20261202140000",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(conn);

    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&ConnectionUrl::new(url.clone()), 2)
            .await
            .expect("reopen: the migration runs"),
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open");
    sqlx::query("update messages set rowid = rowid + 5000")
        .execute(&mut conn)
        .await
        .expect("renumber");
    drop(conn);
    for (i, conversation) in conversations.iter().enumerate() {
        assert_eq!(
            search(&store, &format!("word{i}")).await,
            vec![*conversation],
            "word{i} after the migration"
        );
    }
}
