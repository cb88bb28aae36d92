"""The audit log of a task service: who changed the queue, and when.

Every cancel, clean, retry, start and stop of processing is recorded
with the principal who did it (the principal of the interaction: the
web request's or the XML-RPC call's user; None outside an interaction)
and logged at INFO.  Who added a job is recorded on the job itself
(``job.addedBy``, see interaction.py).  See audit.rst.

Recording (``record``) is transactional: what a transaction records is
written, and logged, when it commits, and never if it aborts; rolling
back a savepoint (as ``processNext`` does for a failed task) drops what
was recorded after it.  The
records of one transaction are merged: one entry per action and
principal, with the number of jobs and the first ``MAX_IDS`` of their
ids (a "Cancel all" of 100,000 jobs is one entry, not 100,000).

The API for the actions that other modules add (``retry``)::

    audit.record(service, 'retry', jobids, count=None, detail=None)

``count`` defaults to the number of ``jobids``; ``detail`` is a short
text (``clean`` names the statuses).

The log (``AuditLog``) and how it behaves under concurrent transactions
=====================================================================

``_entries`` (LOBTree: key -> entry tuple)
    Keyed by the time of the commit in microseconds, shifted left by 10
    bits, plus 10 random bits: ordered by time, and two transactions
    recording in the same microsecond pick the same key only once in
    1024 times (then one of them conflicts and is retried).  Appends
    insert the highest keys, into the last bucket: concurrent appends of
    different keys merge (BTree buckets resolve conflicts), except when
    one of them splits the bucket (then the other conflicts and is
    retried, as a web request is).

    The tree holds a sentinel, key 0, that is never removed: the first
    bucket exists from the start (two transactions that both created it
    would conflict) and never empties (a change that empties a bucket
    does not merge).

``_length`` (BTrees.Length)
    The number of entries; merges any concurrent changes.

Bounded size
    An append that finds more than ``maxEntries`` plus a tenth entries
    deletes the oldest down to ``maxEntries``.  So one append in a tenth
    of ``maxEntries`` trims, and it deletes keys of the first buckets,
    which appends never write: a trim and an append merge, unless the
    append splits the last bucket while the trim empties the first (both
    write the tree).  Two concurrent trims delete the same keys and
    conflict: one is retried, and then finds nothing to trim.

A new service has its log from the start.  A service stored before there
was an audit log gets it with the first record: that writes the service
object once (two first records at once conflict, and one is retried).
"""
import collections
import datetime
import itertools
import logging
import random

import persistent
from BTrees.Length import Length
from BTrees.LOBTree import LOBTree
from transaction.interfaces import IDataManager
from transaction.interfaces import ISavepointDataManager
from zope.interface import implementer

from lovely.remotetask.interaction import currentPrincipalId


#: Its own logger, so that operators can route the audit trail apart.
log = logging.getLogger('lovely.remotetask.audit')

UTC = datetime.timezone.utc
#: The actions recorded, in the order the ZMI offers them as filters.
ACTIONS = ('cancel', 'clean', 'retry', 'start', 'stop')
#: An entry keeps at most this many of its jobs' ids (and their count).
MAX_IDS = 20
#: The default bound of an audit log.
MAX_ENTRIES = 1000
#: ``record``'s default principal: that of the current interaction.
CURRENT = object()
#: The key of the entry that is never removed (see the module doc).
_SENTINEL = 0

Entry = collections.namedtuple(
    'Entry', 'when principal action jobids count detail')
Entry.__doc__ = """An entry of the audit log.

``when`` is an aware UTC datetime, ``principal`` an id or None, ``jobids``
a tuple of at most ``MAX_IDS`` ids of the ``count`` jobs (None for start
and stop), ``detail`` a short text or None."""


def _key(when):
    micros = int(when.timestamp() * 1000000)
    return (micros << 10) | random.randrange(1024)


def _when(key):
    return datetime.datetime.fromtimestamp((key >> 10) / 1000000, UTC)


