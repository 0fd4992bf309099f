//! The harness itself: what a test makes in the shared PostgreSQL, Redis and temporary
//! directory is gone once its `TestApp` drops, also when the test panics.

use crate::helpers::{TestApp, sms_body, spawn_app};
use crate::scratch::{ScratchDatabase, ScratchPrefix};

/// What a test left behind: its database, its Redis keys, its SQLite directory.
struct Made {
    db_name: String,
    prefix: String,
    data_dir: Option<std::path::PathBuf>,
}

impl Made {
    /// Also writes a key under the app's prefix, as the real binary does when a test starts
    /// it with `QUEUE_KEY_PREFIX` (on the embedded pass too).
    async fn of(app: &TestApp) -> Self {
        let _: () = redis::cmd("SET")
            .arg(format!("{}marker", app.prefix))
            .arg(1)
            .query_async(&mut app.redis().await)
            .await
            .expect("SET");
        Self {
            db_name: app.db_name.clone(),
            prefix: app.prefix.clone(),
            data_dir: app.data_dir.clone(),
        }
    }

    async fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if self.data_dir.is_none() && ScratchDatabase::exists(&self.db_name).await {
            left.push(format!("database {}", self.db_name));
        }
        left.extend(
            ScratchPrefix::keys_under(&self.prefix)
                .await
                .expect("scan the shared Redis"),
        );
        if let Some(dir) = &self.data_dir
            && dir.exists()
        {
            left.push(format!("directory {}", dir.display()));
        }
        left
    }
}

#[tokio::test]
async fn a_dropped_test_app_leaves_no_database_redis_keys_or_files_behind() {
    let app = spawn_app().await;
    app.send(&sms_body()).await;
    let made = Made::of(&app).await;
    assert!(
        !made.leftovers().await.is_empty(),
        "the app made its database (or file) and keys"
    );
    drop(app);
    assert_eq!(made.leftovers().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_test_that_panics_leaves_no_database_redis_keys_or_files_behind() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failing_test = tokio::spawn(async move {
        let app = spawn_app().await;
        app.send(&sms_body()).await;
        let _ = tx.send(Made::of(&app).await);
        panic!("a test fails while its app runs");
    });
    let outcome = failing_test.await;
    assert!(outcome.is_err_and(|e| e.is_panic()));
    let made = rx.await.expect("the test told what it made");
    assert_eq!(made.leftovers().await, Vec::<String>::new());
}
