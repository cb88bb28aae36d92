"""The ready queue: FIFO behaviour, and how concurrent adds and claims merge.

The concurrency tests use a real FileStorage (MappingStorage does not
resolve conflicts) and several connections, each with its own transaction
manager, so that every interleaving is provoked deterministically: open
the connections, change the queue in each, commit one, then the other.
"""
import os
import shutil
import tempfile
import unittest

import transaction
import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError

from lovely.remotetask.readyqueue import ReadyBucket
from lovely.remotetask.readyqueue import ReadyQueue


def item(n):
    """A queue item shaped like the service's: (enqueued, jobid)."""
    return (1000000 + n, n)


class ReadyQueueTests(unittest.TestCase):
    """The queue on its own (no database)."""

    def test_fifo(self):
        q = ReadyQueue(bucketSize=3)
        for n in range(10):
            q.put(item(n))
        self.assertEqual([q.pull() for n in range(10)],
                         [item(n) for n in range(10)])
        self.assertIsNone(q.pull())

    def test_interleaved_put_and_pull_stay_fifo(self):
        q = ReadyQueue(bucketSize=2)
        pulled = []
        for n in range(0, 12, 3):
            q.put(item(n))
            q.put(item(n + 1))
            q.put(item(n + 2))
            pulled.append(q.pull())
            pulled.append(q.pull())
        while q:
            pulled.append(q.pull())
        self.assertEqual(pulled, [item(n) for n in range(12)])

    def test_empty(self):
        q = ReadyQueue()
        self.assertFalse(q)
        self.assertIsNone(q.head())
        self.assertIsNone(q.pull())
        self.assertEqual(list(q), [])
        self.assertEqual(len(q._buckets), 1)

    def test_head_does_not_remove(self):
        q = ReadyQueue(bucketSize=2)
        q.put(item(1))
        q.put(item(2))
        q.put(item(3))
        self.assertEqual(q.head(), item(1))
        self.assertEqual(q.head(), item(1))
        self.assertEqual(list(q), [item(1), item(2), item(3)])
        self.assertEqual(q.pull(), item(1))
        self.assertEqual(q.head(), item(2))

    def test_bool(self):
        q = ReadyQueue(bucketSize=1)
        self.assertFalse(q)
        q.put(item(1))
        self.assertTrue(q)
        q.put(item(2))
        q.pull()
        self.assertTrue(q)
        q.pull()
        self.assertFalse(q)

    def test_bool_and_head_skip_empty_front_buckets(self):
        # An empty bucket in front of the tail is left behind when a claim
        # empties the tail while a concurrent add starts a new tail (see
        # ConcurrencyTests.test_add_new_tail_while_claim_empties_old_tail).
        q = ReadyQueue(bucketSize=2)
        empty, tail = ReadyBucket(), ReadyBucket()
        tail.put(item(7))
        q._buckets = (empty, tail)
        self.assertTrue(q)
        self.assertEqual(q.head(), item(7))
        self.assertEqual(list(q), [item(7)])
        self.assertEqual(q.pull(), item(7))
        # The claim retired the empty front bucket, never the tail.
        self.assertEqual(q._buckets, (tail,))
        self.assertTrue(empty._retired)
        self.assertFalse(getattr(tail, '_retired', False))
        self.assertFalse(q)

    def test_iteration_spans_buckets_in_order(self):
        q = ReadyQueue(bucketSize=3)
        for n in range(8):
            q.put(item(n))
        self.assertEqual(list(q), [item(n) for n in range(8)])
        q.pull()
        self.assertEqual(list(q), [item(n) for n in range(1, 8)])

    def test_bucket_rollover(self):
        q = ReadyQueue(bucketSize=3)
        for n in range(7):
            q.put(item(n))
        self.assertEqual([list(b) for b in q._buckets],
                         [[item(0), item(1), item(2)],
                          [item(3), item(4), item(5)],
                          [item(6)]])
        first, second, tail = q._buckets
        # Emptying a bucket in front of the tail retires it.
        for n in range(3):
            self.assertEqual(q.pull(), item(n))
        self.assertEqual(q._buckets, (second, tail))
        self.assertTrue(first._retired)
        for n in range(3, 6):
            self.assertEqual(q.pull(), item(n))
        self.assertEqual(q._buckets, (tail,))
        self.assertTrue(second._retired)
        # The tail rule: emptying the tail does not retire it.
        self.assertEqual(q.pull(), item(6))
        self.assertEqual(q._buckets, (tail,))
        self.assertFalse(getattr(tail, '_retired', False))
        self.assertFalse(q)
        # ... and the next add goes into it.
        q.put(item(9))
        self.assertEqual(q._buckets, (tail,))
        self.assertEqual(list(tail), [item(9)])

    def test_default_bucket_size(self):
        q = ReadyQueue()
        for n in range(ReadyQueue.bucketSize + 1):
            q.put(item(n))
        self.assertEqual([len(b) for b in q._buckets],
                         [ReadyQueue.bucketSize, 1])


