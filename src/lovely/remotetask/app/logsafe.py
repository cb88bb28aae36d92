"""One record, one line: control characters in log messages are escaped.

A request's path, login or headers are chosen by whoever sends it.
Logged as received, ``POST /x%0a2030-01-01T00:00:00 CRITICAL [...]
FORGED`` wrote a forged line into the log.  The guards escape what they
log (``loggable``); ``install`` adds ``EscapeControlCharacters`` to the
handlers of the log configured by zope.conf, for every message, the
Zope Toolkit's included (``SiteError`` logs the URL of a request).
Tracebacks keep their lines: only the message is escaped.
"""
import logging
import re


CONTROL = re.compile(r'[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]|[\n\t]')


def _escape(match):
    char = match.group()
    if char in '\n\r\t':
        return repr(char)[1:-1]
    if ord(char) < 256:
        return '\\x%02x' % ord(char)
    return '\\u%04x' % ord(char)


def loggable(text, limit=500):
    """``text`` from a request, safe to log: control characters escaped,
    at most ``limit`` characters.

    >>> print(loggable('/x\\n2030-01-01 CRITICAL forged\\x1b[0m'))
    /x\\n2030-01-01 CRITICAL forged\\x1b[0m
    """
    if isinstance(text, bytes):
        text = text.decode('latin-1')
    text = CONTROL.sub(_escape, str(text))
    if len(text) > limit:
        text = text[:limit] + '...'
    return text


class EscapeControlCharacters(logging.Filter):
    """A handler filter: the message of a record on one line."""

    def filter(self, record):
        message = record.getMessage()
        escaped = CONTROL.sub(_escape, message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def install(loggers=None):
    """Add the filter to every handler of ``loggers`` (default: every
    logger there is)."""
    if loggers is None:
        loggers = [logging.getLogger()] + [
            logger for logger in logging.Logger.manager.loggerDict.values()
            if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, EscapeControlCharacters)
                       for f in handler.filters):
                handler.addFilter(EscapeControlCharacters())
