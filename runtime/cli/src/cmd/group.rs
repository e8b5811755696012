//! `weir group ...`: list, describe and seek consumer groups. Output is a
//! table for a person or, with `--format json`, one JSON document; this
//! module only formats what the node reports and never computes a figure
//! (lag, in flight) itself.

use std::time::Duration;

use serde_json::{Value, json};
use weir_client::{GroupInfo, GroupMode, GroupTopicInfo, StartAt};

use crate::args::{ConnArgs, GroupCommand, Output};
use crate::connect::connect;

pub(crate) async fn run(conn: &ConnArgs, command: GroupCommand) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    let result = async {
        match command {
            GroupCommand::List { format } => {
                let groups = client.list_groups().await?;
                match format {
                    Output::Table => print!("{}", list_table(&groups)),
                    Output::Json => {
                        println!("{}", Value::Array(groups.iter().map(group_json).collect()))
                    }
                }
            }
            GroupCommand::Describe { group, format } => {
                let info = client.describe_group(&group).await?;
                match format {
                    Output::Table => print!("{}", describe(&info)),
                    Output::Json => println!("{}", group_json(&info)),
                }
            }
            GroupCommand::Seek { group, topic, to } => {
                client.seek_group(&group, &topic, to).await?;
                println!("moved group {group} on {topic} to {}", start_name(to));
            }
        }
        anyhow::Ok(())
    }
    .await;
    client.close().await;
    result
}

