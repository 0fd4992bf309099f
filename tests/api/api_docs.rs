//! The API contract over HTTP: `GET /openapi.json` and the docs page `GET /docs`, public
//! like the probes, and absent with `API_DOCS_ENABLED=false`.

use serde_json::Value;

use crate::helpers::{TestApp, sms_body};

#[tokio::test]
async fn the_document_and_the_docs_page_are_served_without_an_api_key() {
    let app = TestApp::builder()
        .env("REQUIRE_API_KEYS", "true")
        .spawn()
        .await;
    // The API itself wants a key here...
    assert_eq!(app.post_send(&sms_body()).await.status(), 401);

    // ...the document and the page do not.
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let doc: Value = resp.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let send = &doc["paths"]["/api/v1/messages/send"]["post"];
    assert_eq!(send["operationId"], "send_message");
    assert!(doc["paths"]["/api/v1/messages/{id}/status"]["patch"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());

    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200, "/docs leads to the page");
    assert!(page.url().path().starts_with("/docs"));
    let html = page.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page loads nothing from elsewhere: {html}"
    );
    let init = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(init.status(), 200);
    let init = init.text().await.expect("js");
    assert!(init.contains("/openapi.json"), "{init}");
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200, "the assets are compiled in");
}

#[tokio::test]
async fn api_docs_enabled_false_serves_neither() {
    let app = TestApp::builder()
        .env("API_DOCS_ENABLED", "false")
        .spawn()
        .await;
    let (status, body) = app.get_json("/openapi.json").await;
    assert_eq!((status, &body["error"]), (404, &Value::from("not_found")));
    assert_eq!(app.get("/docs/").await.status(), 404);
    assert_eq!(app.get("/health").await.status(), 200);
}
