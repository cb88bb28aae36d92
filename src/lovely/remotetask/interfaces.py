"""The contract of lovely.remotetask.

Everything a user of the package relies on is written down here; the
implementations refer to these interfaces instead of repeating them.
Reading and managing are separate interfaces so that ZCML can protect
them with separate permissions (``lovely.remotetask.View`` and
``lovely.remotetask.Manage``).
"""
from zope import schema
from zope.interface import Attribute
from zope.interface import Interface
from zope.interface.common.mapping import IEnumerableMapping


#: The permissions (defined in configure.zcml, granted to zope.Manager):
#: looking at the queue, and changing it.
VIEW = 'lovely.remotetask.View'
MANAGE = 'lovely.remotetask.Manage'

# Job statuses (the strings are the original package's; compare with ``==``).
QUEUED = 'queued'
PROCESSING = 'processing'
CANCELLED = 'cancelled'
ERROR = 'error'
COMPLETED = 'completed'
DELAYED = 'delayed'
CRONJOB = 'cronjob'
STARTLATER = 'start later'
#: Added with ``after``: waits until the jobs it depends on completed.
WAITING = 'waiting'

STATUSES = (QUEUED, PROCESSING, CANCELLED, ERROR, COMPLETED, DELAYED,
            CRONJOB, STARTLATER, WAITING)
#: Jobs in these statuses may be cancelled.
CANCELLABLE = (QUEUED, DELAYED, CRONJOB, STARTLATER, WAITING)
#: A job in these statuses has ended: its unique key is free again, and
#: the jobs waiting for it are settled (see dependencies.py).
ENDED = (COMPLETED, ERROR, CANCELLED)
#: Jobs in these statuses may be removed by ``clean()``.
REMOVABLE = (CANCELLED, ERROR, COMPLETED)
#: The largest count a user may give (retries, limits of bulk changes,
#: concurrency caps, retention counts, page sizes and offsets): XML-RPC's
#: largest int and BTrees' largest 32-bit key.  A larger one is a
#: ValueError that says so (``checkCount``), not an OverflowError from
#: deep inside.
MAX_COUNT = 2 ** 31 - 1


def checkCount(value, name, low=0):
    """``value`` if it is an int from ``low`` to ``MAX_COUNT``, else
    a ValueError naming ``name`` and the range.

    >>> checkCount(3, 'limit')
    3
    >>> checkCount(2 ** 31, 'limit')
    Traceback (most recent call last):
    ...
    ValueError: limit must be a whole number from 0 to 2147483647, not
    2147483648
    """
    if isinstance(value, bool) or not isinstance(value, int) \
            or not low <= value <= MAX_COUNT:
        raise ValueError(f'{name} must be a whole number from {low} to '
                         f'{MAX_COUNT}, not {value!r}')
    return value


class TaskError(Exception):
    """An expected failure of a task.

    A task raises it to say "this job cannot succeed": the job goes to
    ``error`` at once, without further attempts and without a traceback in
    the log.
    """


class TransactionEnded(RuntimeError):
    """A task committed or aborted the transaction it runs in.

    Tasks must leave that to the processor, which commits the task's
    writes together with the job's completion.
    """


class UnknownTask(ValueError):
    """No task utility of that name is visible from the service."""

    def __init__(self, name):
        super().__init__(name)
        self.name = name

    def __str__(self):
        return f'Unknown task: {self.name!r}'


class NoSuchJob(KeyError):
    """No job with that id exists in the service (never did, or cleaned)."""

    def __init__(self, jobid):
        super().__init__(jobid)
        self.jobid = jobid

    def __str__(self):
        return f'No such job: {self.jobid!r}'


class InvalidJobId(ValueError):
    """A job id must be an integer in [1, 2**31)."""

    def __init__(self, jobid):
        super().__init__(jobid)
        self.jobid = jobid

    def __str__(self):
        return f'Job ids are integers in [1, 2**31), not {self.jobid!r}'


class NotRetryable(ValueError):
    """Only a job in ``error`` or ``cancelled`` can be retried (and a job
    of a chain only once the jobs it waits for allow it to run)."""

    def __init__(self, jobid, status, why=None):
        super().__init__(jobid, status)
        self.jobid = jobid
        self.status = status
        self.why = why

    def __str__(self):
        if self.why:
            return f'Job {self.jobid} cannot be retried: {self.why}'
        return (f'Job {self.jobid} is {self.status}: only jobs in error or '
                f'cancelled can be retried')


