//! The operator console at `/console`: served from the binary, with a strict
//! Content-Security-Policy, and its scripts and styles as their own files.

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let app = spawn_app().await;
    let page = app.get("/console").await;
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("app.js"), "the page loads its own script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    let script = app.get("/console/app.js").await;
    assert_eq!(script.status(), 200);
    let kind = script
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(kind.contains("javascript"), "{kind}");
    assert_eq!(app.get("/console/nope.js").await.status(), 404);
}
