//! An AMQP headers exchange: each binding lists header values and an
//! x-match mode (`all` or `any`); the message fans out to every topic whose
//! binding matches. Config:
//! `{"bindings": [{"match": "all", "headers": {"format": "pdf"}, "topic": "pdfs"}]}`.
//! Unroutable messages are dropped. Must never treat a missing header as a
//! match.

use weir_guest::{BatchContext, Message, Patch, Plugin, Verdict, export_plugin};

struct Binding {
    all: bool,
    headers: Vec<(String, String)>,
    topic: String,
}

/// Parsed bindings.
pub struct HeadersExchange {
    bindings: Vec<Binding>,
}

impl Plugin for HeadersExchange {
    fn init(config: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(config)
            .map_err(|e| format!("headers-exchange config is not JSON: {e}"))?;
        let list = value.get("bindings").and_then(|b| b.as_array()).ok_or(
            "headers-exchange config needs \"bindings\": [{\"match\", \"headers\", \"topic\"}]",
        )?;
        let mut bindings = Vec::with_capacity(list.len());
        for (i, b) in list.iter().enumerate() {
            let all = match b.get("match").and_then(|m| m.as_str()).unwrap_or("all") {
                "all" => true,
                "any" => false,
                other => {
                    return Err(format!(
                        "bindings[{i}].match: {other:?} is neither \"all\" nor \"any\""
                    ));
                }
            };
            let map = b
                .get("headers")
                .and_then(|h| h.as_object())
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("bindings[{i}].headers must be a non-empty object"))?;
            let mut headers = Vec::with_capacity(map.len());
            for (name, v) in map {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("bindings[{i}].headers.{name} must be a string"))?;
                headers.push((name.clone(), v.to_string()));
            }
            let topic = b
                .get("topic")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("bindings[{i}].topic must be a non-empty string"))?;
            bindings.push(Binding {
                all,
                headers,
                topic: topic.to_string(),
            });
        }
        Ok(HeadersExchange { bindings })
    }

    fn on_message(&mut self, _context: &BatchContext, message: &Message<'_>) -> Verdict {
        let mut topics: Vec<&str> = Vec::new();
        for binding in &self.bindings {
            let hit =
                |(name, want): &(String, String)| message.header(name) == Some(want.as_bytes());
            let matched = if binding.all {
                binding.headers.iter().all(hit)
            } else {
                binding.headers.iter().any(hit)
            };
            if matched && !topics.contains(&binding.topic.as_str()) {
                topics.push(&binding.topic);
            }
        }
        if topics.is_empty() {
            return Verdict::Drop("no binding matches the headers".to_string());
        }
        Patch::new().topics(topics).into()
    }
}

export_plugin!(HeadersExchange);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::Header;

    const CONFIG: &str = r#"{"bindings": [
        {"match": "all", "headers": {"format": "pdf", "type": "report"}, "topic": "pdf-reports"},
        {"match": "any", "headers": {"format": "pdf", "type": "log"}, "topic": "pdf-or-log"}]}"#;

    fn topics(headers: &[(&str, &str)]) -> Option<Vec<String>> {
        let mut plugin = HeadersExchange::init(CONFIG).expect("valid config");
        let headers: Vec<Header> = headers.iter().map(|(n, v)| Header::new(*n, *v)).collect();
        let message = Message::new(None, &headers, b"");
        match plugin.on_message(
            &BatchContext {
                topic: "x".into(),
                partitions: 1,
            },
            &message,
        ) {
            Verdict::Patch(p) => p.topics,
            _ => None,
        }
    }

    #[test]
    fn all_needs_every_header_any_needs_one() {
        assert_eq!(
            topics(&[("format", "pdf"), ("type", "report")]),
            Some(vec!["pdf-reports".into(), "pdf-or-log".into()])
        );
        assert_eq!(
            topics(&[("format", "pdf")]),
            Some(vec!["pdf-or-log".into()])
        );
        assert_eq!(topics(&[("type", "log")]), Some(vec!["pdf-or-log".into()]));
        assert_eq!(topics(&[("format", "zip")]), None);
    }

    #[test]
    fn unknown_match_mode_is_refused() {
        let err = HeadersExchange::init(
            r#"{"bindings": [{"match": "most", "headers": {"a": "b"}, "topic": "t"}]}"#,
        );
        assert!(
            err.err()
                .expect("config must be refused")
                .contains("bindings[0].match")
        );
    }
}
