"""Jobs: the rows of a task service's job table.

A job is changed only by its service (which keeps the status index and
the queues in step with it); from outside it is read-only.

Concurrency: a job object is written by the transaction that adds it, by
the claim that starts it, by the run that completes it and by cancel;
and, for chains, by the add of a job that waits for it and by the end of
a job it waits for (see dependencies.py).
Two of those at once are a real conflict (for example a cancel racing a
claim), and the ZODB reports it as one: nothing here resolves conflicts.
The lease of a running job is a separate persistent object so that the
worker can renew it while the run transaction holds the job; so are its
progress (progress.py) and its cancel request (cancelling.py), which
other short transactions write while the job runs.
"""
import copyreg
import datetime
import io
import math
import pickle
import time

import persistent
from ZODB.broken import find_global
from zope.interface import implementer
from zope.location.interfaces import IContained

from lovely.remotetask import cron
from lovely.remotetask import interfaces


UTC = datetime.timezone.utc
_MISSING = object()
#: The longest delay (of a delayed job, or a retry's backoff): a year.
MAX_DELAY = 366 * 24 * 3600

#: The attributes a job stores packed into one plain pickle (see
#: ``Job.__getstate__``): only what the service itself sets, of builtin
#: types, datetimes and ``history.Attempt`` records, never a persistent
#: object.  ``input``, ``output``, the lease, the cancel request and
#: anything else stay in the state as they are.
PACKED = frozenset((
    'id', 'task', 'status', 'created', 'started', 'completed', 'due',
    'attempts', 'claims', 'priority', 'worker', 'error', 'traceback',
    'maxRetries', 'retryDelay', 'addedBy', 'uniqueKey', 'runAnyway',
    'after', '_dependants', 'history', '_statusKey', '_sortKeys',
    '_heldBy', '_slot',
    # CronJob's schedule.
    'minute', 'hour', 'dayOfMonth', 'month', 'dayOfWeek', 'delay'))
#: The key of the packed attributes in a stored state.
_PACKED_KEY = '_packed'
#: Fixed, so that every Python 3 this package supports reads it.
_PACKED_PROTOCOL = 4


def _utc():
    """``datetime.timezone.utc``: how a packed state names it (the
    pickle's own way, by its offset, costs more than the rest of a job).
    Records name this function: it stays here."""
    return UTC


def _reduceTimezone(zone):
    return (_utc, ()) if zone is UTC else zone.__reduce__()


class _Packer(pickle.Pickler):

    dispatch_table = dict(copyreg.dispatch_table)
    dispatch_table[datetime.timezone] = _reduceTimezone


class _Unpacker(pickle.Unpickler):
    """Reads a packed state as the ZODB reads a record: classes through
    the database's class factory (a class gone reads as ``Broken``, a
    renamed one as its factory maps it)."""

    def __init__(self, data, jar):
        super().__init__(io.BytesIO(data))
        self.jar = jar

    def find_class(self, module, name):
        if self.jar is not None:
            return self.jar.db().classFactory(self.jar, module, name)
        return find_global(module, name)


def _pack(fields):
    out = io.BytesIO()
    _Packer(out, _PACKED_PROTOCOL).dump(fields)
    return out.getvalue()


def _isSeconds(value, maximum):
    """Is ``value`` a finite number of seconds in [0, maximum]?"""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value <= maximum)


