"""Credentials are checked before a request body is read, and failed
logins are slowed down.

``Authenticate`` is a WSGI guard (see ``wsgi.protect``).  The publisher
of the Zope Toolkit parses a request's body (a form, an XML-RPC call)
before it authenticates the request: an anonymous client could make it
parse anything, and a wrong password was never noticed as such.  So,
before the publisher:

- A request without credentials that carries a body or is not a GET or
  HEAD is answered 401 (an XML-RPC client sees ``ProtocolError`` 401).
  Anonymous GETs go on: the publisher answers them 401 as before, except
  for the public resources (style sheets, scripts, images).

- Credentials are checked against the principals of the site ZCML (the
  global principal registry, where the administrator and the users of
  ``site.zcml`` are): a wrong login or password is answered 401 and
  logged, without the password.  The right login goes on in the
  environ (``csrf.LOGIN``) for the form tokens.

- Failed logins are counted per login and per client address
  (``LoginThrottle``).  Past a few failures the next attempt must wait,
  longer after each further failure (up to ``MAX_WAIT`` seconds); until
  then an attempt is answered 429 Too Many Requests with a
  ``Retry-After``, whatever its password.  A successful login forgets the
  failures of its login and address.
"""
import base64
import binascii
import logging
import tempfile
import threading
import time

from lovely.remotetask.app.csrf import LOGIN
from lovely.remotetask.app.guards import answer
from lovely.remotetask.app.logsafe import loggable


logger = logging.getLogger('lovely.remotetask.app')

#: Requests without a body that an anonymous client may send on.
ANONYMOUS_METHODS = ('GET', 'HEAD')
REALM = 'Zope'


def basic_credentials(environ):
    """``(login, password)`` of a Basic ``Authorization`` header, else
    None.  (``RejectMalformedCredentials`` already refused the ones that
    are not base64 of UTF-8 ``login:password``.)"""
    header = environ.get('HTTP_AUTHORIZATION', '')
    if not header.lower().startswith('basic '):
        return None
    try:
        decoded = base64.b64decode(
            header.split(None, 1)[-1].encode('iso-8859-1')).decode('utf-8')
    except (binascii.Error, UnicodeError):
        return None
    login, sep, password = decoded.partition(':')
    return (login, password) if sep else None


def has_body(environ):
    if environ.get('HTTP_TRANSFER_ENCODING'):
        return True
    length = environ.get('CONTENT_LENGTH') or '0'
    return not length.strip().isdigit() or int(length) > 0


def check_password(login, password):
    """True if a principal of the global registry has this login and
    password (compared by its password manager: SSHA in constant time)."""
    from zope.principalregistry.principalregistry import principalRegistry
    try:
        principal = principalRegistry.getPrincipalByLogin(login)
    except KeyError:
        return False
    return bool(principal.validate(password))


class LoginThrottle:
    """Failed logins per login from one client address, and per address.

    ``FREE`` failures of a key are free; after ``n`` more, the next
    attempt waits ``2 ** n`` seconds after the last failure, at most
    ``MAX_WAIT``.  Keys idle for ``FORGET`` seconds are forgotten; at
    most ``MAX_KEYS`` are kept (the least recently failed go first).
    Thread-safe.

    A login is counted per address, never alone: failures from elsewhere
    cannot lock its owner out (a guesser spread over many addresses is
    slowed per address only).
    """

    FREE = {'login': 10, 'address': 5}
    MAX_WAIT = 60.0
    FORGET = 900.0
    MAX_KEYS = 10000

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._failures = {}  # (kind, value) -> (count, time of the last)
        self._lock = threading.Lock()

    def _keys(self, login, address):
        return (('login', (login, address)), ('address', address))

    def wait(self, login, address):
        """Seconds an attempt of ``login`` from ``address`` must wait."""
        now = self.clock()
        longest = 0.0
        with self._lock:
            for key in self._keys(login, address):
                count, last = self._failures.get(key, (0, now))
                excess = count - self.FREE[key[0]]
                if excess <= 0:
                    continue
                delay = min(2.0 ** excess, self.MAX_WAIT)
                longest = max(longest, last + delay - now)
        return max(longest, 0.0)

    def failed(self, login, address):
        """Count a failure; the counts of the login and the address."""
        now = self.clock()
        counts = []
        with self._lock:
            for key in self._keys(login, address):
                count, last = self._failures.pop(key, (0, now))
                if now - last > self.FORGET:
                    count = 0
                self._failures[key] = (count + 1, now)
                counts.append(count + 1)
            while len(self._failures) > self.MAX_KEYS:
                del self._failures[next(iter(self._failures))]
        return tuple(counts)

    def succeeded(self, login, address):
        with self._lock:
            for key in self._keys(login, address):
                self._failures.pop(key, None)


