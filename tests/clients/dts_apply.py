"""A downstream consumer of cloud DTS's change-tracking Avro records, built as DTS's own Python
consumer demo reads them (`aliyun-dts-subscribe-demo/python/DTSConsumerDemo.py`): the demo's
pinned libraries (kafka-python 2.0.2, fastavro 1.8.3, lz4 4.3.2), the published `Record.avsc`
(here Ferry's restatement of it, `dts_record_compatible.avsc`: the demo's files are not copied)
loaded with `fastavro.schema.load_schema`, and every message value decoded with
`schemaless_reader(io.BytesIO(value), schema)`, as the demo does. Then it does what a DTS user
writes next: pairs `fields` with the images, turns each value back into text by its branch,
keys rows by `tags.pk_uk_info`'s PRIMARY columns, and applies INSERT/UPDATE/DELETE to a SQLite
table. It knows nothing of Ferry. Prints the resulting rows as JSON lines.

Arguments: the schema file, then a JSON object {"bootstrap": "127.0.0.1:9093", "topic": "...",
"records": n, "timeout_s": 60}: reads until `records` row records have been applied. Unlike
the demo it reads from the topic's start (the demo starts at its end and never commits).
"""
import io
import json
import sqlite3
import sys

from fastavro import schema as avro_schema
from fastavro import schemaless_reader
from topic_table import print_tables, read_topic

record_schema = avro_schema.load_schema(sys.argv[1])
spec = json.loads(sys.argv[2])

CHARSETS = {"utf8mb4": "utf-8", "utf8mb3": "utf-8", "utf8": "utf-8", "latin1": "cp1252",
            "binary": "latin-1"}


def text(v):
    """A value of the image union as text, by the shape of its branch."""
    if v is None:
        return None
    keys = set(v) if isinstance(v, dict) else set()
    if keys == {"precision", "value"}:  # Integer
        return v["value"]
    if keys == {"charset", "value"}:  # Character
        return v["value"].decode(CHARSETS.get(v["charset"], v["charset"]))
    if keys == {"value", "precision", "scale"}:  # Decimal (text) or Float (double)
        return v["value"] if isinstance(v["value"], str) else repr(v["value"])
    if keys == {"timestamp", "millis"}:  # Timestamp: seconds and microseconds
        return f"{v['timestamp']}.{v['millis']:06d}"
    if {"year", "month", "day", "hour", "minute", "second", "millis"} <= keys:  # DateTime
        date = (f"{v['year']:04d}-{v['month']:02d}-{v['day']:02d}"
                if v["day"] is not None else None)
        clock = None
        if v["hour"] is not None:
            sign = "-" if min(v["hour"], v["minute"], v["second"], v["millis"] or 0) < 0 else ""
            clock = (f"{sign}{abs(v['hour']):02d}:{abs(v['minute']):02d}:"
                     f"{abs(v['second']):02d}.{abs(v['millis'] or 0):06d}")
        if date is None and clock is None:
            return str(v["year"])
        return " ".join(p for p in (date, clock) if p)
    if keys == {"type", "value"}:  # BinaryObject, TextObject, BinaryGeometry, TextGeometry
        value = v["value"]
        if isinstance(value, bytes):
            return value.decode("utf-8") if v["type"] == "TEXT" else value.hex()
        return value
    raise ValueError(f"a value of no known branch: {v!r}")


db = sqlite3.connect(":memory:")
columns = {}


def apply(record):
    names = [f["name"] for f in record["fields"]]
    table = record["objectName"]
    if table not in columns:
        columns[table] = names
        cols = ", ".join(f'"{c}"' for c in names)
        db.execute(f'CREATE TABLE "{table}" (row_key TEXT PRIMARY KEY, {cols})')
    pk = json.loads(record["tags"].get("pk_uk_info") or "{}").get("PRIMARY") or names
    before = record["beforeImages"]
    after = record["afterImages"]
    if before is not None:
        row = dict(zip(names, map(text, before)))
        db.execute(f'DELETE FROM "{table}" WHERE row_key = ?',
                   (json.dumps([row[k] for k in pk]),))
    if after is not None:
        row = dict(zip(names, map(text, after)))
        marks = ", ".join("?" for _ in range(len(names) + 1))
        cols = ", ".join(["row_key"] + [f'"{c}"' for c in names])
        db.execute(f'INSERT OR REPLACE INTO "{table}" ({cols}) VALUES ({marks})',
                   [json.dumps([row[k] for k in pk])] + [row[c] for c in names])


def handle(m):
    record = schemaless_reader(io.BytesIO(m.value), record_schema)
    if record["operation"] not in ("INSERT", "UPDATE", "DELETE"):
        return 0
    apply(record)
    return 1


read_topic(spec, handle)
print_tables(db, columns)
