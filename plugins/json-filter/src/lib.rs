//! Keeps or drops messages by predicates on JSON fields of the payload.
//! Config: `{"keep": "all" | "any", "where": [{"field": "/level", "op":
//! "in", "value": ["warn", "error"]}, ...]}` with JSON-pointer fields and
//! ops `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `exists`. A payload that is
//! not JSON, or lacks the field, does not match that predicate. Must never
//! accept a config it cannot evaluate: every op's value is checked at init.

use serde_json::Value;
use weir_guest::{BatchContext, JsonFields, Message, Plugin, Verdict, export_plugin};

enum Op {
    Eq(Value),
    Ne(Value),
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
    In(Vec<Value>),
    Exists,
}

struct Predicate {
    op: Op,
    text: String,
}

/// Parsed predicates.
pub struct JsonFilter {
    all: bool,
    predicates: Vec<Predicate>,
    /// The fields the predicates read, one per predicate, read in one pass.
    fields: JsonFields,
}

impl Plugin for JsonFilter {
    fn init(config: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(config)
            .map_err(|e| format!("json-filter config is not JSON: {e}"))?;
        let all = match value.get("keep").map(|k| k.as_str()) {
            None | Some(Some("all")) => true,
            Some(Some("any")) => false,
            Some(_) => return Err("keep must be \"all\" or \"any\"".to_string()),
        };
        let list = value
            .get("where")
            .and_then(|w| w.as_array())
            .ok_or("json-filter config needs \"where\": [predicates]")?;
        if list.is_empty() {
            return Err("where must list at least one predicate".to_string());
        }
        let parsed = list
            .iter()
            .enumerate()
            .map(|(i, p)| parse_predicate(i, p))
            .collect::<Result<Vec<_>, _>>()?;
        let (pointers, predicates): (Vec<String>, Vec<Predicate>) = parsed.into_iter().unzip();
        let fields = JsonFields::new(&pointers)?;
        Ok(JsonFilter {
            all,
            predicates,
            fields,
        })
    }

    fn on_message(&mut self, _context: &BatchContext, message: &Message<'_>) -> Verdict {
        let not_json = || Verdict::Drop("payload is not JSON".to_string());
        let Some(values) = self.fields.extract_raw(message.payload) else {
            return not_json();
        };
        let mut first_miss = None;
        let mut hits = 0;
        for (predicate, value) in self.predicates.iter().zip(values) {
            let Ok(hit) = predicate.eval(value) else {
                return not_json();
            };
            if hit {
                hits += 1;
            } else if first_miss.is_none() {
                first_miss = Some(&predicate.text);
            }
        }
        let keep = if self.all {
            first_miss.is_none()
        } else {
            hits > 0
        };
        match (keep, first_miss) {
            (true, _) => Verdict::Pass,
            (false, Some(text)) if self.all => Verdict::Drop(format!("{text} not met")),
            (false, _) => Verdict::Drop("no predicate met".to_string()),
        }
    }
}

fn parse_predicate(i: usize, p: &Value) -> Result<(String, Predicate), String> {
    let field = p
        .get("field")
        .and_then(|f| f.as_str())
        .filter(|f| f.is_empty() || f.starts_with('/'))
        .ok_or_else(|| format!("where[{i}].field must be a JSON pointer such as \"/user/id\""))?;
    let op_name = p
        .get("op")
        .and_then(|o| o.as_str())
        .ok_or_else(|| format!("where[{i}].op must be a string"))?;
    let value = p.get("value");
    let number = || {
        value
            .and_then(|v| v.as_f64())
            .ok_or_else(|| format!("where[{i}].value: op {op_name:?} needs a number"))
    };
    let any = || {
        value
            .cloned()
            .ok_or_else(|| format!("where[{i}].value: op {op_name:?} needs a value"))
    };
    let op = match op_name {
        "==" => Op::Eq(any()?),
        "!=" => Op::Ne(any()?),
        "<" => Op::Lt(number()?),
        "<=" => Op::Le(number()?),
        ">" => Op::Gt(number()?),
        ">=" => Op::Ge(number()?),
        "in" => Op::In(
            value
                .and_then(|v| v.as_array())
                .cloned()
                .ok_or_else(|| format!("where[{i}].value: op \"in\" needs an array"))?,
        ),
        "exists" => Op::Exists,
        other => {
            return Err(format!(
                "where[{i}].op: unknown op {other:?}; expected one of ==, !=, <, <=, >, >=, in, exists"
            ));
        }
    };
    let shown = value.map(|v| format!(" {v}")).unwrap_or_default();
    Ok((
        field.to_string(),
        Predicate {
            op,
            text: format!("where[{i}] ({field} {op_name}{shown})"),
        },
    ))
}

/// A value `serde_json` refuses though its grammar is fine (a number out
/// of range, a lone surrogate escape): the payload counts as not JSON.
struct NotJson;

