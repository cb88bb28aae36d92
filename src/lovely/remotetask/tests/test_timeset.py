"""Time sets store their keys packed (timeset.py), read the form stored
before, merge concurrent changes as BTrees do, and generation 11
rebuilds old sets."""
import os
import shutil
import tempfile
import unittest
from unittest import mock

from BTrees.LLBTree import LLSet
from BTrees.LLBTree import LLTreeSet
import transaction
import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError
import zope.component.testing
from zope.site.folder import rootFolder

from lovely.remotetask import interfaces
from lovely.remotetask import task
from lovely.remotetask import timeset
from lovely.remotetask.generations import evolve11
from lovely.remotetask.service import TaskService
from lovely.remotetask.tests.test_generations import Context
from lovely.remotetask.timeset import TimeBucket
from lovely.remotetask.timeset import TimeSet
from lovely.remotetask.timeset import newTimeSet

BIG = range(10, 3000, 2)     # keys of a set of several buckets


def bucketKinds(keys):
    return {type(bucket) for bucket in timeset.buckets(keys)}


class StoredFormTests(unittest.TestCase):
    """What a time set stores, and what it reads."""

    def test_one_bucket_set_stores_its_keys_as_bytes(self):
        keys = newTimeSet()
        keys.update([5, 7])
        (((packed,),),) = keys.__getstate__()
        self.assertIsInstance(packed, bytes)
        self.assertEqual(len(packed), 4 * 8)
        copy = TimeSet()
        copy.__setstate__(keys.__getstate__())
        self.assertEqual(list(copy), list(keys))

    def test_buckets_store_their_keys_as_bytes(self):
        keys = newTimeSet()
        keys.update(BIG)
        self.assertTrue(timeset.spread(keys))
        self.assertEqual(bucketKinds(keys), {TimeBucket})
        state = keys._firstbucket.__getstate__()
        self.assertIsInstance(state[0], bytes)
        self.assertIsInstance(state[1], TimeBucket)     # the next bucket
        copy = TimeBucket()
        copy.__setstate__(state)
        self.assertEqual(list(copy), list(keys._firstbucket))

    def test_the_form_stored_before_reads(self):
        old = LLTreeSet()
        old.update([0, 3, 2 ** 63 - 1])
        keys = TimeSet()
        keys.__setstate__(LLTreeSet.__getstate__(old))
        self.assertEqual(list(keys), [0, 3, 2 ** 63 - 1])
        bucket = TimeBucket()
        bucket.__setstate__(LLSet([1, 2]).__getstate__())
        self.assertEqual(list(bucket), [1, 2])

    def test_keys_keep_their_sign_and_size(self):
        keys = newTimeSet()
        extremes = [-2 ** 63, -1, 1, 2 ** 62 + 12345]
        keys.update(extremes)
        copy = TimeSet()
        copy.__setstate__(keys.__getstate__())
        self.assertEqual(list(copy), sorted(extremes + [0, 2 ** 63 - 1]))

    def test_spread_reads_the_tree_not_its_stored_form(self):
        keys = newTimeSet()
        self.assertFalse(timeset.spread(keys))
        keys.update(BIG)
        self.assertTrue(timeset.spread(keys))


class DatabaseCase(unittest.TestCase):

    def setUp(self):
        self.tmpdir = tempfile.mkdtemp(prefix='remotetask-test-')
        self.db = ZODB.DB(FileStorage(os.path.join(self.tmpdir, 'Data.fs')))
        self.managers = []

    def tearDown(self):
        for tm, conn in self.managers:
            tm.abort()
            conn.close()
        self.db.close()
        shutil.rmtree(self.tmpdir)

    def open(self):
        tm = transaction.TransactionManager()
        conn = self.db.open(tm)
        self.managers.append((tm, conn))
        return tm, conn.root()

    def store(self, keys):
        tm, root = self.open()
        root['keys'] = keys
        tm.commit()
        return keys

    def reread(self):
        tm, root = self.open()
        return root['keys']