class DatabaseTestCase(unittest.TestCase):
    """A FileStorage in a temporary directory and connections to it."""

    def setUp(self):
        self.tmpdir = tempfile.mkdtemp(prefix='remotetask-test-')
        self.db = ZODB.DB(FileStorage(os.path.join(self.tmpdir, 'Data.fs')))
        self.connections = []
        self.viewer = None

    def tearDown(self):
        for conn in self.connections:
            conn.transaction_manager.abort()
            conn.close()
        self.db.close()
        shutil.rmtree(self.tmpdir)

    def open(self):
        """A new connection with its own transaction manager.

        Its snapshot is the database as of now: commits of other
        connections stay invisible until its next transaction begins.
        """
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        tm.begin()
        self.connections.append(conn)
        return conn

    def commit(self, conn):
        conn.transaction_manager.commit()

    def retry(self, conn, func):
        """Abort, begin a new transaction, ``func(root)``, commit."""
        tm = conn.transaction_manager
        tm.abort()
        tm.begin()
        result = func(conn.root())
        tm.commit()
        return result

    def close(self, *conns):
        for conn in conns:
            conn.transaction_manager.abort()
            conn.close()
            self.connections.remove(conn)

    def committed(self):
        """The committed queue (read only), seen by a new transaction of
        one viewer connection."""
        if self.viewer is None:
            self.viewer = self.open()
        self.viewer.transaction_manager.abort()
        self.viewer.transaction_manager.begin()
        return self.viewer.root()['q']

    def contents(self):
        """The committed contents of the queue."""
        return list(self.committed())


