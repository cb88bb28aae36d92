"""How large a job's input and output may be.

A job is one database record: its input, output, error and traceback
are loaded with it by every claim, completion and page.  A service takes
inputs and stores outputs of at most ``maxDataSize`` bytes, measured as
the ZODB stores them (pickled; persistent objects count as references);
None means no limit.  An input beyond it is refused when the job is
added (``DataTooLarge``, a ``ValueError``); an output beyond it fails the
job's run with a ``TaskError`` (not repeated: the same input would give
the same output), which says how large the output was.

    >>> pickledSize({'a': 1}) < 100
    True
    >>> class Service:
    ...     maxDataSize = 1000
    >>> checkInput(Service(), 'x' * 200)
    >>> checkInput(Service(), 'x' * 2000)
    Traceback (most recent call last):
    ...
    lovely.remotetask.interfaces.DataTooLarge: The input is 2,010 bytes
    (pickled), more than the 1,000 bytes the service takes (its
    maxDataSize)
"""
import io
import pickle

import persistent

from lovely.remotetask import interfaces


#: The default of a service's ``maxDataSize``: 1 MiB.
MAX_DATA_SIZE = 1024 * 1024

#: Values of these types are small enough without measuring them.
_SMALL = (type(None), bool, int, float, complex)


class _Counter(io.RawIOBase):
    """A stream that counts what is written to it, and keeps nothing."""

    size = 0

    def writable(self):
        return True

    def write(self, data):
        self.size += len(data)
        return len(data)


def pickledSize(value, what='value', error=ValueError):
    """The size of ``value`` as the ZODB stores it, in bytes.

    Raises ``error`` if it cannot be stored at all.
    """
    counter = _Counter()
    # The ZODB's protocol; persistent objects are stored by reference.
    pickler = pickle.Pickler(counter, 3)
    pickler.persistent_id = lambda obj: (
        1 if isinstance(obj, persistent.Persistent) else None)
    try:
        pickler.dump(value)
    except Exception as problem:
        name = problem.__class__.__name__
        message = f'{name}: {problem}' if str(problem) else name
        raise error(f'The {what} cannot be stored: {message}')
    return counter.size


def _surelySmall(value, limit):
    if isinstance(value, _SMALL):
        return True
    # At most 4 bytes a character (UTF-8), plus the pickle's framing.
    if isinstance(value, (str, bytes)):
        return len(value) * 4 + 64 <= limit
    return False


def _tooLarge(what, size, limit):
    return (f'The {what} is {size:,} bytes (pickled), more than the '
            f'{limit:,} bytes the service takes (its maxDataSize)')


def checkInput(service, input):
    """For ``add``: ``DataTooLarge`` for an input beyond the limit (and
    ``ValueError`` for one that cannot be stored)."""
    limit = service.maxDataSize
    if limit is not None and not _surelySmall(input, limit):
        size = pickledSize(input, 'input')
        if size > limit:
            raise interfaces.DataTooLarge(_tooLarge('input', size, limit))


def checkOutput(service, output):
    """For a completed run: ``TaskError`` for an output that cannot be
    stored, or is beyond the limit."""
    limit = service.maxDataSize
    if limit is not None and _surelySmall(output, limit):
        return
    size = pickledSize(output, 'output', interfaces.TaskError)
    if limit is not None and size > limit:
        raise interfaces.TaskError(_tooLarge('output', size, limit))
