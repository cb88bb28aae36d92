"""Jobs, workers and dates as JSON, and the JSON the API takes.

What a task stores is arbitrary Python data; JSON has objects with
string keys, arrays, strings, numbers, true, false and null.  So
(``jsonable``): tuples, lists, sets and frozensets become arrays (sets
sorted by their items' repr, to be stable), dict keys strings
(``str(key)``), datetimes ISO 8601 strings (UTC when aware), ``bytes``
``{"base64": "..."}``, floats that JSON cannot write (infinity, NaN)
and anything else its ``repr()``.  Data nested deeper than ``MAX_DEPTH``
(or a structure that contains itself) raises ``TooDeep``.

    >>> import datetime
    >>> jsonable({1: (b'\\x00', {3, 2}), 'x': object})
    {'1': [{'base64': 'AA=='}, [2, 3]], 'x': "<class 'object'>"}
    >>> jsonable(datetime.datetime(2024, 2, 29, 12,
    ...                            tzinfo=datetime.timezone.utc))
    '2024-02-29T12:00:00Z'
"""
import base64
import datetime
import math

from zope.security.proxy import removeSecurityProxy

from lovely.remotetask import progress
from lovely.remotetask.interfaces import ICronJob


UTC = datetime.timezone.utc
#: Arrays and objects are nested at most this deep in what is sent.
MAX_DEPTH = 100


class TooDeep(ValueError):
    """Data nested deeper than ``MAX_DEPTH``."""


def isoformat(value):
    """An aware datetime as ISO 8601 in UTC (``...Z``); None stays None.

    >>> isoformat(datetime.datetime(2024, 1, 2, 3, 4, 5, 6,
    ...                             tzinfo=datetime.timezone.utc))
    '2024-01-02T03:04:05.000006Z'
    """
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + 'Z'


def parseDate(text):
    """An ISO 8601 date or time as an aware datetime (UTC if it names no
    time zone); ValueError if it is none.

    >>> parseDate('2024-02-29T12:00:00Z')
    datetime.datetime(2024, 2, 29, 12, 0, tzinfo=datetime.timezone.utc)
    >>> parseDate('2024-02-29')
    datetime.datetime(2024, 2, 29, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parseDate('yesterday')
    Traceback (most recent call last):
    ValueError: 'yesterday' is not an ISO 8601 date
    """
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f'{text!r} is not an ISO 8601 date') from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def jsonable(value, depth=0):
    """``value`` as data ``json.dumps`` writes (see the module)."""
    value = removeSecurityProxy(value)
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if depth >= MAX_DEPTH:
            raise TooDeep(f'nested deeper than {MAX_DEPTH} levels')
        depth += 1
        if isinstance(value, dict):
            return {str(key): jsonable(item, depth)
                    for key, item in value.items()}
        if isinstance(value, (set, frozenset)):
            value = sorted(value, key=repr)
        return [jsonable(item, depth) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return {'base64': base64.b64encode(bytes(value)).decode('ascii')}
    if isinstance(value, datetime.datetime):
        return isoformat(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return repr(value)


def safely(value):
    """``jsonable(value)``, or a note instead of data nested too deep."""
    try:
        return jsonable(value)
    except (TooDeep, RecursionError):
        return {'unreadable': f'nested deeper than {MAX_DEPTH} levels'}


#: What a listing tells about each job.
SUMMARY = ('id', 'task', 'status', 'addedBy', 'created', 'started',
           'completed', 'attempts', 'worker', 'error')
#: The schedule of a cron or delayed job.
SCHEDULE = ('minute', 'hour', 'dayOfMonth', 'month', 'dayOfWeek', 'delay',
            'scheduledFor')


def jobSummary(job):
    """A job of a listing: ``SUMMARY``, without input, output and
    traceback."""
    job = removeSecurityProxy(job)
    return {name: jsonable(getattr(job, name, None)) for name in SUMMARY}


def jobDetail(job):
    """Everything about one job: the summary, its input, output,
    traceback, retry settings, lease, the schedule of a cron job, its job
    control (``jobControl``), progress and attempts."""
    job = removeSecurityProxy(job)
    data = jobSummary(job)
    data.update(
        input=safely(job.input), output=safely(job.output),
        traceback=job.traceback, maxRetries=job.maxRetries,
        retryDelay=job.retryDelay,
        leaseExpires=isoformat(job.leaseExpires),
        cron=ICronJob.providedBy(job))
    if data['cron']:
        data['schedule'] = {name: jsonable(getattr(job, name, None))
                            for name in SCHEDULE}
    data.update(jobControl(job))
    data['progress'] = progressOf(job)
    data['history'] = [attempt(entry) for entry in job.history]
    return data


def jobControl(job):
    """What job control does to a job: ``priority``, ``uniqueKey``,
    ``after`` (the ids it waits or waited for), ``waitingFor`` (those
    that have not ended), ``runAnyway``, ``dependants`` (the ids of the
    jobs added to run after it) and ``heldBack`` (why the limits of its
    task hold the queued job back, or None)."""
    job = removeSecurityProxy(job)
    service = job.__parent__
    return {
        'priority': job.priority, 'uniqueKey': job.uniqueKey,
        'after': list(job.after), 'waitingFor': list(job.waitingFor),
        'runAnyway': bool(job.runAnyway),
        'dependants': list(job.dependants),
        'heldBack': None if service is None else service.heldBack(job.id),
    }


def progressOf(job):
    """The progress the job's task reported in its current (or last)
    attempt, ``{'fraction', 'message'}``, or None."""
    job = removeSecurityProxy(job)
    if job.__parent__ is None:
        return None
    report = progress.getProgress(job.__parent__, job)
    if report is None:
        return None
    return {'fraction': report['fraction'], 'message': report['message']}


def attempt(entry):
    """An attempt of a job's history (``history.Attempt``) as JSON.

    >>> from lovely.remotetask.history import Attempt
    >>> data = attempt(Attempt(1, None, datetime.datetime(
    ...     2024, 1, 2, tzinfo=datetime.timezone.utc), 'w1', 'failed', 'E'))
    >>> list(data)
    ['number', 'started', 'ended', 'worker', 'outcome', 'error']
    >>> data['started'], data['ended'], data['outcome'], data['error']
    (None, '2024-01-02T00:00:00Z', 'failed', 'E')
    """
    return {name: jsonable(value)
            for name, value in entry._asdict().items()}


def worker(data):
    """A worker of ``listWorkers`` as JSON."""
    return jsonable(data)