class ConcurrencyTests(DatabaseTestCase):
    """Concurrent transactions on one queue merge, or conflict safely."""

    def makeQueue(self, bucketSize, items):
        conn = self.open()
        q = conn.root()['q'] = ReadyQueue(bucketSize=bucketSize)
        for n in items:
            q.put(item(n))
        self.commit(conn)
        self.close(conn)

    def addAndClaimTheOnlyItem(self, addFirst):
        # Queue with one item: A adds an item, B claims the only item
        # (emptying the bucket A adds to); both commit.
        self.makeQueue(64, [1])
        a, b = self.open(), self.open()
        a.root()['q'].put(item(2))
        self.assertEqual(b.root()['q'].pull(), item(1))
        first, second = (a, b) if addFirst else (b, a)
        self.commit(first)
        self.commit(second)  # no ConflictError: the two merge
        self.assertEqual(self.contents(), [item(2)])
        # The emptied bucket was the tail: it stayed, holding the new item.
        q = self.committed()
        self.assertEqual(len(q._buckets), 1)
        self.assertFalse(getattr(q._buckets[0], '_retired', False))

    def test_add_and_claim_of_the_only_item_merge_add_first(self):
        self.addAndClaimTheOnlyItem(addFirst=True)

    def test_add_and_claim_of_the_only_item_merge_claim_first(self):
        self.addAndClaimTheOnlyItem(addFirst=False)

    def test_add_and_claim_in_one_bucket_merge(self):
        for addFirst in (True, False):
            self.makeQueue(64, [1, 2, 3])
            a, b = self.open(), self.open()
            a.root()['q'].put(item(4))
            a.root()['q'].put(item(5))
            self.assertEqual(b.root()['q'].pull(), item(1))
            self.assertEqual(b.root()['q'].pull(), item(2))
            first, second = (a, b) if addFirst else (b, a)
            self.commit(first)
            self.commit(second)
            self.assertEqual(self.contents(),
                             [item(3), item(4), item(5)])
            self.close(a, b)

    def test_add_new_tail_while_claim_empties_old_tail(self):
        # The tail is full: A's add starts a new tail (writing the
        # container); B's claim empties the old tail, which is still the
        # tail in B's snapshot and so is not retired.  Both commit.
        for addFirst in (True, False):
            self.makeQueue(1, [1])
            a, b = self.open(), self.open()
            a.root()['q'].put(item(2))
            self.assertEqual(len(a.root()['q']._buckets), 2)
            self.assertEqual(b.root()['q'].pull(), item(1))
            first, second = (a, b) if addFirst else (b, a)
            self.commit(first)
            self.commit(second)
            self.assertEqual(self.contents(), [item(2)])
            # The empty bucket in front is retired by the next claim.
            c = self.open()
            q = c.root()['q']
            self.assertEqual([len(bucket) for bucket in q._buckets], [0, 1])
            self.assertEqual(q.pull(), item(2))
            self.assertEqual(len(q._buckets), 1)
            self.commit(c)
            self.assertEqual(self.contents(), [])
            self.close(a, b, c)

    def test_two_adds_merge(self):
        self.makeQueue(64, [1])
        a, b = self.open(), self.open()
        a.root()['q'].put(item(2))
        b.root()['q'].put(item(3))
        self.commit(a)
        self.commit(b)
        self.assertEqual(self.contents(), [item(1), item(2), item(3)])

    def test_two_adds_that_both_start_a_new_tail_merge(self):
        self.makeQueue(2, [1, 2])
        a, b = self.open(), self.open()
        a.root()['q'].put(item(3))
        b.root()['q'].put(item(4))
        self.commit(a)
        self.commit(b)
        self.assertEqual(self.contents(),
                         [item(1), item(2), item(3), item(4)])
        self.assertEqual(len(self.committed()._buckets), 3)

    def test_claim_retiring_a_bucket_while_add_starts_a_new_tail(self):
        # Buckets [1] [2 3]: C's claim empties and retires the first
        # bucket (container: drop it), A's add starts a new tail
        # (container: append one).  The container merges both changes.
        for addFirst in (True, False):
            self.makeQueue(2, [0, 1, 2, 3])
            c = self.open()
            self.assertEqual(c.root()['q'].pull(), item(0))
            self.commit(c)   # buckets now: [1] [2 3]
            self.close(c)
            a, c = self.open(), self.open()
            a.root()['q'].put(item(4))
            self.assertEqual(c.root()['q'].pull(), item(1))
            self.assertEqual(len(c.root()['q']._buckets), 1)
            first, second = (a, c) if addFirst else (c, a)
            self.commit(first)
            self.commit(second)
            self.assertEqual(self.contents(), [item(2), item(3), item(4)])
            self.assertEqual(
                [len(b) for b in self.committed()._buckets], [2, 1])
            self.close(a, c)

    def test_add_into_a_retired_bucket_conflicts_and_lands_on_retry(self):
        # The retire race.  B's snapshot: one bucket [1] with room left.
        self.makeQueue(2, [1])
        b = self.open()
        self.assertEqual(list(b.root()['q']), [item(1)])
        # A fills that bucket and its next add starts a new tail.
        a = self.open()
        qa = a.root()['q']
        qa.put(item(2))
        qa.put(item(3))
        self.assertEqual([len(x) for x in qa._buckets], [2, 1])
        self.commit(a)
        # C claims both items of the old bucket: it empties it and, as it
        # is no longer the tail, retires it.
        c = self.open()
        qc = c.root()['q']
        self.assertEqual([qc.pull(), qc.pull()], [item(1), item(2)])
        self.assertEqual(len(qc._buckets), 1)
        self.commit(c)
        # B, whose snapshot predates all that, adds to what it sees as the
        # tail: the retired bucket.  Merging would put the item into a
        # bucket that is no longer in the queue -- it must conflict.
        qb = b.root()['q']
        retired = qb._buckets[-1]
        qb.put(item(4))
        self.assertEqual(list(retired), [item(1), item(4)])
        self.assertRaises(ConflictError, self.commit, b)
        # Retried (as the publisher would), the item lands in the queue.
        self.retry(b, lambda root: root['q'].put(item(4)))
        self.assertEqual(self.contents(), [item(3), item(4)])
        self.assertEqual(self.committed().pull(), item(3))

    def test_two_claims_of_the_same_item_conflict(self):
        self.makeQueue(64, [1, 2])
        a, b = self.open(), self.open()
        self.assertEqual(a.root()['q'].pull(), item(1))
        self.assertEqual(b.root()['q'].pull(), item(1))
        self.commit(a)
        self.assertRaises(ConflictError, self.commit, b)
        # On retry, B claims the next item: each item claimed once.
        self.assertEqual(self.retry(b, lambda root: root['q'].pull()),
                         item(2))
        self.assertEqual(self.contents(), [])

    def test_two_claims_of_the_only_item_conflict(self):
        self.makeQueue(64, [1])
        a, b = self.open(), self.open()
        self.assertEqual(a.root()['q'].pull(), item(1))
        self.assertEqual(b.root()['q'].pull(), item(1))
        self.commit(a)
        self.assertRaises(ConflictError, self.commit, b)
        self.assertIsNone(self.retry(b, lambda root: root['q'].pull()))

    def test_claims_that_retire_the_same_empty_bucket_conflict(self):
        # Both claims pull the head (the same item) of a queue whose first
        # bucket is empty: they conflict, never losing an item.
        self.makeQueue(1, [1])
        a, b = self.open(), self.open()
        a.root()['q'].put(item(2))
        b.root()['q'].pull()
        self.commit(a)
        self.commit(b)  # buckets now: [] [2]
        self.close(a, b)
        a, b = self.open(), self.open()
        self.assertEqual(a.root()['q'].pull(), item(2))
        self.assertEqual(b.root()['q'].pull(), item(2))
        self.commit(a)
        self.assertRaises(ConflictError, self.commit, b)
        self.assertEqual(self.contents(), [])


def test_suite():
    return unittest.defaultTestLoader.loadTestsFromName(__name__)