class JobCancelled(Exception):
    """The job's cancel was requested while it ran (see cancelling.py).

    The processor raises it instead of completing such a job; a task that
    finds ``service.isCancelled(jobid)`` true may raise it to stop early.
    Either way the job ends ``cancelled``, its task's writes rolled back.
    """

    def __init__(self, jobid):
        super().__init__(jobid)
        self.jobid = jobid

    def __str__(self):
        return f'Job {self.jobid} was cancelled while it ran'


class DataTooLarge(ValueError):
    """A job's input is larger than its service takes (``maxDataSize``).
    """


class InvalidSchedule(ValueError):
    """A cron schedule names values out of range or can never match."""


class DuplicateJob(ValueError):
    """A job with this unique key is queued, waiting or running.

    Raised by ``add(..., uniqueKey=KEY, onDuplicate='raise')``; ``jobid``
    is the job that holds the key.
    """

    def __init__(self, key, jobid):
        super().__init__(key, jobid)
        self.key = key
        self.jobid = jobid

    def __str__(self):
        return f'Job {self.jobid} holds the unique key {self.key!r}'


class InvalidDependency(ValueError):
    """A job of ``after`` cannot be waited for: it does not exist (any
    more), or it is a cron job, which never ends."""


class ITask(Interface):
    """A task: the code a job runs.

    Tasks are registered as named utilities providing ``ITask``; the name
    is what ``ITaskService.add`` takes.
    """

    inputSchema = schema.Object(
        title='Input Schema',
        description='A schema describing the task input (optional).',
        schema=Interface, required=False)

    outputSchema = schema.Object(
        title='Output Schema',
        description='A schema describing the task output (optional).',
        schema=Interface, required=False)

    maxConcurrent = Attribute(
        'At most this many jobs of the task run at once, across every '
        'worker (an int >= 1), or None (optional; see tasklimits.py).')
    rateLimit = Attribute(
        'At most ``count`` jobs of the task start in any ``seconds`` long '
        'window, across every worker: ``(count, seconds)``, or None '
        '(optional).')
    keepCompleted = Attribute(
        'How long the completed jobs of the task are kept: None (as the '
        "service's ``keepCompleted`` says), a count or a time "
        '(optional; see retention.py).')
    keepFailed = Attribute(
        "As ``keepCompleted``, for the task's jobs in ``error``.")

    def __call__(service, jobid, input):
        """Run the task and return its output.

        It runs in the transaction that also marks the job completed: its
        ZODB writes and the completion commit together or not at all.
        Raise ``TaskError`` for an expected failure (no retry); any other
        exception is retried while the job has attempts left.
        """


class IJob(Interface):
    """A job: one run (or, for a cron job, a series of runs) of a task."""

    id = schema.Int(title='Id', description='The job id (below 2**31).',
                    readonly=True)
    task = schema.TextLine(title='Task', description='The task name.',
                           readonly=True)
    status = schema.Choice(title='Status', values=STATUSES, readonly=True)
    input = schema.Object(title='Input', schema=Interface, required=False,
                          readonly=True)
    output = schema.Object(title='Output', schema=Interface, required=False,
                           readonly=True)
    error = schema.Text(
        title='Error', required=False, readonly=True,
        description='The message of the last failure, or None.')
    traceback = schema.Text(
        title='Traceback', required=False, readonly=True,
        description='The formatted traceback of the last failure, or None.')
    created = schema.Datetime(title='Created', readonly=True)
    started = schema.Datetime(title='Started', required=False,
                              readonly=True)
    completed = schema.Datetime(title='Completed', required=False,
                                readonly=True)
    attempts = schema.Int(
        title='Attempts', readonly=True,
        description='How often the job was started (persisted on the job).')
    maxRetries = schema.Int(
        title='Retries', required=False, min=0, max=MAX_COUNT,
        description='How often a failed run is repeated; None: the '
                    "service's default.")
    retryDelay = schema.Float(
        title='Retry delay', required=False, min=0.0,
        description='Seconds before the first repeat, doubling for each '
                    "further one; None: the service's default.")
    worker = schema.TextLine(
        title='Worker', required=False, readonly=True,
        description='The worker that runs or last ran the job.')
    priority = schema.Int(
        title='Priority', min=0, max=9, default=5, readonly=True,
        description='0 (lowest) to 9 (highest): due jobs of a higher '
                    'priority are claimed first (see priorities.py).')
    leaseExpires = Attribute(
        'When the lease of the running job expires (datetime), or None.')
    addedBy = schema.TextLine(
        title='Added by', required=False, readonly=True,
        description='The id of the principal who added the job (the job '
                    'runs as this principal), or None when it was added '
                    'outside an interaction.')
    uniqueKey = schema.TextLine(
        title='Unique key', required=False, readonly=True,
        description='While the job has not ended, no other job with this '
                    'key can be added (see uniqueness.py); or None.')
    after = schema.Tuple(
        title='After', value_type=schema.Int(), readonly=True,
        description='The ids of the jobs this job waited or waits for.')
    waitingFor = schema.Tuple(
        title='Waiting for', value_type=schema.Int(), readonly=True,
        description='The ids of ``after`` that have not ended yet.')
    runAnyway = schema.Bool(
        title='Run anyway', readonly=True,
        description='Run when the jobs of ``after`` ended, even if one of '
                    'them failed or was cancelled (else: cancelled too).')
    dependants = schema.Tuple(
        title='Dependants', value_type=schema.Int(), readonly=True,
        description='The ids of the jobs added to run after this one.')
    history = Attribute(
        'The last attempts of the job, oldest first: a tuple of '
        '``history.Attempt`` (number, started, ended, worker, outcome, '
        'error); see history.py.')


