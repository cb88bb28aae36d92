"""Changing many jobs in batches, each batch a transaction of its own.

"Cancel all" and "Remove all" on a queue of a million jobs, or while
processors drain it, must not be one transaction: it would write much of
the job table at once, take long, and conflict with every claim and
completion meanwhile (and a conflict would repeat all of it).  In
batches, each commit is small, a conflict repeats one batch, and the work
grows linearly with the jobs.

A batch step is ``step(service, size)``: it changes at most ``size`` jobs
and returns how many it changed; the steps are repeated until one changes
fewer than ``size``.
"""
import datetime
import logging
import random
import time

from transaction.interfaces import TransientError

from lovely.remotetask import history
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.jobtable import now_
from lovely.remotetask.timeset import timeKey


log = logging.getLogger('lovely.remotetask')

#: Jobs per batch.
BATCH_SIZE = 1000
#: How often one batch is repeated after conflicts before giving up.
RETRIES = 20


def inBatches(service, step, size=BATCH_SIZE, retries=RETRIES):
    """Repeat ``step(service, size)`` in transactions of its own; return
    the number of jobs changed.

    Commits the current transaction of the service's connection first (a
    web request's: whatever it did so far), and each batch after it.  A
    batch that conflicts is aborted and repeated, after a short random
    pause, up to ``retries`` times; then the conflict propagates (the
    batches committed before it stay).  A service that is not stored in a
    database gets one call of ``step`` with no limit.
    """
    jar = service._p_jar
    if jar is None:
        return step(service, None)
    tm = jar.transaction_manager
    oid = service._p_oid
    tm.commit()
    total = 0
    while True:
        for attempt in range(retries + 1):
            try:
                done = step(jar.get(oid), size)
                tm.commit()
                break
            except TransientError:
                tm.abort()
                if attempt == retries:
                    raise
                time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
        total += done
        if done < size:
            return total


def cancelAll(service, size=BATCH_SIZE):
    """Cancel every cancellable job, in batches; return how many."""
    return inBatches(service, lambda s, n: s.cancelAll(limit=n), size)


def clean(service, status, size=BATCH_SIZE):
    """Remove the jobs in ``status``, in batches; return how many."""
    return inBatches(service, lambda s, n: s.clean(status, limit=n), size)


def retryAll(service, status=ERROR, task=None, size=BATCH_SIZE):
    """Retry the jobs in ``status`` (of ``task``), in batches; return how
    many.

    Only the jobs that were in the status when it began (to the second:
    the index keys have whole seconds): a job that fails again later is
    left there, so that the batches end even while processors fail jobs
    as fast as they are retried.
    """
    history.checkStatus(status)  # a bad status raises before any commit
    before = timeKey(now_() + datetime.timedelta(seconds=1), 0)
    return inBatches(service, lambda s, n: history.retryAll(
        s, status, task, n, before), size)
