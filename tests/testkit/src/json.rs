//! JSON as written, for comparing records with the tools' own output: object keys in their
//! order and numbers as their text (`603.00` is not `603.0`, `0E-10` is not `0`). serde_json's
//! `Value` keeps neither (its maps are sorted, its numbers are `f64`), and turning on its
//! `preserve_order`/`arbitrary_precision` features would change them for Ferry's own code in
//! the same build; so this small parser.

use std::fmt;

use anyhow::{Result, bail};

/// A JSON value with its keys in order and its numbers as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON text (nothing but white space after it).
    pub fn parse(text: &str) -> Result<Self> {
        let mut p = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let v = p.value(0)?;
        p.space();
        if p.at != p.bytes.len() {
            bail!("text after the JSON value at byte {}", p.at);
        }
        Ok(v)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Self::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Removes the members `keys` of an object (no-op on other values); a key with dots
    /// (`payload.source.ts_ms`) names a member of a member.
    pub fn without(mut self, keys: &[&str]) -> Self {
        for key in keys {
            self.remove_path(key);
        }
        self
    }

    fn remove_path(&mut self, path: &str) {
        let Self::Object(members) = self else {
            return;
        };
        match path.split_once('.') {
            None => members.retain(|(k, _)| k != path),
            Some((head, rest)) => {
                if let Some((_, inner)) = members.iter_mut().find(|(k, _)| k == head) {
                    inner.remove_path(rest);
                }
            }
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => f.write_str(n),
            Self::String(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            Self::Array(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Self::Object(members) => {
                f.write_str("{")?;
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{v}", serde_json::Value::String(k.clone()))?;
                }
                f.write_str("}")
            }
        }
    }
}

/// Nesting deeper than this is refused (expected files and records are shallow).
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek() != Some(b) {
            bail!("expected `{}` at byte {}", b as char, self.at);
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Json> {
        if depth > MAX_DEPTH {
            bail!("JSON nested deeper than {MAX_DEPTH}");
        }
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    let Json::String(key) = self.string()? else {
                        unreachable!()
                    };
                    self.expect(b':')?;
                    members.push((key, self.value(depth + 1)?));
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(members));
                        }
                        _ => bail!("expected `,` or `}}` at byte {}", self.at),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => bail!("expected `,` or `]` at byte {}", self.at),
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
                {
                    self.at += 1;
                }
                let text = std::str::from_utf8(&self.bytes[start..self.at])?;
                // Checked as a number, kept as its text.
                text.parse::<f64>()
                    .map_err(|_| anyhow::anyhow!("`{text}` is not a number"))?;
                Ok(Json::Number(text.to_owned()))
            }
            other => bail!(
                "unexpected {:?} at byte {}",
                other.map(|b| b as char),
                self.at
            ),
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            bail!("unexpected text at byte {}", self.at)
        }
    }

    /// A string, with its escapes read by serde_json.
    fn string(&mut self) -> Result<Json> {
        if self.peek() != Some(b'"') {
            bail!("expected a string at byte {}", self.at);
        }
        let start = self.at;
        self.at += 1;
        loop {
            match self.bytes.get(self.at) {
                None => bail!("a string is not closed"),
                Some(b'\\') => self.at += 2,
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(_) => self.at += 1,
            }
        }
        let s: String = serde_json::from_slice(&self.bytes[start..self.at])?;
        Ok(Json::String(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order_and_numbers_their_text() {
        let j = Json::parse(r#" {"b": 603.00, "a": [0E-10, true, null, "x\"y"]} "#).unwrap();
        assert_eq!(
            j.to_string(),
            r#"{"b":603.00,"a":[0E-10,true,null,"x\"y"]}"#
        );
        assert_ne!(
            j,
            Json::parse(r#"{"a":[0E-10,true,null,"x\"y"],"b":603.00}"#).unwrap()
        );
        assert_eq!(j.get("b"), Some(&Json::Number("603.00".into())));
        assert!(Json::parse("{\"a\":1} x").is_err());
        let nested = Json::parse(r#"{"p":{"s":{"t":1,"u":2}},"v":3}"#).unwrap();
        assert_eq!(
            nested.without(&["p.s.t", "v"]).to_string(),
            r#"{"p":{"s":{"u":2}}}"#
        );
        assert!(Json::parse("[1,").is_err());
    }
}
