"""Time sets: job ids ordered by a time, the job table's building block.

A time set is an ``LLTreeSet`` keyed ``second << 31 | jobid``: ordered by
time (whole seconds since the epoch), then by id.  The status index, the
queue of ready jobs and the schedule are time sets (see jobtable.py).

Concurrency
-----------

BTrees merge concurrent inserts and deletes of different keys, except a
change that empties a bucket (the bucket is unlinked from its tree, which
conflicts with an insert into it).  So every time set holds two sentinels
that are never removed, the lowest and the highest possible key: the first
and the last bucket never empty.  BTrees also refuse to merge the deletion
of a bucket's first key with any other change to that bucket; in a
one-bucket set the first key is the low sentinel, so there every add and
claim merges.  A burst splits a set into several buckets, which BTrees
never join again: then claims delete first keys of the bucket adds write
to, and the second of two concurrent commits conflicts (and is retried).
So an idle processor calls ``compact``, which puts a set that has become
small back into one bucket.

Id sets (``IITreeSet``) hold the sentinel -1 for the same reason.

Stored form
-----------

The ZODB's pickler calls its Python hook (``persistent_id``) for every
object of a state, each int key included: a bucket of 500 keys cost 500
calls, most of the time a claim or a completion spent storing its
indexes.  So a time set's buckets (``TimeBucket``), and a one-bucket set
whose tree holds its bucket inline, store their keys as one bytes object
(8 bytes per key, little-endian): one call.  They read both forms, and
resolve conflicts as BTrees do, on the keys unpacked (see
``TimeBucket._p_resolveConflict``): what merges and what conflicts is
unchanged.  Buckets stored before (``LLSet``) read as they were;
generation 11 rebuilds the sets in the new form.  A release before it
cannot read the packed form: a database is used by processes of one
release at a time, the ZEO server included (it resolves the conflicts,
see docs/server.rst).
"""
import array
import math
import sys

from BTrees.IIBTree import IITreeSet
from BTrees.LLBTree import LLSet
from BTrees.LLBTree import LLTreeSet


MAXID = 2 ** 31          # job ids are XML-RPC ints: below 2**31
_SENTINEL = -1           # in every id set, so that its buckets never empty
_LOW, _HIGH = 0, 2 ** 63 - 1   # in every time set (see the module doc)
#: ``compact`` rebuilds sets with at most this many keys.
COMPACT_SIZE = 250


_SWAP = sys.byteorder != 'little'


def _packKeys(keys):
    packed = array.array('q', keys)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def _unpackKeys(data):
    keys = array.array('q')
    keys.frombytes(data)
    if _SWAP:
        keys.byteswap()
    return tuple(keys)


def _packBucket(state):
    """A bucket's state ``(keys,)`` or ``(keys, next)``, keys packed."""
    if state is None or isinstance(state[0], bytes):
        return state
    return (_packKeys(state[0]),) + state[1:]


def _packedBucket(state):
    """Is a bucket's state in the packed form?

    A resolved conflict is stored in the form of the transaction that
    conflicted: a ZEO server of this release resolving the changes of a
    client of an older one (which cannot read the packed form, and runs
    until generation 11 has run) keeps that client's form.
    """
    return state is not None and isinstance(state[0], bytes)


def _unpackBucket(state):
    """A bucket's state as BTrees makes it, from either stored form."""
    if state is None or not isinstance(state[0], bytes):
        return state
    return (_unpackKeys(state[0]),) + state[1:]


def _isInline(state):
    # A tree of one bucket stores ``((bucket_state,),)``; a bigger one
    # ``(children_and_keys, first_bucket)``.
    return state is not None and len(state) == 1 and len(state[0]) == 1


def _packTree(state):
    if not _isInline(state):
        return state
    return ((_packBucket(state[0][0]),),)


def _unpackTree(state):
    if not _isInline(state):
        return state
    return ((_unpackBucket(state[0][0]),),)


def _packedTree(state):
    return _isInline(state) and _packedBucket(state[0][0])


