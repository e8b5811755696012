//! An AMQP fanout exchange: every message is copied to each configured
//! topic. Config: `{"topics": ["a", "b"]}`. Must never accept an empty
//! topic list, which would silently route nothing.

use weir_guest::{BatchContext, Message, Patch, Plugin, Verdict, export_plugin};

/// The fan-out targets.
pub struct Fanout {
    topics: Vec<String>,
}

impl Plugin for Fanout {
    fn init(config: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(config).map_err(|e| format!("fanout config is not JSON: {e}"))?;
        let topics = value
            .get("topics")
            .and_then(|t| t.as_array())
            .ok_or("fanout config needs \"topics\": an array of topic names")?;
        let mut names = Vec::with_capacity(topics.len());
        for (i, topic) in topics.iter().enumerate() {
            match topic.as_str() {
                Some(name) if !name.is_empty() => names.push(name.to_string()),
                _ => return Err(format!("topics[{i}] must be a non-empty string")),
            }
        }
        if names.is_empty() {
            return Err("topics must name at least one topic".to_string());
        }
        Ok(Fanout { topics: names })
    }

    fn on_message(&mut self, _context: &BatchContext, _message: &Message<'_>) -> Verdict {
        Patch::new().topics(self.topics.iter().cloned()).into()
    }
}

export_plugin!(Fanout);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_to_every_topic() {
        let mut plugin = Fanout::init(r#"{"topics": ["a", "b"]}"#).expect("valid config");
        let context = BatchContext {
            topic: "in".into(),
            partitions: 1,
        };
        let message = Message::new(None, &[], b"");
        match plugin.on_message(&context, &message) {
            Verdict::Patch(patch) => assert_eq!(patch.topics, Some(vec!["a".into(), "b".into()])),
            _ => panic!("expected a patch"),
        }
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        assert!(
            Fanout::init("nope")
                .err()
                .expect("config must be refused")
                .contains("not JSON")
        );
        assert!(
            Fanout::init(r#"{"topics": []}"#)
                .err()
                .expect("config must be refused")
                .contains("at least one")
        );
        assert!(
            Fanout::init(r#"{"topics": ["a", 3]}"#)
                .err()
                .expect("config must be refused")
                .contains("topics[1]")
        );
    }
}
