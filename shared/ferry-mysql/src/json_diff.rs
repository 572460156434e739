//! Partial JSON updates (`binlog_row_value_options = PARTIAL_JSON`, MySQL 8): the after image
//! of a JSON column holds only the changes (`REPLACE`/`INSERT`/`REMOVE` at a JSON path) made by
//! `JSON_SET`, `JSON_REPLACE` or `JSON_REMOVE`. Applied here to the before image's document, so
//! consumers always get the whole new document. `mysql_common` parses the diffs but does not
//! apply them, and no crate applies MySQL's JSON paths, hence this module.

use serde_json::Value as Json;

/// One step of a MySQL JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// What a diff does at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiffOp {
    Replace,
    Insert,
    Remove,
}

/// Parses a path as the binlog writes it: `$`, then `.key`, `."quoted key"` or `[n]` steps.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let bad = |why: &str| format!("JSON path `{path}`: {why}");
    let mut rest = path
        .trim()
        .strip_prefix('$')
        .ok_or_else(|| bad("does not start with $"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let (n, after) = r.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let n = n
                .trim()
                .parse()
                .map_err(|_| bad("an index is not a number"))?;
            steps.push(Step::Index(n));
            rest = after;
        } else if let Some(r) = rest.strip_prefix(".\"") {
            // A quoted key: backslash escapes as in JSON strings.
            let mut key = String::new();
            let mut chars = r.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        let (_, e) = chars.next().ok_or_else(|| bad("a dangling escape"))?;
                        key.push(e);
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => key.push(c),
                }
            }
            let end = end.ok_or_else(|| bad("an unclosed quoted key"))?;
            steps.push(Step::Key(key));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(bad("an empty key"));
            }
            steps.push(Step::Key(r[..end].to_owned()));
            rest = &r[end..];
        } else {
            return Err(bad("expected `.key` or `[n]`"));
        }
    }
    Ok(steps)
}

/// Applies one diff to `doc`.
pub(crate) fn apply(
    doc: &mut Json,
    path: &str,
    op: DiffOp,
    value: Option<Json>,
) -> Result<(), String> {
    let steps = parse_path(path)?;
    let Some((last, parents)) = steps.split_last() else {
        // The whole document.
        return match (op, value) {
            (DiffOp::Replace, Some(v)) => {
                *doc = v;
                Ok(())
            }
            _ => Err(format!("JSON diff {op:?} on the whole document")),
        };
    };
    let mut target = &mut *doc;
    for step in parents {
        target = match (step, target) {
            (Step::Key(k), Json::Object(m)) => m.get_mut(k),
            (Step::Index(i), Json::Array(a)) => a.get_mut(*i),
            _ => None,
        }
        .ok_or_else(|| format!("JSON path `{path}` does not exist in the before image"))?;
    }
    let missing = || format!("JSON diff {op:?} at `{path}` has no value");
    match (op, last, target) {
        (DiffOp::Remove, Step::Key(k), Json::Object(m)) => {
            m.remove(k);
        }
        (DiffOp::Remove, Step::Index(i), Json::Array(a)) => {
            if *i < a.len() {
                a.remove(*i);
            }
        }
        (DiffOp::Replace | DiffOp::Insert, Step::Key(k), Json::Object(m)) => {
            m.insert(k.clone(), value.ok_or_else(missing)?);
        }
        (DiffOp::Replace, Step::Index(i), Json::Array(a)) => {
            let slot = a
                .get_mut(*i)
                .ok_or_else(|| format!("JSON path `{path}` is past the array's end"))?;
            *slot = value.ok_or_else(missing)?;
        }
        (DiffOp::Insert, Step::Index(i), Json::Array(a)) => {
            let at = (*i).min(a.len());
            a.insert(at, value.ok_or_else(missing)?);
        }
        (_, _, other) => {
            return Err(format!(
                "JSON diff {op:?} at `{path}`: the before image holds {} there",
                match other {
                    Json::Object(_) => "an object",
                    Json::Array(_) => "an array",
                    _ => "a scalar",
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_parse_keys_quoted_keys_and_indexes() {
        assert_eq!(parse_path("$").unwrap(), []);
        assert_eq!(
            parse_path(r#"$.a[2]."b c\"d".e"#).unwrap(),
            [
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("b c\"d".into()),
                Step::Key("e".into())
            ]
        );
        for bad in ["a.b", "$[x]", "$.", "$[1", r#"$."open"#] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn diffs_apply_as_mysql_applies_them() {
        let mut doc = json!({"name": "Sue", "tags": ["a", "c"], "n": {"x": 1}});
        apply(&mut doc, "$.name", DiffOp::Replace, Some(json!("Pete"))).unwrap();
        apply(&mut doc, "$.tags[1]", DiffOp::Insert, Some(json!("b"))).unwrap();
        apply(&mut doc, "$.tags[9]", DiffOp::Insert, Some(json!("z"))).unwrap();
        apply(&mut doc, "$.n.y", DiffOp::Insert, Some(json!(2))).unwrap();
        apply(&mut doc, "$.n.x", DiffOp::Remove, None).unwrap();
        apply(&mut doc, "$.tags[0]", DiffOp::Remove, None).unwrap();
        assert_eq!(
            doc,
            json!({"name": "Pete", "tags": ["b", "c", "z"], "n": {"y": 2}})
        );
        assert!(apply(&mut doc, "$.nope.x", DiffOp::Replace, Some(json!(1))).is_err());
        assert!(apply(&mut doc, "$.name.x", DiffOp::Replace, Some(json!(1))).is_err());
        assert!(apply(&mut doc, "$.name", DiffOp::Replace, None).is_err());
    }
}
