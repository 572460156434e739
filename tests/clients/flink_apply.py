"""A stream processor that is not Ferry's reads a task's topic: Apache Flink's own
`debezium-json`, `canal-json` and `maxwell-json` formats (PyFlink, Flink SQL), the way a Flink
job reads the topics of the tool each format is named after.

Flink's Kafka connector is a jar from Maven Central, which these machines cannot reach, so the
topic's records are copied as they are (each record's value, one per line; tombstones have no
value and are left out, as Flink's formats skip them) into a file that Flink's filesystem
connector reads with the same format. What is tested is Flink's decoding of each record into
its changelog (+I, -U, +U, -D), which is the format's part of a Flink job.

usage: flink_apply.py SPEC
SPEC: {"bootstrap", "topic", "records", "timeout_s", "format", "options": {flink format
options}, "columns": "<Flink column list>", "query": "<SELECT over table src>",
"datetime_len": n}

Applies the changelog to a table (a row is removed by -U/-D, added by +I/+U) and prints its
rows as `{"table": "src", "row": {column: text}}` lines, like the other `*_apply.py`.
"""
import datetime
import decimal
import json
import os
import sys
import tempfile

from topic_table import read_topic

spec = json.loads(sys.argv[1])
lines = []


def handle(m):
    if m.value is None:  # a tombstone
        return 0
    lines.append(m.value.decode())
    return 1


read_topic(spec, handle)

from pyflink.common import RowKind  # noqa: E402  (the JVM starts only once the topic is read)
from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: E402

with tempfile.TemporaryDirectory() as work:
    path = os.path.join(work, "records.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("parallelism.default", "1")
    env.get_config().set("table.local-time-zone", "UTC")
    options = {"connector": "filesystem", "path": path, "format": spec["format"]}
    options.update(spec.get("options", {}))
    with_clause = ", ".join(f"'{k}' = '{v}'" for k, v in options.items())
    env.execute_sql(f"CREATE TABLE src ({spec['columns']}) WITH ({with_clause})")
    table = []
    names = None
    result = env.execute_sql(spec["query"])
    names = result.get_table_schema().get_field_names()
    with result.collect() as rows:
        for r in rows:
            values = tuple(r)
            if r.get_row_kind() in (RowKind.INSERT, RowKind.UPDATE_AFTER):
                table.append(values)
            else:
                table.remove(values)


def text(v):
    if v is None:
        return None
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")[: spec.get("datetime_len", 26)]
    if isinstance(v, (list, tuple)):
        return json.dumps(list(v), separators=(",", ":"))
    return str(v)


for values in table:
    row = {n: text(v) for n, v in zip(names, values)}
    print(json.dumps({"table": "src", "row": row}, ensure_ascii=False), flush=True)