class ICronJob(IJob):
    """A job that runs on a schedule (or once after a delay).

    All given fields must match.  The finest field given sets the step:
    empty fields finer than it mean their lowest value, empty fields
    coarser than it mean any value (``hour=(2, 13)`` runs at 02:00 and
    13:00; ``dayOfMonth=(1,)`` at 00:00 on the 1st; ``month=(5,)`` at 00:00
    on 1 May; only ``minute``, or no field at all, runs every matching
    minute).  Times are UTC.  ``dayOfWeek`` is Python's ``weekday()``:
    0 is Monday, 6 is Sunday (crontab's 0 is Sunday).
    """

    minute = schema.Tuple(title='Minute', value_type=schema.Int(),
                          required=False)
    hour = schema.Tuple(title='Hour', value_type=schema.Int(),
                        required=False)
    dayOfMonth = schema.Tuple(title='Day of month', value_type=schema.Int(),
                              required=False)
    month = schema.Tuple(title='Month', value_type=schema.Int(),
                         required=False)
    dayOfWeek = schema.Tuple(title='Day of week', value_type=schema.Int(),
                             required=False,
                             description='0 is Monday, 6 is Sunday.')
    delay = schema.Float(title='Delay', required=False,
                         description='Run once, this many seconds after '
                                     'being scheduled (0: no delay).')
    scheduledFor = schema.Datetime(
        title='Scheduled for', required=False, readonly=True,
        description='The next time the job is due (UTC), or None.')

    def update(minute=(), hour=(), dayOfMonth=(), month=(), dayOfWeek=(),
               delay=None):
        """Change the schedule; ``ITaskService.reschedule`` applies it.

        Raises ``InvalidSchedule`` for values out of range or a schedule
        that can never match (31 February), changing nothing.
        """


