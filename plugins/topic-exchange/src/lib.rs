//! An AMQP topic exchange: the routing key (the message key, or a header) is
//! matched against binding patterns (`*` one word, `#` zero or more) and the
//! message fans out to every bound topic that matches. Unroutable messages
//! are dropped, as RabbitMQ drops them without `mandatory`. Must never route
//! a message to the same topic twice.

use weir_guest::{BatchContext, Message, Patch, Plugin, TopicPattern, Verdict, export_plugin};

/// Where the routing key comes from.
enum KeySource {
    Key,
    Header(String),
}

/// Parsed bindings.
pub struct TopicExchange {
    source: KeySource,
    bindings: Vec<(TopicPattern, String)>,
}

impl Plugin for TopicExchange {
    fn init(config: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(config)
            .map_err(|e| format!("topic-exchange config is not JSON: {e}"))?;
        let source = match value.get("routing_key") {
            None => KeySource::Key,
            Some(serde_json::Value::String(s)) if s == "key" => KeySource::Key,
            Some(v) => match v.get("header").and_then(|h| h.as_str()) {
                Some(name) if !name.is_empty() => KeySource::Header(name.to_string()),
                _ => {
                    return Err("routing_key must be \"key\" or {\"header\": \"NAME\"}".to_string());
                }
            },
        };
        let list = value.get("bindings").and_then(|b| b.as_array()).ok_or(
            "topic-exchange config needs \"bindings\": [{\"pattern\": .., \"topic\": ..}]",
        )?;
        let mut bindings = Vec::with_capacity(list.len());
        for (i, binding) in list.iter().enumerate() {
            let pattern = binding
                .get("pattern")
                .and_then(|p| p.as_str())
                .ok_or_else(|| format!("bindings[{i}].pattern must be a string"))?;
            let topic = binding
                .get("topic")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| format!("bindings[{i}].topic must be a non-empty string"))?;
            bindings.push((TopicPattern::new(pattern), topic.to_string()));
        }
        Ok(TopicExchange { source, bindings })
    }

    fn on_message(&mut self, _context: &BatchContext, message: &Message<'_>) -> Verdict {
        let key = match &self.source {
            KeySource::Key => message.key_str(),
            KeySource::Header(name) => message.header_str(name),
        };
        let Some(key) = key else {
            return Verdict::Drop("no routing key".to_string());
        };
        let mut topics: Vec<&str> = Vec::new();
        for (pattern, topic) in &self.bindings {
            if pattern.matches(key) && !topics.contains(&topic.as_str()) {
                topics.push(topic);
            }
        }
        if topics.is_empty() {
            return Verdict::Drop(format!("no binding matches routing key {key:?}"));
        }
        Patch::new().topics(topics).into()
    }
}

export_plugin!(TopicExchange);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::Header;

    const CONFIG: &str = r##"{"routing_key": {"header": "rk"}, "bindings": [
        {"pattern": "orders.*.eu", "topic": "eu-orders"},
        {"pattern": "orders.#", "topic": "all-orders"},
        {"pattern": "#.eu", "topic": "eu-orders"}]}"##;

    fn route(plugin: &mut TopicExchange, rk: &str) -> Verdict {
        let headers = [Header::new("rk", rk)];
        let message = Message::new(None, &headers, b"");
        plugin.on_message(
            &BatchContext {
                topic: "x".into(),
                partitions: 1,
            },
            &message,
        )
    }

    #[test]
    fn fans_out_to_each_matching_topic_once() {
        let mut plugin = TopicExchange::init(CONFIG).expect("valid config");
        match route(&mut plugin, "orders.new.eu") {
            Verdict::Patch(p) => assert_eq!(
                p.topics,
                Some(vec!["eu-orders".into(), "all-orders".into()])
            ),
            _ => panic!("expected a patch"),
        }
    }

    #[test]
    fn unroutable_messages_are_dropped() {
        let mut plugin = TopicExchange::init(CONFIG).expect("valid config");
        assert!(matches!(
            route(&mut plugin, "invoices.us"),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn config_errors_name_the_binding() {
        let err = TopicExchange::init(r#"{"bindings": [{"pattern": "a"}]}"#)
            .err()
            .expect("config must be refused");
        assert!(err.contains("bindings[0].topic"), "{err}");
        assert!(TopicExchange::init(r#"{"routing_key": 3, "bindings": []}"#).is_err());
    }
}
