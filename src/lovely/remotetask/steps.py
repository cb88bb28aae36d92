"""The processing steps: claim, run, fail, recover, renew.

``ProcessingSteps`` is the part of a task service that processors call,
each step in a transaction the processor begins and commits (see
processor.py and DESIGN.md):

``claimGroup``
    Takes up to ``size`` due jobs (scheduled ones first, then the ready
    queue), marks them ``processing``, counts an attempt on each and
    leases them to the worker: one transaction for the whole group.
``runJob``
    Runs one claimed job's task and marks it completed; a processor runs
    a group of them in one transaction, each in a savepoint of its own.
``fail``
    Records a failed run and repeats the job (with backoff, see
    backoff.py) while it has attempts left; ends a job whose cancel was
    requested (cancelling.py).
``recover``
    Takes back the jobs whose lease expired, and those of the workers
    found dead by their heartbeats (see workers.py).
``renewLeases``
    Extends the leases of running jobs, writing only the lease objects.
``followUpChains``, ``sweepChains``
    Decide the jobs waiting for jobs that ended, where the ending
    transaction could not (see dependencies.py).

Concurrency: a claim writes the jobs it takes and the index buckets they
leave and enter; two claimers taking the same job conflict and one of them
claims again (the ready queue spreads concurrent claimers, see
jobtable.py).  A run writes its jobs (and what the tasks write); a lease
renewal writes only ``Lease`` objects, never a job, so it cannot conflict
with a run.
"""
import datetime
import logging
import math

from lovely.remotetask import cancelling
from lovely.remotetask import dependencies
from lovely.remotetask import events
from lovely.remotetask import history
from lovely.remotetask import inbox
from lovely.remotetask import interfaces
from lovely.remotetask import limits
from lovely.remotetask import tasklimits
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import DELAYED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.job import CronJob
from lovely.remotetask.job import Lease
from lovely.remotetask.backoff import retryDelay
from lovely.remotetask.jobtable import now_
from lovely.remotetask.timeset import timeIds


log = logging.getLogger('lovely.remotetask')
#: Completed jobs, at INFO: set this logger's level to WARNING to leave
#: them out (a busy queue completes many jobs a second).
completedLog = logging.getLogger('lovely.remotetask.completed')

#: A failure of these is not repeated: the task says a repeat cannot help.
NOT_REPEATED = (interfaces.TaskError, interfaces.TransactionEnded)


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


def _tracebackLines(error, traceback):
    """The traceback for the log: on lines of its own after the message;
    nothing for a ``TaskError`` (an expected failure) or without one."""
    if not traceback or isinstance(error, interfaces.TaskError):
        return ''
    return '\n' + traceback.rstrip()


def _seconds(started, ended):
    return 0.0 if started is None else (ended - started).total_seconds()


