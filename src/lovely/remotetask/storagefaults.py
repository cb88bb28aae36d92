"""Storage faults: errors of the storage, not of a task.

A processor retries a run that meets one of these (with backoff and
jitter) without counting a failed attempt, for as long as it may still
hold the job's lease; only the task's own exceptions count as failed
attempts.  They are:

* ``ZEO.Exceptions.ClientDisconnected``: the ZEO server is away (or the
  connection to it broke);
* ``ValueError: A different object already has the same oid``: after a
  ZEO server restart, a client still holds object ids it prefetched
  before and the server hands the same ids to others (see "Object ids
  after a ZEO server restart" below);
* read conflicts and lock timeouts (``ReadConflictError``, RelStorage's
  ``UnableToLockRowsToReadCurrentError`` and other
  ``UnableToAcquireLockError``): another transaction holds what this one
  reads or writes; it ends soon.

Ordinary write conflicts (``ConflictError``) are not storage faults: the
run is repeated at once, a bounded number of times (see processor.py).

Object ids after a ZEO server restart
=====================================

A ZEO ``ClientStorage`` fetches new object ids from the server in
batches and keeps the rest for later (``_oids``), also across a
reconnection.  A restarted server counts from the highest oid stored, so
it hands those ids out again.  A client that then uses one of them:

* makes the commit conflict on the server, again at every try while the
  prefetched ids last (a run that gives up after its conflict retries
  spends an attempt on the outage);
* or, if its connection holds the other process's object of that oid,
  fails with the ``ValueError`` above; and the abort of that transaction
  (``Connection._invalidate_creating``) removes *that* object from the
  connection's cache and takes its ``_p_jar``.  The object's parent still
  refers to it: writes to it no longer reach the database (no error; a
  job completes with part of its task's writes lost) and invalidations
  no longer reach it.

So ``guardPrefetchedOids`` drops a client's prefetched ids whenever its
connection to the server ends or is made again (every processor
installs it on its database), and ``repair`` -- called after a storage
fault -- drops them and empties the caches of the database's connections
(at their next transaction, as ZEO does on a reconnection) after a
duplicate oid was met anyway.
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
    return isinstance(error, FAULTS) or isDuplicateOid(error)


def isDuplicateOid(error):
    """Did a new object get an oid that another object has (see the
    module doc)?"""
    return isinstance(error, ValueError) and DUPLICATE_OID in str(error)


def repair(db, error):
    """After the storage fault ``error``, before the next try: after a
    duplicate oid, drop the prefetched oids and empty the connections'
    caches (one of them lost an object from its cache, see the module
    doc)."""
    if isDuplicateOid(error):
        dropPrefetchedOids(db)
        resetConnectionCaches(db)


def resetConnectionCaches(db):
    """Empty the cache of every connection of ``db`` at its next
    transaction (what a ZEO client does when it reconnects)."""
    invalidate = getattr(getattr(db, '_mvcc_storage', None),
                         'invalidateCache', None)
    if invalidate is not None:
        invalidate()
    else:   # pragma: no cover (an IMVCCStorage without it)
        import ZODB.Connection
        ZODB.Connection.resetCaches()


def guardPrefetchedOids(db):
    """Drop the prefetched oids of a ZEO client (``db``'s storage) when
    its connection to the server ends and whenever it is made (again):
    a restarted server hands them out again (see the module doc).

    Once per storage; False if the storage is not a ZEO client.
    """
    storage = getattr(db, 'storage', None)
    if not isinstance(getattr(storage, '_oids', None), list) \
            or not callable(getattr(storage, 'notify_connected', None)) \
            or not callable(getattr(storage, 'notify_disconnected', None)):
        return False
    with _guardLock:
        if getattr(storage, '_remotetask_oids_guarded', False):
            return True
        connected = storage.notify_connected
        disconnected = storage.notify_disconnected

        # ZEO's networking thread calls these (as attributes of the
        # instance), before a reconnected client is used again.
        def notify_connected(*args, **kw):
            dropPrefetchedOids(db)
            return connected(*args, **kw)

        def notify_disconnected(*args, **kw):
            dropPrefetchedOids(db)
            return disconnected(*args, **kw)
        storage.notify_connected = notify_connected
        storage.notify_disconnected = notify_disconnected
        storage._remotetask_oids_guarded = True
    return True


_guardLock = threading.Lock()


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
        repair(self.db, error)
        left = self.deadline - self.clock()
        if left <= 0:
            return False
        delay = min(self.cap, self.first * 2 ** self.tries)
        self.tries += 1
        time.sleep(min(delay * random.uniform(0.5, 1.5), left))
        return True
