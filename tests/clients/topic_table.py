"""What the downstream consumers of `*_apply.py` share: a kafka-python consumer of a whole topic
from its start, a read loop until enough changes are applied, and the table printed as JSON
lines (`{"table": …, "row": {column: text}}`)."""
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def read_topic(spec, handle):
    """Reads `spec["topic"]` from its start, giving each message to `handle` (which returns how
    many changes it applied), until `spec["records"]` are applied; exits 1 when they are not
    within `spec["timeout_s"]`."""
    consumer = KafkaConsumer(bootstrap_servers=spec["bootstrap"], enable_auto_commit=False,
                             group_id=None)
    partitions = [TopicPartition(spec["topic"], p)
                  for p in sorted(consumer.partitions_for_topic(spec["topic"]) or [0])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    applied = 0
    deadline = time.time() + spec.get("timeout_s", 60)
    while applied < spec["records"] and time.time() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            for m in batch:
                applied += handle(m)
    if applied < spec["records"]:
        print(json.dumps({"error": f"only {applied} of {spec['records']} changes in time"}))
        sys.exit(1)


def print_tables(db, columns):
    """Every row of each table in `columns` (table → column names)."""
    for table, cols in columns.items():
        names = ", ".join(f'"{c}"' for c in cols)
        for row in db.execute(f'SELECT {names} FROM "{table}" ORDER BY row_key'):
            print(json.dumps({"table": table, "row": dict(zip(cols, row))}), flush=True)
