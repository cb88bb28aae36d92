"""The task service: the API of a job queue stored in the ZODB.

A ``TaskService`` is a persistent, contained object (a ZMI content object
and/or a local utility).  It reads as the API of ``ITaskService``; the
structures it keeps its jobs in, and how they behave under concurrent
transactions, are in ``jobtable.py`` (and ``timeset.py``), the steps
processors take in ``steps.py``, the processors themselves in
``processor.py``, the registry of the workers and the cluster's pause
flag in ``workers.py``, retrying and the jobs' histories in
``history.py``, priorities in ``priorities.py``, the limits of tasks in
``tasklimits.py``, the lifetime of finished jobs in ``retention.py``,
unique keys in ``uniqueness.py``, chains in ``dependencies.py``,
progress reports in ``progress.py``, cancelling running jobs in
``cancelling.py``.
``_audit`` (see audit.py) records who cancelled, cleaned, retried,
started and stopped.
"""
import datetime
import traceback as tb_module
import types

import persistent
from BTrees.IIBTree import IITreeSet
import transaction
import zope.component
from zope.component.interfaces import ISite
from zope.container.contained import Contained
from zope.interface import implementer

from lovely.remotetask import audit
from lovely.remotetask import cancelling
from lovely.remotetask import dependencies
from lovely.remotetask import handoff
from lovely.remotetask import history
from lovely.remotetask import inbox
from lovely.remotetask import interfaces
from lovely.remotetask import limits
from lovely.remotetask import priorities
from lovely.remotetask import processor
from lovely.remotetask import progress
from lovely.remotetask import retention
from lovely.remotetask import tasklimits
from lovely.remotetask import uniqueness
from lovely.remotetask.interaction import currentPrincipalId
from lovely.remotetask.interaction import runningAs
from lovely.remotetask.interfaces import CANCELLABLE
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import DELAYED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import REMOVABLE
from lovely.remotetask.interfaces import STARTLATER
from lovely.remotetask.interfaces import checkCount
from lovely.remotetask.job import CronJob
from lovely.remotetask.job import Job
from lovely.remotetask.job import MAX_DELAY
from lovely.remotetask.job import _isSeconds
from lovely.remotetask.jobtable import JobTable
from lovely.remotetask.jobtable import _wakeAfterCommit
from lovely.remotetask.jobtable import checkJobId  # noqa: F401 (API)
from lovely.remotetask.jobtable import now_
from lovely.remotetask.steps import ProcessingSteps
from lovely.remotetask.steps import formatError  # noqa: F401 (API)
from lovely.remotetask.timeset import MAXID  # noqa: F401 (API)
# Databases written before timeset.py existed name this class here.
from lovely.remotetask.timeset import TimeSet  # noqa: F401
from lovely.remotetask.workers import WorkerSteps


