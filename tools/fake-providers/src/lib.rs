//! Fake providers, a test tool kept out of the product binary: Twilio- and
//! SendGrid-compatible endpoints on a local port, so the whole system runs end to end with
//! real HTTP on one machine (`cargo run -p fake-providers -- --port 9090`; the tests start
//! it in process with `start` or `router`). It records
//! every request (`GET /_fake/requests`), lists the Twilio messages it accepted
//! (`GET …/Messages.json`, filtered and paged), injects errors and latency (and a full
//! outage between `POST` and `DELETE /_fake/outage`), and posts status
//! callbacks back to the service: Twilio's form-encoded, signed with `X-Twilio-Signature`;
//! SendGrid's event JSON (unsigned: the fake holds no SendGrid signing key).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use messaging_service::provider::twilio::STATUS_CALLBACK_PATH;

pub const SENDGRID_EVENTS_PATH: &str = "/api/v1/webhooks/sendgrid";

#[derive(Debug, Clone, Args)]
pub struct FakeProvidersArgs {
    /// Address to listen on
    #[arg(long, env = "FAKE_PROVIDERS_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the address is printed)
    #[arg(long, env = "FAKE_PROVIDERS_PORT", default_value_t = 9090)]
    pub port: u16,
    /// Latency added to every answer, in milliseconds
    #[arg(long, env = "FAKE_PROVIDERS_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of sends refused with a permanent 400 (Twilio 21211)
    #[arg(long, env = "FAKE_PROVIDERS_ERROR_RATE", default_value_t = 0.0)]
    pub error_rate: f64,
    /// Share of sends answered 429 with Retry-After: 1
    #[arg(long, env = "FAKE_PROVIDERS_429_RATE", default_value_t = 0.0)]
    pub rate_429: f64,
    /// Share of sends answered 500
    #[arg(long, env = "FAKE_PROVIDERS_500_RATE", default_value_t = 0.0)]
    pub rate_500: f64,
    /// Delay before each status callback, in milliseconds
    #[arg(long, env = "FAKE_PROVIDERS_CALLBACK_DELAY_MS", default_value_t = 200)]
    pub callback_delay_ms: u64,
    /// Do not post status callbacks
    #[arg(long)]
    pub no_callbacks: bool,
    /// Post a send's status callbacks (`sent`, `delivered`) and wait for the service's
    /// answers before answering the create call itself: every receipt arrives before the
    /// worker can have recorded the sid (Twilio can call back within milliseconds)
    #[arg(long, env = "FAKE_PROVIDERS_CALLBACKS_BEFORE_ANSWER")]
    pub callbacks_before_answer: bool,
    /// Where callbacks go when a send names no StatusCallback (the service's public URL)
    #[arg(long, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// Signs Twilio callbacks (the service verifies them with the same token)
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
}

impl FakeProvidersArgs {
    /// For a fake inside a test: a free port on 127.0.0.1, no latency, no injected errors,
    /// no callbacks (set `public_base_url` and clear `no_callbacks` to get them).
    pub fn in_process() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            latency_ms: 0,
            error_rate: 0.0,
            rate_429: 0.0,
            rate_500: 0.0,
            callback_delay_ms: 0,
            no_callbacks: true,
            callbacks_before_answer: false,
            public_base_url: None,
            twilio_auth_token: None,
        }
    }
}

/// A request the fake received.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub provider: &'static str,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// Form fields in order (Twilio), repeated names repeated.
    pub form: Vec<(String, String)>,
    /// The JSON body (SendGrid).
    pub json: Value,
    pub received_at: String,
    /// Unix time in milliseconds, for measuring rates.
    pub received_at_ms: i64,
    /// What the fake answered.
    pub status: u16,
    /// The id the fake gave the message, when it accepted it.
    pub id: Option<String>,
}

/// A status callback the fake posted.
#[derive(Debug, Clone, Serialize)]
pub struct Callback {
    pub url: String,
    pub status: String,
    pub body: Value,
    /// The service's answer, or `None` when it could not be reached.
    pub response_status: Option<u16>,
}

struct Inner {
    args: FakeProvidersArgs,
    /// Every message accepted, as Twilio's Message resource, oldest first (for the list
    /// endpoint).
    twilio_messages: Mutex<Vec<StoredTwilio>>,
    /// While set (`POST /_fake/outage`), every send is answered with this status.
    outage: std::sync::atomic::AtomicU16,
    requests: Mutex<Vec<Recorded>>,
    callbacks: Mutex<Vec<Callback>>,
    client: reqwest::Client,
}

