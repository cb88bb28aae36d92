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


def _escape(char):
    if char in '\n\r\t':
        return repr(char)[1:-1]
    code = ord(char)
    if code < 0x100:
        return '\\x%02x' % code
    if code < 0x10000:
        return '\\u%04x' % code
    return '\\U%08x' % code


def escape(text, lines=False):
    """``text`` with every character that is not printable
    (``str.isprintable``) escaped as in Python: control characters (C0,
    C1, DEL), format characters (the bidirectional marks, overrides and
    isolates, which reorder what a terminal shows: "Trojan Source";
    zero-width characters, U+FEFF, the soft hyphen, tag characters),
    the line and paragraph separators, lone surrogates (which no UTF-8
    terminal or log file can take), spaces other than the space, and
    unassigned and private characters.  Newlines and tabs are kept if
    ``lines``.

    >>> print(escape('a\\u200bb\\u200ec\\ufeffd\\xade\\U000e0041f\\ud800'))
    a\\u200bb\\u200ec\\ufeffd\\xade\\U000e0041f\\ud800
    >>> print(escape('caf\xe9 \u65e5\u672c \U0001f600 \\\\'))
    caf\xe9 \u65e5\u672c \U0001f600 \\
    """
    if text.isprintable():
        return text
    keep = '\n\t' if lines else ''
    return ''.join(char if char.isprintable() or char in keep
                   else _escape(char) for char in text)


def loggable(text, limit=500):
    """``text`` from a request, safe to log: what is not printable
    escaped (``escape``), at most ``limit`` characters.

    >>> print(loggable('/x\\n2030-01-01 CRITICAL forged\\x1b[0m'))
    /x\\n2030-01-01 CRITICAL forged\\x1b[0m
    """
    if isinstance(text, bytes):
        text = text.decode('latin-1')
    text = escape(str(text))
    if len(text) > limit:
        text = text[:limit] + '...'
    return text


def printable(text, lines=False):
    """``text`` safe to print to a terminal: what is not printable
    escaped as in Python (``\\x1b``, ``\\r``, ``\\u2028``, ``\\u200f``;
    see ``escape``), newlines and tabs too unless ``lines`` (a traceback
    keeps its lines).

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
    return escape(str(text), lines)


class EscapeControlCharacters(logging.Filter):
    """A handler filter: the message of a record on one line."""

    def filter(self, record):
        message = record.getMessage()
        escaped = escape(message)
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
