"""The monitoring address of a ``remotetask worker`` (``--metrics-port``).

A worker has no web server and no logins: with ``--metrics-port`` it
answers ``/metrics`` (``lovely.remotetask.metrics``) and ``/health``,
``/health/live``, ``/health/ready`` (``lovely.remotetask.health``; ready
when the database answers and the worker's processors run) on a
separate address, 127.0.0.1 unless ``--metrics-host`` says otherwise.
Anything else is 404; only GET and HEAD are answered.  Whoever reaches
the address reads the numbers: keep it on the loopback or a network of
the monitoring system.

DNS rebinding: a web page of ``evil.example`` whose name then resolves
to 127.0.0.1 can make a browser on the worker's machine ask the
address, with ``Host: evil.example``.  So a request whose ``Host``
names neither the address the worker listens on, nor ``localhost``,
``127.0.0.1`` or ``[::1]``, nor a name of ``--metrics-allow-host``
(each with or without a port) is answered ``421 Misdirected Request``.
Listening on every address (``0.0.0.0``, ``::``), any address given as
a number is taken too (a Kubernetes probe names the pod's address; a
rebound name is never a number).  A request without ``Host`` (HTTP/1.0,
which no browser sends) is answered.
"""
import ipaddress
import logging
import threading

from lovely.remotetask import metrics
from lovely.remotetask.health import HealthCheck
from lovely.remotetask.health import notFound


logger = logging.getLogger('lovely.remotetask.app')


#: The names of the loopback, always taken.
LOOPBACK_NAMES = ('localhost', '127.0.0.1', '::1')
#: The addresses that listen on every address.
WILDCARDS = ('0.0.0.0', '::', '')


def hostName(value):
    """The name of a ``Host`` header or of an address, lower case, without
    its port, brackets and trailing dot; None unless well formed.

    >>> hostName('LocalHost.:9100'), hostName('[::1]:9100'), hostName('::1')
    ('localhost', '::1', '::1')
    >>> hostName('a:b'), hostName('[::1'), hostName(''), hostName('a b')
    (None, None, None, None)
    """
    value = value.strip().lower()
    if value.startswith('['):
        name, bracket, port = value[1:].partition(']')
        if not bracket:
            return None
    elif value.count(':') > 1:
        name, port = value, ''     # an IPv6 address without brackets
    else:
        name, colon, port = value.partition(':')
        port = colon + port
    if port and not (port[:1] == ':' and port[1:].isascii()
                     and port[1:].isdigit()):
        return None
    name = name.rstrip('.')
    if not name or any(not (c.isalnum() or c in '-._:') for c in name):
        return None
    return name


def allowedHost(value):
    """A name of ``--metrics-allow-host`` as given, if it is well formed
    (a host name or address, with or without a port); else ValueError,
    so that the worker refuses to start instead of ignoring it.

    >>> allowedHost('Metrics.Example:9100')
    'Metrics.Example:9100'
    >>> allowedHost('http://metrics.example/')
    Traceback (most recent call last):
    ValueError: not a host name: 'http://metrics.example/'
    """
    if hostName(value) is None:
        raise ValueError(f'not a host name: {value!r}')
    return value


def isAddress(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostGuard:
    """WSGI: 421 for a ``Host`` that is not a name of this address (see
    the module)."""

    def __init__(self, application, host='127.0.0.1', names=()):
        self.application = application
        bound = hostName(host) if host else ''
        self.anyAddress = bound in WILDCARDS
        self.names = frozenset(
            filter(None, (*LOOPBACK_NAMES, bound,
                          *(hostName(allowedHost(name)) for name in names))))

    def allowed(self, value):
        name = hostName(value)
        if name is None:
            return False
        return name in self.names or (self.anyAddress and isAddress(name))

    def __call__(self, environ, start_response):
        value = environ.get('HTTP_HOST')
        if value is None or self.allowed(value):
            return self.application(environ, start_response)
        body = (b'Misdirected Request: the Host header names no address '
                b'of this worker\'s metrics (localhost, 127.0.0.1, [::1], '
                b'the address of --metrics-host, the names of '
                b'--metrics-allow-host).\n')
        start_response('421 Misdirected Request', [
            ('Content-Type', 'text/plain; charset=utf-8'),
            ('Content-Length', str(len(body))),
            ('Cache-Control', 'no-store')])
        return [] if environ.get('REQUEST_METHOD') == 'HEAD' else [body]


def make_app(db, host='127.0.0.1', names=()):
    """The WSGI application of the monitoring address of ``db``, which
    listens on ``host`` and takes the ``Host`` names ``names`` too."""
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
    return HostGuard(HealthCheck(application, db, processors=True),
                     host, names)


class MonitorServer:
    """waitress serving ``make_app(db, host, names)`` in a daemon
    thread."""

    def __init__(self, db, host, port, names=()):
        import waitress.server
        self.server = waitress.server.create_server(
            make_app(db, host, names), host=host, port=port, threads=2,
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
