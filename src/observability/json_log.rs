//! One JSON object per log line with the fields at the top level: `timestamp`, `level`,
//! `target`, `message`, then the fields of every enclosing span (so `request_id` and
//! `message_id` appear on each line written while serving that request or message), then
//! the event's own fields. The stock JSON format nests span fields under `span`, which
//! log pipelines cannot filter on as easily.

use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter; pair it with `JsonFields` as the field formatter so span fields
/// are stored as JSON.
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(stored) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(span_fields)) =
                        serde_json::from_str::<Value>(stored.as_str())
                {
                    fields.extend(span_fields);
                }
            }
        }
        let mut visitor = Fields(&mut fields);
        event.record(&mut visitor);
        let message = fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));

        for reserved in ["timestamp", "level", "target"] {
            if let Some(v) = fields.remove(reserved) {
                fields.insert(format!("field.{reserved}"), v);
            }
        }
        let fixed = [
            (
                "timestamp",
                Value::String(
                    OffsetDateTime::now_utc()
                        .format(&Rfc3339)
                        .unwrap_or_default(),
                ),
            ),
            ("level", Value::String(meta.level().to_string())),
            ("target", Value::String(meta.target().to_owned())),
            ("message", message),
        ];
        // Fixed keys first, then the context in alphabetical order.
        let mut out = String::with_capacity(256);
        out.push('{');
        let rest = fields.iter().map(|(k, v)| (k.as_str(), v));
        for (i, (k, v)) in fixed.iter().map(|(k, v)| (*k, v)).chain(rest).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::from(k).to_string());
            out.push(':');
            out.push_str(&v.to_string());
        }
        out.push('}');
        writeln!(writer, "{out}")
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}
