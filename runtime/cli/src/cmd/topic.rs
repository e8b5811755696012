//! `weir topic ...`: topic administration and plugin attachments. Output
//! is a plain table or a description for a person.

use std::time::Duration;

use weir_client::{Attach, FailurePolicy, FlushMode, TopicInfo, TopicSpec};

use crate::args::{ConnArgs, Flush, OnError, TopicCommand};
use crate::connect::connect;

pub(crate) async fn run(conn: &ConnArgs, command: TopicCommand) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            retention,
            retention_bytes,
            flush,
            flush_interval,
            dedup_window,
        } => {
            let flush = match flush {
                Flush::Durable => FlushMode::Durable,
                Flush::Interval => FlushMode::Interval {
                    interval_ms: millis(flush_interval),
                },
                Flush::None => FlushMode::None,
            };
            let spec = TopicSpec {
                name: name.clone(),
                partitions,
                retention_ms: retention.map(millis),
                retention_bytes,
                flush,
                dedup_window_ms: millis(dedup_window),
            };
            client.create_topic(spec).await?;
            println!(
                "created topic {name} with {partitions} partition{}",
                if partitions == 1 { "" } else { "s" }
            );
        }
        TopicCommand::List => {
            let topics = client.list_topics().await?;
            if topics.is_empty() {
                println!("no topics");
            } else {
                println!(
                    "{:<32} {:>10} {:>12} {:>12}  PLUGINS",
                    "TOPIC", "PARTITIONS", "MESSAGES", "BYTES"
                );
                for t in &topics {
                    let messages: u64 = t
                        .partitions
                        .iter()
                        .map(|p| p.end_offset - p.start_offset.min(p.end_offset))
                        .sum();
                    let bytes: u64 = t.partitions.iter().map(|p| p.bytes).sum();
                    let chain: Vec<&str> = t.chain.iter().map(|a| a.plugin.as_str()).collect();
                    println!(
                        "{:<32} {:>10} {:>12} {:>12}  {}",
                        t.spec.name,
                        t.spec.partitions,
                        messages,
                        bytes,
                        if chain.is_empty() {
                            "-".into()
                        } else {
                            chain.join(" > ")
                        }
                    );
                }
            }
        }
        TopicCommand::Describe { name } => {
            print!("{}", describe(&client.describe_topic(&name).await?))
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
        TopicCommand::Attach {
            topic,
            plugin,
            config,
            on_error,
            position,
        } => {
            let on_error = match on_error {
                OnError::Reject => FailurePolicy::Reject,
                OnError::DeadLetter => FailurePolicy::DeadLetter,
                OnError::Bypass => FailurePolicy::Bypass,
            };
            client
                .attach(Attach {
                    topic: topic.clone(),
                    plugin: plugin.clone(),
                    config,
                    on_error,
                    position,
                })
                .await?;
            println!("attached {plugin} to {topic}");
        }
        TopicCommand::Detach { topic, plugin } => {
            client.detach(&topic, &plugin).await?;
            println!("detached {plugin} from {topic}");
        }
    }
    client.close().await;
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn human_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn policy_name(p: FailurePolicy) -> &'static str {
    match p {
        FailurePolicy::Reject => "reject",
        FailurePolicy::DeadLetter => "dead-letter",
        FailurePolicy::Bypass => "bypass",
    }
}

fn describe(t: &TopicInfo) -> String {
    let s = &t.spec;
    let mut out = format!("topic {}\n", s.name);
    out += &format!("  partitions       {}\n", s.partitions);
    out += &format!(
        "  retention        {}\n",
        s.retention_ms.map_or("forever".into(), human_ms)
    );
    out += &format!(
        "  retention bytes  {}\n",
        s.retention_bytes
            .map_or("unlimited".into(), |b| b.to_string())
    );
    let flush = match s.flush {
        FlushMode::Durable => "durable".to_string(),
        FlushMode::Interval { interval_ms } => format!("every {}", human_ms(interval_ms)),
        FlushMode::None => "none".to_string(),
    };
    out += &format!("  flush            {flush}\n");
    out += &format!(
        "  dedup window     {}\n",
        if s.dedup_window_ms == 0 {
            "off".into()
        } else {
            human_ms(s.dedup_window_ms)
        }
    );
    out += &format!(
        "  {:<10} {:>14} {:>14} {:>14}\n",
        "PARTITION", "START", "END", "BYTES"
    );
    for (i, p) in t.partitions.iter().enumerate() {
        out += &format!(
            "  {:<10} {:>14} {:>14} {:>14}\n",
            i, p.start_offset, p.end_offset, p.bytes
        );
    }
    if t.chain.is_empty() {
        out += "  no plugins attached\n";
    } else {
        out += "  plugin chain, in order:\n";
        for (i, a) in t.chain.iter().enumerate() {
            out += &format!(
                "  {i}. {} v{} (on error: {})",
                a.plugin,
                a.version,
                policy_name(a.on_error)
            );
            if !a.config.is_empty() {
                out += &format!(" config {}", a.config);
            }
            out += "\n";
        }
    }
    out
}