@implementer(interfaces.IJob, IContained)
class Job(persistent.Persistent):
    """See IJob."""

    __parent__ = None
    input = None
    output = None
    error = None
    traceback = None
    started = None
    completed = None
    attempts = 0
    maxRetries = None
    retryDelay = None
    worker = None
    lease = None
    #: The id of the principal who added the job (see interaction.py).
    addedBy = None
    #: Held while the job has not ended (see uniqueness.py), or None.
    uniqueKey = None
    # What the job waits for and who waits for it (see dependencies.py).
    after = ()
    runAnyway = False
    # The jobs added to wait for this one, once settled (see
    # dependencies.py); ``dependants`` adds those still linked.
    _dependants = ()
    #: The last attempts, oldest first (see history.py).
    history = ()
    #: The request to cancel the running attempt (see cancelling.py): a
    #: persistent object of its own, made by the first cancel.
    cancelRequest = None
    #: Claims of the job so far (never reset): which attempt a progress
    #: report belongs to (see progress.py).
    claims = 0
    #: Unused since generation 8 (reports live in the service's map, see
    #: progress.py); records of older claims may still hold one.
    progress = None
    # When the job is due, for jobs in the schedule (delayed, cron,
    # retry backoff); an aware UTC datetime.
    due = None
    # The job's key in its service's status index (see service.py).
    _statusKey = None
    #: 0 (lowest) to 9 (highest), see priorities.py.
    priority = 5
    # The task whose limits hold the queued job back (it waits in the
    # task's gate), or None; see tasklimits.py.
    _heldBy = None
    # The task whose concurrency cap counts the running job, or None.
    _slot = None
    # A finished job's keys in the sort indexes (see sorting.py).
    _sortKeys = None

    def __init__(self, id, task, input=None, status=interfaces.QUEUED,
                 created=None, maxRetries=None, retryDelay=None,
                 priority=5):
        if priority != 5:
            self.priority = priority
        self.id = id
        self.task = task
        self.input = input
        self.status = status
        self.created = created or datetime.datetime.now(UTC)
        self.maxRetries = maxRetries
        self.retryDelay = retryDelay

    def __getstate__(self):
        # A job is pickled at its add, its claim and its end, and the
        # ZODB's pickler calls its Python hook (``persistent_id``) for
        # every object of a state (each datetime is a dozen of them):
        # the attributes of PACKED go into one plain pickle, made in C
        # at once, which that hook sees as one bytes object.  Attributes
        # at their class default (None, False) are not stored at all.
        cls = type(self)
        state = {}
        packed = {}
        for name, value in super().__getstate__().items():
            if (value is None or value is False) \
                    and getattr(cls, name, _MISSING) is value:
                continue
            if name in PACKED:
                packed[name] = value
            else:
                state[name] = value
        state[_PACKED_KEY] = _pack(packed)
        return state

    def __setstate__(self, state):
        # Records stored before the packing (generation 9 and older)
        # have no packed part: they read as they are.
        packed = state.get(_PACKED_KEY)
        if packed is not None:
            rest = dict(state)
            del rest[_PACKED_KEY]
            state = _Unpacker(packed, self._p_jar).load()
            # Attributes stored plain win: a release before the packing
            # that changed this job wrote them (and the packed part it
            # read as an attribute) back.
            state.update(rest)
        super().__setstate__(state)

    @property
    def __name__(self):
        return str(self.id)

    @property
    def dependants(self):
        """The ids of the jobs added to wait for this one."""
        # A late import: dependencies.py imports this module.
        from lovely.remotetask import dependencies
        return dependencies.dependants(self)

    @property
    def waitingFor(self):
        """The ids of the jobs this waiting job still waits for."""
        from lovely.remotetask import dependencies
        return dependencies.waitingFor(self)

    @property
    def leaseExpires(self):
        return None if self.lease is None else self.lease.expires

    def __repr__(self):
        return f'<{self.__class__.__name__} {self.id} {self.task!r} ' \
               f'{self.status!r}>'


@implementer(interfaces.ICronJob)
class CronJob(Job):
    """See ICronJob."""

    minute = hour = dayOfMonth = month = dayOfWeek = ()
    delay = None

    def __init__(self, id, task, input=None, minute=(), hour=(),
                 dayOfMonth=(), month=(), dayOfWeek=(), delay=None,
                 created=None):
        super().__init__(id, task, input, created=created,
                         status=(interfaces.CRONJOB if delay is None
                                 else interfaces.DELAYED))
        self.update(minute, hour, dayOfMonth, month, dayOfWeek, delay)

    def update(self, minute=(), hour=(), dayOfMonth=(), month=(),
               dayOfWeek=(), delay=None):
        """See ICronJob."""
        if self.status == interfaces.PROCESSING:
            # The run's commit would conflict with this change and run the
            # task again for the same due time.
            raise interfaces.InvalidSchedule(
                'The job is running: change its schedule when the run ends')
        if delay == 0 and not isinstance(delay, bool):
            delay = None  # as in 0.5.2: no delay, a cron job
        if delay is not None and not _isSeconds(delay, MAX_DELAY):
            raise interfaces.InvalidSchedule(
                f'delay: expected seconds from 0 to {MAX_DELAY}, '
                f'got {delay!r}')
        fields = cron.normalizeSchedule(minute, hour, dayOfMonth, month,
                                        dayOfWeek)
        for name, value in fields.items():
            setattr(self, name, value)
        self.delay = delay

    @property
    def schedule(self):
        return {name: getattr(self, name) for name, _, _ in cron.RANGES}

    @property
    def scheduledFor(self):
        return self.due

    def nextRun(self, after):
        """The next due time strictly after ``after`` (an aware datetime)."""
        return cron.nextRun(self.schedule, after)

    # -- 0.5.2 names ----------------------------------------------------------

    def timeOfNextCall(self, now=None):
        """0.5.2: the next call after ``now`` (seconds since the epoch,
        default the current time), as seconds since the epoch; with a
        delay, ``now`` plus the delay.  Write ``nextRun(after)`` instead
        (datetimes)."""
        from lovely.remotetask.compat import deprecated
        deprecated('CronJob.timeOfNextCall(now)', 'CronJob.nextRun(after)')
        if now is None:
            now = time.time()
        if self.delay is not None:
            return int(now + self.delay)
        after = datetime.datetime.fromtimestamp(now, UTC)
        due = self.nextRun(after)
        return None if due is None else int(due.timestamp())


class Lease(persistent.Persistent):
    """Who runs a job (or the group of jobs claimed with it), and until when.

    The jobs of a group share one lease: they are claimed, renewed and,
    should their worker die, taken back together.  Kept apart from the
    job: the worker renews it (in its own short
    transactions) while the run transaction holds the job, and the two
    never write the same object.  A processor that takes a lost job back
    writes the lease too, so that a late renewal conflicts with it instead
    of silently reviving the lease.
    """

    def __init__(self, worker, expires):
        self.worker = worker
        self.expires = expires
        self.revoked = False

    def __repr__(self):
        return f'<Lease {self.worker!r} until {self.expires}>'
