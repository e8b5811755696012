//! AMQP topic-exchange patterns: dot-separated words where `*` matches
//! exactly one word and `#` matches zero or more. Matching is a dynamic
//! programme over words, so it must never backtrack exponentially whatever
//! the pattern.

/// A parsed binding pattern such as `orders.*.eu` or `audit.#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    words: Vec<Word>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Literal(String),
    One,
    Any,
}

impl TopicPattern {
    /// Parses a pattern. Every string is a valid pattern, as in AMQP; `*`
    /// and `#` are wildcards only as whole words.
    pub fn new(pattern: &str) -> Self {
        let words = pattern
            .split('.')
            .map(|w| match w {
                "*" => Word::One,
                "#" => Word::Any,
                other => Word::Literal(other.to_string()),
            })
            .collect();
        TopicPattern { words }
    }

    /// Whether a routing key matches this pattern.
    pub fn matches(&self, routing_key: &str) -> bool {
        let key: Vec<&str> = routing_key.split('.').collect();
        // reach[j]: the pattern words seen so far can consume exactly key[..j].
        let mut reach = vec![false; key.len() + 1];
        reach[0] = true;
        for word in &self.words {
            let mut next = vec![false; key.len() + 1];
            for j in 0..=key.len() {
                match word {
                    Word::Any => next[j] = reach[j] || (j > 0 && next[j - 1]),
                    Word::One => next[j] = j > 0 && reach[j - 1],
                    Word::Literal(lit) => next[j] = j > 0 && reach[j - 1] && key[j - 1] == lit,
                }
            }
            reach = next;
        }
        reach[key.len()]
    }
}

/// One-off form of [`TopicPattern::matches`].
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    TopicPattern::new(pattern).matches(routing_key)
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn star_is_exactly_one_word() {
        assert!(topic_matches("orders.*.eu", "orders.new.eu"));
        assert!(!topic_matches("orders.*.eu", "orders.eu"));
        assert!(!topic_matches("orders.*.eu", "orders.a.b.eu"));
    }

    #[test]
    fn hash_is_zero_or_more_words() {
        assert!(topic_matches("audit.#", "audit"));
        assert!(topic_matches("audit.#", "audit.a.b.c"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(topic_matches("#.eu", "eu"));
        assert!(topic_matches("a.#.z", "a.z"));
        assert!(topic_matches("a.#.z", "a.b.c.z"));
        assert!(!topic_matches("a.#.z", "a.b.c"));
    }

    #[test]
    fn literals_must_match_whole_words() {
        assert!(topic_matches("stock.usd.nyse", "stock.usd.nyse"));
        assert!(!topic_matches("stock.usd", "stock.usdx"));
        assert!(!topic_matches("stock.*", "stock"));
    }

    #[test]
    fn many_hashes_stay_linear() {
        let pattern = "#.".repeat(200) + "x";
        let key = "a.".repeat(200) + "b";
        assert!(!topic_matches(&pattern, &key));
    }
}
