"""Unique jobs and chains under concurrency, and their edge cases.

The interleavings are provoked deterministically with two connections to
a FileStorage (see test_concurrency.py); the chain over two processors
runs real processor threads and polls with a deadline.
"""
import os
import shutil
import tempfile
import threading
import time
import unittest

import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from ZODB.DemoStorage import DemoStorage
from ZODB.FileStorage import FileStorage
from ZODB.POSException import ConflictError

from lovely.remotetask import dependencies
from lovely.remotetask import interfaces
from lovely.remotetask import uniqueness
from lovely.remotetask.generations import evolve6
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


def keys(service):
    """The entries of the map of unique keys, without its sentinel."""
    return {key: value for key, value in service._uniqueKeys.items()
            if key != uniqueness.SENTINEL}


class BucketConflictTests(unittest.TestCase):
    """What uniqueness.py relies on: BTrees' bucket conflict resolution
    merges inserts of different keys and refuses two inserts of one key,
    in a tree whose only bucket is inline and in a tree of many buckets.
    """

    def inserts(self, storage, prefill, keys):
        db = ZODB.DB(storage)
        try:
            tms = transaction.TransactionManager(), \
                transaction.TransactionManager()
            c1, c2 = (db.open(transaction_manager=tm) for tm in tms)
            c1.root()['keys'] = tree = OOBTree()
            for n in range(prefill):
                tree[f'prefill-{n:04d}'] = n
            tms[0].commit()
            tms[1].begin()
            c1.root()['keys'][keys[0]] = 1
            c2.root()['keys'][keys[1]] = 2
            tms[0].commit()
            try:
                tms[1].commit()
            except ConflictError:
                tms[1].abort()
                return 'conflict'
            return 'merged'
        finally:
            db.close()

    def storages(self):
        tmpdir = tempfile.mkdtemp(prefix='remotetask-test-')
        self.addCleanup(shutil.rmtree, tmpdir)
        yield DemoStorage()
        yield FileStorage(os.path.join(tmpdir, 'Data.fs'))

    def test_same_key_conflicts_other_keys_merge(self):
        for prefill in (0, 10, 500):
            for storage in self.storages():
                self.assertEqual(
                    self.inserts(storage, prefill, ('k', 'k')), 'conflict',
                    (prefill, storage))
            for storage in self.storages():
                self.assertEqual(
                    self.inserts(storage, prefill, ('k', 'j')), 'merged',
                    (prefill, storage))


