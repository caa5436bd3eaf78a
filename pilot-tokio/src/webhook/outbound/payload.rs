//! The JSON body of an outbound webhook and the RFC 3339 timestamp it carries.
//!
//! The body keeps v0.5's fields (`event`, `node_id`, `timestamp`, `data`) so existing receivers
//! keep working, and adds the Standard Webhooks recommended `type` (same value as `event`). An
//! event may carry its payload: JSON payloads are embedded as `data.payload`, anything else as
//! base64 in `data.payload_base64`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

/// One event to deliver outbound.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundEvent {
    /// Event name, for example `pubsub.published` or `conn.established`.
    pub event_type: String,
    /// The local node id at emit time.
    pub node_id: u32,
    /// Event fields (an object, or `Null` for none).
    pub data: Value,
}

impl OutboundEvent {
    /// An event with metadata only, as v0.5 sends.
    pub fn new(event_type: impl Into<String>, node_id: u32, data: Value) -> Self {
        Self {
            event_type: event_type.into(),
            node_id,
            data,
        }
    }

    /// An event that carries `payload` as well (for example a published message).
    pub fn with_payload(
        event_type: impl Into<String>,
        node_id: u32,
        data: Value,
        payload: &[u8],
    ) -> Self {
        let mut fields = match data {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        match serde_json::from_slice::<Value>(payload) {
            Ok(parsed) => fields.insert("payload".to_owned(), parsed),
            Err(_) => fields.insert(
                "payload_base64".to_owned(),
                Value::String(BASE64.encode(payload)),
            ),
        };
        Self::new(event_type, node_id, Value::Object(fields))
    }

    /// The POST body, stamped with `unix_nanos` (nanoseconds since the Unix epoch).
    pub fn to_body(&self, unix_nanos: u128) -> String {
        let mut body = json!({
            "type": self.event_type,
            "event": self.event_type,
            "node_id": self.node_id,
            "timestamp": rfc3339_nanos(unix_nanos),
        });
        if !self.data.is_null() {
            body["data"] = self.data.clone();
        }
        body.to_string()
    }
}

/// Formats Unix nanoseconds as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC).
pub fn rfc3339_nanos(unix_nanos: u128) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let nanos = unix_nanos % 1_000_000_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard Hinnant's
/// public-domain `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_go_rfc3339_nano() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        let t = 1_736_944_496_123_456_789u128; // 2025-01-15T12:34:56.123456789Z
        assert_eq!(rfc3339_nanos(t), "2025-01-15T12:34:56.123456789Z");
        assert_eq!(
            rfc3339_nanos(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn body_keeps_v05_fields_and_embeds_payloads() {
        let event = OutboundEvent::with_payload(
            "pubsub.published",
            7,
            json!({"topic": "t"}),
            br#"{"a":1}"#,
        );
        let body: Value = serde_json::from_str(&event.to_body(0)).unwrap();
        assert_eq!(body["event"], "pubsub.published");
        assert_eq!(body["type"], "pubsub.published");
        assert_eq!(body["node_id"], 7);
        assert_eq!(body["data"]["topic"], "t");
        assert_eq!(body["data"]["payload"]["a"], 1);

        let binary = OutboundEvent::with_payload("x", 1, Value::Null, &[0xff, 0x00]);
        assert_eq!(binary.data["payload_base64"], "/wA=");
        let bare: Value =
            serde_json::from_str(&OutboundEvent::new("n", 1, Value::Null).to_body(0)).unwrap();
        assert!(
            bare.get("data").is_none(),
            "data omitted when null, as v0.5 does"
        );
    }
}
