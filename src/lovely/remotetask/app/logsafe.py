"""One record, one line: control characters in log messages are escaped.

A request's path, login or headers are chosen by whoever sends it.
Logged as received, ``POST /x%0a2030-01-01T00:00:00 CRITICAL [...]
FORGED`` wrote a forged line into the log.  The guards escape what they
log (``loggable``); ``install`` adds ``EscapeControlCharacters`` to the
handlers of the log configured by zope.conf, for every message, the
Zope Toolkit's included (``SiteError`` logs the URL of a request).
Tracebacks keep their lines: only the message is escaped.

The command line tool prints job data (task names, errors, tracebacks)
that whoever adds a job chooses: ``printable`` escapes what a terminal
would obey (``\\x1b[2J`` clears the screen, ``\\r`` writes over a line).
"""
import logging
import re


#: Control characters (C0 and C1, but newline and tab), DEL, the line
#: and paragraph separators, the bidirectional overrides and isolates
#: (which reorder what a terminal shows: "Trojan Source"), and lone
#: surrogates (which no UTF-8 terminal or log file can take).
CONTROL_IN_LINES = re.compile(
    r'[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069'
    r'\ud800-\udfff]')
#: And newline and tab.
CONTROL = re.compile(CONTROL_IN_LINES.pattern + r'|[\n\t]')


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


def printable(text, lines=False):
    """``text`` safe to print to a terminal: control characters escaped
    as in Python (``\\x1b``, ``\\r``, ``\\u2028``), newlines and tabs
    too unless ``lines`` (a traceback keeps its lines).

    >>> print(printable('evil\\x1b[2J\\rgood\\n\\tnext'))
    evil\\x1b[2J\\rgood\\n\\tnext
    >>> printable('Traceback:\\n\\tline\\x9b1m', lines=True)
    'Traceback:\\n\\tline\\\\x9b1m'
    >>> printable('invoice \u202etxt.exe')
    'invoice \\\\u202etxt.exe'
    >>> print(printable('key \\ud800'))
    key \\ud800
    >>> printable(None), printable(42)
    ('None', '42')
    """
    return (CONTROL_IN_LINES if lines else CONTROL).sub(_escape, str(text))


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
