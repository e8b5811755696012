//! Sets the dedup key from a JSON field of the payload (a business id such
//! as `order_id`), so the topic's dedup window stores each order once.
//! Config: `{"field": "/order_id"}`. A string field is used as is, any other
//! JSON value by its JSON text; a payload that is not JSON or lacks the
//! field passes without a key. Must never invent a key.

use serde_json::Value;
use weir_guest::{BatchContext, JsonFields, Message, Patch, Plugin, Verdict, export_plugin};

/// The field to read.
pub struct DedupByField {
    field: JsonFields,
}

impl Plugin for DedupByField {
    fn init(config: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(config)
            .map_err(|e| format!("dedup-by-field config is not JSON: {e}"))?;
        let field = value
            .get("field")
            .and_then(|f| f.as_str())
            .filter(|f| f.starts_with('/'))
            .ok_or("dedup-by-field config needs \"field\": a JSON pointer such as \"/order_id\"")?;
        Ok(DedupByField {
            field: JsonFields::new(&[field])?,
        })
    }

    fn on_message(&mut self, _context: &BatchContext, message: &Message<'_>) -> Verdict {
        let Some(raw) = self
            .field
            .extract_raw(message.payload)
            .and_then(|mut values| values.pop().flatten())
        else {
            return Verdict::Pass;
        };
        // The common case, a string without escapes, is its own bytes: no
        // parse, one copy into the patch.
        if let [b'"', inner @ .., b'"'] = raw
            && !inner.contains(&b'\\')
        {
            return Patch::new().dedup_key(inner).into();
        }
        match serde_json::from_slice::<Value>(raw).ok() {
            None | Some(Value::Null) => Verdict::Pass,
            Some(Value::String(s)) => Patch::new().dedup_key(s.into_bytes()).into(),
            Some(other) => Patch::new().dedup_key(other.to_string()).into(),
        }
    }
}

export_plugin!(DedupByField);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(payload: &str) -> Option<Vec<u8>> {
        let mut plugin = DedupByField::init(r#"{"field": "/order/id"}"#).expect("valid config");
        let message = Message::new(None, &[], payload.as_bytes());
        match plugin.on_message(
            &BatchContext {
                topic: "t".into(),
                partitions: 1,
            },
            &message,
        ) {
            Verdict::Patch(p) => p.dedup_key,
            _ => None,
        }
    }

    #[test]
    fn strings_and_numbers_become_keys() {
        assert_eq!(key(r#"{"order": {"id": "A-17"}}"#), Some(b"A-17".to_vec()));
        assert_eq!(
            key(r#"{"order": {"id": "A\"1\u00e9"}}"#),
            Some("A\"1\u{e9}".as_bytes().to_vec())
        );
        assert_eq!(
            key(r#"{"order": {"id": {"a": [1, 2]}}}"#),
            Some(br#"{"a":[1,2]}"#.to_vec())
        );
        assert_eq!(key(r#"{"order": {"id": null}}"#), None);
        assert_eq!(key(r#"{"order": {"id": 17}}"#), Some(b"17".to_vec()));
    }

    #[test]
    fn missing_field_or_non_json_passes() {
        assert_eq!(key(r#"{"order": {}}"#), None);
        assert_eq!(key("plain text"), None);
    }

    #[test]
    fn field_must_be_a_pointer() {
        assert!(
            DedupByField::init(r#"{"field": "order_id"}"#)
                .err()
                .expect("config must be refused")
                .contains("JSON pointer")
        );
    }
}
