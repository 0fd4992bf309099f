//! Numbers in client JSON (metadata) that storage can keep: PostgreSQL's `jsonb` writes a
//! number as plain digits, and one near the `f64` limit reads back as out of range.

use serde_json::Value;

/// The largest magnitude a number in client JSON may have.
pub const MAX_JSON_NUMBER: f64 = 1e300;

/// Whether every number in `v` is within ±[`MAX_JSON_NUMBER`].
pub fn numbers_storable(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() <= MAX_JSON_NUMBER),
        Value::Array(items) => items.iter().all(numbers_storable),
        Value::Object(map) => map.values().all(numbers_storable),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_near_the_float_limit_are_not_storable() {
        assert!(numbers_storable(
            &json!({"a": [1, -2.5, 1e300, u64::MAX, i64::MIN], "b": "x"})
        ));
        assert!(!numbers_storable(&json!({"a": {"b": [f64::MAX]}})));
        assert!(!numbers_storable(&json!([-1.7976931348623157e308])));
    }
}
