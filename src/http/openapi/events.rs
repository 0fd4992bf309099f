//! The events this service POSTs to the application, as OpenAPI 3.1 `webhooks`: one entry
//! per event type, each with its body and the Standard Webhooks headers that sign it
//! (`crate::domain::event`). utoipa's derive has no `webhooks(...)`, so [`EventWebhooks`]
//! adds them to the document.

use std::borrow::Cow;

use time::OffsetDateTime;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AllOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::openapi::{Schema, path::Operation};
use utoipa::{Modify, PartialSchema, ToSchema};
use uuid::Uuid;

use crate::domain::Message;
use crate::domain::event::EventType;

/// An event type an endpoint may subscribe to (`test.ping` reaches only the endpoint
/// tested, whatever it subscribes to).
impl PartialSchema for EventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An event type an endpoint may subscribe to; see `webhooks` for each one's body.",
            ))
            .enum_values(Some(EventType::SUBSCRIBABLE.iter().map(|t| t.as_str())))
            .into()
    }
}

impl ToSchema for EventType {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventType")
    }
}

/// The body of a message event: the message as `GET /api/v1/messages/{id}` returns it, with
/// `status` the one the event reports (the message may have moved on since).
#[derive(ToSchema)]
#[schema(as = MessageEventBody)]
#[allow(dead_code)] // the schema of the body `crate::events` builds
pub struct MessageEventBody {
    /// The event's type.
    #[serde(rename = "type")]
    #[schema(value_type = EventType)]
    kind: String,
    /// When the event happened (RFC 3339).
    timestamp: OffsetDateTime,
    data: Message,
}

/// The body of a `test.ping`.
#[derive(ToSchema)]
#[schema(as = TestPingBody)]
#[allow(dead_code)] // the schema of the body `crate::service::webhook_endpoints::test` builds
pub struct TestPingBody {
    /// `test.ping`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^test\.ping$")]
    kind: String,
    /// When the test was asked for (RFC 3339).
    timestamp: OffsetDateTime,
    data: TestPingData,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TestPingData {
    /// The endpoint tested.
    endpoint_id: Uuid,
}

/// What each event reports.
fn about(event: EventType) -> &'static str {
    match event {
        EventType::MessageSent => "The provider accepted an outbound message (status `sent`).",
        EventType::MessageDelivered => {
            "The provider reports an outbound message delivered (status `delivered`)."
        }
        EventType::MessageFailed => {
            "An outbound message failed for good (status `failed`): refused, undeliverable, \
             or out of retries; `data.error` says why."
        }
        EventType::MessageReceived => {
            "An inbound message arrived (status `received`), from a provider webhook or the \
             original API's webhook routes."
        }
        EventType::MessageCanceled => {
            "A scheduled message was canceled before it was due (status `canceled`)."
        }
        EventType::TestPing => {
            "Sent only by `POST /api/v1/webhook-endpoints/{id}/test`, to the endpoint tested."
        }
    }
}

const DELIVERY: &str = "Each event is POSTed as JSON to every enabled endpoint subscribed to \
its type, and to the message's `status_callback` if the send named one (signed with \
STATUS_CALLBACK_SECRET). Any 2xx answer acknowledges it; 410 Gone disables the endpoint; \
anything else (or no answer) is retried on the retry schedule, with the same `webhook-id` \
and body, so receivers should de-duplicate by `webhook-id`. Verify the signature before \
trusting the body: see the headers.";

fn string_header(name: &str, description: &str, pattern: Option<&str>) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(pattern),
        ))
}

/// The Standard Webhooks headers every event carries.
fn signature_headers() -> Vec<ParameterBuilder> {
    vec![
        string_header(
            "webhook-id",
            "The event's id (`evt_…`): the same on every attempt to deliver it; use it to \
             de-duplicate.",
            Some("^evt_[0-9a-f]{32}$"),
        ),
        ParameterBuilder::new()
            .name("webhook-timestamp")
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(
                "When this attempt was signed, in Unix seconds; refuse timestamps too far from \
                 your clock (replays).",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
            )),
        string_header(
            "webhook-signature",
            "Space-separated `v1,<base64>` signatures: HMAC-SHA256 of \
             `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the base64-decoded part \
             of the endpoint's `whsec_` secret. During a secret rotation's overlap there is one \
             signature per secret; accept the event if any one matches.",
            Some(r"^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$"),
        ),
    ]
}

/// The body schema of `event`: its body type, with `type` fixed to the event's name.
fn body_schema(event: EventType) -> RefOr<Schema> {
    let base = match event {
        EventType::TestPing => "TestPingBody",
        _ => "MessageEventBody",
    };
    AllOfBuilder::new()
        .item(Ref::from_schema_name(base))
        .item(
            ObjectBuilder::new().property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([event.as_str()])),
            ),
        )
        .into()
}

fn operation(event: EventType) -> Operation {
    let mut op = OperationBuilder::new()
        .tag("events")
        .operation_id(Some(format!("event_{}", event.as_str().replace('.', "_"))))
        .summary(Some(format!("The {} event", event.as_str())))
        .description(Some(format!("{}\n\n{DELIVERY}", about(event))))
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(body_schema(event)))
                        .build(),
                )
                .build(),
        ))
        .response(
            "2XX",
            ResponseBuilder::new().description("Received: the event is not sent again"),
        )
        .response(
            "410",
            ResponseBuilder::new().description(
                "Gone: the endpoint is disabled and no more events are sent to it (a \
                 status_callback is not disabled: this is retried like any other failure)",
            ),
        )
        .response(
            "default",
            ResponseBuilder::new()
                .description("Not received: the event is retried on the retry schedule"),
        );
    for header in signature_headers() {
        op = op.parameter(header);
    }
    op.build()
}

/// Every event type, in the order the document lists them.
pub const DOCUMENTED: [EventType; 6] = [
    EventType::MessageSent,
    EventType::MessageDelivered,
    EventType::MessageFailed,
    EventType::MessageReceived,
    EventType::MessageCanceled,
    EventType::TestPing,
];

/// Adds one `webhooks` entry per event type, named by the type.
pub struct EventWebhooks;

impl Modify for EventWebhooks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut webhooks = PathsBuilder::new();
        for event in DOCUMENTED {
            webhooks = webhooks.path(
                event.as_str(),
                PathItem::new(HttpMethod::Post, operation(event)),
            );
        }
        openapi.webhooks = Some(webhooks.build());
    }
}