#[derive(Clone)]
struct Fake(Arc<Inner>);

/// A message the fake Twilio accepted: its account, when it was sent, and the resource.
struct StoredTwilio {
    account: String,
    sent_at: OffsetDateTime,
    resource: Value,
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Segments Twilio would bill for this body.
pub fn segments(body: &str) -> usize {
    messaging_service::domain::segments::count_segments(body).segments as usize
}

enum Injected {
    None,
    Permanent,
    TooMany,
    ServerError,
}

impl Fake {
    fn roll(&self) -> Injected {
        if self.0.outage.load(std::sync::atomic::Ordering::Relaxed) != 0 {
            return Injected::ServerError;
        }
        let a = &self.0.args;
        let r = fastrand::f64();
        if r < a.error_rate {
            Injected::Permanent
        } else if r < a.error_rate + a.rate_429 {
            Injected::TooMany
        } else if r < a.error_rate + a.rate_429 + a.rate_500 {
            Injected::ServerError
        } else {
            Injected::None
        }
    }

    fn record(&self, r: Recorded) {
        self.0
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r);
    }

    async fn post_callback(
        &self,
        url: String,
        status: &str,
        request: reqwest::RequestBuilder,
        body: Value,
    ) {
        let response_status = match request.send().await {
            Ok(resp) => Some(resp.status().as_u16()),
            Err(e) => {
                warn!(error = %e, %url, "status callback could not be delivered");
                None
            }
        };
        self.0
            .callbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Callback {
                url,
                status: status.to_owned(),
                body,
                response_status,
            });
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let mut resp = (
        status,
        Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

async fn twilio_send(
    State(fake): State<Fake>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = fake.0.args.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let authorization = header_text(&headers, header::AUTHORIZATION);
    let authorized = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|creds| creds.starts_with(&format!("{account}:")));
    let media: Vec<&String> = form
        .iter()
        .filter(|(k, _)| k == "MediaUrl")
        .map(|(_, v)| v)
        .collect();

    let mut sid = None;
    let resp = if !authorized {
        twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
    } else if field("To").is_none() {
        twilio_error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        )
    } else if field("From").is_none() && field("MessagingServiceSid").is_none() {
        twilio_error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        )
    } else if field("Body").is_none() && media.is_empty() {
        twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.")
    } else {
        match fake.roll() {
            Injected::Permanent => twilio_error(
                StatusCode::BAD_REQUEST,
                21211,
                "The 'To' number is not a valid phone number.",
            ),
            Injected::TooMany => {
                twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests")
            }
            Injected::ServerError => twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
            ),
            Injected::None => {
                let prefix = if media.is_empty() { "SM" } else { "MM" };
                let id = format!("{prefix}{}", random_hex(32));
                sid = Some(id.clone());
                let sent_at = OffsetDateTime::now_utc();
                let now = sent_at.format(&Rfc2822).unwrap_or_default();
                let body_text = field("Body").unwrap_or_default();
                let created = json!({
                    "sid": id,
                    "account_sid": account,
                    "messaging_service_sid": field("MessagingServiceSid"),
                    "to": field("To"),
                    "from": field("From"),
                    "body": body_text,
                    "status": if field("MessagingServiceSid").is_some() { "accepted" } else { "queued" },
                    "num_segments": segments(&body_text).to_string(),
                    "num_media": media.len().to_string(),
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "price": null,
                    "price_unit": "USD",
                    "error_code": null,
                    "error_message": null,
                    "date_created": now,
                    "date_updated": now,
                    "date_sent": null,
                    "uri": format!("/2010-04-01/Accounts/{account}/Messages/{id}.json"),
                });
                // The fake hands every message to the carrier at once: it lists as sent.
                let mut listed = created.clone();
                listed["status"] = Value::from("sent");
                listed["date_sent"] = Value::from(now.clone());
                fake.0
                    .twilio_messages
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(StoredTwilio {
                        account: account.clone(),
                        sent_at,
                        resource: listed,
                    });
                (StatusCode::CREATED, Json(created)).into_response()
            }
        }
    };
    fake.record(Recorded {
        provider: "twilio",
        method: "POST".into(),
        path: format!("/2010-04-01/Accounts/{account}/Messages.json"),
        authorization,
        content_type: header_text(&headers, header::CONTENT_TYPE),
        form: form.clone(),
        json: Value::Null,
        received_at: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        received_at_ms: now_ms(),
        status: resp.status().as_u16(),
        id: sid.clone(),
    });

    if let Some(sid) = sid
        && !fake.0.args.no_callbacks
    {
        let url = field("StatusCallback").or_else(|| {
            fake.0
                .args
                .public_base_url
                .as_ref()
                .map(|b| format!("{}{STATUS_CALLBACK_PATH}", b.trim_end_matches('/')))
        });
        if let Some(url) = url {
            let early = fake.0.args.callbacks_before_answer;
            let fake = fake.clone();
            let (to, from) = (
                field("To").unwrap_or_default(),
                field("From").unwrap_or_default(),
            );
            let callbacks = async move {
                for status in ["sent", "delivered"] {
                    tokio::time::sleep(Duration::from_millis(fake.0.args.callback_delay_ms)).await;
                    let params: Vec<(String, String)> = [
                        ("MessageSid", sid.as_str()),
                        ("SmsSid", sid.as_str()),
                        ("AccountSid", account.as_str()),
                        ("From", from.as_str()),
                        ("To", to.as_str()),
                        ("ApiVersion", "2010-04-01"),
                        ("MessageStatus", status),
                        ("SmsStatus", status),
                    ]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                    let mut req = fake.0.client.post(&url).form(&params);
                    if let Some(token) = &fake.0.args.twilio_auth_token {
                        req = req.header(
                            "X-Twilio-Signature",
                            messaging_service::webhook::signature::twilio_signature(
                                token, &url, &params,
                            ),
                        );
                    }
                    let body = Value::Object(
                        params
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                            .collect(),
                    );
                    fake.post_callback(url.clone(), status, req, body).await;
                }
            };
            if early {
                callbacks.await;
            } else {
                tokio::spawn(callbacks);
            }
        }
    }
    resp
}