class DatabaseTests(DatabaseCase):
    """Sets and buckets stored in a FileStorage, read by another
    connection; concurrent changes merge or conflict as before."""

    def assertMerges(self, keys):
        self.store(keys)
        (tm1, root1), (tm2, root2) = self.open(), self.open()
        root1['keys'].add(5)
        root2['keys'].add(7)
        tm1.commit()
        tm2.commit()
        found = set(self.reread())
        self.assertTrue({5, 7} <= found)
        # Both take the same key: the second commit conflicts.
        tm1.begin()
        tm2.begin()
        root1['keys'].remove(5)
        root2['keys'].remove(5)
        tm1.commit()
        self.assertRaises(ConflictError, tm2.commit)
        tm2.abort()
        return self.reread()

    def test_one_bucket_sets_merge(self):
        keys = self.assertMerges(newTimeSet())
        self.assertEqual(list(keys), [0, 7, 2 ** 63 - 1])

    def test_buckets_merge(self):
        keys = newTimeSet()
        keys.update(BIG)
        keys = self.assertMerges(keys)
        self.assertEqual(bucketKinds(keys), {TimeBucket})
        self.assertEqual(list(keys)[:3], [0, 7, 10])

    def test_old_buckets_read_merge_and_are_rebuilt(self):
        with mock.patch.object(TimeSet, '_bucket_type', LLSet):
            old = newTimeSet()
            old.update(BIG)
        self.assertEqual(bucketKinds(old), {LLSet})
        keys = self.assertMerges(old)
        self.assertEqual(bucketKinds(keys), {LLSet})
        expected = list(keys)
        self.assertTrue(timeset.rebuild(keys))
        self.assertEqual(bucketKinds(keys), {TimeBucket})
        keys._p_jar.transaction_manager.commit()
        again = self.reread()
        self.assertEqual(list(again), expected)
        self.assertFalse(timeset.rebuild(again))

    def test_rebuild_conflicts_with_an_insert_into_an_old_bucket(self):
        # The rebuild leaves the old buckets as they are: an insert into
        # one, committed meanwhile, would be lost with them.
        with mock.patch.object(TimeSet, '_bucket_type', LLSet):
            old = newTimeSet()
            old.update(BIG)
        self.store(old)
        (tm1, root1), (tm2, root2) = self.open(), self.open()
        root2['keys'].add(1501)         # a middle bucket
        self.assertTrue(timeset.rebuild(root1['keys']))
        tm2.commit()
        self.assertRaises(ConflictError, tm1.commit)
        tm1.abort()
        self.assertIn(1501, self.reread())

    def test_rebuild_leaves_a_one_bucket_set(self):
        keys = self.store(newTimeSet())
        self.assertFalse(timeset.rebuild(keys))


class ResolvedFormTests(unittest.TestCase):
    """A resolved conflict keeps the form of the conflicting change: a
    client of an older release, on a ZEO server of this one, keeps
    reading what it wrote."""

    def states(self, pack):
        old, committed, new = (0, 5, 9), (0, 5, 7, 9), (0, 3, 5, 9)
        if pack:
            return [(timeset._packKeys(keys),) for keys in
                    (old, committed, new)]
        return [(keys,) for keys in (old, committed, new)]

    def test_bucket(self):
        bucket = TimeBucket()
        self.assertEqual(bucket._p_resolveConflict(*self.states(False)),
                         ((0, 3, 5, 7, 9),))
        self.assertEqual(bucket._p_resolveConflict(*self.states(True)),
                         (timeset._packKeys((0, 3, 5, 7, 9)),))

    def test_one_bucket_tree(self):
        keys = TimeSet()
        plain = [((state,),) for state in self.states(False)]
        packed = [((state,),) for state in self.states(True)]
        self.assertEqual(keys._p_resolveConflict(*plain),
                         ((((0, 3, 5, 7, 9),),),))
        self.assertEqual(keys._p_resolveConflict(*packed),
                         (((timeset._packKeys((0, 3, 5, 7, 9)),),),))
        # The committed state packed (by a client of this release), the
        # conflicting one not: the form of the latter.
        mixed = [plain[0], packed[1], plain[2]]
        self.assertEqual(keys._p_resolveConflict(*mixed),
                         ((((0, 3, 5, 7, 9),),),))


class Evolve11Tests(DatabaseCase):

    def setUp(self):
        super().setUp()
        zope.component.testing.setUp()
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')

    def tearDown(self):
        super().tearDown()
        zope.component.testing.tearDown()

    def test_rebuilds_every_time_set_of_a_service(self):
        tm, root = self.open()
        root['Application'] = app = rootFolder()
        with mock.patch.object(TimeSet, '_bucket_type', LLSet):
            app['tasks'] = service = TaskService()
            for keys in service._timeSets():
                keys.update(BIG)
        tm.commit()
        kinds = {kind for keys in service._timeSets()
                 for kind in bucketKinds(keys)}
        self.assertEqual(kinds, {LLSet})
        before = [list(keys) for keys in service._timeSets()]
        evolve11.evolve(Context(root._p_jar))
        tm.commit()
        tm2, root2 = self.open()
        service = root2['Application']['tasks']
        self.assertEqual([list(keys) for keys in service._timeSets()],
                         before)
        for keys in service._timeSets():
            self.assertEqual(bucketKinds(keys), {TimeBucket})

    def test_time_sets_lists_each_set_once(self):
        service = TaskService()
        found = service._timeSets()
        self.assertEqual(len({id(keys) for keys in found}), len(found))
        self.assertIn(service._inbox, found)
        self.assertIn(service._created, found)
        self.assertIn(service._schedule, found)