class ITaskServiceRead(Interface):
    """Looking at a task service (``lovely.remotetask.View``)."""

    jobs = schema.Object(title='Jobs', schema=IEnumerableMapping,
                         description='A mapping of job id to job.')

    def getAvailableTasks():
        """A mapping of name to task: the tasks visible from the service."""

    def getStatus(jobid):
        """The status of the job.

        An unknown id raises ``NoSuchJob``; an id that is not an integer
        raises ``InvalidJobId``.  So do the other methods taking a job id.
        """

    def getResult(jobid):
        """The output of the job (None until it completed)."""

    def getError(jobid):
        """The error message of the job, or None if it has none."""

    def getProgress(jobid):
        """The progress the job's task reported in its current (or last)
        attempt: ``{'fraction', 'message', 'updated'}`` (fraction in [0,
        1] or None, message text or None, updated an aware UTC datetime),
        or None if it reported none.  See progress.py."""

    def isCancelled(jobid):
        """Is the job cancelled, or its cancel requested while it runs?

        Reads the database as it is now, not as of the current
        transaction's beginning: a running task polls it (see
        cancelling.py)."""

    def hasJobsWaiting(now=None):
        """True if a job is due for processing at ``now``."""

    def isProcessing():
        """True if this process runs a processor for this service."""

    def isPaused():
        """True if the service is paused for every worker (see ``pause``)."""

    def listWorkers(now=None):
        """The workers registered with the service, as dicts.

        Keys: id, host, pid, services, threads, started, version, running
        (ids of the jobs it runs), done and failed (jobs since it
        started), heartbeat (its sequence number), lastHeartbeat (the
        worker's clock), age (seconds since, by this clock), status
        (``alive``, ``stopping``, ``dead``; ``late``: no heartbeat for
        longer than ``workerTimeout`` by this clock, no verdict yet).
        """

    def activeWorkers(now=None):
        """The ids of the workers alive or stopping."""

    def countJobs(status=None, task=None, createdAfter=None,
                  createdBefore=None):
        """How many jobs are there (in that status, of that task, created
        from ``createdAfter`` and before ``createdBefore``: aware
        datetimes, to the second)?

        Counting by status alone is O(1); a time range walks the keys of
        the range (and loads the jobs of it, filtered by status too).
        """

    def listJobs(status=None, task=None, start=0, size=None, reverse=False,
                 after=None, sort=None, createdAfter=None,
                 createdBefore=None, backwards=False):
        """Jobs (in that status, of that task), from ``start``.

        ``sort`` None: filtered by status, in the order the jobs entered
        it; otherwise in id order.  Or one of ``created``, ``started``,
        ``completed``, ``duration``, ``status``, ``task`` (see
        sorting.py): jobs without a start or completion follow the others
        in both directions.  ``reverse`` lists descending.  With a time
        range (``createdAfter``, ``createdBefore``, as in ``countJobs``),
        the jobs created in it; sort None then means ``created``.
        ``backwards`` reads that list from its end (``start`` and
        ``after`` counting from there): the jobs in the opposite order,
        which is not the other direction's list where jobs without a
        start or completion come last in both.

        Loads only the jobs of the requested slice, but finding
        ``start`` walks the index up to it.  With ``after`` (a job's
        ``cursor`` in this list), the jobs after that one are listed
        instead of ``start``: a page anywhere in a list of any length
        costs the same (except filtered by status and task together,
        which tests each job of the status for the task, or sorted and
        filtered by something else than the sort, see sorting.py).
        """

    def cursor(job, status=None, task=None, sort=None):
        """Where ``job`` stands in ``listJobs(status, task, sort=sort)``,
        for ``after``: the page after it (or, with ``reverse``, before
        it)."""

    def taskLimits(task):
        """The limits in force for ``task``: a dict of ``maxConcurrent``,
        ``rateLimit``, ``keepCompleted`` and ``keepFailed`` (None where
        not limited): the service's overrides, else the task's own."""

    def listTaskLimits():
        """``{task: limits}`` of every task (``taskLimits``, plus
        ``overridden``: the names the service overrides)."""

    def heldBack(jobid):
        """Why a queued job waits for its task's limits (text), or None.
        """