fn start_name(to: StartAt) -> String {
    match to {
        StartAt::Earliest => "earliest".into(),
        StartAt::Latest => "latest".into(),
        StartAt::Offset(n) => format!("offset {n}"),
        StartAt::Timestamp(ms) => u64::try_from(ms)
            .ok()
            .and_then(|ms| std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
            .map_or_else(
                || format!("time {ms} ms"),
                |t| format!("time {}", humantime::format_rfc3339_millis(t)),
            ),
    }
}

fn list_table(groups: &[GroupInfo]) -> String {
    if groups.is_empty() {
        return "no groups\n".into();
    }
    let mut out = format!(
        "{:<32} {:<6} {:<32} {:>7} {:>12} {:>9}\n",
        "GROUP", "MODE", "TOPIC", "MEMBERS", "LAG", "IN FLIGHT"
    );
    for g in groups {
        if g.topics.is_empty() {
            out += &format!(
                "{:<32} {:<6} {:<32} {:>7} {:>12} {:>9}\n",
                g.name,
                g.mode.name(),
                "-",
                0,
                "-",
                "-"
            );
        }
        for t in &g.topics {
            let lag: u64 = t.partitions.iter().map(|p| p.lag).sum();
            let in_flight: u64 = t.partitions.iter().map(|p| u64::from(p.in_flight)).sum();
            out += &format!(
                "{:<32} {:<6} {:<32} {:>7} {:>12} {:>9}\n",
                g.name,
                g.mode.name(),
                t.topic,
                t.members.len(),
                lag,
                in_flight
            );
        }
    }
    out
}

fn human_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn describe(g: &GroupInfo) -> String {
    let mut out = format!("group {}\n", g.name);
    out += &format!("  mode            {}\n", g.mode.name());
    if g.mode == GroupMode::Queue {
        out += &format!("  ack wait        {}\n", human_ms(g.ack_wait_ms));
        out += &format!("  max deliveries  {}\n", g.max_deliveries);
        let backoff: Vec<String> = g.backoff_ms.iter().map(|ms| human_ms(*ms)).collect();
        out += &format!("  backoff         {}\n", backoff.join(" "));
        out += &format!(
            "  ordered by key  {}\n",
            if g.ordered { "yes" } else { "no" }
        );
    }
    if g.topics.is_empty() {
        out += "  no topics consumed yet\n";
    }
    for t in &g.topics {
        out += &describe_topic(g.mode, t);
    }
    out
}

fn describe_topic(mode: GroupMode, t: &GroupTopicInfo) -> String {
    let mut out = format!("  topic {} (generation {})\n", t.topic, t.generation);
    match mode {
        GroupMode::Stream => {
            out += &format!(
                "    {:<10} {:>14} {:>14} {:>12}\n",
                "PARTITION", "COMMITTED", "END", "LAG"
            );
            for p in &t.partitions {
                out += &format!(
                    "    {:<10} {:>14} {:>14} {:>12}\n",
                    p.partition, p.committed, p.end, p.lag
                );
            }
        }
        GroupMode::Queue => {
            out += &format!(
                "    {:<10} {:>14} {:>14} {:>12} {:>10} {:>12} {:>14}\n",
                "PARTITION", "ACK FLOOR", "END", "LAG", "IN FLIGHT", "REDELIVERED", "DEAD-LETTERED"
            );
            for p in &t.partitions {
                out += &format!(
                    "    {:<10} {:>14} {:>14} {:>12} {:>10} {:>12} {:>14}\n",
                    p.partition,
                    p.committed,
                    p.end,
                    p.lag,
                    p.in_flight,
                    p.redelivered,
                    p.dead_lettered
                );
            }
        }
    }
    if t.members.is_empty() {
        out += "    no members connected\n";
        return out;
    }
    match mode {
        GroupMode::Stream => {
            out += &format!("    {:<40} PARTITIONS\n", "MEMBER");
            for m in &t.members {
                let parts = ranges(&m.partitions);
                out += &format!(
                    "    {:<40} {}\n",
                    m.name,
                    if parts.is_empty() { "-" } else { &parts }
                );
            }
        }
        GroupMode::Queue => {
            out += &format!("    {:<40} {:>10}\n", "MEMBER", "IN FLIGHT");
            for m in &t.members {
                out += &format!("    {:<40} {:>10}\n", m.name, m.in_flight);
            }
        }
    }
    out
}

/// Partitions as `0-3,7,9-10`.
fn ranges(partitions: &[u32]) -> String {
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.saturating_add(1) {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

fn group_json(g: &GroupInfo) -> Value {
    let topics: Vec<Value> = g
        .topics
        .iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "generation": t.generation,
                "members": t.members.iter().map(|m| json!({
                    "name": m.name,
                    "partitions": m.partitions,
                    "in_flight": m.in_flight,
                })).collect::<Vec<_>>(),
                "partitions": t.partitions.iter().map(|p| json!({
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag": p.lag,
                    "in_flight": p.in_flight,
                    "redelivered": p.redelivered,
                    "dead_lettered": p.dead_lettered,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": g.name,
        "mode": g.mode.name(),
        "ack_wait_ms": g.ack_wait_ms,
        "max_deliveries": g.max_deliveries,
        "backoff_ms": g.backoff_ms,
        "ordered": g.ordered,
        "topics": topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_client::{GroupPartitionInfo, MemberInfo};

    fn group(mode: GroupMode) -> GroupInfo {
        GroupInfo {
            name: "billing".into(),
            mode,
            ack_wait_ms: 30_000,
            max_deliveries: 16,
            backoff_ms: vec![1000, 5000],
            ordered: false,
            topics: vec![GroupTopicInfo {
                topic: "orders".into(),
                generation: 3,
                members: vec![MemberInfo {
                    name: "w1".into(),
                    partitions: vec![3, 0, 1, 2, 7],
                    in_flight: 4,
                }],
                partitions: vec![
                    GroupPartitionInfo {
                        partition: 0,
                        committed: 90,
                        end: 100,
                        lag: 10,
                        in_flight: 3,
                        redelivered: 2,
                        dead_lettered: 1,
                    },
                    GroupPartitionInfo {
                        partition: 1,
                        committed: 5,
                        end: 5,
                        lag: 0,
                        in_flight: 1,
                        redelivered: 0,
                        dead_lettered: 0,
                    },
                ],
            }],
        }
    }

    #[test]
    fn partition_ranges() {
        assert_eq!(ranges(&[3, 0, 1, 2, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[u32::MAX, 5]), format!("5,{}", u32::MAX));
    }

    #[test]
    fn describe_shows_what_the_mode_has() {
        let queue = describe(&group(GroupMode::Queue));
        assert!(queue.contains("max deliveries  16"), "{queue}");
        assert!(queue.contains("backoff         1s 5s"), "{queue}");
        assert!(queue.contains("DEAD-LETTERED"), "{queue}");
        let row = queue
            .lines()
            .find(|l| l.trim_start().starts_with("0 "))
            .expect("partition 0 row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["0", "90", "100", "10", "3", "2", "1"]);
        let stream = describe(&group(GroupMode::Stream));
        assert!(!stream.contains("max deliveries"), "{stream}");
        assert!(stream.contains("0-3,7"), "{stream}");
        assert!(!stream.contains("IN FLIGHT"), "{stream}");
    }

    #[test]
    fn list_sums_each_topic() {
        let table = list_table(&[group(GroupMode::Queue)]);
        let row = table.lines().nth(1).expect("a row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["billing", "queue", "orders", "1", "10", "4"]);
        assert_eq!(list_table(&[]), "no groups\n");
    }

    #[test]
    fn json_names_every_figure() {
        let v = group_json(&group(GroupMode::Queue));
        assert_eq!(v["mode"], "queue");
        assert_eq!(v["topics"][0]["partitions"][0]["dead_lettered"], 1);
        assert_eq!(v["topics"][0]["members"][0]["in_flight"], 4);
        assert_eq!(v["backoff_ms"][1], 5000);
    }

    #[test]
    fn seek_targets_read_back() {
        assert_eq!(start_name(StartAt::Offset(4)), "offset 4");
        assert_eq!(
            start_name(StartAt::Timestamp(1000)),
            "time 1970-01-01T00:00:01.000Z"
        );
    }
}