class UniqueKeyConcurrencyTests(ServiceTestCase):

    def test_two_connections_adding_one_key_make_one_job(self):
        self.addJobs(1, 100)    # the task's id set exists
        a, b = self.open(), self.open()

        def add(service):
            return service.add('record', 'x', uniqueKey='inv-42')
        ja, jb = add(self.service(a)), add(self.service(b))
        self.assertNotEqual(ja, jb)     # neither sees the other yet
        self.commit(a)
        jb, conflicts = self.commitRetrying(b, add)
        self.assertEqual(conflicts, 1)
        self.assertEqual(jb, ja)        # the retry found a's job
        service = self.fresh()
        self.assertEqual(
            [j.id for j in service.jobs.values() if j.uniqueKey == 'inv-42'],
            [ja])
        self.assertEqual(keys(service), {'inv-42': ja})
        self.assertConsistent(service)

    def test_two_connections_adding_other_keys_both_commit(self):
        self.addJobs(1, 100)
        a, b = self.open(), self.open()
        self.service(a).add('record', uniqueKey='a')
        self.service(b).add('record', uniqueKey='b')
        self.commit(a)
        self.commit(b)
        self.assertEqual(sorted(keys(self.fresh())), ['a', 'b'])

    def test_the_key_is_freed_by_completion_error_and_cancel(self):
        def fail(service, jobid, input):
            raise interfaces.TaskError('no')
        self.provideTask('fail', fail)
        for how in ('complete', 'error', 'cancel'):
            def add(service):
                return service.add('fail' if how == 'error' else 'record',
                                   uniqueKey=how)
            jobid = self.transact(add)
            self.assertEqual(self.transact(add), jobid)
            if how == 'cancel':
                self.transact(lambda s: s.cancel(jobid))
            else:
                self.transact(lambda s: s.processNext(jobid=jobid))
            self.assertIsNone(uniqueness.holder(self.fresh(), how))
            self.assertNotEqual(self.transact(add), jobid)

    def test_the_entry_of_an_ended_job_is_taken_over(self):
        # An end does not write the key map: the next add takes the key.
        jobid = self.transact(lambda s: s.add('record', uniqueKey='k'))

        def end(service):
            service._setStatus(service.jobs[jobid], COMPLETED)
        self.transact(end)
        other = self.transact(lambda s: s.add('record', uniqueKey='k'))
        self.assertNotEqual(other, jobid)
        self.assertEqual(self.fresh()._uniqueKeys['k'], other)

    def test_the_end_of_a_job_with_a_key_merges_with_adds(self):
        # The end writes no entry: an add of another key into the same
        # bucket while the job runs does not make its run conflict (a
        # delete that emptied the bucket would).
        jobid = self.transact(lambda s: s.add('record', uniqueKey='a'))
        a, b = self.open(), self.open()
        self.service(b).processNext(jobid=jobid, now=self.now)
        self.service(a).add('record', uniqueKey='b')
        self.commit(a)
        self.commit(b)
        service = self.fresh()
        self.assertEqual(service.getStatus(jobid), COMPLETED)
        self.assertIsNone(uniqueness.holder(service, 'a'))
        self.assertIsNotNone(uniqueness.holder(service, 'b'))

    def test_a_retry_and_an_add_of_its_key_conflict(self):
        jobid = self.transact(lambda s: s.add('record', uniqueKey='k'))
        self.transact(lambda s: s.cancel(jobid))
        a, b = self.open(), self.open()
        self.service(a).retry(jobid)
        other = self.service(b).add('record', uniqueKey='k')
        self.assertNotEqual(other, jobid)
        self.commit(a)
        with self.assertRaises(ConflictError):
            self.commit(b)
        again = self.begin(b).add('record', uniqueKey='k')
        self.assertEqual(again, jobid)   # the retried job holds it
        self.commit(b)
        service = self.fresh()
        self.assertEqual(uniqueness.holder(service, 'k'), jobid)
        self.assertEqual(service.countJobs(QUEUED), 1)

    def test_clean_deletes_the_entries_of_removed_jobs(self):
        jobid = self.transact(lambda s: s.add('record', uniqueKey='k'))
        self.transact(lambda s: s.processNext(jobid=jobid))
        self.assertEqual(keys(self.fresh()), {'k': jobid})
        self.transact(lambda s: s.clean())
        self.assertEqual(keys(self.fresh()), {})

    def test_retake_of_a_job_without_a_key_does_nothing(self):
        jobid = self.transact(lambda s: s.add('record'))

        def retake(service):
            uniqueness.retake(service, service.jobs[jobid])
            return keys(service)
        self.assertEqual(self.transact(retake), {})

    def test_bad_keys(self):
        conn = self.open()
        service = self.service(conn)
        for key in ('', 'x' * 201, 42, b'k', 'k\ud800', '\udfff'):
            with self.assertRaises(ValueError):
                service.add('record', uniqueKey=key)
        self.assertEqual(len(service.jobs), 0)


