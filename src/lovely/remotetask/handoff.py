"""Hand-off: a new job goes straight to an idle processor of this process.

A processor that claims a new job puts two fsynced commits between the
add and the task's start: the add's and the claim's.  When this process's
processor of the service waits idle with nothing else to claim, the
adding transaction claims the job for it as it commits, and the
processor, handed the job once that commit is done, runs it without a
claim of its own: one commit fewer between the add and the start (about
0.7 ms of 3.7 at the median on a FileStorage here).

``add`` puts its job into the inbox as always (the transaction sees it
queued, and may cancel it, say) and, if the processor waits idle, hooks
into the transaction (``offer``).  At the commit a before-commit hook
looks again, and hands off only when all of these hold, so that the job
is the one the processor's next claim would take: the job is the only
new one (a transaction hands off one job at most: a batch of adds stays
for all the workers to share) and is still queued; no other job is
queued or due; no task has limits; the service is not paused; the job's
task has jobs already (the first job of a task creates its id set, which
two processes' hand-offs would both insert); and the processor takes
hand-offs (``handOff``, a processor argument, default True), waits idle,
is not stopping and has no other hand-off under way.  A pause or a
limit of the service committed since the transaction began makes its
commit conflict (``readCurrent``), as any conflict: retried.

Then the hook reserves the processor and claims the job for it, as
``claimGroup`` would (``_start``: the job leaves the inbox for the index
of running jobs, under a lease of the processor's dated at the commit).
An after-commit hook, registered by the add (so that it runs before the
after-commit hooks registered after it), hands the job over: the
processor keeps its lease from then on and runs it at its next step,
loading it by its oid (the bucket of ``jobs`` that the add wrote would
cost the run a load of its own first).  A commit that fails, or a
transaction aborted after the hook, ends the reservation; the processor
then checks whether the claim committed all the same (a commit that
failed after its data did) and runs the job if it did.  Wakes of a
processor reserved for less than ``WAIT`` seconds are left to the
hand-over's end (which wakes it); one that wakes meanwhile all the
same (its poll, or a wake after ``WAIT``) waits for the hand-over
(``WAIT`` seconds at most) before it claims.  A reservation that
nothing ended within ``RESERVATION`` seconds (a transaction dropped
without an abort; or one whose earlier after-abort hook raised, which
also leaves a claim that committed to its lease) lapses.

A stopping processor waits for a hand-off under way (``RESERVATION``
seconds at most) and runs what it was handed before its thread ends; a
job handed over after that (or left by a loop that ended unexpectedly)
is given back to the queue at the place of a new job, its attempt not
counted, or ended cancelled if its cancel was requested (``giveBack``).  A
process that dies with a handed job leaves it to its lease, as any
claimed job: another processor takes it back once the lease expires or
the worker's heartbeats stop.

Concurrent transactions: the claim writes what a processor's claim of a
new job writes (the job, the inbox, the index of running jobs and its
counter, the task's id set and counter, ``_created``); concurrent adds
merge with it as they merge with such a claim.
"""
import itertools
import logging
import threading
import time

from transaction._transaction import Status

from lovely.remotetask import cancelling
from lovely.remotetask import inbox
from lovely.remotetask import tasklimits
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.jobtable import _wakeAfterCommit
from lovely.remotetask.jobtable import now_
from lovely.remotetask.running import _closed
from lovely.remotetask.timeset import keyId


log = logging.getLogger('lovely.remotetask')

#: Seconds after which a reservation that nothing ended lapses.
RESERVATION = 5.0
#: Seconds a processor that polls waits for a hand-off under way.
WAIT = 1.0


def offer(service, job):
    """Offer the new queued ``job`` to this process's idle processor of
    ``service`` when the transaction commits (see the module doc)."""
    jar = service._p_jar
    if jar is None or service._p_oid is None:
        return
    # The processor module imports the service's: import it late.
    from lovely.remotetask import processor
    key = (jar.db(), service._p_oid)
    proc = processor.idleProcessor(*key)
    if proc is None:
        return
    txn = jar.transaction_manager.get()
    try:
        offers = txn.data(offer)
    except KeyError:
        offers = {}
        txn.set_data(offer, offers)
    pending = offers.get(key)
    if pending is None:
        pending = offers[key] = _Offer(service, proc)
        # The hand-over hook now, so that it runs before after-commit
        # hooks registered after the add (a slow one would delay the job).
        txn.addBeforeCommitHook(pending.claim)
        txn.addAfterCommitHook(pending.committed)
        txn.addAfterAbortHook(pending.aborted, args=(txn,))
    pending.jobs.append(job)


