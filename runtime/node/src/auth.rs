//! Bearer tokens and the rights they grant on topic-name patterns.
//! Pure: no I/O, so every rule is tested on strings.

use crate::config::TokenConfig;

/// A right a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Right {
    Produce,
    Consume,
    Admin,
}

impl Right {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Right::Produce => "produce",
            Right::Consume => "consume",
            Right::Admin => "admin",
        }
    }
}

/// What an authenticated connection may do.
#[derive(Debug, Clone)]
pub(crate) enum Grant {
    /// The node has no tokens configured.
    Everything,
    /// The rights of one token.
    Token(TokenConfig),
}

impl Grant {
    /// Whether this grant holds `right` on `topic` (for plugin uploads,
    /// which belong to no topic, pass `None`: that takes admin on `*`).
    pub(crate) fn allows(&self, right: Right, topic: Option<&str>) -> bool {
        let Grant::Token(t) = self else {
            return true;
        };
        let patterns = match right {
            Right::Produce => &t.produce,
            Right::Consume => &t.consume,
            Right::Admin => &t.admin,
        };
        match topic {
            Some(topic) => patterns
                .iter()
                .any(|p| glob(p.as_bytes(), topic.as_bytes())),
            None => patterns.iter().any(|p| p == "*"),
        }
    }
}

/// The grant for a hello's token, or `None` if it is not accepted.
pub(crate) fn authenticate(tokens: &[TokenConfig], presented: Option<&str>) -> Option<Grant> {
    if tokens.is_empty() {
        return Some(Grant::Everything);
    }
    let presented = presented?;
    tokens
        .iter()
        .find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()))
        .map(|t| Grant::Token(t.clone()))
}

/// Compares without an early exit, so timing does not tell how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `*` matches any run of characters (including none); everything else
/// matches itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((bp, bt)) = backtrack {
            p = bp + 1;
            t = bt + 1;
            backtrack = Some((bp, bt + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenConfig {
        TokenConfig {
            token: "0123456789abcdef".into(),
            produce: vec!["orders.*".into(), "audit".into()],
            consume: vec!["*".into()],
            admin: vec![],
        }
    }

    #[test]
    fn patterns_match_like_shell_stars() {
        assert!(glob(b"orders.*", b"orders.eu"));
        assert!(glob(b"orders.*", b"orders."));
        assert!(!glob(b"orders.*", b"order"));
        assert!(glob(b"*.dlq", b"orders.dlq"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"audit", b"audits"));
    }

    #[test]
    fn tokens_grant_what_they_say_and_nothing_else() {
        let tokens = [token()];
        assert!(authenticate(&tokens, None).is_none());
        assert!(authenticate(&tokens, Some("0123456789abcdeX")).is_none());
        let grant = authenticate(&tokens, Some("0123456789abcdef")).expect("valid token");
        assert!(grant.allows(Right::Produce, Some("orders.eu")));
        assert!(!grant.allows(Right::Produce, Some("payments")));
        assert!(grant.allows(Right::Consume, Some("payments")));
        assert!(!grant.allows(Right::Admin, Some("orders.eu")));
        assert!(!grant.allows(Right::Admin, None));
        assert!(
            authenticate(&[], None)
                .expect("open node")
                .allows(Right::Admin, None)
        );
    }
}
