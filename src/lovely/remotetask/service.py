"""The task service: the job table, its queues and its API.

Persistent structures and how they behave under concurrent transactions
(several web requests adding jobs, several processors claiming and
completing them, in one process or many):

``jobs`` (IOBTree: id -> job)
    Written by ``add`` (insert) and ``clean`` (delete) only; claims and
    completions write the job objects, not the tree.  Concurrent inserts
    merge (BTree buckets resolve conflicts).  Ids come in sequential runs
    from a random start per connection (like zope.intid), so concurrent
    adders write to different buckets; two connections picking the same id
    conflict on the bucket and one retries with a new id.

``_retired`` (IITreeSet)
    Ids of cleaned jobs, so that an id handed out (say over XML-RPC) never
    names another job later.

``_ready`` (a tuple of ReadyQueue, see readyqueue.py)
    Job ids to run now, as ``(enqueued, jobid)``.  A job goes to queue
    ``jobid % len(_ready)``.  Several queues let concurrent claimers start
    at different places (see ``claim``).  Cancel does not search them:
    claims skip items whose job is no longer ``queued``.

Time sets (``_schedule`` and the status index)
    ``TimeSet`` (an ``LLTreeSet`` with buckets of 500 keys) keyed
    ``second << 31 | jobid``: ordered by time, then id.  BTrees merge
    concurrent inserts and deletes of different keys, except a change
    that empties a bucket (the bucket is unlinked from its
    tree, which conflicts with an insert into it).  So every time set holds
    two sentinels that are never removed, the lowest and the highest
    possible key: the first and the last bucket never empty.  BTrees also
    refuse to merge the deletion of a bucket's first key with any other
    change to that bucket; in a one-bucket set the first key is the low
    sentinel, so there every add and claim merges.  A burst splits a set
    into several buckets, which BTrees never join again: then claims
    delete first keys of the bucket adds write to, and the second of two
    concurrent commits conflicts (and is retried).  So an idle processor
    calls ``compact``, which puts a set that has become small back into
    one bucket.

``_schedule`` (time set)
    Jobs due later (delayed and cron jobs, retries with backoff), keyed by
    their due time: the smallest key is the next due job.

``_index`` (dict: status -> time set) and ``_counts`` (dict: status ->
BTrees.Length)
    The status index the management UI counts, filters and pages with,
    without loading jobs, keyed by the time the job entered the status
    (``job._statusKey``).  The dicts never change after creation, so they
    are never rewritten.  ``Length`` merges any concurrent changes.

``_byTask`` (OOBTree: task name -> IITreeSet of ids, with the sentinel -1)
and ``_taskCounts`` (OOBTree: task name -> BTrees.Length)
    The task filter of the UI; written by adds and cleans only.  Filtering
    by task and status together walks the status's keys and tests each id
    for membership in the task's set: no job is loaded.

``_audit`` (audit.AuditLog)
    Who cancelled, cleaned, started and stopped: see audit.py.
"""
import datetime
import io
import itertools
import logging
import math
import pickle
import random
import traceback as tb_module
import types

import persistent
import transaction
import zope.component
from BTrees.IIBTree import IITreeSet
from BTrees.IIBTree import intersection
from BTrees.IOBTree import IOBTree
from BTrees.Length import Length
from BTrees.LLBTree import LLTreeSet
from BTrees.OOBTree import OOBTree
from zope.container.contained import Contained
from zope.interface import implementer
from zope.component.interfaces import ISite

from lovely.remotetask import audit
from lovely.remotetask import interfaces
from lovely.remotetask import limits
from lovely.remotetask import processor
from lovely.remotetask.interaction import currentPrincipalId
from lovely.remotetask.interaction import runningAs
from lovely.remotetask.interfaces import CANCELLABLE
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import DELAYED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import REMOVABLE
from lovely.remotetask.interfaces import STARTLATER
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.job import CronJob
from lovely.remotetask.job import Job
from lovely.remotetask.job import Lease
from lovely.remotetask.job import MAX_DELAY
from lovely.remotetask.job import _isSeconds
from lovely.remotetask.readyqueue import ReadyQueue


log = logging.getLogger('lovely.remotetask')

