"""A downstream consumer of Canal's flat messages, written the way Canal's users write one (as
Canal's client adapters and Flink's `canal-json` format read them): read the topic with
kafka-python, skip DDL (`isDdl`), identify rows by `pkNames`, and apply each message to a table
(SQLite here): INSERT and UPDATE write every row of `data` (an UPDATE whose `old` changes a key
column first removes the row under the old key), DELETE removes them. Values are Canal's text.
It knows nothing of Ferry. Prints the resulting rows as JSON lines.

Argument: a JSON object {"bootstrap": "127.0.0.1:9093", "topic": "...", "records": n,
"timeout_s": 60}: reads until `records` rows have been applied.
"""
import json
import sqlite3
import sys

from topic_table import print_tables, read_topic

spec = json.loads(sys.argv[1])

db = sqlite3.connect(":memory:")
columns = {}


def table_for(message):
    table = message["table"]
    if table not in columns:
        # Canal's mysqlType lists the columns in table order.
        columns[table] = list(message["mysqlType"])
        cols = ", ".join(f'"{c}"' for c in columns[table])
        db.execute(f'CREATE TABLE "{table}" (row_key TEXT PRIMARY KEY, {cols})')
    return table, columns[table]


def apply(message):
    table, cols = table_for(message)
    pk = message["pkNames"] or cols
    olds = message["old"] or [{} for _ in message["data"]]
    for row, old in zip(message["data"], olds):
        row_key = json.dumps([row[k] for k in pk])
        if message["type"] == "DELETE":
            db.execute(f'DELETE FROM "{table}" WHERE row_key = ?', (row_key,))
            continue
        if any(k in old for k in pk):
            old_key = json.dumps([old.get(k, row[k]) for k in pk])
            db.execute(f'DELETE FROM "{table}" WHERE row_key = ?', (old_key,))
        marks = ", ".join("?" for _ in range(len(cols) + 1))
        names = ", ".join(["row_key"] + [f'"{c}"' for c in cols])
        db.execute(f'INSERT OR REPLACE INTO "{table}" ({names}) VALUES ({marks})',
                   [row_key] + [row.get(c) for c in cols])
    return len(message["data"])


def handle(m):
    message = json.loads(m.value)
    if message.get("isDdl") or message.get("type") not in ("INSERT", "UPDATE", "DELETE"):
        return 0
    return apply(message)


read_topic(spec, handle)
print_tables(db, columns)
