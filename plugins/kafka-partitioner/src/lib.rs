//! Kafka's default partitioner as a plugin: a keyed message goes to
//! `toPositive(murmur2(key)) % partitions`, so a weir topic and a Kafka
//! topic with the same partition count agree on where each key lives.
//! Unkeyed messages are left to the node. Takes no config, and must never
//! pick a partition outside the topic.

use weir_guest::{BatchContext, Message, Patch, Plugin, Verdict, export_plugin, kafka_partition};

/// The partitioner; stateless.
pub struct KafkaPartitioner;

impl Plugin for KafkaPartitioner {
    fn init(config: &str) -> Result<Self, String> {
        match config.trim() {
            "" | "{}" | "null" => Ok(KafkaPartitioner),
            other => Err(format!("kafka-partitioner takes no config, got {other:?}")),
        }
    }

    fn on_message(&mut self, context: &BatchContext, message: &Message<'_>) -> Verdict {
        match message.key {
            Some(key) => Patch::new()
                .partition(kafka_partition(key, context.partitions))
                .into(),
            None => Verdict::Pass,
        }
    }
}

export_plugin!(KafkaPartitioner);

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &str) -> Message<'_> {
        Message::new(Some(key.as_bytes()), &[], b"")
    }

    fn partition_of(verdict: Verdict) -> Option<u32> {
        match verdict {
            Verdict::Patch(Patch {
                partition: Some(weir_guest::Partition::Index(p)),
                ..
            }) => Some(p),
            _ => None,
        }
    }

    #[test]
    fn keyed_messages_get_kafkas_partition() {
        let mut plugin = KafkaPartitioner::init("").expect("valid config");
        let context = BatchContext {
            topic: "t".into(),
            partitions: 50,
        };
        // toPositive(murmur2("foobar")) = 1357151166; % 50 = 16.
        assert_eq!(
            partition_of(plugin.on_message(&context, &keyed("foobar"))),
            Some(16)
        );
    }

    #[test]
    fn unkeyed_messages_pass_and_config_is_refused() {
        let mut plugin = KafkaPartitioner::init("{}").expect("valid config");
        let context = BatchContext {
            topic: "t".into(),
            partitions: 3,
        };
        let message = Message::new(None, &[], b"");
        assert!(matches!(
            plugin.on_message(&context, &message),
            Verdict::Pass
        ));
        assert!(KafkaPartitioner::init(r#"{"partitions": 3}"#).is_err());
    }
}