class _Offer:
    """One transaction's offer of its new jobs to one processor."""

    def __init__(self, service, proc):
        self.service = service
        self.proc = proc
        self.jobs = []
        self.token = self.job = None

    def claim(self):
        """The before-commit hook: claim the offered job for the
        processor (see the module doc)."""
        service, now = self.service, now_()
        job = _onlyNew(service, self.jobs)
        if job is None or not _alone(service, job, now):
            return
        token = self.proc.reserve()
        if token is None:
            return
        try:
            _readCurrent(service)
            service._start(job, self.proc.workerId, now)
        except BaseException:
            self.proc.handOver(token, None)
            raise
        self.token, self.job = token, job

    def committed(self, ok):
        self._end(ok)

    def aborted(self, txn):
        # A commit that raised after the data was committed (a
        # synchronizer's afterCompletion, say) calls no after-commit hook.
        self._end(txn.status is Status.COMMITTED)

    def _end(self, committed):
        token, self.token = self.token, None
        if token is not None:
            # The job's oid (given by the commit): the processor loads the
            # job by it, not through the bucket of ``jobs`` the add wrote.
            self.proc.handOver(token, self.job.id, committed,
                               self.job._p_oid)


def _onlyNew(service, offered):
    """The inbox's only job, if it is one of ``offered`` (still queued);
    else None."""
    keys = list(itertools.islice(inbox.keys(service), 2))
    if len(keys) != 1:
        return None
    jobid = keyId(keys[0])
    for job in offered:
        if job.id == jobid and job.status == QUEUED \
                and service.jobs.get(jobid) is job:
            return job
    return None


def _alone(service, job, now):
    """Would the processor's next claim take ``job``?"""
    return (not service._counts[QUEUED]() and job.task in service._byTask
            and tasklimits.unlimited(service) and not service.isPaused()
            and service._nextDue(now) is None)


def _readCurrent(service):
    """Make the commit conflict if the pause or the service's task limits
    changed since the transaction began (its snapshot said go)."""
    jar = service._p_jar
    registry = service._registry()
    settings = service._taskSettings
    for ob in (registry.control if registry is not None else None,
               settings, *_buckets(settings)):
        if ob is not None and ob._p_jar is jar and ob._p_oid is not None:
            ob._p_activate()   # (a ghost's serial is unknown: not read)
            jar.readCurrent(ob)


def _buckets(tree):
    """The buckets of a BTree stored apart from it (a small tree keeps
    its one bucket inside its own record)."""
    bucket = tree._firstbucket
    while bucket is not None:
        yield bucket
        bucket = bucket._next


def giveBack(service, jobids, worker, now=None):
    """Put jobs claimed for ``worker``, never run, back into the queue at
    the place of a new job (their attempt does not count), or end them
    cancelled if their cancel was requested meanwhile; return the ids of
    the jobs put back or ended."""
    given = []
    for jobid in jobids:
        job = service.jobs.get(jobid)
        lease = getattr(job, 'lease', None)
        if job is None or job.status != PROCESSING or lease is None \
                or lease.worker != worker or lease.revoked:
            continue
        given.append(jobid)
        if cancelling.isRequested(job):
            cancelling.end(service, job, now_(now))
            continue
        job.attempts -= 1
        job.lease = job.worker = job.started = None
        service._setStatus(job, QUEUED, job.created)
    if given:
        _wakeAfterCommit(service)
    return given