/// `DateSent>=` as Twilio takes it: a date (`2026-12-02`) or a UTC date and time
/// (`2026-12-02T10:00:00Z`).
fn parse_date_sent(raw: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(raw, &format)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// `GET …/Messages.json`: the account's messages, newest first, filtered by `To`, `From`,
/// `DateSent>=` / `DateSent<=` / `DateSent`, in pages of `PageSize` (default 50, at most
/// 1000) with `Page`, and `next_page_uri` while more remain, as Twilio answers.
async fn twilio_list(
    State(fake): State<Fake>,
    Path(account): Path<String>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let authorized = header_text(&headers, header::AUTHORIZATION)
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|creds| creds.starts_with(&format!("{account}:")));
    if !authorized {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let mut after = None;
    let mut before = None;
    for (key, bound) in [("DateSent>", &mut after), ("DateSent<", &mut before)] {
        if let Some(raw) = param(key) {
            match parse_date_sent(&raw) {
                Some(t) => *bound = Some(t),
                None => {
                    return twilio_error(StatusCode::BAD_REQUEST, 20001, "Invalid DateSent");
                }
            }
        }
    }
    let on_day = param("DateSent").and_then(|raw| parse_date_sent(&raw));
    let page_size: usize = param("PageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = param("Page").and_then(|v| v.parse().ok()).unwrap_or(0);
    let (to, from) = (param("To"), param("From"));
    let matching: Vec<Value> = {
        let stored = fake
            .0
            .twilio_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        stored
            .iter()
            .rev()
            .filter(|m| m.account == account)
            .filter(|m| to.as_deref().is_none_or(|t| m.resource["to"] == t))
            .filter(|m| from.as_deref().is_none_or(|f| m.resource["from"] == f))
            .filter(|m| after.is_none_or(|a| m.sent_at >= a))
            .filter(|m| before.is_none_or(|b| m.sent_at <= b))
            .filter(|m| on_day.is_none_or(|d| m.sent_at.date() == d.date()))
            .map(|m| m.resource.clone())
            .collect()
    };
    let start = page * page_size;
    let messages: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .cloned()
        .collect();
    let base = format!("/2010-04-01/Accounts/{account}/Messages.json");
    let filters: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "Page" | "PageSize" | "PageToken"))
        .cloned()
        .collect();
    let uri_of = |page: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &filters {
            q.append_pair(k, v);
        }
        q.append_pair("PageSize", &page_size.to_string());
        q.append_pair("Page", &page.to_string());
        if page > 0 {
            q.append_pair("PageToken", &format!("PA{}", random_hex(32)));
        }
        format!("{base}?{}", q.finish())
    };
    let next = (start + page_size < matching.len()).then(|| uri_of(page + 1));
    let previous = (page > 0).then(|| uri_of(page - 1));
    let end = (start + messages.len()).saturating_sub(1);
    fake.record(Recorded {
        provider: "twilio",
        method: "GET".into(),
        path: base.clone(),
        authorization: header_text(&headers, header::AUTHORIZATION),
        content_type: None,
        form: params.clone(),
        json: Value::Null,
        received_at: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        received_at_ms: now_ms(),
        status: 200,
        id: None,
    });
    Json(json!({
        "messages": messages,
        "page": page,
        "page_size": page_size,
        "start": start,
        "end": end,
        "uri": uri_of(page),
        "first_page_uri": uri_of(0),
        "next_page_uri": next,
        "previous_page_uri": previous,
    }))
    .into_response()
}

