"""Results with a lifetime: the processors remove old finished jobs.

A service keeps its completed and failed (``error``) jobs for as long
as ``keepCompleted`` and ``keepFailed`` say, and a task may say
otherwise for its own jobs (the task utility's attributes of the same
names, overridden per service on the Limits tab; see tasklimits.py).
Each is None (keep them all), a count (keep the newest N) or a time
(keep those that finished within it: a ``timedelta``, or text such as
``'90s'``, ``'30m'``, ``'12h'``, ``'7d'``, ``'2w'``):

    >>> parseRetention('100')
    100
    >>> parseRetention('7d')
    datetime.timedelta(days=7)
    >>> formatRetention(parseRetention('36h'))
    '36h'
    >>> parseRetention('soon')
    Traceback (most recent call last):
    ...
    ValueError: keepCompleted must be a count (100) or a time (90s, 30m,
    12h, 7d, 2w), not 'soon'

A task's own setting applies to its jobs; the service's to the jobs of
the tasks without one.

Every processor applies them in the background (``applyRetention``,
from its claim step every ``retentionInterval`` seconds when a claim
finds nothing, every two intervals while it is busy, sooner while there
is more to remove): at most ``BATCH`` jobs per transaction of
their own, with the removal machinery of ``clean`` (jobtable's
``_remove``), so a removal is audited as a clean (by no principal,
detail ``completed (retention)``).  A conflict (two processors removing
the same jobs, or a completion landing in the bucket being emptied)
aborts that batch only; the next one tries again.  No operator's cron
job is needed to keep the table from growing forever.

Cost: the oldest jobs of a status are its index's first keys, so a
service-wide setting costs the jobs it removes.  A task's setting (and
the service's, when some tasks have their own) tests each older job of
the status for membership in the task's id set (no job is loaded); a
count of one task's jobs counts them so.
"""
import datetime
import itertools
import re

from lovely.remotetask import tasklimits
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import MAX_COUNT
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import timeKeys


#: Jobs removed per transaction.
BATCH = 500
#: The setting of each status.
SETTING = {COMPLETED: 'keepCompleted', ERROR: 'keepFailed'}
UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 7 * 86400}
_TIME = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$')


def parseRetention(value, name='keepCompleted'):
    """None, a count (int) or a time (timedelta); ``ValueError`` else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime.timedelta) and value.total_seconds() > 0:
        return value
    count = None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        count = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            count = int(text)
        match = _TIME.match(text)
        if match and float(match.group(1)) > 0:
            try:
                return datetime.timedelta(
                    seconds=float(match.group(1)) * UNITS[match.group(2)])
            except OverflowError:
                pass   # longer than a timedelta: refused below
    if count is not None:
        if count > MAX_COUNT:
            raise ValueError(f'{name} must be a count from 0 to '
                             f'{MAX_COUNT} or a time (90s, 30m, 12h, 7d, '
                             f'2w), not {value!r}')
        return count
    raise ValueError(f'{name} must be a count (100) or a time (90s, 30m, '
                     f'12h, 7d, 2w), not {value!r}')


def formatRetention(value):
    """A setting as the text ``parseRetention`` reads; '' for None."""
    if value is None:
        return ''
    if isinstance(value, int):
        return str(value)
    seconds = value.total_seconds()
    for unit in 'dhm':
        if seconds % UNITS[unit] == 0:
            return f'{seconds // UNITS[unit]:.0f}{unit}'
    return f'{seconds:g}s'


def policies(service, status):
    """The service's setting for ``status`` and ``{task: setting}`` of the
    tasks with their own."""
    setting = SETTING[status]
    own = {}
    names = set(tasklimits.taskDefaults(service)) \
        | set(service._taskSettings.keys())
    for task in names:
        value = tasklimits.limitsOf(service, task)[setting]
        if value is not None:
            own[task] = value
    return getattr(service, setting), own


def expiredKeys(service, status, now, limit=BATCH):
    """Index keys of up to ``limit`` jobs in ``status`` to remove."""
    default, own = policies(service, status)
    keys = []
    for task, policy in [(None, default)] + sorted(own.items()):
        if len(keys) >= limit:
            break
        if policy is not None:
            keys.extend(_expired(service, status, task, own, policy, now,
                                 limit - len(keys)))
    return keys


def _expired(service, status, task, own, policy, now, limit):
    """The keys beyond ``policy`` of the jobs of ``task`` (None: of the
    tasks without their own setting), the oldest first."""
    if task is None:
        others = [ids for ids in map(service._byTask.get, own)
                  if ids is not None]

        def mine(jobid):
            return not any(jobid in ids for ids in others)

        def count():
            return service.countJobs(status) - sum(
                service.countJobs(status, other) for other in own)
    else:
        ids = service._byTask.get(task)
        if ids is None:
            return []

        def mine(jobid):
            return jobid in ids

        def count():
            return service.countJobs(status, task)
    index = service._index[status]
    if isinstance(policy, int):
        surplus = count() - policy
        if surplus <= 0:
            return []
        keys = timeKeys(index)
        limit = min(limit, surplus)
    else:
        cutoff = int((now - policy).timestamp())
        # The keys of the seconds before the cutoff's.
        keys = timeKeys(index, max=(cutoff << 31) - 1)
    if task is None and not own:
        return list(itertools.islice(keys, limit))
    return list(itertools.islice(
        (key for key in keys if mine(keyId(key))), limit))


def applyRetention(service, now, limit=BATCH):
    """Remove up to ``limit`` jobs beyond the settings; return how many."""
    from lovely.remotetask import audit
    removed = 0
    for status in (COMPLETED, ERROR):
        keys = expiredKeys(service, status, now, limit - removed)
        if keys:
            ids = service._remove(status, keys=keys)
            audit.record(service, 'clean', ids.keys(), len(ids),
                         principal=None, detail=f'{status} (retention)')
            removed += len(ids)
    return removed