class ProcessingSteps:
    """The steps of the module doc, as part of a task service."""

    def claim(self, worker, now=None, partition=None):
        """See ITaskServiceProcessing."""
        jobs = self.claimGroup(worker, 1, now, partition)
        return jobs[0] if jobs else None

    def claimGroup(self, worker, size, now=None, partition=None):
        """See ITaskServiceProcessing."""
        now = now_(now)
        # One lease for the group: its jobs are renewed, and expire, as one.
        lease = self._newLease(worker, now)
        jobs = []

        def take(more):
            self._prefetch(more)
            # Started at once: a job taken leaves the ready queue before
            # the next look at it.
            for job in more:
                self._start(job, worker, now, lease)
            jobs.extend(more)
        while len(jobs) < size:
            job = self._nextDue(now)
            if job is None:
                break
            self._unschedule(job)
            take([job])
        # New jobs: taken at once, or into the ready queues (inbox.py).
        if inbox.due(self, now, size):
            take(inbox.claimOrIndex(self, now, size - len(jobs), partition))
        # The ready queues, within the tasks' limits (see tasklimits.py).
        take(tasklimits.claimReady(self, now, size - len(jobs), partition))
        if len(jobs) < size and inbox.count(self):
            # The queued jobs were not ready (a backoff, a limit): the new
            # ones may be.
            inbox.index(self)
            take(tasklimits.claimReady(self, now, size - len(jobs),
                                       partition))
        return jobs

    def groupSize(self, limit, claimers=1):
        """How many jobs a claimer should take: one when the queue is
        short, a share of the queue when it is long, at most ``limit``."""
        queued = self._counts[QUEUED]() + inbox.count(self)
        return max(1, min(limit, math.ceil(queued / (2 * claimers))))

    def _claimJob(self, jobid, worker, now):
        """Claim one particular job, if its status allows it."""
        job = self._job(jobid)
        if job.status not in (QUEUED, DELAYED, CRONJOB):
            return None
        self._unschedule(job)
        self._start(job, worker, now)
        return job

    def _newLease(self, worker, now):
        return Lease(worker, now + datetime.timedelta(seconds=self.leaseTime))

    def _start(self, job, worker, now, lease=None):
        events.afterCommit(self, events.JobStarted(self, job, now))
        self._setStatus(job, PROCESSING, now)
        job.attempts += 1
        job.started = now
        job.worker = worker
        job.lease = lease or self._newLease(worker, now)
        # A request to cancel an earlier attempt is cleared (see
        # cancelling.py); a report of one reads as none (progress.py).
        job.claims += 1
        cancelling.startAttempt(job)

    def runJob(self, job, now=None):
        """See ITaskServiceProcessing."""
        output = self.runTask(job)
        # A cancel requested while the task ran: not completed (the
        # caller rolls the task's writes back and calls ``fail``).
        cancelling.checkRun(job)
        self.complete(job, output, now)

    def runTask(self, job):
        """Run a claimed job's task; return its output (checked storable).

        Raises what the task raises.  Changes nothing of the job.
        """
        task = self._getTask(job.task)
        output = task(self, job.id, job.input)
        limits.checkOutput(self, output)
        return output

    def complete(self, job, output, now=None):
        """Mark a job whose task returned ``output`` completed (a cron job:
        scheduled for its next run)."""
        now = now_(now)
        job.output = output
        job.error = job.traceback = None
        job.completed = now
        history.recordAttempt(job, history.COMPLETED, now)
        self._log(logging.INFO, 'Job %s (%r) completed in %.3f s', job.id,
                  job.task, _seconds(job.started, now), logger=completedLog)
        job.lease = None
        events.afterCommit(self, events.JobCompleted(self, job, now))
        if isinstance(job, CronJob) and job.delay is None:
            self._scheduleNext(job, now)
        else:
            self._setStatus(job, COMPLETED, now)
            self._ended(job)  # unique key, dependants (see service.py)

    def _log(self, level, message, *args, logger=log):
        """Log when the current transaction commits (not if it aborts).

        A failure recorded in a transaction that then conflicts is recorded
        (and logged) again by the retry; logging at once would say it twice.
        """
        self._transactionManager().get().addAfterCommitHook(
            lambda committed: committed and logger.log(level, message, *args))

    def fail(self, job, error, traceback=None, now=None, retry=True,
             backoff=True):
        """See ITaskServiceProcessing."""
        now = now_(now)
        if isinstance(error, interfaces.JobCancelled) \
                or cancelling.isRequested(job):
            # Whatever failed: the job was to end (see cancelling.py).
            return cancelling.end(self, job, now)
        retry = retry and not isinstance(error, NOT_REPEATED)
        # A plain str (a subclass would be pickled by its class).
        message = str(error) if isinstance(error, str) \
            else formatError(error)
        job.error = message
        job.traceback = traceback
        job.lease = None
        history.recordAttempt(job, history.FAILED, now, message)
        retries = self.maxRetries if job.maxRetries is None \
            else job.maxRetries
        attempt = f'attempt {job.attempts} of {retries + 1}'
        if isinstance(job, CronJob) and job.delay is None:
            self._scheduleNext(job, now)
            self._log(logging.ERROR,
                      'Cron job %s (%r) failed: %s; next run at %s%s',
                      job.id, job.task, message, job.due,
                      _tracebackLines(error, traceback))
            events.afterCommit(
                self, events.JobFailed(self, job, 'rescheduled'))
            return 'rescheduled'
        if retry and job.attempts <= retries:
            delay = retryDelay(self, job, error) if backoff else 0
            self._queue(job, now + datetime.timedelta(seconds=delay)
                        if delay else None)
            # One line: the attempt is repeated, nothing needs doing yet.
            self._log(logging.WARNING,
                      'Job %s (%r): %s failed, repeating it%s: %s',
                      job.id, job.task, attempt,
                      f' in {delay:.3g} s' if delay else '', message)
            events.afterCommit(self, events.JobFailed(self, job, 'retry'))
            return 'retry'
        # Completed first: the sort indexes read it (sorting.py).
        job.completed = now
        self._setStatus(job, ERROR, now)
        self._ended(job)  # unique key, dependants (see service.py)
        # The job needs an operator: ERROR, with the traceback (none for a
        # TaskError, an expected failure; the job keeps it too).
        self._log(logging.ERROR, 'Job %s (%r) failed (%s): %s%s', job.id,
                  job.task, attempt if retry else 'not repeated', message,
                  _tracebackLines(error, traceback))
        events.afterCommit(self, events.JobFailed(self, job, 'error'))
        return 'error'

    def recover(self, now=None, dead=()):
        """See ITaskServiceProcessing.

        ``dead``: ids of workers found dead (see workers.py); their jobs
        are taken back whatever their leases say.
        """
        now = now_(now)
        dead = frozenset(dead)
        lost = []
        running = self._prefetch([
            self.jobs[jobid] for jobid in timeIds(self._index[PROCESSING])])
        for job in running:
            jobid = job.id
            lease = job.lease
            worker = lease.worker if lease is not None else job.worker
            if lease is not None and lease.expires > now \
                    and worker not in dead:
                continue
            if lease is not None:
                lease.revoked = True  # a late renewal now conflicts
            if lease is not None and lease.expires > now:
                self._log(logging.WARNING,
                          'Job %s (%r): worker %s lost, no heartbeat', jobid,
                          job.task, worker)
                why = (f'no heartbeat for {self.workerTimeout:g} s; its '
                       f'lease was revoked')
            else:
                self._log(logging.WARNING,
                          'Job %s (%r): worker %s lost, lease expired', jobid,
                          job.task, worker)
                why = f'its lease expired at {job.leaseExpires or now}'
            # No backoff: the job waited for its worker's timeout already.
            self.fail(job, f'WorkerLost: worker {worker} lost ({why})', None,
                      now, backoff=False)
            events.afterCommit(self, events.LeaseRecovered(self, job))
            lost.append(jobid)
        return lost

    def followUpChains(self, entries):
        """Settle the links of jobs this process ended (``entries`` of
        ``dependencies.takeRecent``) that their ending transactions did
        not; return how many jobs it settled and the entries to look at
        again (see dependencies.py)."""
        return dependencies.followUp(self, entries)

    def sweepChains(self, start=0):
        """Settle the links of jobs that ended, a batch of them from the
        link ``start`` on; return where the next sweep starts and how
        many jobs it settled (see dependencies.py)."""
        return dependencies.sweep(self, start)

    def renewLeases(self, jobids, worker, now=None):
        """See ITaskServiceProcessing."""
        now = now_(now)
        expires = now + datetime.timedelta(seconds=self.leaseTime)
        gone = []
        jobs = {jobid: self.jobs.get(jobid) for jobid in jobids}
        self._prefetch([job for job in jobs.values() if job is not None])
        for jobid, job in jobs.items():
            lease = job.lease if job is not None else None
            if lease is None or lease.revoked or lease.worker != worker:
                gone.append(jobid)
            elif lease.expires < expires:
                lease.expires = expires
        return gone