class _PackedKeys:
    """Stores the keys of a BTrees state packed (``_pack``), reads both
    forms (``_unpack``), and resolves conflicts by BTrees' own merge on
    the keys unpacked, stored in the form of ``new`` (see
    ``_packedBucket``)."""
    __slots__ = ()

    def __getstate__(self):
        return self._pack(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(self._unpack(state))

    def _p_resolveConflict(self, old, committed, new):
        resolved = super()._p_resolveConflict(
            self._unpack(old), self._unpack(committed), self._unpack(new))
        return self._pack(resolved) if self._packed(new) else resolved


class TimeBucket(_PackedKeys, LLSet):
    """A time set's bucket, its keys stored packed (see the module doc)."""
    __slots__ = ()
    _pack = staticmethod(_packBucket)
    _unpack = staticmethod(_unpackBucket)
    _packed = staticmethod(_packedBucket)


class TimeSet(_PackedKeys, LLTreeSet):
    """A time set (see the module doc) with buckets of up to 500 keys.

    Bigger buckets than BTrees' default (120) split less often (a split
    conflicts with every concurrent change to the bucket) and keep a set
    of up to 500 jobs in one bucket, where every add and claim merges.
    A set of one bucket holds it inline: the tree packs its keys (BTrees
    merge conflicts at the tree only for such a set).
    """
    max_leaf_size = 500
    max_internal_size = 500
    _bucket_type = TimeBucket
    _pack = staticmethod(_packTree)
    _unpack = staticmethod(_unpackTree)
    _packed = staticmethod(_packedTree)


def timeKey(when, jobid):
    """The key of ``jobid`` at ``when`` (an aware datetime)."""
    return (math.floor(when.timestamp()) << 31) | jobid


def keySecond(key):
    """The whole second (since the epoch) of a key."""
    return key >> 31


def keyId(key):
    """The job id of a key."""
    return key & (MAXID - 1)


def newTimeSet(factory=TimeSet):
    keys = factory()
    keys.update((_LOW, _HIGH))
    return keys


def timeKeys(timeset, min=_LOW + 1, max=_HIGH - 1):
    """The keys of a time set, without its sentinels."""
    return timeset.keys(min, max)


def timeIds(timeset):
    """The job ids of a time set, in time order."""
    return (keyId(key) for key in timeKeys(timeset))


def firstKey(timeset):
    """The smallest key of a time set, or None if it is empty."""
    for key in timeKeys(timeset):
        return key
    return None


def spread(timeset):
    """Does the set have more than one bucket?"""
    state = LLTreeSet.__getstate__(timeset)
    return state is not None and len(state) == 2


def buckets(tree):
    """The buckets of a BTree set that spans several buckets."""
    bucket = tree._firstbucket
    while bucket is not None:
        yield bucket
        bucket = bucket._next


def compact(timeset, jar, size=COMPACT_SIZE):
    """Put a small set that spans several buckets into one; True if done.

    The rebuild writes the tree and a new bucket, not the old buckets: a
    concurrent change to one of them would not conflict with it, and would
    land in a bucket no longer in the set.  Reading them "current" makes
    such a change a ReadConflictError for this transaction (an insert
    committed after the rebuild conflicts on the tree, which BTrees read
    current themselves).
    """
    if not spread(timeset):
        return False
    # Count at most what matters: the set may be huge.
    items = []
    for key in timeset:
        items.append(key)
        if len(items) > size + 2:
            return False
    for bucket in buckets(timeset):
        jar.readCurrent(bucket)
    timeset.clear()
    timeset.update(items)
    return True


def rebuild(timeset):
    """Rebuild a set in place in buckets of its own kind (``TimeBucket``),
    if it has a bucket of another kind (stored before generation 11);
    True if done."""
    state = LLTreeSet.__getstate__(timeset)
    if state is None:
        return False
    if _isInline(state):
        # The tree stores its one bucket inline: it packs it itself.
        return False
    kind = type(timeset)._bucket_type
    if all(type(bucket) is kind for bucket in buckets(timeset)):
        return False
    keys = list(timeset)
    # The rebuild writes the tree and new buckets, not the old ones: a
    # concurrent insert into one of them must conflict with it (see
    # ``compact``).
    if timeset._p_jar is not None:
        for bucket in buckets(timeset):
            timeset._p_jar.readCurrent(bucket)
    timeset.clear()
    timeset.update(keys)
    return True


def newIdSet():
    ids = IITreeSet()
    ids.add(_SENTINEL)
    return ids


def ids(idset):
    """The job ids of an id set, without its sentinel."""
    return idset.keys(min=1)
