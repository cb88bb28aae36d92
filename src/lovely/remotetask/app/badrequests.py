"""Requests the publisher cannot serve are answered 400 or 405, not 500.

Two WSGI guards (see ``wsgi.protect``):

- ``MethodGuard``: methods other than GET, HEAD and POST are answered
  405 Method Not Allowed (with ``Allow``).  The ZMI and the XML-RPC API
  need no other; the publisher's OPTIONS, PUT and DELETE views of the
  Zope Toolkit answered 500 or changed content outside of the ZMI's
  guards.

- ``ConversionGuard``: a form field whose name asks for a conversion its
  value does not pass (``?x:int=abc``, in the query or a urlencoded
  body) is answered 400 Bad Request.  The publisher converted it before
  anything else and answered 500, with a traceback logged twice.

Each refusal is logged once, at INFO, without a traceback.
"""
import io
import logging
from urllib.parse import parse_qsl

from zope.publisher.browser import get_converter

from lovely.remotetask.app.guards import answer
from lovely.remotetask.app.logsafe import loggable


logger = logging.getLogger('lovely.remotetask.app')

ALLOWED_METHODS = ('GET', 'HEAD', 'POST')
URLENCODED = 'application/x-www-form-urlencoded'


def bad_conversion(query):
    """The first ``name``, message of a field whose conversion fails.

    >>> bad_conversion('x:int=abc&y=1')
    ('x:int', "An integer was expected in the value 'abc'")
    >>> bad_conversion('x:int=1&ids:list=a&d:float=1.5&t:tokens=a b')
    """
    for name, value in parse_qsl(query, keep_blank_values=True):
        for suffix in name.split(':')[1:]:
            converter = get_converter(suffix)
            if converter is None:
                continue
            try:
                converter(value)
            except (ValueError, TypeError) as e:
                return name, str(e)
    return None


def form_body(environ):
    """The urlencoded body of a POST as text, read and put back; ''."""
    kind = environ.get('CONTENT_TYPE', '').split(';')[0].strip().lower()
    length = (environ.get('CONTENT_LENGTH') or '0').strip()
    if kind != URLENCODED or not length.isdigit() or not int(length):
        return ''
    body = environ['wsgi.input'].read(int(length))
    environ['wsgi.input'] = io.BytesIO(body)
    return body.decode('latin-1')


class MethodGuard:
    """405 for methods other than ``ALLOWED_METHODS``."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        method = environ.get('REQUEST_METHOD', 'GET')
        if method in ALLOWED_METHODS:
            return self.application(environ, start_response)
        log(environ, 'method not allowed')
        return answer(start_response, '405 Method Not Allowed',
                      'Method Not Allowed\n',
                      [('Allow', ', '.join(ALLOWED_METHODS))])


class ConversionGuard:
    """400 for a form field that fails its conversion.  After the
    authentication guard: it reads the body of a POST."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        bad = bad_conversion(environ.get('QUERY_STRING', ''))
        if bad is None and environ.get('REQUEST_METHOD') == 'POST':
            bad = bad_conversion(form_body(environ))
        if bad is None:
            return self.application(environ, start_response)
        name, message = bad
        log(environ, f'{name}: {message}')
        return answer(start_response, '400 Bad Request',
                      f'Bad Request: {name}: {message}\n')


def log(environ, reason):
    logger.info('Refused %s %s: %s',
                loggable(environ.get('REQUEST_METHOD', '')),
                loggable(environ.get('PATH_INFO', '')), loggable(reason))
