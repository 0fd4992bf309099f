//! The migrations are compiled into the binary (`sqlx::migrate!`), but cargo does not know
//! the macro reads them: without this, a migration added to an already built tree would be
//! missing from the next build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
