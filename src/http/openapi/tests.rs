//! The document against the code: every served route documented, error codes and limits
//! taken from the types and constants the service uses.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;
use crate::domain::{
    MAX_ATTACHMENT_URL_CHARS, MAX_ATTACHMENTS, MAX_EMAIL_BODY_BYTES, MAX_SUBJECT_CHARS,
};

/// The limits the document states for a send, and the constants the rules use.
const DOCUMENTED_LIMITS: [(&str, usize); 4] = [
    ("subject", MAX_SUBJECT_CHARS),
    ("body", MAX_EMAIL_BODY_BYTES),
    ("attachments", MAX_ATTACHMENTS),
    ("attachments[]", MAX_ATTACHMENT_URL_CHARS),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `(method, path)` of every `.route("PATH", method(handler)…)` in `text`. Routes whose path
/// is not a literal (the console's assets, a page and not the API) are not listed.
fn routes_in(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        // The call's arguments, up to its closing parenthesis.
        let mut depth = 1;
        let mut in_string = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_string = !in_string,
                '(' if !in_string => depth += 1,
                ')' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[..end];
        let Some(literal) = args.trim_start().strip_prefix('"') else {
            continue;
        };
        let Some((path, handlers)) = literal.split_once('"') else {
            continue;
        };
        for method in METHODS {
            let call = format!("{method}(");
            let mut search = handlers;
            while let Some(i) = search.find(&call) {
                let before = search[..i].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    found.push((method.to_owned(), path.to_owned()));
                    break;
                }
                search = &search[i + call.len()..];
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read the source directory");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every route the service serves, as `(method, path)`; the trailing-slash spellings
/// (`/api/v1/messages/`) are aliases of the documented route.
fn served_routes() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = BTreeSet::new();
    // This file's own examples are not routes.
    for file in files
        .iter()
        .filter(|f| !f.ends_with("http/openapi/tests.rs"))
    {
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (method, path) in routes_in(&text) {
            let path = match path.strip_suffix('/') {
                Some(alias) if !alias.is_empty() => alias.to_owned(),
                _ => path,
            };
            routes.insert((method, path));
        }
    }
    routes
}

fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = document_json();
    let mut routes = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("get", item.get.is_some()),
            ("post", item.post.is_some()),
            ("put", item.put.is_some()),
            ("patch", item.patch.is_some()),
            ("delete", item.delete.is_some()),
        ];
        for (method, present) in ops {
            if present {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

#[test]
fn the_route_scanner_reads_chained_methods_and_skips_computed_paths() {
    let text = r#"Router::new()
        .route("/a", post(create).get(list))
        .route(
            "/b/{id}",
            get(get_one).patch(update).delete(remove),
        )
        .route("/c", post(hook).layer(DefaultBodyLimit::max(target(1))))
        .route(asset.route, get(serve))
        .route("/m", axum::routing::get(crate::observability::metrics_text))"#;
    let found: BTreeSet<(String, String)> = routes_in(text).into_iter().collect();
    let expected: BTreeSet<(String, String)> = [
        ("post", "/a"),
        ("get", "/a"),
        ("get", "/b/{id}"),
        ("patch", "/b/{id}"),
        ("delete", "/b/{id}"),
        ("post", "/c"),
        ("get", "/m"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(found, expected);
}

/// A route added to a router must be annotated (`#[utoipa::path]`) and listed in
/// `ApiDoc`'s `paths(...)`; a documented route must be served.
#[test]
fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let served = served_routes();
    let documented = documented_routes();
    assert!(
        served.len() > 25,
        "the scan found too few routes: {served:?}"
    );
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "served but not in /openapi.json (annotate the handler with #[utoipa::path] and add it \
         to ApiDoc's paths in src/http/openapi.rs): {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(stale.is_empty(), "documented but not served: {stale:?}");
}

fn value() -> serde_json::Value {
    serde_json::to_value(document_json()).expect("the document serializes")
}

#[test]
fn the_error_codes_are_an_enum_of_every_error_code() {
    let doc = value();
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, all);
    assert!(codes.contains(&"invalid_transition"));
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(
        error["properties"]["error"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
}

#[test]
fn the_stated_limits_are_the_ones_the_rules_use() {
    let doc = value();
    let send = &doc["components"]["schemas"]["SendMessage"]["properties"];
    for (field, limit) in DOCUMENTED_LIMITS {
        let stated = match field {
            "attachments" => &send["attachments"]["maxItems"],
            "attachments[]" => &doc["components"]["schemas"]["AttachmentUrl"]["maxLength"],
            _ => &send[field]["maxLength"],
        };
        assert_eq!(stated.as_u64(), Some(limit as u64), "{field}: {send}");
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["StatusCorrection"]["properties"]["reason"]["maxLength"].as_u64(),
        Some(crate::service::correct_status::MAX_REASON_CHARS as u64)
    );
    assert_eq!(
        schemas["ConversationSearch"]["properties"]["query"]["maxLength"].as_u64(),
        Some(crate::domain::MAX_SEARCH_QUERY_CHARS as u64)
    );
    assert_eq!(
        schemas["NewConversation"]["properties"]["title"]["maxLength"].as_u64(),
        Some(crate::domain::MAX_TITLE_CHARS as u64)
    );
}

#[test]
fn every_answer_states_its_headers_and_api_routes_their_security() {
    let doc = value();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    for scheme in ["api_key", "twilio_signature", "sendgrid_signature"] {
        assert!(schemes[scheme].is_object(), "{scheme} missing");
    }
    let send = &doc["paths"]["/api/v1/messages/send"]["post"];
    assert!(
        send["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
    );
    assert_eq!(send["security"][0]["api_key"], serde_json::json!([]));
    for status in ["201", "200", "409", "422", "429"] {
        let headers = &send["responses"][status]["headers"];
        assert!(headers["X-Request-ID"].is_object(), "{status}: {headers}");
        assert!(headers["X-RateLimit-Remaining"].is_object(), "{status}");
    }
    assert!(send["responses"]["429"]["headers"]["Retry-After"].is_object());
    let live = &doc["paths"]["/live"]["get"];
    assert!(live["security"].is_null());
    assert!(live["responses"]["200"]["headers"]["X-RateLimit-Limit"].is_null());
    let twilio = &doc["paths"]["/api/v1/webhooks/twilio"]["post"];
    assert_eq!(
        twilio["security"][0]["twilio_signature"],
        serde_json::json!([])
    );
}

#[test]
fn webhook_endpoints_state_their_limits_and_event_types() {
    let doc = value();
    let schemas = &doc["components"]["schemas"];
    let limit = crate::service::webhook_endpoints::MAX_DESCRIPTION_CHARS as u64;
    for schema in ["NewWebhookEndpoint", "WebhookEndpointChanges"] {
        assert_eq!(
            schemas[schema]["properties"]["description"]["maxLength"].as_u64(),
            Some(limit),
            "{schema}"
        );
        assert_eq!(schemas[schema]["additionalProperties"], false, "{schema}");
    }
    let types: Vec<&str> = schemas["EventType"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    let subscribable: Vec<&str> = crate::domain::event::EventType::SUBSCRIBABLE
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(types, subscribable);
}

/// One `webhooks` entry per event type, each signed with the Standard Webhooks headers.
#[test]
fn every_event_type_is_a_webhook_with_its_signature_headers() {
    let doc = value();
    let webhooks = doc["webhooks"].as_object().expect("webhooks");
    let mut expected: BTreeSet<&str> = crate::domain::event::EventType::SUBSCRIBABLE
        .iter()
        .map(|t| t.as_str())
        .collect();
    expected.insert("test.ping");
    let named: BTreeSet<&str> = webhooks.keys().map(String::as_str).collect();
    assert_eq!(named, expected);
    for (name, item) in webhooks {
        let post = &item["post"];
        let headers: Vec<&str> = post["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter(|p| p["in"] == "header" && p["required"] == true)
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            headers,
            ["webhook-id", "webhook-timestamp", "webhook-signature"],
            "{name}"
        );
        let body = &post["requestBody"]["content"]["application/json"]["schema"]["allOf"];
        assert_eq!(body[1]["properties"]["type"]["enum"][0], name.as_str());
        let base = if name == "test.ping" {
            "#/components/schemas/TestPingBody"
        } else {
            "#/components/schemas/MessageEventBody"
        };
        assert_eq!(body[0]["$ref"], base, "{name}");
    }
    let message_body = &doc["components"]["schemas"]["MessageEventBody"];
    assert_eq!(
        message_body["properties"]["data"]["$ref"],
        "#/components/schemas/Message"
    );
    for field in ["type", "timestamp", "data"] {
        assert!(
            message_body["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == field)),
            "{field} required: {message_body}"
        );
    }
}

#[test]
fn both_send_bodies_document_scheduling_and_the_status_callback() {
    let doc = value();
    for schema in ["SendMessage", "LegacySendRequest"] {
        let props = &doc["components"]["schemas"][schema]["properties"];
        assert_eq!(props["send_at"]["format"], "date-time", "{schema}");
        assert!(props["send_at"]["description"].is_string(), "{schema}");
        assert!(
            props["status_callback"]["description"].is_string(),
            "{schema}"
        );
    }
    let legacy = &doc["paths"]["/api/messages/sms"]["post"]["responses"];
    assert!(legacy["201"].is_object(), "a scheduled send answers 201");
}
