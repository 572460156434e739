"""A downstream consumer of Debezium's MySQL records as Kafka Connect's JsonConverter writes them
(`{"schema": …, "payload": …}`), written the way Debezium's users decode them without Connect:
read the topic with kafka-python, turn each field back into a value by its schema's logical
type (`org.apache.kafka.connect.data.Decimal` bytes with the `scale` parameter,
`io.debezium.time.Date` days, `Timestamp` milliseconds, `MicroTimestamp` microseconds,
`MicroTime`, `ZonedTimestamp`, `EnumSet` …), identify rows by the Kafka key's payload, and apply
`c`/`u`/`r` (write `after`, removing the row under the `before` key when the key changed) and `d`
(remove) to a SQLite table. It knows nothing of Ferry. Prints the resulting rows as JSON lines.

Argument: a JSON object {"bootstrap": "127.0.0.1:9093", "topic": "...", "records": n,
"timeout_s": 60}: reads until `records` row records have been applied.
"""
import base64
import datetime
import decimal
import json
import sqlite3
import sys

from topic_table import print_tables, read_topic

spec = json.loads(sys.argv[1])
db = sqlite3.connect(":memory:")
columns = {}
EPOCH = datetime.datetime(1970, 1, 1)


def text(schema, v):
    """A field's value as text, decoded by its Connect schema."""
    if v is None:
        return None
    name = schema.get("name")
    if name == "org.apache.kafka.connect.data.Decimal":
        raw = base64.b64decode(v)
        unscaled = int.from_bytes(raw, "big", signed=True)
        scale = int(schema["parameters"]["scale"])
        return str(decimal.Decimal(unscaled).scaleb(-scale))
    if name == "io.debezium.time.Date":
        return (EPOCH + datetime.timedelta(days=v)).strftime("%Y-%m-%d")
    if name == "io.debezium.time.Timestamp":
        at = EPOCH + datetime.timedelta(milliseconds=v)
        return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    if name == "io.debezium.time.MicroTimestamp":
        return (EPOCH + datetime.timedelta(microseconds=v)).strftime("%Y-%m-%d %H:%M:%S.%f")
    if name == "io.debezium.time.MicroTime":
        return str(datetime.timedelta(microseconds=v))
    if schema["type"] == "bytes":
        return base64.b64decode(v).hex()
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def row_of(schema, image):
    fields = {f["field"]: f for f in schema["fields"]}
    return {k: text(fields[k], image[k]) for k in image}


def apply(key, message):
    value_schema, payload = message["schema"], message["payload"]
    source = payload["source"]
    table = f'{source["db"]}.{source["table"]}'
    image_schema = next(f for f in value_schema["fields"] if f["field"] == "after")
    pk_names = [f["field"] for f in key["schema"]["fields"]]
    before = payload["before"] and row_of(image_schema, payload["before"])
    after = payload["after"] and row_of(image_schema, payload["after"])
    cols = [f["field"] for f in image_schema["fields"]]
    if table not in columns:
        columns[table] = cols
        names = ", ".join(f'"{c}"' for c in cols)
        db.execute(f'CREATE TABLE "{table}" (row_key TEXT PRIMARY KEY, {names})')
    if before is not None:
        db.execute(f'DELETE FROM "{table}" WHERE row_key = ?',
                   (json.dumps([before[k] for k in pk_names]),))
    if after is not None:
        marks = ", ".join("?" for _ in range(len(cols) + 1))
        names = ", ".join(["row_key"] + [f'"{c}"' for c in cols])
        db.execute(f'INSERT OR REPLACE INTO "{table}" ({names}) VALUES ({marks})',
                   [json.dumps([after[k] for k in pk_names])] + [after[c] for c in cols])


def handle(m):
    if m.value is None:  # a tombstone
        return 0
    message = json.loads(m.value)
    if message.get("payload", {}).get("op") not in ("c", "u", "d", "r"):
        return 0
    apply(json.loads(m.key), message)
    return 1


read_topic(spec, handle)
print_tables(db, columns)