class Authenticate:
    """The WSGI guard of this module."""

    def __init__(self, application, throttle=None, check=check_password):
        self.application = application
        self.throttle = LoginThrottle() if throttle is None else throttle
        self.check = check

    def __call__(self, environ, start_response):
        credentials = basic_credentials(environ)
        if credentials is None:
            if (environ.get('REQUEST_METHOD') not in ANONYMOUS_METHODS
                    or has_body(environ)):
                return self.unauthorized(start_response)
            return self.application(environ, start_response)
        login, password = credentials
        address = environ.get('REMOTE_ADDR', '')
        wait = self.throttle.wait(login, address)
        if wait > 0:
            logger.warning(
                'Login %s from %s refused: too many failed logins (next '
                'attempt in %.0f s)', loggable(repr(login)),
                loggable(address), wait)
            return answer(
                start_response, '429 Too Many Requests',
                'Too Many Requests: too many failed logins; try again '
                'later.\n', [('Retry-After', str(int(wait) + 1))])
        if self.check(login, password):
            self.throttle.succeeded(login, address)
            environ[LOGIN] = login
            return self.application(environ, start_response)
        for_login, for_address = self.throttle.failed(login, address)
        logger.warning(
            'Failed login %s from %s (%d failures of this login, %d from '
            'this address)', loggable(repr(login)), loggable(address),
            for_login, for_address)
        return self.unauthorized(start_response)

    def unauthorized(self, start_response):
        return answer(start_response, '401 Unauthorized',
                      'Unauthorized: log in.\n',
                      [('WWW-Authenticate', f'basic realm="{REALM}"')])


class BodyLimit:
    """413 for a request body larger than ``limit`` bytes: before it is
    read, by its ``Content-Length``.  A body without one (chunked, on
    servers that pass it on without a length) is read here first, into a
    temporary file, and refused as soon as it passes the limit."""

    def __init__(self, application, limit):
        self.application = application
        self.limit = limit

    def __call__(self, environ, start_response):
        length = (environ.get('CONTENT_LENGTH') or '').strip()
        if not length and environ.get('HTTP_TRANSFER_ENCODING'):
            length = self.spool(environ)
        length = length or '0'
        if not length.isdigit():
            return answer(start_response, '400 Bad Request',
                          'Bad Request: Content-Length is not a number.\n')
        if int(length) > self.limit:
            logger.info('Refused %s %s: a body of %s bytes (the limit is '
                        '%d, max-request-body)',
                        loggable(environ.get('REQUEST_METHOD', '')),
                        loggable(environ.get('PATH_INFO', '')), length,
                        self.limit)
            return answer(start_response, '413 Content Too Large',
                          f'Content Too Large: the limit is {self.limit} '
                          f'bytes.\n')
        return self.application(environ, start_response)

    def spool(self, environ, chunk=65536):
        """Read a body of unknown length, up to one byte past the limit;
        return its length (as text).  What was read replaces the input."""
        stream, spooled = environ['wsgi.input'], tempfile.SpooledTemporaryFile(
            max_size=1024 * 1024)
        size = 0
        while size <= self.limit:
            data = stream.read(min(chunk, self.limit + 1 - size))
            if not data:
                break
            spooled.write(data)
            size += len(data)
        spooled.seek(0)
        environ['wsgi.input'] = spooled
        environ['CONTENT_LENGTH'] = str(size)
        return str(size)
