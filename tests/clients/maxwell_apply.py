"""A downstream consumer of Maxwell's JSON, written the way Maxwell's users write one: read the
topic with kafka-python, take each record's row identity from Maxwell's hash key
(`pk.<column>` fields), and apply it to a table (SQLite here): `insert` and `update` write
`data` (an update whose `old` changes the key first removes the row under the old key),
`delete` removes. It knows nothing of Ferry. Prints the resulting rows as JSON lines, values
as text, sorted by key.

Argument: a JSON object {"bootstrap": "127.0.0.1:9093", "topic": "...", "records": n,
"timeout_s": 60}: reads until `records` row records have been applied.
"""
import decimal
import json
import sqlite3
import sys

from topic_table import print_tables, read_topic

spec = json.loads(sys.argv[1])

db = sqlite3.connect(":memory:")
columns = {}  # table -> column names in the order Maxwell writes them


def text(v):
    """A value as text: numbers with their digits (DECIMAL keeps its scale), JSON as JSON."""
    if v is None:
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def table_for(table, data):
    if table not in columns:
        columns[table] = list(data)
        cols = ", ".join(f'"{c}"' for c in columns[table])
        db.execute(f'CREATE TABLE "{table}" (row_key TEXT PRIMARY KEY, {cols})')
    return columns[table]


def apply(key, record):
    table, data = record["table"], record["data"]
    cols = table_for(table, data)
    pk = {k[3:]: v for k, v in key.items() if k.startswith("pk.")}
    row_key = json.dumps([text(pk[k]) for k in sorted(pk)])
    if record["type"] == "delete":
        db.execute(f'DELETE FROM "{table}" WHERE row_key = ?', (row_key,))
        return
    old = record.get("old") or {}
    lower = {c.lower(): c for c in data}
    if any(lower.get(k) in old for k in pk):
        before = {k: old.get(lower[k], data[lower[k]]) for k in pk}
        old_key = json.dumps([text(before[k]) for k in sorted(before)])
        db.execute(f'DELETE FROM "{table}" WHERE row_key = ?', (old_key,))
    marks = ", ".join("?" for _ in range(len(cols) + 1))
    names = ", ".join(["row_key"] + [f'"{c}"' for c in cols])
    db.execute(f'INSERT OR REPLACE INTO "{table}" ({names}) VALUES ({marks})',
               [row_key] + [text(data.get(c)) for c in cols])


def handle(m):
    record = json.loads(m.value, parse_float=decimal.Decimal)
    if record.get("type") not in ("insert", "update", "delete"):
        return 0
    apply(json.loads(m.key, parse_float=decimal.Decimal), record)
    return 1


read_topic(spec, handle)
print_tables(db, columns)