fn sendgrid_error(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    let mut resp = (
        status,
        Json(json!({"errors": [{"message": message, "field": field, "help": null}]})),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let reset = OffsetDateTime::now_utc().unix_timestamp() + 1;
        if let Ok(v) = header::HeaderValue::from_str(&reset.to_string()) {
            resp.headers_mut().insert("x-ratelimit-reset", v);
        }
    }
    resp
}

async fn sendgrid_send(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let latency = fake.0.args.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let authorization = header_text(&headers, header::AUTHORIZATION);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let to = json["personalizations"][0]["to"][0]["email"]
        .as_str()
        .map(str::to_owned);
    let mut id = None;
    let resp = if !authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer ") && a.len() > 7)
    {
        sendgrid_error(
            StatusCode::UNAUTHORIZED,
            "The provided authorization grant is invalid, expired, or revoked",
            None,
        )
    } else if json.is_null() {
        sendgrid_error(StatusCode::BAD_REQUEST, "Bad Request", None)
    } else if to.is_none() {
        sendgrid_error(
            StatusCode::BAD_REQUEST,
            "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            Some("personalizations.0.to"),
        )
    } else if json["from"]["email"].as_str().is_none() {
        sendgrid_error(
            StatusCode::BAD_REQUEST,
            "The from object must be provided for every email send.",
            Some("from"),
        )
    } else {
        match fake.roll() {
            Injected::Permanent => sendgrid_error(
                StatusCode::BAD_REQUEST,
                "Does not contain a valid address.",
                Some("personalizations.0.to.0.email"),
            ),
            Injected::TooMany => {
                sendgrid_error(StatusCode::TOO_MANY_REQUESTS, "too many requests", None)
            }
            Injected::ServerError => {
                sendgrid_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
            }
            Injected::None => {
                const ALPHABET: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let x: String = (0..22)
                    .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
                    .collect();
                id = Some(x.clone());
                let mut resp = StatusCode::ACCEPTED.into_response();
                if let Ok(v) = header::HeaderValue::from_str(&x) {
                    resp.headers_mut().insert("x-message-id", v);
                }
                resp
            }
        }
    };
    fake.record(Recorded {
        provider: "sendgrid",
        method: "POST".into(),
        path: "/v3/mail/send".into(),
        authorization,
        content_type: header_text(&headers, header::CONTENT_TYPE),
        form: Vec::new(),
        json: json.clone(),
        received_at: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        received_at_ms: now_ms(),
        status: resp.status().as_u16(),
        id: id.clone(),
    });

    if let (Some(id), Some(base), false) = (
        id,
        fake.0.args.public_base_url.clone(),
        fake.0.args.no_callbacks,
    ) {
        let url = format!("{}{SENDGRID_EVENTS_PATH}", base.trim_end_matches('/'));
        let fake = fake.clone();
        tokio::spawn(async move {
            for event in ["processed", "delivered"] {
                tokio::time::sleep(Duration::from_millis(fake.0.args.callback_delay_ms)).await;
                let mut e = json!({
                    "email": to,
                    "timestamp": OffsetDateTime::now_utc().unix_timestamp(),
                    "event": event,
                    "sg_event_id": random_hex(22),
                    "sg_message_id": format!("{id}.filter0001p1las1-{}", random_hex(8)),
                    "smtp-id": format!("<{id}@fake.sendgrid.local>"),
                });
                // Custom args come back as top-level keys.
                if let (Some(obj), Some(args)) =
                    (e.as_object_mut(), json["custom_args"].as_object())
                {
                    for (k, v) in args {
                        obj.insert(k.clone(), v.clone());
                    }
                }
                if event == "delivered" {
                    e["response"] = Value::from("250 OK");
                }
                let body = json!([e]);
                let req = fake.0.client.post(&url).json(&body);
                fake.post_callback(url.clone(), event, req, body).await;
            }
        });
    }
    resp
}

