"""A consumer with kafka-python (pure Python): see README.md for the argument and output."""
import json
import sys
import time

import logging

import kafka.errors as Errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

spec = json.loads(sys.argv[1])


class SignInFailures(logging.Handler):
    """kafka-python logs a refused sign-in and retries; the test wants it as an error."""
    seen = False

    def emit(self, record):
        if "[Error 58]" in record.getMessage():
            SignInFailures.seen = True


logging.getLogger("kafka").addHandler(SignInFailures())
logging.getLogger("kafka").setLevel(logging.ERROR)


def out(**kv):
    print(json.dumps(kv), flush=True)


def fail(e):
    if SignInFailures.seen:
        out(error="SASL_AUTHENTICATION_FAILED")
        sys.exit(1)
    errno = getattr(e, "errno", None)
    name = {29: "TOPIC_AUTHORIZATION_FAILED", 30: "GROUP_AUTHORIZATION_FAILED",
            31: "CLUSTER_AUTHORIZATION_FAILED", 58: "SASL_AUTHENTICATION_FAILED"}.get(errno)
    if name is None and isinstance(e, (Errors.AuthenticationFailedError,
                                       Errors.SaslAuthenticationFailedError)):
        name = "SASL_AUTHENTICATION_FAILED"
    out(error=name or type(e).__name__, detail=str(e)[:200])
    sys.exit(1)


common = dict(bootstrap_servers=spec["bootstrap"], security_protocol="SASL_PLAINTEXT",
              sasl_mechanism=spec["mechanism"], sasl_plain_username=spec["username"],
              sasl_plain_password=spec["password"])
action = spec["action"]
deadline = time.time() + spec.get("timeout_s", 60)
try:
    if action in ("consume", "member"):
        from kafka import TopicPartition, OffsetAndMetadata
        c = KafkaConsumer(group_id=spec["group"], auto_offset_reset="earliest",
                          enable_auto_commit=False, session_timeout_ms=6000,
                          heartbeat_interval_ms=1000, **common)
        c.subscribe([spec["topic"]])
        n = 0
        while action == "member" or n < spec["count"]:
            if SignInFailures.seen:
                fail(None)
            if spec["topic"] in c._client.cluster.unauthorized_topics:
                fail(Errors.TopicAuthorizationFailedError())
            if time.time() > deadline and action == "consume":
                out(error="TIMEOUT", read=n)
                sys.exit(1)
            batch = c.poll(timeout_ms=500, max_records=1 if action == "consume" else 500)
            for tp, msgs in batch.items():
                for m in msgs:
                    c.commit({tp: OffsetAndMetadata(m.offset + 1, None, -1)})
                    n += 1
                    out(record=m.offset)
        c.close()
        out(done=n)
    elif action == "produce":
        p = KafkaProducer(acks="all", retries=0, **common)
        p.send(spec["topic"], b"not allowed").get(timeout=30)
        out(done=1)
    elif action == "create_topic":
        a = KafkaAdminClient(**common)
        r = a.create_topics([NewTopic(spec["topic"], 1, 1)], timeout_ms=20000)
        for topic, code, *_ in getattr(r, "topic_errors", getattr(r, "topics", [])):
            if code:
                fail(Errors.for_code(code)())
        out(done=1)
except SystemExit:
    raise
except Exception as e:  # every failure is reported as the error it is
    fail(e)