@implementer(interfaces.ITaskService)
class TaskService(JobTable, ProcessingSteps, WorkerSteps, Contained,
                  persistent.Persistent):
    """See ITaskService."""

    taskInterface = interfaces.ITask
    processorFactory = processor.SimpleProcessor
    # Read-only: assign a new dict to a service to change its arguments.
    processorArguments = types.MappingProxyType({'waitTime': 1.0})
    maxRetries = 3
    retryDelay = 10.0
    retryJitter = 0.1
    maxConflictRetries = 5
    leaseTime = 60.0
    maxDataSize = limits.MAX_DATA_SIZE
    priorityAging = priorities.AGING
    keepCompleted = None
    keepFailed = None
    #: Seconds between a processor's passes of ``applyRetention``.
    retentionInterval = 10.0

    def __init__(self):
        super().__init__()
        self._initTable()
        self._audit = audit.AuditLog()

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
            retryDelay=None, priority=priorities.DEFAULT, uniqueKey=None,
            onDuplicate='return', after=(), runAnyway=False):
        """See ITaskServiceManage."""
        self._getTask(task)
        limits.checkInput(self, input)
        priorities.checkPriority(priority)
        if maxRetries is not None and (
                isinstance(maxRetries, bool) or not isinstance(maxRetries, int)
                or maxRetries < 0):
            raise ValueError(f'maxRetries must be an int >= 0, '
                             f'not {maxRetries!r}')
        if maxRetries is not None:
            checkCount(maxRetries, 'maxRetries')
        if retryDelay is not None and not _isSeconds(retryDelay, MAX_DELAY):
            raise ValueError(f'retryDelay must be seconds from 0 to '
                             f'{MAX_DELAY}, not {retryDelay!r}')
        if uniqueKey is not None:
            holder = uniqueness.existing(self, uniqueKey, onDuplicate)
            if holder is not None:
                return holder
        parents = dependencies.parents(self, after)
        if parents and startLater:
            raise ValueError('A job cannot both start later and wait for '
                             'other jobs (after)')
        status, reason = dependencies.verdict(parents, runAnyway)
        job = Job(self._newId(), task, input,
                  status=status or (STARTLATER if startLater else QUEUED),
                  maxRetries=maxRetries, retryDelay=retryDelay,
                  priority=priority)
        job.addedBy = currentPrincipalId()
        job.uniqueKey = uniqueKey
        job.runAnyway = bool(runAnyway)
        job.error = reason
        self._insert(job)
        if parents:
            dependencies.attach(self, job, parents)
        uniqueness.take(self, job)
        if job.status == QUEUED:
            _wakeAfterCommit(self)
            if not parents:
                handoff.offer(self, job)
        return job.id

    def addCronJob(self, task, input=None, minute=(), hour=(), dayOfMonth=(),
                   month=(), dayOfWeek=(), delay=None):
        """See ITaskServiceManage."""
        self._getTask(task)
        limits.checkInput(self, input)
        job = CronJob(self._newId(), task, input, minute, hour, dayOfMonth,
                      month, dayOfWeek, delay)
        job.addedBy = currentPrincipalId()
        self._insert(job)
        self._scheduleNext(job, job.created)
        return job.id

    def startJob(self, jobid):
        """See ITaskServiceManage."""
        job = self._job(jobid)
        if job.status != STARTLATER:
            return False
        self._queue(job)
        return True

    def _scheduleNext(self, job, now):
        """Put a cron or delayed job into the schedule for its next run."""
        if job.delay is not None:
            self._scheduleAt(job, DELAYED,
                             now + datetime.timedelta(seconds=job.delay))
        else:
            self._scheduleAt(job, CRONJOB, job.nextRun(now))

    def reschedule(self, jobid):
        """See ITaskServiceManage."""
        job = self._job(jobid)
        if not isinstance(job, CronJob):
            raise ValueError(f'Job {jobid} is not a cron job')
        if job.status in (CRONJOB, DELAYED):
            self._scheduleNext(job, now_())
            return True
        # A running cron job takes its new schedule when its run ends; a
        # finished or cancelled one has none.
        return False

    # -- cancelling and cleaning ---------------------------------------------

    def cancel(self, jobid):
        """See ITaskServiceManage."""
        job = self._job(jobid)
        if job.status == PROCESSING:
            cancelling.request(self, job)
            audit.record(self, 'cancel', (jobid,), detail='running')
            return True
        if job.status not in CANCELLABLE:
            return False
        self._unschedule(job)
        self._setStatus(job, CANCELLED)
        self._ended(job)
        audit.record(self, 'cancel', (jobid,))
        return True

    def _ended(self, job):
        """``job`` ended (completed, error, cancelled): settle the jobs
        waiting for it (dependencies.py; its unique key is free now, with
        no write, see uniqueness.py).  Every step that ends a job calls
        it."""
        dependencies.ended(self, job)

    def retry(self, jobid):
        """See ITaskServiceManage."""
        history.retry(self, self._job(jobid))

    def retryAll(self, status=ERROR, task=None, limit=None):
        """See ITaskServiceManage."""
        _checkLimit(limit)
        return history.retryAll(self, status, task, limit)

    def cancelAll(self, limit=None):
        """See ITaskServiceManage."""
        _checkLimit(limit)
        # Counted by the counter: a cancelled job cancels the jobs waiting
        # for it too (dependencies.py), which then count as well.
        cancelled = self._counts[CANCELLED]
        before = cancelled()
        for status in CANCELLABLE:
            left = None if limit is None else limit - (cancelled() - before)
            if left is not None and left <= 0:
                break  # cascades may cancel more than asked
            # The newest first: claims take the oldest, so a cancel in
            # batches while processors drain rarely meets their claims.
            for jobid in self._newest(status, left):
                self.cancel(jobid)
        return cancelled() - before

    def clean(self, status=REMOVABLE, limit=None):
        """See ITaskServiceManage."""
        _checkLimit(limit)
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
            removed.update(self._remove(name, limit and limit - len(removed)))
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

    def getProgress(self, jobid):
        """See ITaskServiceRead."""
        return progress.getProgress(self, self._job(jobid))

    def isCancelled(self, jobid):
        """See ITaskServiceRead."""
        return cancelling.isCancelled(self._job(jobid))

    def setProgress(self, jobid, fraction=None, message=None):
        """See ITaskServiceProcessing."""
        progress.setProgress(self, self._job(jobid), fraction, message)

    def hasJobsWaiting(self, now=None):
        """See ITaskServiceRead."""
        now = now_(now)
        return (self._nextDue(now) is not None
                or inbox.count(self) > 0
                or bool(self._readyKeys(now, 1)))

    # -- limits and retention (see tasklimits.py, retention.py) -------------

    def taskLimits(self, task):
        """See ITaskServiceRead."""
        return tasklimits.limitsOf(self, task)

    def listTaskLimits(self):
        """See ITaskServiceRead."""
        names = set(self.getAvailableTasks()) | set(self._taskSettings)
        return {task: dict(self.taskLimits(task),
                           overridden=sorted(self._taskSettings.get(task, {})))
                for task in sorted(names)}

    def setTaskLimits(self, task, **limits):
        """See ITaskServiceManage."""
        return tasklimits.setLimits(self, task, limits)

    def clearTaskLimits(self, task):
        """See ITaskServiceManage."""
        tasklimits.clearLimits(self, task)

    def setRetention(self, keepCompleted=None, keepFailed=None):
        """See ITaskServiceManage."""
        completed = retention.parseRetention(keepCompleted, 'keepCompleted')
        failed = retention.parseRetention(keepFailed, 'keepFailed')
        self.keepCompleted, self.keepFailed = completed, failed

    def heldBack(self, jobid):
        """See ITaskServiceRead."""
        return tasklimits.heldBack(self, self._job(jobid))

    def applyRetention(self, now=None, limit=retention.BATCH):
        """See ITaskServiceProcessing."""
        _checkLimit(limit)
        return retention.applyRetention(self, now_(now), limit)

    # -- synchronous processing ----------------------------------------------

    def processNext(self, now=None, jobid=None):
        """See ITaskServiceManage."""
        worker = processor.workerName('sync')
        if jobid is None:
            job = self.claim(worker, now)
        else:
            job = self._claimJob(jobid, worker, now_(now))
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
        if self._startProcessor():
            audit.record(self, 'start')

    def _startProcessor(self):
        """Start this process's processor of the service (unless it runs);
        True if it was started.  Not audited: for autostart, which may run
        after a commit, where nothing can be written (startup.py)."""
        db, oid = self._processorKey()
        return processor.start(db, oid, self._threadName(),
                               self.processorFactory,
                               dict(self.processorArguments))

    def stopProcessing(self):
        """See ITaskServiceManage."""
        if self._p_jar is None or self._p_oid is None:
            return  # never stored: nothing can be processing
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


def _checkLimit(limit):
    """The ``limit`` of a bulk change: None or a count."""
    if limit is not None:
        checkCount(limit, 'limit')


# -- 0.5.2 names -------------------------------------------------------------

def __getattr__(name):
    from lovely.remotetask import compat
    return compat.moduleAttribute(__name__, name)