async fn requests(State(fake): State<Fake>) -> Json<Value> {
    let list = fake
        .0
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Json(json!({ "requests": list }))
}

async fn clear(State(fake): State<Fake>) -> StatusCode {
    fake.0
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    fake.0
        .callbacks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    StatusCode::NO_CONTENT
}

/// `POST /_fake/outage`: every send answers 500 until `DELETE /_fake/outage`.
async fn outage_start(State(fake): State<Fake>) -> StatusCode {
    fake.0
        .outage
        .store(500, std::sync::atomic::Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn outage_end(State(fake): State<Fake>) -> StatusCode {
    fake.0.outage.store(0, std::sync::atomic::Ordering::Relaxed);
    StatusCode::NO_CONTENT
}

async fn callbacks(State(fake): State<Fake>) -> Json<Value> {
    let list = fake
        .0
        .callbacks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Json(json!({ "callbacks": list }))
}

pub fn router(args: FakeProvidersArgs) -> anyhow::Result<Router> {
    let fake = Fake(Arc::new(Inner {
        args,
        twilio_messages: Mutex::new(Vec::new()),
        outage: std::sync::atomic::AtomicU16::new(0),
        requests: Mutex::new(Vec::new()),
        callbacks: Mutex::new(Vec::new()),
        client: messaging_service::provider::http::client(Duration::from_secs(10))?,
    }));
    Ok(Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            post(twilio_send).get(twilio_list),
        )
        .route("/v3/mail/send", post(sendgrid_send))
        .route("/_fake/requests", get(requests).delete(clear))
        .route("/_fake/callbacks", get(callbacks))
        .route("/_fake/outage", post(outage_start).delete(outage_end))
        .with_state(fake))
}

/// Binds the fake and serves it in the background until `shutdown`; returns its address.
pub async fn start(
    args: FakeProvidersArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    for (name, rate) in [
        ("--error-rate", args.error_rate),
        ("--rate-429", args.rate_429),
        ("--rate-500", args.rate_500),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            anyhow::bail!("{name} must be between 0 and 1");
        }
    }
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    let app = router(args)?;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "fake providers stopped serving");
        }
    });
    info!(%addr, "fake providers listening");
    Ok(addr)
}

/// Serves until `shutdown`; prints the address it listens on, and the settings that point
/// the service at it.
pub async fn run(args: FakeProvidersArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let addr = start(args, shutdown.clone()).await?;
    // Whoever started us may stop reading after the first line: a closed stdout is fine.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "fake providers listening on http://{addr}");
        let _ = writeln!(out, "  Twilio:   TWILIO_API_BASE=http://{addr}");
        let _ = writeln!(out, "  SendGrid: SENDGRID_API_BASE=http://{addr}");
        let _ = writeln!(
            out,
            "  recorded: GET http://{addr}/_fake/requests, GET http://{addr}/_fake/callbacks"
        );
        let _ = out.flush();
    }
    shutdown.cancelled().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_gsm7_and_ucs2_limits() {
        assert_eq!(segments("hello"), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        assert_eq!(segments(&"é".repeat(160)), 1, "é is GSM-7");
        assert_eq!(segments(&"ł".repeat(70)), 1);
        assert_eq!(segments(&"ł".repeat(71)), 2);
        assert_eq!(
            segments(&"€".repeat(80)),
            1,
            "extension characters count twice"
        );
        assert_eq!(segments(&"€".repeat(81)), 2);
    }
}