class HandOffs:
    """The part of a processor that takes jobs claimed for it by other
    transactions (see the module doc).

    A mixin of ``processor.BaseProcessor``, which provides the running
    jobs' set and its lock, ``_trackLocked``, ``_untrack``, ``runGroup``,
    ``_transact``, ``_holds``, the wake-up and the stop events.
    """

    def _initHandOffs(self, handOff):
        self.handOff = handOff
        #: Jobs handed over so far.
        self.handOffs = 0
        self._handed = []       # job ids handed over, not run yet
        self._handedOids = {}   # job id -> oid, of jobs handed over
        self._unsure = []       # ... by commits that may have failed
        self._reserved = {}     # token -> when it was made (monotonic)
        self._tokens = itertools.count()
        self._waiting = False   # idle: waiting for work (see _idle)
        self._loopEnded = False
        self._handOffEnded = threading.Condition(self._runningLock)

    def _reserving(self, within=None):
        """Is a hand-off under way (a reservation made ``within`` seconds,
        default ``RESERVATION``)?  (Unlocked: one entry at most.)"""
        made = tuple(self._reserved.values())
        return bool(made) and max(made) > time.monotonic() - (
            RESERVATION if within is None else min(within, RESERVATION))

    def takesHandOff(self):
        """Would this processor take a hand-off now?  (Unlocked: a hint
        for ``offer``; ``reserve`` decides, holding the lock.)"""
        return bool(self.handOff and self._waiting and not self._reserving()
                    and not self._handed and not self._loopEnded
                    and not self._stopping.is_set())

    def reserve(self):
        """Reserve this processor for a hand-off being committed: a token
        for ``handOver``, or None if it takes none now."""
        with self._runningLock:
            self._lapse()
            if not self.takesHandOff():
                return None
            token = next(self._tokens)
            self._reserved[token] = time.monotonic()
            return token

    def handOver(self, token, jobid, committed=True, oid=None):
        """End the reservation ``token``, whose commit claimed ``jobid``
        (None: nothing) and ``committed`` (or failed: the job is run if
        the claim turns out committed all the same).  The job runs at the
        next step; its lease is kept from now on."""
        with self._runningLock:
            self._reserved.pop(token, None)
            taken = jobid is not None and not self._loopEnded
            if taken:
                (self._handed if committed else self._unsure).append(jobid)
                if committed and oid is not None:
                    self._handedOids[jobid] = oid
                self.handOffs += committed
                self._trackLocked([jobid])
            self._handOffEnded.notify_all()
        # Also when nothing was handed over: wakes during the hand-off
        # were left to its end (see ``wake``).
        self._wakeup.set()
        if jobid is not None and committed and not taken:
            self._giveBack([jobid], 'were handed over after the processor '
                                    'ended')

    def _giveBack(self, jobids, why):
        """Put handed jobs this processor will not run back into the
        queue (in a transaction of their own; failing that, they are left
        to their leases)."""
        self._forgetHanded(jobids)
        try:
            given = self._transact(lambda service, now: giveBack(
                service, jobids, self.workerId, now), 2)
        except Exception as error:
            log.warning('%s: jobs %s %s, and giving them back failed (%s: '
                        '%s); they are left to their leases', self.workerId,
                        jobids, why, error.__class__.__name__, error)
        else:
            if given:
                log.info('%s: jobs %s %s: given back to the queue',
                         self.workerId, given, why)

    def _stopWaiting(self, timeout=WAIT):
        """The processor stops waiting idle; a hand-off under way is
        waited for (at most ``timeout`` seconds)."""
        with self._runningLock:
            self._waiting = False
            self._handOffEnded.wait_for(self._settled, timeout)

    def _settled(self):
        self._lapse()
        return not self._reserved

    def _lapse(self):
        since = time.monotonic() - RESERVATION
        for token, made in list(self._reserved.items()):
            if made < since:
                del self._reserved[token]

    def _handedJob(self, conn, jobid):
        """The job ``jobid`` loaded by its oid, if it was handed over (the
        bucket of ``jobs`` that its add wrote is not loaded then); else
        None.  Once per hand-over: a run again looks it up by id."""
        with self._runningLock:
            oid = self._handedOids.pop(jobid, None)
        if oid is None:
            return None
        try:
            job = conn.get(oid)
            # Ids are never reused by another object: this is the job,
            # unless the oid came from elsewhere (then: by id).
            return job if getattr(job, 'id', None) == jobid else None
        except KeyError:    # POSKeyError: removed and packed since
            return None

    def _forgetHanded(self, jobids):
        """Drop the oids of ``jobids`` (run, given back, or failed)."""
        with self._runningLock:
            for jobid in jobids:
                self._handedOids.pop(jobid, None)

    def _takeHanded(self):
        """The jobs handed over since the last look (and those whose
        commit failed but whose claim this processor holds)."""
        with self._runningLock:
            jobids, self._handed = self._handed, []
            unsure, self._unsure = self._unsure, []
        try:
            return jobids + self._held(unsure)
        except BaseException:
            with self._runningLock:
                self._unsure.extend(unsure)   # (the next step looks)
                self._handed[:0] = jobids
            raise

    def _held(self, unsure):
        """Those of ``unsure`` whose claim this processor holds (the
        others are no longer tracked)."""
        if not unsure:
            return []
        held = self._transact(lambda service, now: [
            jobid for jobid in unsure
            if self._holds(service.jobs.get(jobid))], 0)
        self._untrack(set(unsure) - set(held))
        with self._runningLock:
            self.handOffs += len(held)
        return held

    def _endHandOffs(self, run=True, timeout=None):
        """Take no more jobs; run those handed over and not run yet, after
        waiting for a hand-off under way (``RESERVATION`` seconds at
        most), unless not ``run``: they are given back to the queue then;
        a closed database leaves them to their leases."""
        if run:
            self._stopWaiting(RESERVATION if timeout is None else timeout)
        with self._runningLock:
            self._loopEnded = True
            jobids, unsure = self._handed, self._unsure
            self._handed, self._unsure = [], []
        if not jobids and not unsure:
            return
        if _closed(self.db):
            self._untrack(jobids + unsure)
            return
        jobids += self._held(unsure)
        self._untrack(jobids)
        if run:
            self.runGroup(jobids)
        else:
            self._giveBack(jobids, 'were left by a processor that ended '
                                   'unexpectedly')
