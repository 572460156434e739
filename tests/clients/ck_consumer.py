"""A consumer with confluent-kafka (librdkafka): see README.md for the argument and output."""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

spec = json.loads(sys.argv[1])


def out(**kv):
    print(json.dumps(kv), flush=True)


def fail(code):
    name = {KafkaError._AUTHENTICATION: "SASL_AUTHENTICATION_FAILED"}.get(code)
    if name is None:
        try:
            name = KafkaError(code).name()
        except Exception:  # an unknown code: print the number
            name = str(code)
    out(error=name)
    sys.exit(1)


def config(**extra):
    c = {
        "bootstrap.servers": spec["bootstrap"],
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": spec["mechanism"],
        "sasl.username": spec["username"],
        "sasl.password": spec["password"],
    }
    if spec.get("ssl_ca"):
        c["security.protocol"] = "SASL_SSL"
        c["ssl.ca.location"] = spec["ssl_ca"]
    c.update(extra)
    return c


errors = []
action = spec["action"]
deadline = time.time() + spec.get("timeout_s", 60)
if action in ("consume", "member"):
    c = Consumer(config(**{
        "group.id": spec["group"], "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "session.timeout.ms": 6000, "error_cb": lambda e: errors.append(e),
    }))
    c.subscribe([spec["topic"]])
    n = 0
    while action == "member" or n < spec["count"]:
        if time.time() > deadline and action == "consume":
            out(error="TIMEOUT", read=n)
            sys.exit(1)
        for e in errors:
            if e.code() in (KafkaError._AUTHENTICATION, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                            KafkaError.GROUP_AUTHORIZATION_FAILED):
                fail(e.code())
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(m.error().code())
        try:
            c.commit(message=m, asynchronous=False)
        except KafkaException as e:
            fail(e.args[0].code())
        n += 1
        out(record=m.offset())
    c.close()
    out(done=n)
elif action == "produce":
    p = Producer(config(**{"error_cb": lambda e: errors.append(e), "message.timeout.ms": 20000}))
    results = []
    p.produce(spec["topic"], b"not allowed", on_delivery=lambda err, msg: results.append(err))
    p.flush(30)
    if results and results[0] is not None:
        fail(results[0].code())
    if errors:
        fail(errors[0].code())
    out(done=1)
elif action == "create_topic":
    a = AdminClient(config())
    futures = a.create_topics([NewTopic(spec["topic"], 1, 1)], operation_timeout=20)
    try:
        futures[spec["topic"]].result(30)
    except KafkaException as e:
        fail(e.args[0].code())
    out(done=1)
