"""Group commit: a processor claims and completes many jobs per commit.

Each job of a group runs in a savepoint of its own, so that one failing or
conflicting task costs only itself; a group whose commit conflicts runs
again, and then, should it conflict once more, one job at a time.  A
group is as long as its jobs take about ``groupTime`` seconds to run.
Exactly-once completion with the tasks' writes holds for every job of a
group.
"""
import collections
import datetime
import time
import types
import unittest.mock

import transaction
from ZEO.Exceptions import ClientDisconnected

from lovely.remotetask import inbox
from lovely.remotetask import running
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


class GroupCase(ServiceTestCase):
    """Tasks that write, fail and conflict; helpers to claim groups."""

    def setUp(self):
        super().setUp()
        self.provideTask('write', self.write)
        self.provideTask('writeThenFail', self.writeThenFail)
        self.provideTask('conflicting', self.conflicting)
        # Job id -> how many of its runs another transaction interferes
        # with.
        self.interfere = collections.Counter()

    def write(self, service, jobid, input):
        self.runs.append(jobid)
        service._p_jar.root()['data'][jobid] = input
        return input

    def writeThenFail(self, service, jobid, input):
        self.runs.append(jobid)
        service._p_jar.root()['data'][jobid] = 'not kept'
        raise RuntimeError('boom')

    def conflicting(self, service, jobid, input):
        """Writes the counter; another connection changes it first in as
        many runs as ``self.interfere`` says for ``jobid``."""
        self.runs.append(jobid)
        data = service._p_jar.root()['data']
        data['counter'] += 1
        if self.interfere[jobid]:
            self.interfere[jobid] -= 1
            self.transact(lambda s: s._p_jar.root()['data'].__setitem__(
                'counter', s._p_jar.root()['data']['counter'] + 10))
        return jobid

    def addMixed(self, tasks):
        def add(service):
            service._v_nextid = 1000
            return [service.add(name, f'input {i}', maxRetries=0)
                    for i, name in enumerate(tasks)]
        return self.transact(add)

    def claimAll(self, proc):
        """Claim every queued job for ``proc`` in one group."""
        return self.transact(lambda s: [
            job.id for job in s.claimGroup(proc.workerId, 100, self.now)])

    def runAll(self):
        """Claim every queued job in one group, run it; the service as a
        fresh connection sees it then."""
        proc = self.processor(maxGroup=10)
        proc.runGroup(self.claimAll(proc), self.now)
        return self.fresh()

    def commits(self):
        """How many transactions the database has committed so far."""
        return len(list(self.db.storage.iterator()))


