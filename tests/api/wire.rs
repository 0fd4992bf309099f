//! Bytes on the wire: what `curl -i` shows an operator.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// The raw HTTP/1.1 response head to `GET path`.
async fn raw_head(app: &TestApp, path: &str) -> String {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, _body) = response
        .split_once("\r\n\r\n")
        .expect("a response head ends with a blank line");
    head.to_owned()
}

#[tokio::test]
async fn http1_header_names_are_spelled_as_the_guide_greps_them() {
    let app = TestApp::builder()
        .env("RATE_LIMIT_ENABLED", "true")
        .spawn()
        .await;
    let head = raw_head(&app, "/health").await;
    // The guide: curl -i http://localhost:8080/health | grep -E "HTTP|X-RateLimit"
    let shown: Vec<&str> = head
        .lines()
        .filter(|l| l.contains("HTTP") || l.contains("X-RateLimit"))
        .collect();
    assert!(shown[0].starts_with("HTTP/1.1 200"), "{head}");
    for name in [
        "X-RateLimit-Limit: ",
        "X-RateLimit-Remaining: ",
        "X-RateLimit-Reset: ",
    ] {
        assert!(
            shown.iter().any(|l| l.starts_with(name)),
            "{name} in {head}"
        );
    }
    assert!(
        head.lines()
            .any(|l| l.starts_with("Content-Type: application/json")),
        "other names in title case: {head}"
    );
    assert!(
        !head
            .lines()
            .skip(1)
            .any(|l| l.starts_with(|c: char| c.is_ascii_lowercase())),
        "no lower-case header name: {head}"
    );
}
