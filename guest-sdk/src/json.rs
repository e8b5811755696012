//! Reading a few fields out of a JSON payload without building the whole
//! document: the fields are located by JSON pointer while streaming, every
//! other value is skipped unparsed, and reading stops as soon as the last
//! wanted field has been seen. Owns that streaming walk; must never report a
//! field from a payload that was malformed before the field.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A set of JSON pointers to read from payloads, compiled once (at init).
#[derive(Debug, Clone)]
pub struct JsonFields {
    root: Node,
    count: usize,
}

/// One step of the pointer trie: pointers ending here and deeper steps.
#[derive(Debug, Clone, Default)]
struct Node {
    targets: Vec<usize>,
    children: Vec<(String, Node)>,
}

impl JsonFields {
    /// Compiles pointers such as `/order/id` or `/items/0/sku` (RFC 6901;
    /// `""` is the whole document).
    pub fn new<S: AsRef<str>>(pointers: &[S]) -> Result<Self, String> {
        let mut root = Node::default();
        for (index, pointer) in pointers.iter().enumerate() {
            let pointer = pointer.as_ref();
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(format!("{pointer:?} is not a JSON pointer (it must start with '/')"));
            }
            let mut node = &mut root;
            for token in pointer.split('/').skip(1) {
                let token = token.replace("~1", "/").replace("~0", "~");
                let position = match node.children.iter().position(|(t, _)| *t == token) {
                    Some(position) => position,
                    None => {
                        node.children.push((token, Node::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[position].1;
            }
            node.targets.push(index);
        }
        Ok(JsonFields { root, count: pointers.len() })
    }

    /// The value at each pointer, in the order given to [`JsonFields::new`]
    /// (`None` where the field is absent), or `None` if the payload is not
    /// JSON up to the point where the last field was found.
    pub fn extract(&self, payload: &[u8]) -> Option<Vec<Option<Value>>> {
        let found = RefCell::new(Found { values: vec![None; self.count], missing: self.count });
        let mut de = serde_json::Deserializer::from_slice(payload);
        let result = NodeSeed { node: &self.root, found: &found }.deserialize(&mut de).and_then(|()| de.end());
        let found = found.into_inner();
        // An early stop leaves the rest unread, which serde_json reports as an
        // error; with every field in hand that error is about bytes we chose
        // not to read.
        match result {
            Ok(()) => Some(found.values),
            Err(_) if found.missing == 0 && self.count > 0 => Some(found.values),
            Err(_) => None,
        }
    }
}

struct Found {
    values: Vec<Option<Value>>,
    missing: usize,
}

impl Found {
    fn done(&self) -> bool {
        self.missing == 0
    }

    fn set(&mut self, index: usize, value: Option<Value>) {
        if self.values[index].is_none() && value.is_some() {
            self.missing -= 1;
        }
        self.values[index] = value;
    }
}

/// Marker error for "stop reading, we have everything".
const STOP: &str = "weir: all fields found";

#[derive(Clone, Copy)]
struct NodeSeed<'a> {
    node: &'a Node,
    found: &'a RefCell<Found>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.node.targets.is_empty() {
            return deserializer.deserialize_any(self);
        }
        // A pointer ends here: keep this value, and answer deeper pointers
        // from it rather than streaming twice.
        let value = <Value as serde::Deserialize>::deserialize(deserializer)?;
        let mut found = self.found.borrow_mut();
        collect(self.node, &value, &mut found);
        Ok(())
    }
}

fn collect(node: &Node, value: &Value, found: &mut Found) {
    for &target in &node.targets {
        found.set(target, Some(value.clone()));
    }
    for (token, child) in &node.children {
        let next = match value {
            Value::Object(map) => map.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        if let Some(next) = next {
            collect(child, next, found);
        }
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(child) = map.next_key_seed(KeySeed { node: self.node })? {
            match child {
                Some(child) => map.next_value_seed(NodeSeed { node: child, found: self.found })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if self.found.borrow().done() {
                return Err(serde::de::Error::custom(STOP));
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let child = self.node.children.iter().find(|(t, _)| t.parse::<usize>().ok() == Some(index));
            let more = match child {
                Some((_, child)) => seq.next_element_seed(NodeSeed { node: child, found: self.found })?.is_some(),
                None => seq.next_element::<IgnoredAny>()?.is_some(),
            };
            if !more {
                return Ok(());
            }
            if self.found.borrow().done() {
                return Err(serde::de::Error::custom(STOP));
            }
            index += 1;
        }
    }

    // Scalars hold no fields.
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Reads an object key and looks it up among the node's children without
/// allocating it.
struct KeySeed<'a> {
    node: &'a Node,
}

impl<'de, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = Option<&'a Node>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for KeySeed<'a> {
    type Value = Option<&'a Node>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.node.children.iter().find(|(t, _)| t == key).map(|(_, n)| n))
    }
}

#[cfg(test)]
mod tests {
    use super::JsonFields;
    use serde_json::json;

    fn extract(pointers: &[&str], payload: &str) -> Option<Vec<Option<serde_json::Value>>> {
        JsonFields::new(pointers).expect("valid pointers").extract(payload.as_bytes())
    }

    #[test]
    fn finds_nested_fields_and_array_items() {
        let got = extract(&["/a/b", "/list/1", "/missing"], r#"{"a": {"b": 2, "c": [1]}, "list": ["x", {"k": true}]}"#);
        assert_eq!(got, Some(vec![Some(json!(2)), Some(json!({"k": true})), None]));
    }

    #[test]
    fn agrees_with_value_pointer() {
        let doc = r#"{"user": {"id": "u~1", "tags": ["a", "b"]}, "a/b": 1, "m~n": 2, "n": null}"#;
        let pointers = ["/user/id", "/user/tags/1", "/a~1b", "/m~0n", "/n", "", "/user/tags/9"];
        let value: serde_json::Value = serde_json::from_str(doc).expect("json");
        let want: Vec<_> = pointers.iter().map(|p| value.pointer(p).cloned()).collect();
        assert_eq!(extract(&pointers, doc), Some(want));
    }

    #[test]
    fn stops_after_the_last_field() {
        // Garbage after the wanted field is never read.
        assert_eq!(extract(&["/id"], r#"{"id": 7, "rest": nonsense"#), Some(vec![Some(json!(7))]));
    }

    #[test]
    fn malformed_before_the_field_is_not_json() {
        assert_eq!(extract(&["/id"], r#"{"x": nonsense, "id": 7}"#), None);
        assert_eq!(extract(&["/id"], "plain text"), None);
        assert_eq!(extract(&["/id"], r#"{"x": 1}"#), Some(vec![None]));
        assert_eq!(extract(&["/id"], r#"{"x": 1} trailing"#), None);
    }

    #[test]
    fn pointers_must_start_with_a_slash() {
        assert!(JsonFields::new(&["id"]).is_err());
    }
}