class GroupTests(GroupCase):

    def test_a_long_queue_is_claimed_and_completed_in_groups(self):
        ids = self.addMixed(['write'] * 40)
        proc = self.processor(maxGroup=10)
        before = self.commits()
        steps = 0
        while proc.step(self.now):
            steps += 1
        service = self.fresh()
        self.assertEqual({service.getStatus(i) for i in ids}, {COMPLETED})
        self.assertEqual(sorted(self.runs), ids)
        data = service._p_jar.root()['data']
        self.assertEqual({i: data[i] for i in ids},
                         {i: f'input {n}' for n, i in enumerate(ids)})
        # Groups of 10 while the queue is long, then smaller ones: far
        # fewer than the two commits per job of one-by-one processing.
        self.assertLess(steps, 10)
        self.assertLess(self.commits() - before, 2 * steps + 2)
        self.assertConsistent(service)

    def test_a_duplicate_oid_in_a_task_runs_the_group_again_alone(self):
        # After a ZEO server restart a new object may get the oid of one
        # the connection holds (see storagefaults.py); the savepoint
        # fails and its abort takes that object out of the cache.  The
        # group is not committed: the caches are repaired and its jobs run
        # again alone, each completed once, with its writes.
        from persistent.mapping import PersistentMapping
        self.transact(lambda s: s._p_jar.root()['data'].__setitem__(
            'held', PersistentMapping(n=0)))
        stale = [True]

        def dup(service, jobid, input):
            self.runs.append(jobid)
            root = service._p_jar.root()
            held = root['data']['held']
            held['n'] += 1
            if stale:
                stale.pop()
                storage = service._p_jar._storage
                storage.new_oid = lambda: held._p_oid
                try:
                    root['data'][jobid] = PersistentMapping()
                    transaction.savepoint()
                finally:
                    del storage.new_oid
            return input
        self.provideTask('dup', dup)
        ids = self.addMixed(['dup', 'write', 'dup'])
        service = self.runAll()
        self.assertEqual({service.getStatus(i) for i in ids}, {COMPLETED})
        self.assertEqual([service.jobs[i].attempts for i in ids], [1, 1, 1])
        data = service._p_jar.root()['data']
        self.assertEqual(data['held']['n'], 2)   # each dup job once
        self.assertEqual(data[ids[1]], 'input 1')
        self.assertConsistent(service)

    def test_a_lone_job_is_a_group_of_one(self):
        proc = self.processor(maxGroup=10)
        ids = self.addMixed(['write'])
        self.assertEqual(proc.claimGroup(self.now), ids)

    def test_the_group_grows_with_the_queue(self):
        self.addMixed(['write'] * 30)
        service = self.fresh()
        self.assertEqual(service.groupSize(100), 15)
        self.assertEqual(service.groupSize(10), 10)
        self.assertEqual(service.groupSize(100, claimers=4), 4)

    def test_a_job_cancelled_while_its_group_conflicted_is_not_run_again(
            self):
        # The cancel is committed while the group runs; the group's
        # commit conflicts (the cancel wrote the job): the second run of
        # the group ends that job cancelled instead of running its task
        # (and its effects outside the database) again.
        def cancelMe(service, jobid, input):
            self.runs.append(jobid)
            service._p_jar.root()['data'][jobid] = input
            if len(self.runs) == 2:
                self.transact(lambda s: s.cancel(jobid))
            return input
        self.provideTask('cancelMe', cancelMe)
        ids = self.addMixed(['cancelMe'] * 3)
        service = self.runAll()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, CANCELLED, COMPLETED])
        self.assertEqual(self.runs.count(ids[1]), 1)
        self.assertNotIn(ids[1], service._p_jar.root()['data'])
        self.assertConsistent(service)

    def test_a_storage_fault_at_the_group_s_commit_runs_it_one_by_one(self):
        # Not a conflict: the jobs run alone, each with its backoff, not
        # the group again at once.
        faults = [2]

        class Disconnecting:
            def __init__(self, manager):
                self.transaction_manager = manager

            def tpc_vote(self, txn):
                if faults[0]:
                    faults[0] -= 1
                    raise ClientDisconnected('server away')

            def sortKey(self):
                return 'zzz'

            abort = tpc_begin = commit = tpc_finish = tpc_abort = \
                lambda self, txn: None

        def joining(service, jobid, input):
            self.runs.append(jobid)
            if jobid == ids[0]:
                transaction.get().join(Disconnecting(transaction.manager))
            return input
        self.provideTask('joining', joining)
        ids = self.addMixed(['joining'] * 3)
        service = self.runAll()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED] * 3)
        # The group, then each job alone: the first twice (its second
        # fault, retried after a pause).
        self.assertEqual(self.runs, ids + ids[:1] + ids)
        self.assertIn('ClientDisconnected: server away',
                      '\n'.join(self.log.messages()))

    def recordPrefetches(self):
        """The oids (sorted) of each ``prefetch`` the storage is asked
        for from now on (FileStorage has none: as ZEO's)."""
        fetched = []
        self.db.storage.prefetch = \
            lambda oids, tid: fetched.append(sorted(oids))
        self.addCleanup(vars(self.db.storage).pop, 'prefetch')
        return fetched

    def test_a_group_s_jobs_are_loaded_in_one_round_trip(self):
        # On ZEO and RelStorage, ``prefetch`` loads many records in one
        # round trip: a claim asks for its group's jobs at once.
        fetched = self.recordPrefetches()
        ids = self.addMixed(['write'] * 6)
        conn = self.open()
        service = self.service(conn)
        oids = sorted(service.jobs[jobid]._p_oid for jobid in ids)
        conn.cacheMinimize()
        claimed = service.claimGroup('w', 6, self.now)
        self.assertEqual(sorted(job.id for job in claimed), sorted(ids))
        self.assertEqual(fetched, [oids])
        conn.transaction_manager.abort()
        # From the ready queue (where the new jobs go in batches) too.
        self.transact(inbox.index)
        del fetched[:]
        service = self.begin(conn)
        conn.cacheMinimize()
        # (Keys of an earlier second are ready without a look at the job.)
        later = self.now + datetime.timedelta(seconds=2)
        claimed = service.claimGroup('w', 6, later)
        self.assertEqual(len(claimed), 6)
        self.assertEqual(fetched, [oids])

    def test_slower_jobs_than_the_group_was_sized_for_commit_in_parts(self):
        # The last groups' jobs were quick, these take 30 ms: the group
        # starts no task after twice its time, commits, and goes on in a
        # transaction of its own.
        def slow(service, jobid, input):
            self.runs.append(jobid)
            time.sleep(0.03)
            service._p_jar.root()['data'][jobid] = input
            return input
        self.provideTask('slow', slow)
        ids = self.addMixed(['slow'] * 6)
        proc = self.processor(maxGroup=10, groupTime=0.04)
        claimed = self.claimAll(proc)
        before = self.commits()
        proc.runGroup(claimed, self.now)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED] * 6)
        self.assertEqual(self.runs, ids)   # each once, in order
        commits = self.commits() - before
        self.assertGreaterEqual(commits, 2)
        self.assertLessEqual(commits, 3)   # 3 + 3, or 3 + 2 + 1 (alone)
        self.assertConsistent(service)

    def partsOfTwo(self, proc):
        """Let each task of ``proc``'s groups take 1.5 s of a fake clock
        against a ``groupTime`` of 1: its groups commit in parts of two
        jobs (no task starts after 2 s)."""
        clock = [0.0]
        fake = types.SimpleNamespace(perf_counter=lambda: clock[0],
                                     monotonic=time.monotonic)
        patcher = unittest.mock.patch.object(running, 'time', fake)
        patcher.start()
        self.addCleanup(patcher.stop)
        proc.groupTime = 1.0
        return clock

    def test_a_part_that_conflicts_twice_leaves_the_rest_a_part(self):
        ids = self.addMixed(['conflicting'] * 6)
        proc = self.processor(maxGroup=10)
        clock = self.partsOfTwo(proc)
        tracked = []
        original = self.conflicting

        def conflicting(service, jobid, input):
            clock[0] += 1.5
            tracked.append(set(proc._running))
            return original(service, jobid, input)
        self.provideTask('conflicting', conflicting)
        self.interfere[ids[2]] = 2   # the second part conflicts twice
        claimed = self.claimAll(proc)
        before = self.commits()
        proc.runGroup(claimed, self.now)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED] * 6)
        self.assertEqual(service._p_jar.root()['data']['counter'], 26)
        # The first part; the second twice, then its two jobs alone; the
        # third still a part (it ran before the two alone).
        self.assertEqual(self.runs, ids[:2] + ids[2:4] * 2 + ids[4:]
                         + ids[2:4])
        self.assertEqual(self.commits() - before, 1 + 2 + 1 + 2)
        # Jobs of a committed part are no longer among the running.
        self.assertEqual(tracked[2], set(ids[2:]))
        self.assertConsistent(service)

    def test_prefetch_in_a_savepoint_is_not_switched_off(self):
        # During a savepoint the connection's storage is a TmpStore without
        # ``prefetch``; ``Connection.prefetch`` would then switch itself
        # off for the connection's life (ZODB issue 277).
        fetched = self.recordPrefetches()
        ids = self.addMixed(['write'] * 4)
        conn = self.open()
        service = self.service(conn)
        jobs = [service.jobs[jobid] for jobid in ids]
        conn.cacheMinimize()
        conn.root()['data']['x'] = 1
        conn.transaction_manager.savepoint()
        service._prefetch(jobs[:2])
        conn.transaction_manager.abort()
        conn.cacheMinimize()
        service._prefetch(jobs[2:])
        self.assertEqual(len(fetched), 2)

    def test_a_group_lasts_about_group_time(self):
        # Before a first group ran, one job; then as many as run in
        # ``groupTime`` by the time its jobs took, at most ``maxGroup``.
        proc = self.processor(maxGroup=50, groupTime=0.2)
        self.assertEqual(proc.groupLimit(), 1)
        proc._ran(4, 0.04)          # 10 ms a job
        self.assertEqual(proc.groupLimit(), 20)
        proc._ran(1, 0.01)
        self.assertEqual(proc.groupLimit(), 20)
        proc._ran(10, 0.001)        # quick jobs: the commit is the cost
        self.assertEqual(proc.groupLimit(), 39)   # the mean of the two
        proc._ran(10, 0.001)
        self.assertEqual(proc.groupLimit(), 50)
        proc._ran(1, 5.0)           # a slow job: alone
        self.assertEqual(proc.groupLimit(), 1)
        for i in range(2000):       # groups a coarse clock measured as 0
            proc._ran(1, 0.0)
        self.assertEqual(proc.groupLimit(), 50)

    def test_slow_jobs_are_claimed_in_short_groups(self):
        ids = self.addMixed(['write'] * 40)
        proc = self.processor(maxGroup=100, groupTime=0.05)
        proc._ran(1, 0.01)          # as if its jobs took 10 ms each
        self.assertEqual(len(proc.claimGroup(self.now)), 5)
        self.assertEqual(len(ids), 40)

    def test_a_failing_task_costs_only_itself(self):
        ids = self.addMixed(['write', 'writeThenFail', 'write'])
        proc = self.processor(maxGroup=10)
        self.assertEqual(self.claimAll(proc), ids)
        proc.runGroup(ids, self.now)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, ERROR, COMPLETED])
        self.assertEqual(service.getError(ids[1]), 'RuntimeError: boom')
        self.assertIn('raise RuntimeError', service.jobs[ids[1]].traceback)
        data = service._p_jar.root()['data']
        # The failed task's write was rolled back to its savepoint; the
        # others' writes committed with their completions.
        self.assertNotIn(ids[1], data)
        self.assertEqual((data[ids[0]], data[ids[2]]),
                         ('input 0', 'input 2'))
        self.assertConsistent(service)

    def test_a_failing_task_with_retries_is_queued_again(self):
        def add(service):
            service._v_nextid = 1000
            return [service.add('writeThenFail', maxRetries=1),
                    service.add('write', 'ok')]
        ids = self.transact(add)
        service = self.runAll()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [QUEUED, COMPLETED])
        self.assertEqual(service.jobs[ids[0]].attempts, 1)
        self.assertConsistent(service)

    def test_a_commit_conflict_runs_the_group_again(self):
        ids = self.addMixed(['conflicting'] * 3)
        # The second task's run sees another transaction change the
        # counter: the group's commit conflicts.
        self.interfere[ids[1]] = 1
        proc = self.processor(maxGroup=10)
        claimed = self.claimAll(proc)
        before = self.commits()
        proc.runGroup(claimed, self.now)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED] * 3)
        # Each job's increment counted once, on top of the other's 10.
        self.assertEqual(service._p_jar.root()['data']['counter'], 13)
        self.assertEqual([service.jobs[i].attempts for i in ids], [1] * 3)
        self.assertEqual(sorted(self.runs), sorted(ids + ids))
        # The interference, then the group again: one commit for three.
        self.assertEqual(self.commits() - before, 2)
        self.assertIn('group of 3 jobs conflicted',
                      '\n'.join(self.log.messages()))
        self.assertConsistent(service)

    def test_a_group_conflicting_twice_runs_one_by_one(self):
        ids = self.addMixed(['conflicting'] * 3)
        self.interfere[ids[1]] = 2
        service = self.runAll()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED] * 3)
        self.assertEqual(service._p_jar.root()['data']['counter'], 23)
        self.assertEqual([service.jobs[i].attempts for i in ids], [1] * 3)
        # The group twice, then each job alone.
        self.assertEqual(sorted(self.runs), sorted(ids * 3))
        self.assertConsistent(service)

    def test_a_task_that_commits_breaks_only_its_job(self):
        def committing(service, jobid, input):
            self.runs.append(jobid)
            service._p_jar.transaction_manager.commit()
        self.provideTask('committing', committing)
        ids = self.addMixed(['write', 'committing', 'write'])
        service = self.runAll()
        # The first job's completion was committed by the task; the third
        # ran alone afterwards.
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, ERROR, COMPLETED])
        self.assertIn('TransactionEnded', service.getError(ids[1]))
        self.assertEqual(self.runs, ids)
        # The first job, completed by that commit, is not run alone (it
        # would be left: "no longer ours").
        self.assertNotIn('no longer ours', '\n'.join(self.log.messages()))
        self.assertConsistent(service)

    def test_a_task_that_aborts_breaks_only_its_job(self):
        def aborting(service, jobid, input):
            self.runs.append(jobid)
            service._p_jar.transaction_manager.abort()
        self.provideTask('aborting', aborting)
        ids = self.addMixed(['write', 'aborting', 'write'])
        service = self.runAll()
        # The first job's run was aborted with the transaction: it ran
        # again alone, and its write is there once.
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, ERROR, COMPLETED])
        self.assertIn('TransactionEnded', service.getError(ids[1]))
        self.assertEqual(self.runs, [ids[0], ids[1], ids[0], ids[2]])
        data = service._p_jar.root()['data']
        self.assertEqual((data[ids[0]], data[ids[2]]),
                         ('input 0', 'input 2'))
        self.assertConsistent(service)

    def test_a_job_taken_back_meanwhile_is_left_alone(self):
        ids = self.addMixed(['write'] * 2)
        proc = self.processor(maxGroup=10)
        claimed = self.claimAll(proc)
        self.assertEqual(claimed, ids)
        # Another processor took the second job back (its lease expired).
        self.transact(lambda s: s.fail(s.jobs[ids[1]], 'WorkerLost: test'))
        proc.runGroup(claimed, self.now)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, ERROR])
        self.assertEqual(self.runs, ids[:1])
        self.assertConsistent(service)

    def test_leases_of_a_running_group_are_kept(self):
        ids = self.addMixed(['write'] * 3)
        proc = self.processor(maxGroup=10)
        claimed = self.claimAll(proc)
        proc._track(claimed)
        self.assertEqual(set(proc._running), set(ids))
        service = self.fresh()
        self.assertEqual({service.jobs[i].status for i in ids}, {PROCESSING})
        self.assertEqual({service.jobs[i].worker for i in ids},
                         {proc.workerId})
        proc._untrack(claimed)
        self.assertEqual(proc._running, set())