UTC = datetime.timezone.utc
MAXID = 2 ** 31          # job ids are XML-RPC ints: below 2**31
_SENTINEL = -1           # in every id set, so that its buckets never empty
_LOW, _HIGH = 0, 2 ** 63 - 1   # in every time set (see the module doc)
UNKNOWN_TASK_DELAY = 10.0   # seconds before repeating a job of an unknown task
#: A failure of these is not repeated: the task says a repeat cannot help.
NOT_REPEATED = (interfaces.TaskError, interfaces.TransactionEnded)


def _now(now=None):
    """``now`` as an aware UTC datetime.

    Accepts None (the current time), an aware datetime, or seconds since
    the epoch (as the original package's ``time.time()`` values).
    """
    if now is None:
        return datetime.datetime.now(UTC)
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            raise ValueError(f'now must be timezone-aware, got {now!r}')
        return now.astimezone(UTC)
    return datetime.datetime.fromtimestamp(now, UTC)


def _micros(when):
    return int(when.timestamp() * 1000000)


def _timeKey(when, jobid):
    return (math.floor(when.timestamp()) << 31) | jobid


def _jobid(key):
    return key & (MAXID - 1)


class TimeSet(LLTreeSet):
    """A time set (see the module doc) with buckets of up to 500 keys.

    Bigger buckets than BTrees' default (120) split less often (a split
    conflicts with every concurrent change to the bucket) and keep a set
    of up to 500 jobs in one bucket, where every add and claim merges.
    """
    max_leaf_size = 500
    max_internal_size = 500


def _newTimeSet():
    keys = TimeSet()
    keys.update((_LOW, _HIGH))
    return keys


def _timeKeys(timeset):
    """The keys of a time set, without its sentinels."""
    return timeset.keys(_LOW + 1, _HIGH - 1)


def _spread(timeset):
    """Does the set have more than one bucket?"""
    state = timeset.__getstate__()
    return state is not None and len(state) == 2


def _buckets(tree):
    """The buckets of a BTree set that spans several buckets."""
    bucket = tree._firstbucket
    while bucket is not None:
        yield bucket
        bucket = bucket._next


def _timeIds(timeset):
    """The job ids of a time set, in time order."""
    return (_jobid(key) for key in _timeKeys(timeset))


def _newIdSet():
    ids = IITreeSet()
    ids.add(_SENTINEL)
    return ids


def _ids(idset):
    """The job ids of an id set, without its sentinel."""
    return idset.keys(min=1)


def checkJobId(jobid):
    """The job id as an int; ``InvalidJobId`` for anything else."""
    if isinstance(jobid, bool) or not isinstance(jobid, int) \
            or not 0 < jobid < MAXID:
        raise interfaces.InvalidJobId(jobid)
    return jobid


def formatError(error):
    """The one-line message stored for an exception.

    ``TaskError`` is an expected failure: its message alone.  Anything else
    gets its class name too.
    """
    name = error.__class__.__name__
    if isinstance(error, interfaces.TaskError):
        return str(error) or name
    message = str(error)
    return f'{name}: {message}' if message else name


def checkStorable(output):
    """Raise ``TaskError`` if ``output`` cannot be stored in the ZODB.

    Found now, this is a failure of the task; found at commit, it would be
    a failed commit repeated with every retry.
    """
    pickler = pickle.Pickler(io.BytesIO(), 3)
    # Persistent objects are stored by reference, as the ZODB does.
    pickler.persistent_id = lambda obj: (
        1 if isinstance(obj, persistent.Persistent) else None)
    try:
        pickler.dump(output)
    except Exception as error:
        raise interfaces.TaskError(
            f'The output cannot be stored: {formatError(error)}')


