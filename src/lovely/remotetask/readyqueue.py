"""The ready queue of generation 1 (kept to load and evolve old databases).

Generation 3 replaced these queues with the index of ``queued`` jobs
(see jobtable.py), which an add writes anyway; ``evolve3`` removes them.
What follows describes how they worked.

Shape
-----

A ``ReadyQueue`` is a tuple of buckets (``zc.queue.Queue`` objects, each a
small tuple of items).  Adds append to the last bucket (the *tail*),
starting a new tail when it is full; claims pull from the first non-empty
bucket.  So an add writes one bucket (and the container only when it
starts a new tail) and a claim writes one bucket (and the container only
when it retires emptied buckets): a queue of a million jobs is never
rewritten as a whole.

Concurrency
-----------

Concurrent transactions merge through ``_p_resolveConflict`` (zc.queue's
rules: anything merges except two transactions taking, or adding, the
same item):

* An add and a claim on the same bucket merge.  That is the common case
  of an idle system (one bucket, a job arrives while the last one is
  claimed), and the reason for the *tail rule*: a claim never retires the
  tail, even when it empties it, because an add may be writing to it
  concurrently.  (``zc.queue.CompositeQueue`` retires every emptied
  bucket, so there an add into a bucket that a concurrent claim has just
  emptied gets a ``ConflictError``.)
* A claim retires an emptied bucket that is not the tail explicitly: it
  sets ``_retired`` on the bucket, which changes the bucket's state keys,
  and zc.queue refuses to merge states with different keys.  So an add
  that still saw that bucket as its tail (its snapshot predates the new
  tail) conflicts and is retried, instead of merging its item into a
  bucket that is no longer in the queue, where it would be lost.
* Two claims of the same item conflict: one of them retries.  The service
  spreads concurrent claimers over several ready queues to make that rare.

Items are ``(enqueued, jobid)`` tuples, ``enqueued`` being microseconds
since the epoch, so that a claimer can compare the heads of several
queues without loading their jobs.
"""
import zc.queue
from zc.queue._queue import resolveQueueConflict

import persistent


class ReadyBucket(zc.queue.Queue):
    """One bucket of a ready queue (a zc.queue.Queue; see module doc)."""


class ReadyQueue(persistent.Persistent):
    """A FIFO of ``(enqueued, jobid)`` items in buckets (see module doc)."""

    bucketSize = 64

    def __init__(self, bucketSize=None):
        if bucketSize is not None:
            self.bucketSize = bucketSize
        self._buckets = (ReadyBucket(),)

    def put(self, item):
        tail = self._buckets[-1]
        if len(tail) >= self.bucketSize:
            tail = ReadyBucket()
            self._buckets += (tail,)
        tail.put(item)

    def head(self):
        """The oldest item, or None; changes nothing."""
        for bucket in self._buckets:
            if len(bucket):
                return bucket[0]
        return None

    def pull(self):
        """Remove and return the oldest item; None if the queue is empty."""
        buckets = self._buckets
        for index, bucket in enumerate(buckets):
            if len(bucket):
                break
        else:
            return None
        item = bucket.pull(0)
        # Retire the empty buckets in front of this one, and this one if it
        # is empty now -- but never the tail (see the module doc).
        retire = index + (0 if len(bucket) else 1)
        retire = min(retire, len(buckets) - 1)
        if retire:
            for old in buckets[:retire]:
                old._retired = True
            self._buckets = buckets[retire:]
        return item

    def __iter__(self):
        for bucket in self._buckets:
            yield from bucket

    def __bool__(self):
        return self.head() is not None

    def _p_resolveConflict(self, old, committed, new):
        # The container's only state that changes is the tuple of buckets:
        # merge added and retired buckets like zc.queue merges items.
        old, committed, new = (
            dict(s, _data=s['_buckets']) for s in (old, committed, new))
        for state in (old, committed, new):
            del state['_buckets']
        resolved = resolveQueueConflict(old, committed, new)
        resolved['_buckets'] = resolved.pop('_data')
        return resolved
