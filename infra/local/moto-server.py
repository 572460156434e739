"""moto's server, with one request handled at a time.

moto's own `moto_server` serves requests on many threads without a lock, so its DynamoDB
conditional writes and transactions are not atomic under concurrent requests (measured: 5 of
10 concurrent TransactWriteItems passed a `count < 4` condition). Real DynamoDB serializes
them. This wrapper keeps moto's threaded connection handling and runs the application itself
under one lock, which restores the atomicity Ferry's tests rely on.

It also stops two leaks that grew the server past 20 GB in one test run (~1 GB every 30 s once
the sync tests ran) until the machine killed it:

- moto registers every model object it ever creates (each item, item copy, stream record,
  Kinesis record) in a class-level list, `instances_tracked`, that only its
  `/moto-api/data.json` dashboard reads, so nothing is ever freed. Here models are not
  registered.
- Real DynamoDB keeps a stream's records for 24 hours; moto keeps every record for ever, and
  each TransactWriteItems deep-copies the whole table, stream included, as its rollback copy,
  so every transaction was slower than the last. Here a shard keeps its last
  STREAM_RECORDS_KEPT records (a reader behind them continues at the oldest kept one, the way
  TRIM_HORIZON moves), and the rollback copy shares the records (they never change).

And it makes transactions cheap again: moto's rollback copy of a table deep-copies every item
for every transaction (~20 ms on a 300-item table, which saturated the server on a loaded
machine); here it deep-copies the items the transaction names and shares the others
(`_TransactionCopy`).

Usage: moto-server.py HOST PORT
       moto-server.py --check    checks the patches in-process (the test command runs it)
"""

import copy
import os
import signal
import sys
import threading
from collections import defaultdict

import moto.dynamodb.models as dynamodb_models
from moto.core.common_models import BaseModel
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import StreamShard, Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

STREAM_RECORDS_KEPT = 1000


def untrack_models():
    BaseModel.__new__ = staticmethod(lambda cls, *args, **kwargs: object.__new__(cls))


# The keys each table's rollback copy must copy, while a transaction runs (one at a time).
_touched = {}


class _TransactionCopy:
    """`copy` as moto's DynamoDB backend sees it: a table's rollback copy copies only the items
    the running transaction names (moto deep-copies every item of the table, ~20 ms a
    transaction on a 300-item table, which saturated the server on a loaded machine); the other
    items are shared, since the transaction does not touch them."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(x, memo=None):
        if isinstance(x, Table) and x.name in _touched:
            return _rollback_copy(x, _touched[x.name])
        return copy.deepcopy(x, memo)


def _rollback_copy(table, keys):
    backup = copy.copy(table)
    if table.range_key_attr is not None:
        items = defaultdict(dict)
        for hash_key, ranged in table.items.items():
            items[hash_key] = dict(ranged)
        for hash_key, range_key in keys:
            item = items.get(hash_key, {}).get(range_key)
            if item is not None:
                items[hash_key][range_key] = copy.deepcopy(item)
    else:
        items = defaultdict(dict, table.items)
        for hash_key, _ in keys:
            if hash_key in items:
                items[hash_key] = copy.deepcopy(items[hash_key])
    backup.items = items
    if table.stream_shard is not None:
        backup.stream_shard = copy.deepcopy(table.stream_shard, {id(table): backup})
    return backup


def cheap_transaction_copies():
    transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        touched = {}
        for item in transact_items:
            op = next(iter(item.values()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            attrs = op.get("Key") or op.get("Item") or {}
            if table.hash_key_attr not in attrs:
                continue
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = None
            if table.range_key_attr is not None and table.range_key_attr in attrs:
                range_key = DynamoType(attrs[table.range_key_attr])
            touched.setdefault(table.name, []).append((hash_key, range_key))
        _touched.clear()
        _touched.update(touched)
        try:
            return transact(self, transact_items)
        finally:
            _touched.clear()

    DynamoDBBackend.transact_write_items = transact_write_items
    dynamodb_models.copy = _TransactionCopy()


def bound_streams():
    add, get = StreamShard.add, StreamShard.get

    def bounded_add(self, old, new):
        add(self, old, new)
        extra = len(self.items) - STREAM_RECORDS_KEPT
        if extra > 0:
            # Sequence numbers stay those moto gave: the first kept one moves up.
            del self.items[:extra]
            self.starting_sequence_number += extra

    def clamped_get(self, start, quantity):
        return get(self, max(start, self.starting_sequence_number), quantity)

    def shared_copy(self, memo):
        copy = StreamShard.__new__(StreamShard)
        copy.__dict__.update(self.__dict__)
        copy.table = memo.get(id(self.table), self.table)
        copy.items = list(self.items)
        return copy

    StreamShard.add = bounded_add
    StreamShard.get = clamped_get
    StreamShard.__deepcopy__ = shared_copy


class Serialized:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # moto answers with complete bodies: materialize them inside the lock.
            return list(self.app(environ, start_response))


def check():
    """A cancelled transaction leaves every item as it was (one it updated in place, one it
    put), a committed one applies, and the stream holds only the committed records."""
    from moto.dynamodb.models import dynamodb_backends

    untrack_models()
    bound_streams()
    cheap_transaction_copies()
    b = dynamodb_backends["123456789012"]["us-east-1"]
    b.create_table(
        "check",
        schema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        attr=[{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"}],
        throughput=None, billing_mode="PAY_PER_REQUEST", indexes=None, global_indexes=None,
        streams={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        sse_specification=None, tags=None, deletion_protection_enabled=False, warm_throughput=None,
    )
    key = lambda sk: {"PK": {"S": "p"}, "SK": {"S": sk}}
    for i in range(5):
        b.put_item("check", {**key(str(i)), "n": {"N": "0"}})
    update = {"Update": {"TableName": "check", "Key": key("0"), "UpdateExpression": "SET n = :v",
                         "ExpressionAttributeValues": {":v": {"N": "7"}}}}
    try:
        b.transact_write_items([
            update,
            {"Put": {"TableName": "check", "Item": key("9")}},
            {"ConditionCheck": {"TableName": "check", "Key": key("1"), "ConditionExpression": "n = :one",
                                "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        ])
        sys.exit("check: a transaction whose condition failed was applied")
    except SystemExit:
        raise
    except Exception:
        pass
    assert b.get_item("check", key("0")).attrs["n"].value == "0", "the in-place update was not rolled back"
    assert b.get_item("check", key("9")) is None, "the put was not rolled back"
    b.transact_write_items([update])
    assert b.get_item("check", key("0")).attrs["n"].value == "7", "a committed transaction did not apply"
    assert len(b.tables["check"].stream_shard.items) == 6, "the stream holds a cancelled write"
    print("moto-server.py: rollback copies and streams check out")


def main():
    if sys.argv[1:] == ["--check"]:
        check()
        return
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    untrack_models()
    bound_streams()
    cheap_transaction_copies()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialized(app), threaded=True)


if __name__ == "__main__":
    main()
