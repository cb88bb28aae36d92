"""Storage faults: errors of the storage, not of a task.

A processor retries a run that meets one of these (with backoff and
jitter) without counting a failed attempt, for as long as it may still
hold the job's lease; only the task's own exceptions count as failed
attempts.  They are:

* ``ZEO.Exceptions.ClientDisconnected``: the ZEO server is away (or the
  connection to it broke);
* ``ValueError: A different object already has the same oid``: after a
  ZEO server restart, a client still holds object ids it prefetched
  before and the server hands the same ids to others.  The prefetched ids
  are dropped (``dropPrefetchedOids``) before the next try;
* read conflicts and lock timeouts (``ReadConflictError``, RelStorage's
  ``UnableToLockRowsToReadCurrentError`` and other
  ``UnableToAcquireLockError``): another transaction holds what this one
  reads or writes; it ends soon.

Ordinary write conflicts (``ConflictError``) are not storage faults: the
run is repeated at once, a bounded number of times (see processor.py).
"""
import random
import threading
import time

from ZODB.POSException import ReadConflictError


DUPLICATE_OID = 'A different object already has the same oid'


def _faultClasses():
    classes = [ReadConflictError]
    try:
        from ZEO.Exceptions import ClientDisconnected
        classes.append(ClientDisconnected)
    except ImportError:  # pragma: no cover (ZEO is a dependency)
        pass
    try:
        from relstorage.adapters.interfaces import UnableToAcquireLockError
        classes.append(UnableToAcquireLockError)
    except ImportError:  # RelStorage is optional
        pass
    return tuple(classes)


FAULTS = _faultClasses()


def isStorageFault(error):
    """Is ``error`` a fault of the storage (see the module doc)?"""
    if isinstance(error, FAULTS):
        return True
    return isinstance(error, ValueError) and DUPLICATE_OID in str(error)


def dropPrefetchedOids(db):
    """Forget the object ids a ZEO client prefetched (a no-op otherwise).

    ``ClientStorage`` keeps a list of new oids it fetched from the server
    in advance; after a server restart the server hands them out again.
    """
    storage = getattr(db, 'storage', None)
    oids = getattr(storage, '_oids', None)
    if isinstance(oids, list):
        lock = getattr(storage, '_oid_lock', None) or threading.Lock()
        with lock:
            del oids[:]


class Backoff:
    """Waits between tries after storage faults, up to a deadline.

    ``held()`` says the job's lease was just seen held: the deadline is
    then ``leaseTime`` seconds from now (the lease cannot have expired
    before).  ``wait(error)`` sleeps (exponential, with jitter, at most
    ``cap`` seconds) and returns True, or returns False once the
    deadline has passed.
    """

    first = 0.05
    cap = 2.0

    def __init__(self, db, leaseTime, clock=time.monotonic):
        self.db = db
        self.leaseTime = leaseTime
        self.clock = clock
        self.tries = 0
        self.deadline = clock() + leaseTime

    def held(self):
        self.deadline = self.clock() + self.leaseTime

    def wait(self, error):
        if isinstance(error, ValueError):
            dropPrefetchedOids(self.db)
        left = self.deadline - self.clock()
        if left <= 0:
            return False
        delay = min(self.cap, self.first * 2 ** self.tries)
        self.tries += 1
        time.sleep(min(delay * random.uniform(0.5, 1.5), left))
        return True