class ChainConcurrencyTests(ServiceTestCase):

    def followUp(self):
        """What a processor's next claim does first: follow up on the
        jobs this process ended; how many jobs it settled."""
        def follow(service):
            entries = dependencies.takeRecent(self.db, service._p_oid)
            return service.followUpChains(entries)[0]
        return self.transact(follow)

    def forgetRecent(self):
        """As if the process that ended the jobs had died."""
        self.transact(
            lambda s: dependencies.takeRecent(self.db, s._p_oid) and None)

    def test_an_add_racing_the_end_of_its_parent_is_settled(self):
        for addFirst in (True, False):
            with self.subTest(addFirst=addFirst):
                parent, = self.addJobs(1, 1000 + 10 * addFirst)
                a, b = self.open(), self.open()
                child = self.service(a).add('record', after=[parent])
                self.assertEqual(self.service(a).getStatus(child), WAITING)
                self.service(b).processNext(jobid=parent, now=self.now)
                if addFirst:
                    # The parent's end does not see the child, and does
                    # not conflict with its add (its task does not run
                    # again); the processor's next claim queues it.
                    self.commit(a)
                    self.commit(b)
                    self.assertEqual(self.fresh().getStatus(child), WAITING)
                    self.assertEqual(self.followUp(), 1)
                else:
                    # The add read the parent before it ended: the add
                    # conflicts, and its retry sees the parent completed.
                    self.commit(b)
                    with self.assertRaises(ConflictError):
                        self.commit(a)
                    child = self.begin(a).add('record', after=[parent])
                    self.commit(a)
                service = self.fresh()
                self.assertEqual(service.getStatus(parent), COMPLETED)
                self.assertEqual(service.getStatus(child), QUEUED)
                # Dependants are the jobs added while it had not ended.
                self.assertEqual(service.jobs[parent].dependants,
                                 (child,) if addFirst else ())
                self.assertEqual(dependencies.linked(service, parent), [])
                self.forgetRecent()
                self.assertConsistent(service)

    def test_adds_while_the_parent_runs_never_make_it_run_again(self):
        runs = []

        def record(service, jobid, input):
            runs.append(jobid)
        self.provideTask('counted', record)
        parent = self.transact(lambda s: s.add('counted'))
        b = self.open()
        self.service(b).processNext(jobid=parent, now=self.now)
        # A flood of dependants, each its own commit, while it runs.
        children = [self.transact(lambda s: s.add('record', after=[parent]))
                    for n in range(50)]
        self.commit(b)
        self.assertEqual(runs, [parent])
        self.assertEqual(self.followUp(), 50)
        service = self.fresh()
        self.assertEqual({service.getStatus(c) for c in children}, {QUEUED})
        self.assertEqual(set(service.jobs[parent].dependants), set(children))
        self.assertConsistent(service)

    def test_the_sweep_settles_links_no_follow_up_settled(self):
        # A process that died between the end of a parent and the
        # follow-up: every processor's sweep settles its links.
        parent, = self.addJobs(1, 4000)
        a, b = self.open(), self.open()
        child = self.service(a).add('record', after=[parent])
        failing = self.service(a).add('record', after=[parent],
                                      runAnyway=True)
        self.service(b).processNext(jobid=parent, now=self.now)
        self.commit(a)
        self.commit(b)
        # No processor of this process follows up (it died, say).
        self.forgetRecent()
        self.assertEqual(self.fresh().getStatus(child), WAITING)
        start, settled = self.transact(lambda s: s.sweepChains())
        self.assertEqual((start, settled), (0, 2))
        service = self.fresh()
        self.assertEqual(service.getStatus(child), QUEUED)
        self.assertEqual(service.getStatus(failing), QUEUED)
        self.assertEqual(dependencies.linked(service, parent), [])
        self.assertConsistent(service)
        self.assertEqual(self.transact(lambda s: s.sweepChains()), (0, 0))

    def test_the_sweep_goes_in_batches(self):
        def chains(service):
            parents = [service.add('record') for n in range(5)]
            return [(p, service.add('record', after=[p])) for p in parents]
        links = self.transact(chains)

        def endAll(service):
            for parent, child in links:
                # Ended by code that settles nothing (say, a crash
                # between the end and the follow-up).
                service._setStatus(service.jobs[parent], COMPLETED)
        self.transact(endAll)
        start, settled = self.transact(
            lambda s: dependencies.sweep(s, 0, batch=2))
        self.assertEqual(settled, 2)
        self.assertEqual(start, dependencies._link(*sorted(links)[2]))
        while start:
            start, settled = self.transact(
                lambda s: dependencies.sweep(s, start, batch=2))
        service = self.fresh()
        self.assertEqual({service.getStatus(c) for p, c in links}, {QUEUED})
        self.assertFalse(dependencies.hasLinks(service))

    def test_clean_settles_the_links_of_the_jobs_it_removes(self):
        parent, = self.addJobs(1, 5000)
        a, b = self.open(), self.open()
        child = self.service(a).add('record', after=[parent])
        self.service(b).processNext(jobid=parent, now=self.now)
        self.commit(a)
        self.commit(b)
        self.forgetRecent()
        self.transact(lambda s: s.clean())
        service = self.fresh()
        self.assertNotIn(parent, service.jobs)
        self.assertEqual(service.getStatus(child), QUEUED)
        self.assertFalse(dependencies.hasLinks(service))
        self.assertConsistent(service)

    def test_two_parents_ending_at_once_queue_their_child_once(self):
        p1, p2 = self.addJobs(2, 2000)
        child = self.transact(lambda s: s.add('record', after=[p1, p2]))
        a, b = self.open(), self.open()
        self.service(a).processNext(jobid=p1, now=self.now)
        self.service(b).processNext(jobid=p2, now=self.now)
        # Each sees the other parent still queued: neither writes the
        # child, and both commit.
        self.assertEqual(self.service(a).getStatus(child), WAITING)
        self.assertEqual(self.service(b).getStatus(child), WAITING)
        self.commit(a)
        self.commit(b)
        self.assertEqual(self.fresh().getStatus(child), WAITING)
        # The follow-up sees both ended.
        self.assertEqual(self.followUp(), 1)
        service = self.fresh()
        self.assertEqual(service.getStatus(child), QUEUED)
        self.assertEqual(service.jobs[child].waitingFor, ())
        self.assertConsistent(service)

    def test_an_add_does_not_make_the_other_parents_run_conflict(self):
        # c waits for p and q; it is added while p runs (a late link of
        # p), before q's run begins.  q's end queues c; p's follow-up,
        # committed while q runs, sees q running and writes nothing.
        p, q = self.addJobs(2, 2500)
        b = self.open()
        self.service(b).processNext(jobid=p, now=self.now)
        child = self.transact(lambda s: s.add('record', after=[p, q]))
        self.commit(b)
        d = self.open()
        self.service(d).processNext(jobid=q, now=self.now)
        self.assertEqual(self.service(d).getStatus(child), QUEUED)
        self.assertEqual(self.followUp(), 0)
        self.commit(d)
        service = self.fresh()
        self.assertEqual(service.getStatus(child), QUEUED)
        self.assertEqual(dependencies.linked(service, p), [])
        self.assertConsistent(service)

    def test_retry_all_skips_a_job_whose_parent_failed(self):
        def fail(service, jobid, input):
            raise interfaces.TaskError('no')
        self.provideTask('fail', fail)
        parent = self.transact(lambda s: s.add('fail', maxRetries=0))
        child = self.transact(lambda s: s.add('record', after=[parent]))
        other = self.transact(lambda s: s.add('record'))
        self.transact(lambda s: s.cancel(other))
        self.transact(lambda s: s.processNext(jobid=parent))
        self.assertEqual(self.fresh().getStatus(child), CANCELLED)
        self.assertEqual(self.transact(lambda s: s.retryAll(CANCELLED)), 1)
        service = self.fresh()
        self.assertEqual(service.getStatus(other), QUEUED)
        self.assertEqual(service.getStatus(child), CANCELLED)
        self.assertEqual(self.transact(lambda s: s.retryAll()), 1)
        self.assertEqual(self.transact(lambda s: s.retryAll(CANCELLED)), 1)
        self.assertEqual(self.fresh().getStatus(child), WAITING)
        self.assertConsistent(self.fresh())

    def test_a_retry_refused_for_its_key_changes_nothing(self):
        parent = self.transact(lambda s: s.add('record'))
        child = self.transact(lambda s: s.add(
            'record', after=[parent], uniqueKey='k'))
        self.transact(lambda s: s.cancel(child))
        other = self.transact(lambda s: s.add('record', uniqueKey='k'))
        self.assertNotEqual(other, child)
        links = self.transact(lambda s: dependencies.linked(s, parent))
        with self.assertRaises(interfaces.DuplicateJob):
            self.transact(lambda s: s.retry(child))
        service = self.fresh()
        self.assertEqual(service.getStatus(child), CANCELLED)
        self.assertEqual(dependencies.linked(service, parent), links)

    def test_a_failed_parent_cancels_a_long_chain_without_recursion(self):
        def fail(service, jobid, input):
            raise interfaces.TaskError('no')
        self.provideTask('fail', fail)

        def chain(service):
            ids = [service.add('fail')]
            for n in range(1500):
                ids.append(service.add('record', after=[ids[-1]]))
            return ids
        ids = self.transact(chain)
        self.transact(lambda s: s.processNext(jobid=ids[0]))
        service = self.fresh()
        self.assertEqual({service.getStatus(i) for i in ids[1:]},
                         {CANCELLED})
        self.assertConsistent(service)

    def test_cancelling_a_waiting_job_cancels_its_dependants(self):
        parent, = self.addJobs(1, 3000)

        def add(service):
            child = service.add('record', after=[parent], uniqueKey='c')
            return child, service.add('record', after=[child])
        child, grandchild = self.transact(add)
        self.assertTrue(self.transact(lambda s: s.cancel(child)))
        service = self.fresh()
        self.assertEqual(service.getStatus(grandchild), CANCELLED)
        self.assertEqual(service.getStatus(parent), QUEUED)
        self.assertIsNone(uniqueness.holder(service, 'c'))
        self.assertConsistent(service)

    def test_cancel_all_in_batches_counts_the_cancelled_dependants(self):
        from lovely.remotetask import bulk

        def chains(service):
            ids = []
            for n in range(10):
                ids.append(service.add('record'))
                for m in range(4):
                    ids.append(service.add('record', after=[ids[-1]]))
            return ids
        ids = self.transact(chains)
        conn = self.open()
        self.assertEqual(bulk.cancelAll(self.service(conn), size=7), 50)
        service = self.fresh()
        self.assertEqual({service.getStatus(i) for i in ids}, {CANCELLED})
        self.assertConsistent(service)

    def test_bad_after(self):
        conn = self.open()
        service = self.service(conn)
        with self.assertRaises(interfaces.InvalidDependency):
            service.add('record', after='12')
        with self.assertRaises(interfaces.InvalidJobId):
            service.add('record', after=[0])
        with self.assertRaises(interfaces.InvalidDependency):
            service.add('record', after=list(range(1, 1002)))
        parent = service.add('record')
        with self.assertRaises(ValueError):
            service.add('record', after=[parent], startLater=True)
        # One id (an int) and repeats are one parent.
        child = service.add('record', after=parent)
        twice = service.add('record', after=[parent, parent])
        self.assertEqual(service.jobs[twice].after, (parent,))
        self.assertEqual(service.jobs[parent].dependants, (child, twice))
        self.assertEqual(dependencies.MAX_AFTER, 1000)