class AuditLog(persistent.Persistent):
    """The bounded, newest-first audit log of one service (see the module
    doc)."""

    maxEntries = MAX_ENTRIES

    def __init__(self):
        self._entries = LOBTree()
        self._entries[_SENTINEL] = None
        self._length = Length()

    def __len__(self):
        return self._length()

    def append(self, principal, action, jobids=(), count=None, detail=None,
               now=None):
        """Add an entry (see ``Entry``); trim the oldest if the log is
        full."""
        now = now or datetime.datetime.now(UTC)
        entries = self._entries
        key = _key(now)
        while key in entries:
            key += 1
        entries[key] = (principal, action, tuple(jobids)[:MAX_IDS], count,
                        detail)
        self._length.change(1)
        self._trim()

    def _trim(self):
        excess = self._length() - self.maxEntries
        if excess <= max(self.maxEntries // 10, 1):
            return
        oldest = list(self._entries.keys(min=_SENTINEL + 1)[:excess])
        for key in oldest:
            del self._entries[key]
        self._length.change(-len(oldest))

    def entries(self, principal=CURRENT, action=None):
        """The entries, newest first, of ``principal`` (an id, or None
        for the entries made outside an interaction; all if not given)
        and of ``action`` (all if None)."""
        for key in reversed(self._entries.keys(min=_SENTINEL + 1)):
            principalId, act, jobids, count, detail = self._entries[key]
            if principal is not CURRENT and principalId != principal:
                continue
            if action is not None and act != action:
                continue
            yield Entry(_when(key), principalId, act, jobids, count, detail)

    def principals(self):
        """The principals of the entries (None: outside an interaction).
        """
        return {entry[0]
                for entry in self._entries.values(min=_SENTINEL + 1)}


def auditLog(service, create=False):
    """The audit log of ``service``; None if it has none yet and
    ``create`` is false."""
    auditlog = getattr(service, '_audit', None)
    if auditlog is None and create:
        auditlog = service._audit = AuditLog()
    return auditlog


def entries(service, principal=CURRENT, action=None):
    """The service's audit entries, newest first (see ``AuditLog``)."""
    auditlog = auditLog(service)
    return iter(()) if auditlog is None else auditlog.entries(principal,
                                                              action)


# -- recording ----------------------------------------------------------------

def record(service, action, jobids=(), count=None, principal=CURRENT,
           detail=None):
    """Record ``action`` on ``service`` when the transaction commits.

    ``principal`` defaults to the current interaction's (None outside
    one).  The records of one transaction with the same service, action,
    principal and detail become one entry.  A service that is not stored
    in a database records at once.
    """
    if action not in ACTIONS:
        raise ValueError(f'Unknown audit action: {action!r}')
    if principal is CURRENT:
        principal = currentPrincipalId()
    if count is None:
        jobids = tuple(jobids)
        count = len(jobids) or None
    else:
        jobids = tuple(itertools.islice(jobids, MAX_IDS))
    jar = getattr(service, '_p_jar', None)
    if jar is None:
        _write(service, principal, action, jobids, count, detail)
        _log(service, principal, action, jobids, count, detail)
        return
    manager = jar.transaction_manager
    txn = manager.get()
    try:
        pending = txn.data(record)
    except KeyError:
        pending = _Pending(manager)
        txn.set_data(record, pending)
        txn.addBeforeCommitHook(_writePending, (pending,))
        txn.addAfterCommitHook(_logPending, (pending,))
    if not pending.joined:
        # Joined, the records roll back with the transaction's savepoints
        # (a failed task's in processNext).
        txn.join(pending)
        pending.joined = True
    records = pending.records
    key = (id(service), principal, action, detail)
    if key in records:
        _, ids, total = records[key]
        records[key] = (service, (ids + jobids)[:MAX_IDS],
                        None if total is None and count is None
                        else (total or 0) + (count or 0))
    else:
        records[key] = (service, jobids[:MAX_IDS], count)


@implementer(IDataManager, ISavepointDataManager)
class _Pending:
    """The records of a transaction, until its before-commit hook writes
    them.  A data manager only so that savepoints roll them back; it
    stores nothing itself."""

    joined = False

    def __init__(self, manager):
        self.transaction_manager = manager
        self.records = {}

    def savepoint(self):
        return _Rollback(self)

    def abort(self, txn):
        # The transaction aborts, or a savepoint from before this data
        # manager joined is rolled back (which also unjoins it).
        self.records.clear()
        self.joined = False

    def tpc_begin(self, txn):
        pass

    commit = tpc_vote = tpc_finish = tpc_abort = tpc_begin

    def sortKey(self):
        return 'lovely.remotetask.audit'


class _Rollback:

    def __init__(self, pending):
        self.pending = pending
        self.records = dict(pending.records)

    def rollback(self):
        self.pending.records.clear()
        self.pending.records.update(self.records)


def _writePending(pending):
    for (ident, principal, action, detail), (service, jobids, count) in \
            pending.records.items():
        _write(service, principal, action, jobids, count, detail)


def _logPending(committed, pending):
    if committed:
        for (ident, principal, action, detail), (service, jobids, count) in \
                pending.records.items():
            _log(service, principal, action, jobids, count, detail)


def _write(service, principal, action, jobids, count, detail):
    auditLog(service, create=True).append(principal, action, jobids, count,
                                          detail)


def _log(service, principal, action, jobids, count, detail):
    # repr() of what comes from outside: no control characters in a log
    # line.
    what = action if count is None else f'{action} of {count} job(s)'
    if jobids:
        shown = ', '.join(map(str, jobids))
        more = ', ...' if count is not None and count > len(jobids) else ''
        what += f' [{shown}{more}]'
    if detail:
        what += f' ({detail!r})'
    log.info('Audit: %r: %s by %r', _path(service), what, principal)


def _path(service):
    """The service's path from the root folder: ``site/tasks``."""
    names = []
    obj = service
    while obj is not None:
        name = getattr(obj, '__name__', None)
        if name:
            names.append(name)
        obj = getattr(obj, '__parent__', None)
    return '/'.join(reversed(names))