impl Predicate {
    /// `found` is the field's JSON text, `None` when the payload lacks it.
    /// Only what the op needs is parsed: a number straight to `f64`, a
    /// value only for the comparisons that need one.
    fn eval(&self, found: Option<&[u8]>) -> Result<bool, NotJson> {
        let Some(raw) = found else { return Ok(false) };
        let value = || serde_json::from_slice::<Value>(raw).map_err(|_| NotJson);
        let number = || match raw.first() {
            Some(b'-' | b'0'..=b'9') => serde_json::from_slice::<f64>(raw)
                .map(Some)
                .map_err(|_| NotJson),
            _ => Ok(None),
        };
        Ok(match &self.op {
            Op::Eq(want) => json_eq(&value()?, want),
            Op::Ne(want) => !json_eq(&value()?, want),
            Op::Lt(n) => number()?.is_some_and(|x| x < *n),
            Op::Le(n) => number()?.is_some_and(|x| x <= *n),
            Op::Gt(n) => number()?.is_some_and(|x| x > *n),
            Op::Ge(n) => number()?.is_some_and(|x| x >= *n),
            Op::In(set) => {
                let found = value()?;
                set.iter().any(|want| json_eq(&found, want))
            }
            Op::Exists => {
                value()?;
                true
            }
        })
    }
}

/// Equality where `1` and `1.0` are the same number, as a user expects.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

export_plugin!(JsonFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(config: &str, payload: &str) -> bool {
        let mut plugin = JsonFilter::init(config).expect("valid config");
        let message = Message::new(None, &[], payload.as_bytes());
        matches!(
            plugin.on_message(
                &BatchContext {
                    topic: "t".into(),
                    partitions: 1
                },
                &message
            ),
            Verdict::Pass
        )
    }

    const ISSUE_EXAMPLE: &str = r#"{"keep": "all", "where": [
        {"field": "/level", "op": "in", "value": ["warn", "error"]},
        {"field": "/latency_ms", "op": ">", "value": 100},
        {"field": "/user", "op": "exists"}]}"#;

    #[test]
    fn all_predicates_must_hold() {
        assert!(keeps(
            ISSUE_EXAMPLE,
            r#"{"level": "warn", "latency_ms": 250, "user": "ann"}"#
        ));
        assert!(!keeps(
            ISSUE_EXAMPLE,
            r#"{"level": "info", "latency_ms": 250, "user": "ann"}"#
        ));
        assert!(!keeps(
            ISSUE_EXAMPLE,
            r#"{"level": "warn", "latency_ms": 50, "user": "ann"}"#
        ));
        assert!(!keeps(
            ISSUE_EXAMPLE,
            r#"{"level": "warn", "latency_ms": 250}"#
        ));
    }

    #[test]
    fn any_needs_one() {
        let config = r#"{"keep": "any", "where": [{"field": "/a", "op": "==", "value": 1}, {"field": "/b", "op": "!=", "value": "x"}]}"#;
        assert!(keeps(config, r#"{"a": 1.0}"#));
        assert!(keeps(config, r#"{"b": "y"}"#));
        assert!(!keeps(config, r#"{"b": "x"}"#));
    }

    #[test]
    fn numbers_compare_as_before() {
        let config = r#"{"where": [{"field": "/a", "op": ">=", "value": 100}]}"#;
        assert!(keeps(config, r#"{"a": 100}"#));
        assert!(keeps(config, r#"{"a": 1e2}"#));
        assert!(keeps(config, r#"{"a": 18446744073709551616}"#));
        assert!(!keeps(config, r#"{"a": 99.5}"#));
        assert!(!keeps(config, r#"{"a": "100"}"#));
        // serde_json refuses it, so the payload is not JSON.
        assert!(!keeps(config, r#"{"a": 1e400}"#));
        let exists = r#"{"where": [{"field": "/a", "op": "exists"}]}"#;
        assert!(keeps(exists, r#"{"a": null}"#));
        assert!(!keeps(exists, r#"{"a": "\ud800"}"#));
    }

    #[test]
    fn non_json_or_missing_field_does_not_match() {
        let config = r#"{"where": [{"field": "/a", "op": "!=", "value": 1}]}"#;
        assert!(!keeps(config, "not json"));
        assert!(!keeps(config, "{}"));
    }

    #[test]
    fn config_errors_name_the_predicate() {
        let unknown = JsonFilter::init(r#"{"where": [{"field": "/a", "op": "~", "value": 1}]}"#)
            .err()
            .expect("config must be refused");
        assert!(
            unknown.contains("where[0].op") && unknown.contains("\"~\""),
            "{unknown}"
        );
        let not_number =
            JsonFilter::init(r#"{"where": [{"field": "/a", "op": ">", "value": "x"}]}"#)
                .err()
                .expect("config must be refused");
        assert!(not_number.contains("needs a number"), "{not_number}");
        assert!(
            JsonFilter::init(r#"{"where": [{"field": "a", "op": "exists"}]}"#)
                .err()
                .expect("config must be refused")
                .contains("JSON pointer")
        );
        assert!(JsonFilter::init(r#"{"keep": "some", "where": []}"#).is_err());
    }
}