@implementer(interfaces.ITaskService)
class TaskService(Contained, persistent.Persistent):
    """See ITaskService."""

    taskInterface = interfaces.ITask
    processorFactory = processor.SimpleProcessor
    # Read-only: assign a new dict to a service to change its arguments.
    processorArguments = types.MappingProxyType({'waitTime': 1.0})
    maxRetries = 3
    retryDelay = 0.0
    maxConflictRetries = 5
    leaseTime = 60.0
    maxDataSize = limits.MAX_DATA_SIZE

    _v_nextid = None

    def __init__(self, partitions=4):
        super().__init__()
        self.jobs = IOBTree()
        self._retired = IITreeSet()
        self._ready = tuple(ReadyQueue() for i in range(partitions))
        self._schedule = _newTimeSet()
        self._index = {status: _newTimeSet() for status in STATUSES}
        self._counts = {status: Length() for status in STATUSES}
        self._byTask = OOBTree()
        self._taskCounts = OOBTree()
        self._audit = audit.AuditLog()

    # -- the job table -------------------------------------------------------

    def __getitem__(self, name):
        """The job named by a decimal id (for traversal: SERVICE/JOBID)."""
        try:
            jobid = int(name)
        except (TypeError, ValueError):
            raise KeyError(name)
        return self.jobs[jobid]

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def _job(self, jobid):
        job = self.jobs.get(checkJobId(jobid))
        if job is None:
            raise interfaces.NoSuchJob(jobid)
        return job

    def _newId(self):
        while True:
            if self._v_nextid is None:
                self._v_nextid = random.randrange(1, MAXID)
            jobid = self._v_nextid
            self._v_nextid = jobid + 1 if jobid + 1 < MAXID else None
            if jobid not in self.jobs and jobid not in self._retired:
                return jobid
            self._v_nextid = None

    def _setStatus(self, job, status):
        old = job.status
        if old == status:
            return
        if old is not None:
            self._index[old].remove(job._statusKey)
            self._counts[old].change(-1)
        job._statusKey = _timeKey(_now(), job.id)
        self._index[status].add(job._statusKey)
        self._counts[status].change(1)
        job.status = status

    def _insert(self, job):
        status, job.status = job.status, None
        job.__parent__ = self
        job.addedBy = currentPrincipalId()
        self.jobs[job.id] = job
        self._setStatus(job, status)
        byTask = self._byTask.get(job.task)
        if byTask is None:
            byTask = self._byTask[job.task] = _newIdSet()
            self._taskCounts[job.task] = Length()
        byTask.add(job.id)
        self._taskCounts[job.task].change(1)

    # -- tasks ---------------------------------------------------------------

    def _siteManager(self):
        try:
            return zope.component.getSiteManager(self)
        except zope.component.ComponentLookupError:
            return zope.component.getSiteManager()

    def getAvailableTasks(self):
        """See ITaskServiceRead."""
        return dict(self._siteManager().getUtilitiesFor(self.taskInterface))

    def _getTask(self, name):
        task = self._siteManager().queryUtility(self.taskInterface, name)
        if task is None:
            raise interfaces.UnknownTask(name)
        return task

    # -- adding --------------------------------------------------------------

    def add(self, task, input=None, startLater=False, *, maxRetries=None,
            retryDelay=None):
        """See ITaskServiceManage."""
        self._getTask(task)
        limits.checkInput(self, input)
        if maxRetries is not None and (
                isinstance(maxRetries, bool) or not isinstance(maxRetries, int)
                or maxRetries < 0):
            raise ValueError(f'maxRetries must be an int >= 0, '
                             f'not {maxRetries!r}')
        if retryDelay is not None and not _isSeconds(retryDelay, MAX_DELAY):
            raise ValueError(f'retryDelay must be seconds from 0 to '
                             f'{MAX_DELAY}, not {retryDelay!r}')
        job = Job(self._newId(), task, input,
                  status=STARTLATER if startLater else QUEUED,
                  maxRetries=maxRetries, retryDelay=retryDelay)
        self._insert(job)
        if not startLater:
            self._enqueue(job, job.created)
        return job.id

    def addCronJob(self, task, input=None, minute=(), hour=(), dayOfMonth=(),
                   month=(), dayOfWeek=(), delay=None):
        """See ITaskServiceManage."""
        self._getTask(task)
        limits.checkInput(self, input)
        job = CronJob(self._newId(), task, input, minute, hour, dayOfMonth,
                      month, dayOfWeek, delay)
        self._insert(job)
        self._scheduleNext(job, job.created)
        return job.id

    def startJob(self, jobid):
        """See ITaskServiceManage."""
        job = self._job(jobid)
        if job.status != STARTLATER:
            return False
        self._setStatus(job, QUEUED)
        self._enqueue(job)
        return True

    def _enqueue(self, job, now=None):
        now = _now(now)
        self._ready[job.id % len(self._ready)].put((_micros(now), job.id))
        processor.wakeAfterCommit(self)

    def _scheduleAt(self, job, due):
        self._unschedule(job)
        job.due = due
        self._schedule.add(_timeKey(due, job.id))
        processor.wakeAfterCommit(self)

    def _unschedule(self, job):
        if job.due is not None:
            self._schedule.discard(_timeKey(job.due, job.id))
            job.due = None

    def _scheduleNext(self, job, now):
        """Put a cron or delayed job into the schedule for its next run."""
        if job.delay is not None:
            self._setStatus(job, DELAYED)
            self._scheduleAt(job, now + datetime.timedelta(seconds=job.delay))
        else:
            self._setStatus(job, CRONJOB)
            self._scheduleAt(job, job.nextRun(now))

    def reschedule(self, jobid):
        """See ITaskServiceManage."""
        job = self._job(jobid)
        if not isinstance(job, CronJob):
            raise ValueError(f'Job {jobid} is not a cron job')
        if job.status in (CRONJOB, DELAYED):
            self._unschedule(job)
            self._scheduleNext(job, _now())
            return True
        # A running cron job takes its new schedule when its run ends; a
        # finished or cancelled one has none.
        return False

    # -- cancelling and cleaning ---------------------------------------------

    def cancel(self, jobid):
        """See ITaskServiceManage."""
        job = self._job(jobid)
        if job.status not in CANCELLABLE:
            return False
        self._unschedule(job)
        self._setStatus(job, CANCELLED)
        audit.record(self, 'cancel', (jobid,))
        return True

    def cancelAll(self):
        """See ITaskServiceManage."""
        count = 0
        for status in CANCELLABLE:
            for jobid in list(_timeIds(self._index[status])):
                count += self.cancel(jobid)
        return count

    def clean(self, status=REMOVABLE):
        """See ITaskServiceManage."""
        if isinstance(status, str):
            status = (status,)
        status = tuple(status)
        bad = [s for s in status if s not in REMOVABLE]
        if bad:
            raise ValueError(
                f'Only jobs in status {", ".join(REMOVABLE)} can be removed, '
                f'not {", ".join(map(repr, bad))}')
        removed = IITreeSet()
        for name in status:
            index = self._index[name]
            keys = list(_timeKeys(index))
            for key in keys:
                index.remove(key)
                del self.jobs[_jobid(key)]
            self._counts[name].change(-len(keys))
            removed.update(_jobid(key) for key in keys)
        for task, byTask in self._byTask.items():
            gone = intersection(byTask, removed)
            for jobid in gone:
                byTask.remove(jobid)
            if gone:
                self._taskCounts[task].change(-len(gone))
        self._retired.update(removed)
        if removed:
            audit.record(self, 'clean', removed.keys(), len(removed),
                         detail=', '.join(status))
        return len(removed)

    # -- reading -------------------------------------------------------------

    def getStatus(self, jobid):
        """See ITaskServiceRead."""
        return self._job(jobid).status

    def getResult(self, jobid):
        """See ITaskServiceRead."""
        return self._job(jobid).output

    def getError(self, jobid):
        """See ITaskServiceRead."""
        return self._job(jobid).error

    @staticmethod
    def _checkStatus(status):
        if status is not None and status not in STATUSES:
            raise ValueError(f'Unknown status: {status!r}')

    def _filtered(self, status, task):
        """The ids of the jobs in ``status`` of ``task`` (None: any), lazily.

        By status: in the order the jobs entered it; otherwise by id.
        """
        self._checkStatus(status)
        if task is not None:
            byTask = self._byTask.get(task)
            if byTask is None:
                return iter(())
            if status is None:
                return iter(_ids(byTask))
            return (jobid for jobid in _timeIds(self._index[status])
                    if jobid in byTask)
        if status is not None:
            return _timeIds(self._index[status])
        return iter(self.jobs.keys())

    def countJobs(self, status=None, task=None):
        """See ITaskServiceRead."""
        self._checkStatus(status)
        if task is None and status is None:
            # The counters, not len(self.jobs), which walks every bucket.
            return sum(count() for count in self._counts.values())
        if task is None:
            return self._counts[status]()
        if status is None:
            count = self._taskCounts.get(task)
            return 0 if count is None else count()
        # Both: one membership test per job in the status, no job loaded.
        return sum(1 for jobid in self._filtered(status, task))

    def listJobs(self, status=None, task=None, start=0, size=None,
                 reverse=False):
        """See ITaskServiceRead."""
        if task is None:
            # Slices of BTree keys load only the buckets they need.
            if status is None:
                keys, toId = self.jobs.keys(), int
            else:
                self._checkStatus(status)
                keys, toId = _timeKeys(self._index[status]), _jobid
            if reverse:
                # The counters, not len(keys), which walks every bucket.
                stop = self.countJobs(status) - start
                first = 0 if size is None else max(stop - size, 0)
                selected = reversed(keys[first:max(stop, 0)])
            else:
                stop = None if size is None else start + size
                selected = keys[start:stop]
            return [self.jobs[toId(key)] for key in selected]
        ids = self._filtered(status, task)
        if reverse:
            ids = reversed(list(ids))
        stop = None if size is None else start + size
        return [self.jobs[jobid]
                for jobid in itertools.islice(ids, start, stop)]

    def hasJobsWaiting(self, now=None):
        """See ITaskServiceRead."""
        now = _now(now)
        if self._nextDue(now) is not None:
            return True
        if not self._counts[QUEUED]():
            return False
        return any(self._readyJob(jobid) is not None
                   for queue in self._ready for enqueued, jobid in queue)

    def _readyJob(self, jobid):
        """The job of a ready-queue item, or None if the item is stale.

        Cancel and clean leave items behind (they do not search the
        queues); a job queued again after a failure has a new item.
        """
        job = self.jobs.get(jobid)
        if job is not None and job.status == QUEUED and job.due is None:
            return job
        return None

    def _nextDue(self, now):
        """The key of the first scheduled job due at ``now``, or None."""
        for key in _timeKeys(self._schedule):
            if key >> 31 > now.timestamp():
                return None
            # Keys have whole seconds: the job may be due later in this one.
            due = self.jobs[_jobid(key)].due
            return key if due <= now else None
        return None

    #: ``compact`` rebuilds sets with at most this many keys.
    compactSize = 250

    def compact(self):
        """Put small time sets that span several buckets into one bucket.

        See the module doc: one bucket merges every concurrent add and
        claim.  Processors call it when idle, in a transaction of its own.
        Returns the names of the sets it rebuilt.
        """
        rebuilt = []
        sets = list(self._index.items()) + [('schedule', self._schedule)]
        for name, keys in sets:
            if not _spread(keys):
                continue
            # Count at most what matters: the set may be huge.
            items = list(itertools.islice(keys, self.compactSize + 3))
            if len(items) > self.compactSize + 2:
                continue
            # The rebuild writes the tree and a new bucket, not the old
            # buckets: a concurrent change to one of them would not
            # conflict with it, and would land in a bucket no longer in
            # the set.  Reading them "current" makes such a change a
            # ReadConflictError for this transaction (an insert committed
            # after the rebuild conflicts on the tree, which BTrees read
            # current themselves).
            for bucket in _buckets(keys):
                self._p_jar.readCurrent(bucket)
            keys.clear()
            keys.update(items)
            rebuilt.append(name)
        return rebuilt

    def nextScheduled(self):
        """When the next scheduled job is due (aware datetime) or None."""
        for key in _timeKeys(self._schedule):
            return self.jobs[_jobid(key)].due
        return None

    # -- the processing steps ------------------------------------------------
    #
    # A processor claims a job (``claim``, committed on its own), runs it
    # (``runJob``: the task's writes and the completion in one commit) and,
    # should the run fail, records the failure (``fail``, in a new
    # transaction).  ``processNext`` does all three in the caller's
    # transaction, undoing a failed task's writes with a savepoint.

    def claim(self, worker, now=None, partition=None):
        """Take the next due job, mark it processing, lease it to ``worker``.

        Scheduled jobs that are due come first, then the ready queues.
        With ``partition`` None the oldest ready job is taken (first in,
        first out, for a lone worker); otherwise the queue ``partition``
        (modulo the number of queues) is tried first, which spreads
        concurrent claimers over the queues.  Returns the job or None.
        """
        now = _now(now)
        job = self._pullScheduled(now) or self._pullReady(partition)
        if job is not None:
            self._start(job, worker, now)
        return job

    def _pullScheduled(self, now):
        # Only queued (backoff), delayed and cron jobs are scheduled:
        # cancel unschedules, and finished jobs never are.
        key = self._nextDue(now)
        if key is None:
            return None
        job = self.jobs[_jobid(key)]
        self._unschedule(job)
        return job

    def _pullReady(self, partition):
        queues = self._ready
        while True:
            if partition is None:
                heads = [(q.head(), i) for i, q in enumerate(queues)]
                heads = [(h, i) for h, i in heads if h is not None]
                if not heads:
                    return None
                queue = queues[min(heads)[1]]
            else:
                for offset in range(len(queues)):
                    queue = queues[(partition + offset) % len(queues)]
                    if queue.head() is not None:
                        break
                else:
                    return None
            enqueued, jobid = queue.pull()
            job = self._readyJob(jobid)
            if job is not None:
                return job

    def _claimJob(self, jobid, worker, now):
        """Claim one particular job, if its status allows it."""
        job = self._job(jobid)
        if job.status not in (QUEUED, DELAYED, CRONJOB):
            return None
        self._unschedule(job)
        self._start(job, worker, now)
        return job

    def _start(self, job, worker, now):
        self._setStatus(job, PROCESSING)
        job.attempts += 1
        job.started = now
        job.worker = worker
        job.lease = Lease(worker, now + datetime.timedelta(
            seconds=self.leaseTime))

    def runJob(self, job, now=None):
        """Run a claimed job's task and mark the job completed.

        Raises whatever the task raises; the caller undoes the task's
        writes and calls ``fail``.
        """
        task = self._getTask(job.task)
        output = task(self, job.id, job.input)
        limits.checkOutput(self, output)
        now = _now(now)
        job.output = output
        job.error = job.traceback = None
        job.completed = now
        job.lease = None
        if isinstance(job, CronJob) and job.delay is None:
            self._scheduleNext(job, now)
        else:
            self._setStatus(job, COMPLETED)

    def _log(self, level, message, *args):
        """Log when the current transaction commits (not if it aborts).

        A failure recorded in a transaction that then conflicts is recorded
        (and logged) again by the retry; logging at once would say it twice.
        """
        self._transactionManager().get().addAfterCommitHook(
            lambda committed: committed and log.log(level, message, *args))

    def fail(self, job, error, traceback=None, now=None, retry=True):
        """Record a failed run; retry the job if it has attempts left.

        ``error`` is the exception (or a message); only its text is stored.
        Returns 'retry', 'rescheduled' (a cron job) or 'error'.
        """
        now = _now(now)
        retry = retry and not isinstance(error, NOT_REPEATED)
        message = error if isinstance(error, str) else formatError(error)
        job.error = message
        job.traceback = traceback
        job.lease = None
        retries = self.maxRetries if job.maxRetries is None \
            else job.maxRetries
        attempt = f'attempt {job.attempts} of {retries + 1}'
        if isinstance(job, CronJob) and job.delay is None:
            self._scheduleNext(job, now)
            self._log(logging.ERROR,
                      'Cron job %s (%r) failed: %s; next run at %s',
                      job.id, job.task, message, job.due)
            return 'rescheduled'
        if retry and job.attempts <= retries:
            # The traceback of a repeated attempt is logged now: the job
            # keeps only the last one.
            if traceback:
                self._log(logging.ERROR,
                          'Caught a generic exception, preventing thread '
                          'from crashing\n%s\n%s', message.split(': ', 1)[-1],
                          traceback.rstrip())
            base = self.retryDelay if job.retryDelay is None \
                else job.retryDelay
            if isinstance(error, interfaces.UnknownTask):
                # Another worker (deployed with the task) may run it: give
                # the others time instead of spending the attempts at once.
                base = max(base, UNKNOWN_TASK_DELAY)
            delay = min(base * 2 ** (job.attempts - 1), MAX_DELAY)
            self._setStatus(job, QUEUED)
            if delay:
                self._scheduleAt(job, now + datetime.timedelta(seconds=delay))
            else:
                self._enqueue(job, now)
            self._log(logging.ERROR,
                      'Job %s (%r): %s failed, repeating it%s: %s',
                      job.id, job.task, attempt,
                      f' in {delay:g} s' if delay else '', message)
            return 'retry'
        self._setStatus(job, ERROR)
        job.completed = now
        # The job keeps the message and the traceback; the log says where.
        self._log(logging.WARNING, 'Job %s (%r) failed (%s): %s', job.id,
                  job.task, attempt if retry else 'not repeated', message)
        return 'error'

    def recover(self, now=None):
        """Take back the jobs whose lease expired; return their ids.

        Their worker is gone (killed, or its machine lost): each job goes
        back to the queue, or to ``error`` when its attempts are spent,
        with the lost worker named in its error.
        """
        now = _now(now)
        lost = []
        for jobid in list(_timeIds(self._index[PROCESSING])):
            job = self.jobs[jobid]
            lease = job.lease
            if lease is not None and lease.expires > now:
                continue
            worker = lease.worker if lease is not None else job.worker
            if lease is not None:
                lease.revoked = True  # a late renewal now conflicts
            self._log(logging.WARNING,
                      'Job %s (%r): worker %s lost, lease expired', jobid,
                      job.task, worker)
            self.fail(job, f'WorkerLost: worker {worker} lost (its lease '
                           f'expired at {job.leaseExpires or now})', None,
                      now)
            lost.append(jobid)
        return lost

    def renewLeases(self, jobids, worker, now=None):
        """Extend the leases ``worker`` holds on ``jobids``.

        Writes only the lease objects, never the jobs, so it cannot
        conflict with the jobs' run transactions.  Returns the ids whose
        lease this worker no longer holds.
        """
        now = _now(now)
        expires = now + datetime.timedelta(seconds=self.leaseTime)
        gone = []
        for jobid in jobids:
            job = self.jobs.get(jobid)
            lease = job.lease if job is not None else None
            if lease is None or lease.revoked or lease.worker != worker:
                gone.append(jobid)
            elif lease.expires < expires:
                lease.expires = expires
        return gone

    # -- synchronous processing ----------------------------------------------

    def processNext(self, now=None, jobid=None):
        """See ITaskServiceManage."""
        worker = processor.workerName('sync')
        if jobid is None:
            job = self.claim(worker, now)
        else:
            job = self._claimJob(jobid, worker, _now(now))
        if job is None:
            return False
        manager = self._transactionManager()
        txn = manager.get()
        savepoint = manager.savepoint(optimistic=True)
        try:
            with runningAs(self, job):
                self.runJob(job, now)
            processor.checkTransaction(manager, txn)
        except interfaces.TransactionEnded:
            # What the task committed stays (the job is processing, leased
            # to this caller, and is taken back when the lease expires);
            # what followed is dropped.
            manager.abort()
            raise
        except Exception as error:
            text = tb_module.format_exc()
            savepoint.rollback()
            self.fail(job, error, text, now)
        return True

    def _transactionManager(self):
        """The transaction manager of the service's connection."""
        return transaction.manager if self._p_jar is None \
            else self._p_jar.transaction_manager

    def process(self, now=None):
        """See ITaskServiceManage."""
        count = 0
        while self.processNext(now):
            count += 1
        return count

    # -- processor threads ---------------------------------------------------

    def _threadName(self):
        names = []
        obj = self
        while obj is not None:
            if obj.__name__:
                names.append(obj.__name__)
            obj = getattr(obj, '__parent__', None)
        return '.'.join(['remotetasks'] + names[::-1])

    def _processorKey(self):
        if self._p_jar is None or self._p_oid is None:
            raise ValueError('The task service must be stored in a database '
                             '(and committed) before it can process jobs')
        return self._p_jar.db(), self._p_oid

    def startProcessing(self):
        """See ITaskServiceManage."""
        db, oid = self._processorKey()
        if processor.start(db, oid, self._threadName(), self.processorFactory,
                           dict(self.processorArguments)):
            audit.record(self, 'start')

    def stopProcessing(self):
        """See ITaskServiceManage."""
        db, oid = self._processorKey()
        if processor.stop(db, oid):
            audit.record(self, 'stop')

    def isProcessing(self):
        """See ITaskServiceRead."""
        if self._p_jar is None or self._p_oid is None:
            return False
        return processor.isRunning(*self._processorKey())

    def site(self):
        """The nearest site above the service (for running tasks), or None."""
        obj = self.__parent__
        while obj is not None:
            if ISite.providedBy(obj):
                return obj
            obj = getattr(obj, '__parent__', None)
        return None