class ITaskServiceManage(Interface):
    """Changing a task service (``lovely.remotetask.Manage``)."""

    def add(task, input=None, startLater=False, *, maxRetries=None,
            retryDelay=None, priority=5, uniqueKey=None, onDuplicate='return',
            after=(), runAnyway=False):
        """Add a job and return its id.

        ``priority`` (0 to 9, 9 the highest): due jobs of a higher
        priority are claimed first, see priorities.py; anything else
        raises ``ValueError``.

        The job exists if and only if the current transaction commits; an
        idle processor of this process is woken when it does.  An unknown
        task raises ``UnknownTask`` (a ``ValueError``).  With ``startLater``
        the job waits in status ``start later`` for ``startJob``.

        With ``uniqueKey`` (a string): while a job with that key has not
        ended (completed, error, cancelled), no second one is added; the
        id of the one there is returned instead, or, with
        ``onDuplicate='raise'``, ``DuplicateJob`` is raised.  Two
        transactions adding one key concurrently conflict (see
        uniqueness.py): one job results.

        With ``after`` (job ids) the job is ``waiting`` until every one of
        them completed, then queued in the transaction that completes the
        last of them.  If one of them ends in error or is cancelled, the
        job is cancelled (and so are the jobs waiting for it), unless
        ``runAnyway``: then it is queued when all of them ended.  An id
        that is unknown, cleaned or a cron job's raises
        ``InvalidDependency``.  Not with ``startLater``.
        """

    def addCronJob(task, input=None, minute=(), hour=(), dayOfMonth=(),
                   month=(), dayOfWeek=(), delay=None):
        """Add a cron job (or, with ``delay``, a delayed job); return its id.

        See ``ICronJob`` for what the schedule fields mean (``dayOfWeek``
        0 is Monday).

        Raises ``UnknownTask`` or ``InvalidSchedule``, adding nothing.
        """

    def startJob(jobid):
        """Queue a job that is in ``start later``; True if it was."""

    def reschedule(jobid):
        """Apply a cron job's changed schedule (see ``ICronJob.update``)."""

    def cancel(jobid):
        """Cancel a queued, delayed, cron or start-later job; request the
        cancel of a running one.

        Returns True if the job was cancelled or its cancel requested,
        False if its status does not allow it (it is finished).  A running
        job ends ``cancelled`` (its task's writes rolled back) when its
        task returns or fails, or its worker is found dead; its task may
        poll ``isCancelled`` to stop early (see cancelling.py).
        """

    def retry(jobid):
        """Queue a job in ``error`` or ``cancelled`` again; returns None.

        Its attempts start again from none, its error is cleared (and
        kept in its history); a cron job goes back to its schedule.  A
        job in any other status raises ``NotRetryable`` (a
        ``ValueError``).  Recorded in the audit log.
        """

    def retryAll(status='error', task=None, limit=None):
        """Retry the jobs in ``status`` (``error`` or ``cancelled``, or
        a sequence of them) of ``task`` (None: any), the oldest first;
        return how many were queued again.

        With ``limit``, at most that many (see ``cancelAll``;
        ``bulk.retryAll`` retries in batches).  Another status raises
        ``ValueError`` and retries nothing.
        """

    def cancelAll(limit=None):
        """Cancel every cancellable job; return how many were cancelled
        (counting the jobs that waited for them, cancelled with them).

        With ``limit``, at most that many, the newest first: call it again
        (in a new transaction) until it returns less than ``limit`` to
        cancel a large queue in batches (see ``bulk.inBatches``).
        """

    def clean(status=REMOVABLE, limit=None):
        """Remove the jobs in these statuses; return how many.

        Only cancelled, error and completed jobs may be removed; any other
        status raises ``ValueError`` and removes nothing.  Removed ids are
        never handed out again.  With ``limit``, at most that many, the
        oldest first (see ``cancelAll``).
        """

    def processNext(now=None, jobid=None):
        """Run the next due job (or ``jobid``) in the current transaction.

        For scripts and tests.  The task's writes are undone (savepoint) if
        it fails; the failure is recorded on the job.  Returns True if a
        job was run.
        """

    def process(now=None):
        """Run ``processNext`` until no job is due."""

    def startProcessing():
        """Start this service's processor thread in this process (once)."""

    def stopProcessing():
        """Stop this service's processor thread in this process."""

    def pause(now=None):
        """Pause the service for every worker of every process.

        Workers claim nothing more from it (running jobs finish) from their
        next claim on; adding, cancelling and ``processNext`` still work.
        A persistent flag: it survives restarts until ``resume``.
        """

    def resume(now=None):
        """Let every worker claim from the service again."""

    def setTaskLimits(task, **limits):
        """Override the limits of ``task`` for this service (keywords of
        ``taskLimits``; None: no limit, whatever the task says); return
        the service's overrides of the task.  Bad values raise
        ``ValueError``, changing nothing."""

    def clearTaskLimits(task):
        """Drop the service's overrides: the task's own limits hold."""

    def setRetention(keepCompleted=None, keepFailed=None):
        """Set the service's ``keepCompleted`` and ``keepFailed`` (None,
        a count, a timedelta, or text: ``100``, ``7d``)."""


