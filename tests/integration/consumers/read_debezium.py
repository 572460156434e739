"""A consumer that is not Ferry's: confluent-kafka (whose wheel bundles a current librdkafka)
reads a task's topic as any team's consumer would, and checks each record against the shape of
Ferry's default format, debezium-json as Debezium writes it through Kafka Connect's
JsonConverter (`{"schema": ..., "payload": ...}`). Tombstones (a key, no value) are skipped, and
DECIMAL values are read by their Connect schema, as Debezium's consumers do.

usage: read_debezium.py BOOTSTRAP TOPIC GROUP COUNT

Prints the records it read as one JSON array ({op, table, before, after, key, idempotency_key}),
or exits non-zero with the reason.
"""

import base64
import decimal
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException

OPS = {"c", "u", "d", "r"}
SOURCE_FIELDS = {"version", "connector", "name", "ts_ms", "db", "table", "server_id", "file", "pos", "row"}


def check(record, value):
    missing = {"before", "after", "op", "ts_ms", "source", "transaction"} - value.keys()
    if missing:
        sys.exit(f"record {record} lacks {sorted(missing)}: {value}")
    if value["op"] not in OPS:
        sys.exit(f"record {record} has op {value['op']!r}")
    lacking = SOURCE_FIELDS - value["source"].keys()
    if lacking:
        sys.exit(f"record {record}'s source lacks {sorted(lacking)}")
    if value["op"] in {"c", "r", "u"} and not isinstance(value["after"], dict):
        sys.exit(f"record {record} ({value['op']}) has no after image")
    if value["op"] in {"u", "d"} and not isinstance(value["before"], dict):
        sys.exit(f"record {record} ({value['op']}) has no before image")


def envelope(record, raw):
    message = json.loads(raw)
    if set(message) != {"schema", "payload"}:
        sys.exit(f"record {record} is not in JsonConverter's envelope: {message}")
    return message["schema"], message["payload"]


def decoded(schema, image, name):
    """An image with Connect Decimal fields (base64 of the unscaled two's-complement value)
    as their digits."""
    if image is None:
        return None
    fields = next(f for f in schema["fields"] if f["field"] == name)["fields"]
    out = dict(image)
    for f in fields:
        if f.get("name") == "org.apache.kafka.connect.data.Decimal" and out.get(f["field"]) is not None:
            unscaled = int.from_bytes(base64.b64decode(out[f["field"]]), "big", signed=True)
            scale = int(f["parameters"]["scale"])
            out[f["field"]] = str(decimal.Decimal(unscaled).scaleb(-scale))
    return out


def main():
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < count:
            if time.monotonic() > deadline:
                sys.exit(f"read {len(out)} of {count} records in 60 s")
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            if message.value() is None:
                continue  # the tombstone after a delete
            schema, value = envelope(len(out) + 1, message.value())
            check(len(out) + 1, value)
            headers = {k: v.decode() for k, v in (message.headers() or [])}
            out.append(
                {
                    "op": value["op"],
                    "table": value["source"]["table"],
                    "before": decoded(schema, value["before"], "before"),
                    "after": decoded(schema, value["after"], "after"),
                    "key": json.loads(message.key())["payload"] if message.key() else None,
                    "idempotency_key": headers.get("ferry.key"),
                }
            )
    finally:
        consumer.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
