//! RocketMQ-style tag filtering: a message's tag (one header) must be one of
//! the tags in an expression such as `TagA || TagB`, or the expression is
//! `*`. Config: `{"header": "tags", "expression": "TagA || TagB"}` (header
//! defaults to `tags`). Must never match a message without a tag unless the
//! expression is `*`.

use weir_guest::{BatchContext, Message, Plugin, Verdict, export_plugin};

/// A parsed tag expression.
pub struct TagFilter {
    header: String,
    /// `None` for `*`.
    tags: Option<Vec<String>>,
}

impl Plugin for TagFilter {
    fn init(config: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(config)
            .map_err(|e| format!("tag-filter config is not JSON: {e}"))?;
        let header = match value.get("header") {
            None => "tags".to_string(),
            Some(h) => h
                .as_str()
                .filter(|h| !h.is_empty())
                .ok_or("header must be a non-empty string")?
                .to_string(),
        };
        let expression = value
            .get("expression")
            .and_then(|e| e.as_str())
            .ok_or("tag-filter config needs \"expression\": a string")?;
        Ok(TagFilter {
            header,
            tags: parse_expression(expression)?,
        })
    }

    fn on_message(&mut self, _context: &BatchContext, message: &Message<'_>) -> Verdict {
        let Some(tags) = &self.tags else {
            return Verdict::Pass;
        };
        match message.header_str(&self.header).map(str::trim) {
            Some(tag) if tags.iter().any(|t| t == tag) => Verdict::Pass,
            Some(tag) => Verdict::Drop(format!("tag {tag:?} not in the expression")),
            None => Verdict::Drop(format!("no {:?} header", self.header)),
        }
    }
}

/// `*` or tags joined by `||`.
fn parse_expression(expression: &str) -> Result<Option<Vec<String>>, String> {
    let expression = expression.trim();
    if expression == "*" {
        return Ok(None);
    }
    let mut tags = Vec::new();
    for (i, tag) in expression.split("||").map(str::trim).enumerate() {
        if tag.is_empty() || tag == "*" || tag.contains(char::is_whitespace) {
            return Err(format!(
                "expression: tag {} ({tag:?}) must be a word; write `*` alone to match all",
                i + 1
            ));
        }
        tags.push(tag.to_string());
    }
    Ok(Some(tags))
}

export_plugin!(TagFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest::Header;

    fn tags(tag: Option<&str>) -> Vec<Header> {
        tag.map(|t| vec![Header::new("tags", t)])
            .unwrap_or_default()
    }

    fn keeps(plugin: &mut TagFilter, tag: Option<&str>) -> bool {
        let context = BatchContext {
            topic: "t".into(),
            partitions: 1,
        };
        let headers = tags(tag);
        matches!(
            plugin.on_message(&context, &Message::new(None, &headers, b"")),
            Verdict::Pass
        )
    }

    #[test]
    fn or_expression_keeps_listed_tags() {
        let mut plugin =
            TagFilter::init(r#"{"expression": "TagA || TagB"}"#).expect("valid config");
        assert!(keeps(&mut plugin, Some("TagA")));
        assert!(keeps(&mut plugin, Some("TagB")));
        assert!(!keeps(&mut plugin, Some("TagC")));
        assert!(!keeps(&mut plugin, None));
    }

    #[test]
    fn star_keeps_everything() {
        let mut plugin =
            TagFilter::init(r#"{"header": "tags", "expression": "*"}"#).expect("valid config");
        assert!(keeps(&mut plugin, None));
        assert!(keeps(&mut plugin, Some("x")));
    }

    #[test]
    fn malformed_expressions_are_refused() {
        assert!(
            TagFilter::init(r#"{"expression": "A ||"}"#)
                .err()
                .expect("config must be refused")
                .contains("tag 2")
        );
        assert!(TagFilter::init(r#"{"expression": "A && B"}"#).is_err());
        assert!(TagFilter::init(r#"{}"#).is_err());
    }
}