class ITaskServiceProcessing(Interface):
    """The steps processors take, each in a transaction of its own.

    Not published: no permission is declared for these, so neither the
    web nor XML-RPC can reach them.
    """

    def claim(worker, now=None, partition=None):
        """Take the next due job, mark it processing, lease it to ``worker``.

        Returns the job, or None if no job is due.  ``partition`` tells
        concurrent claimers to start at different ready queues.
        """

    def runJob(job, now=None):
        """Run a claimed job's task and mark it completed (or, for a cron
        job, schedule its next run).  Raises what the task raises."""

    def fail(job, error, traceback=None, now=None, retry=True, backoff=True):
        """Record a failed run (message and traceback text) and repeat the
        job if it has attempts left, unless ``retry`` is false or the error
        is a ``TaskError`` or ``TransactionEnded``; after the backoff of
        backoff.py, unless ``backoff`` is false; returns 'retry',
        'rescheduled' or 'error'.  A job whose cancel was requested (or
        whose task raised ``JobCancelled``) ends 'cancelled' instead."""

    def setProgress(jobid, fraction=None, message=None):
        """Report the progress of a running job, from its task: committed
        at once, in a transaction of its own that never conflicts with the
        run's (see progress.py).  ``fraction`` from 0 to 1 or None,
        ``message`` text or None; a bad one raises ``ValueError``, as does
        a job that is not running."""

    def recover(now=None):
        """Take back the jobs whose lease expired; return their ids."""

    def renewLeases(jobids, worker, now=None):
        """Extend ``worker``'s leases; return the ids it no longer holds."""

    def compact():
        """Put small index sets spread over several buckets into one."""

    def followUpChains(entries):
        """Settle what waits for the jobs this process ended lately and
        their ending transactions did not decide; return how many and
        the entries to look at again."""

    def sweepChains(start=0):
        """Settle the links of chains whose parents ended, a batch from
        the link ``start`` on; return ``(next start, jobs settled)``."""

    def nextScheduled():
        """When the next scheduled job is due, or None."""

    def applyRetention(now=None, limit=500):
        """Remove up to ``limit`` finished jobs beyond the retention
        settings (see retention.py); return how many."""


class ITaskService(ITaskServiceRead, ITaskServiceManage,
                   ITaskServiceProcessing):
    """A persistent job queue with its job table."""

    processorFactory = Attribute(
        'The processor class (SimpleProcessor or MultiProcessor).')
    processorArguments = Attribute(
        'Keyword arguments for the processor, e.g. {"waitTime": 1.0}.')
    maxRetries = schema.Int(
        title='Retries', min=0, max=MAX_COUNT, default=3,
        description='How often a failed job is repeated by default.')
    retryDelay = schema.Float(
        title='Retry delay', min=0.0, default=10.0,
        description='Seconds before the first repeat of a failed job; it '
                    'doubles with each further repeat (see backoff.py).')
    retryJitter = schema.Float(
        title='Retry jitter', min=0.0, max=1.0, default=0.1,
        description='Each repeat\'s delay is spread by up to this '
                    'fraction of it, at random (0: exact delays).')
    maxConflictRetries = schema.Int(
        title='Conflict retries', min=0, max=MAX_COUNT, default=5,
        description='How often a run whose commit conflicts is repeated '
                    'before it counts as a failed attempt.')
    leaseTime = schema.Float(
        title='Lease', min=1.0, default=60.0,
        description='Seconds a running job is leased to its worker; the '
                    'worker renews it while the job runs.')
    maxDataSize = schema.Int(
        title='Largest input and output', min=0, max=MAX_COUNT,
        required=False,
        default=1024 * 1024,
        description='Bytes (pickled) a job\'s input and output may take; '
                    'None: no limit.  See limits.py.')
    priorityAging = schema.Float(
        title='Priority aging', min=1.0, default=3600.0,
        description='Seconds of waiting one priority level is worth: a '
                    'job goes before jobs of higher priorities that became '
                    'ready that much later per level (see priorities.py).')
    keepCompleted = Attribute(
        'How long completed jobs are kept: None (for ever), a count '
        '(the newest N) or a timedelta; see retention.py.')
    keepFailed = Attribute('As ``keepCompleted``, for jobs in ``error``.')


class IProcessor(Interface):
    """Runs the jobs of one service: claim, run, complete, back off."""

    workerId = Attribute('A name unique to this processor (host:pid:...).')
    running = Attribute('True until ``stop`` is called (read-only).')

    def step(now=None):
        """Claim and run one due job, each step in its own transaction.

        The task runs in the calling thread's transaction
        (``transaction.get()``), which the step begins and ends.  Returns
        True if a job was run.
        """

    def __call__():
        """Loop over ``step`` until ``stop`` is called."""

    def wake():
        """Wake an idle processor (a job was committed)."""

    def stop():
        """Ask the loop to end after the current job."""