class ChainOverTwoProcessorsTests(ServiceTestCase):

    LENGTH = 100

    def step(self, service, jobid, input):
        data = service._p_jar.root()['data']
        data['log'] = data.get('log', ()) + (input,)
        return input

    def test_a_chain_of_100_runs_in_order_each_once(self):
        self.provideTask('step', self.step)

        def chain(service):
            ids = [service.add('step', 0)]
            for n in range(1, self.LENGTH):
                ids.append(service.add('step', n, after=[ids[-1]]))
            return ids
        ids = self.transact(chain)
        procs = [self.processor(waitTime=0.05) for n in range(2)]
        threads = [threading.Thread(target=proc, daemon=True)
                   for proc in procs]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while self.fresh().getStatus(ids[-1]) != COMPLETED:
            self.assertLess(time.monotonic(), deadline, 'chain unfinished')
            time.sleep(0.05)
        for proc in procs:
            proc.stop()
        for thread in threads:
            thread.join(30)
        service = self.fresh()
        self.assertEqual(service._p_jar.root()['data']['log'],
                         tuple(range(self.LENGTH)))
        jobs = [service.jobs[i] for i in ids]
        self.assertTrue(all(job.attempts == 1 for job in jobs))
        for parent, child in zip(jobs, jobs[1:]):
            self.assertGreaterEqual(child.started, parent.completed)
        self.assertEqual(service.countJobs(COMPLETED), self.LENGTH)
        self.assertConsistent(service)


class EvolveTests(ServiceTestCase):

    def test_generation_6_adds_the_waiting_index_and_the_key_map(self):
        conn = self.open()
        service = self.service(conn)
        del service._index[WAITING], service._counts[WAITING]
        del service._uniqueKeys
        service._p_changed = True
        self.commit(conn)
        service = self.begin(conn)
        evolve6.evolveService(service)
        evolve6.evolveService(service)  # twice changes nothing
        self.commit(conn)
        service = self.fresh()
        self.assertEqual(service.countJobs(WAITING), 0)
        self.assertEqual(keys(service), {})
        parent = self.transact(lambda s: s.add('record', uniqueKey='k'))
        self.transact(lambda s: s.add('record', after=[parent]))
        self.assertConsistent(self.fresh())
