"""moto's server, with one request handled at a time.

moto's own `moto_server` serves requests on many threads without a lock, so its DynamoDB
conditional writes and transactions are not atomic under concurrent requests (measured: 5 of
10 concurrent TransactWriteItems passed a `count < 4` condition). Real DynamoDB serializes
them. This wrapper keeps moto's threaded connection handling and runs the application itself
under one lock, which restores the atomicity Ferry's tests rely on.

Usage: moto-server.py HOST PORT
"""

import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class Serialized:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            # moto answers with complete bodies: materialize them inside the lock.
            return list(self.app(environ, start_response))


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialized(app), threaded=True)


if __name__ == "__main__":
    main()