class ProcessNextTests(ServiceTestCase):
    """``processNext`` is unchanged: one job, in the caller's
    transaction."""

    def test_one_job(self):
        def add(service):
            service._v_nextid = 1000
            return [service.add('echo', i) for i in range(3)]
        ids = self.transact(add)
        self.assertTrue(self.transact(lambda s: s.processNext()))
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, QUEUED, QUEUED])


class GroupReviewTests(GroupCase):
    """What an independent review of group commit found (each failed
    before its fix)."""

    def test_a_rolled_back_task_takes_its_commit_hooks_along(self):
        sent = []

        def mailer(service, jobid, input):
            self.runs.append(jobid)
            txn = service._p_jar.transaction_manager.get()
            txn.addAfterCommitHook(
                lambda ok: ok and sent.append(jobid))
            if input == 'fail':
                raise RuntimeError('no mail')
            if input == 'conflict' and self.runs.count(jobid) == 1:
                from ZODB.POSException import ConflictError
                raise ConflictError('provoked')
        self.provideTask('mailer', mailer)

        def add(service):
            service._v_nextid = 1000
            return [service.add('mailer', x, maxRetries=0)
                    for x in ('ok', 'fail', 'conflict', 'ok')]
        ids = self.transact(add)
        service = self.runAll()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, ERROR, COMPLETED, COMPLETED])
        # The failed task sent nothing; the conflicting one sent once.
        self.assertEqual(sorted(sent), sorted([ids[0], ids[2], ids[3]]))

    def test_a_rollback_that_fails_strands_no_job(self):
        class NoSavepoints:
            """A data manager without savepoints (as some are)."""
            def abort(self, txn): pass
            def tpc_begin(self, txn): pass
            def commit(self, txn): pass
            def tpc_vote(self, txn): pass
            def tpc_finish(self, txn): pass
            def tpc_abort(self, txn): pass
            def sortKey(self): return 'nosavepoints'

        def joiner(service, jobid, input):
            self.runs.append(jobid)
            service._p_jar.transaction_manager.get().join(NoSavepoints())
        self.provideTask('joiner', joiner)
        ids = self.addMixed(['joiner', 'writeThenFail', 'write'])
        service = self.runAll()
        # Nothing is left processing: the failing job failed, the others
        # ran again alone and completed.
        self.assertEqual([service.getStatus(i) for i in ids],
                         [COMPLETED, ERROR, COMPLETED])
        self.assertEqual(service.getError(ids[1]), 'RuntimeError: boom')
        self.assertConsistent(service)

    def test_a_job_due_earlier_in_a_second_is_not_held_back(self):
        import datetime
        base = self.now.replace(microsecond=0)

        def add(service):
            service._v_nextid = 5000
            late, early = (service.addCronJob('write', delay=60)
                           for i in range(2))
            # Both due in one second, the greater id first.
            service._scheduleAt(service.jobs[late], 'delayed',
                                base + datetime.timedelta(seconds=0.9))
            service._scheduleAt(service.jobs[early], 'delayed',
                                base + datetime.timedelta(seconds=0.1))
            return late, early
        late, early = self.transact(add)
        at = base + datetime.timedelta(seconds=0.5)
        self.assertEqual(self.transact(
            lambda s: [j.id for j in s.claimGroup('w', 5, at)]), [early])
