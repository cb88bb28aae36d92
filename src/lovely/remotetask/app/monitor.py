"""The monitoring address of a ``remotetask worker`` (``--metrics-port``).

A worker has no web server and no logins: with ``--metrics-port`` it
answers ``/metrics`` (``lovely.remotetask.metrics``) and ``/health``,
``/health/live``, ``/health/ready`` (``lovely.remotetask.health``; ready
when the database answers and the worker's processors run) on a
separate address, 127.0.0.1 unless ``--metrics-host`` says otherwise.
Anything else is 404; only GET and HEAD are answered.  Whoever reaches
the address reads the numbers: keep it on the loopback or a network of
the monitoring system.
"""
import logging
import threading

from lovely.remotetask import metrics
from lovely.remotetask.health import HealthCheck
from lovely.remotetask.health import notFound


logger = logging.getLogger('lovely.remotetask.app')


def make_app(db):
    """The WSGI application of the monitoring address of ``db``."""
    def application(environ, start_response):
        method = environ.get('REQUEST_METHOD')
        if environ.get('PATH_INFO') != '/metrics' or method not in (
                'GET', 'HEAD'):
            return notFound(environ, start_response)
        body = metrics.exposition(db)
        start_response('200 OK', [
            ('Content-Type', metrics.CONTENT_TYPE),
            ('Content-Length', str(len(body))),
            ('Cache-Control', 'no-store')])
        return [] if method == 'HEAD' else [body]
    return HealthCheck(application, db, processors=True)


class MonitorServer:
    """waitress serving ``make_app(db)`` in a daemon thread."""

    def __init__(self, db, host, port):
        import waitress.server
        self.server = waitress.server.create_server(
            make_app(db), host=host, port=port, threads=2,
            ident='remotetask-worker')
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name='metrics-server')

    @property
    def address(self):
        listen = getattr(self.server, 'effective_listen', None)
        if listen:
            return listen[0]
        return self.server.effective_host, self.server.effective_port

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        try:
            self.server.run()
        except Exception:   # closed under it, or a socket error
            logger.debug('the monitoring server ended', exc_info=True)

    def close(self):
        self.server.close()
        self.thread.join(5.0)
        # Its request threads (run() ends them too, once its loop sees
        # the server closed).
        self.server.task_dispatcher.shutdown()
