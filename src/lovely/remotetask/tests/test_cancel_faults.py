"""Cancelling a running job in a real worker process, over ZEO.

The fault layer's set-up (test_faults.py): a ZEO server and worker
processes on 127.0.0.1, each ended by its process id in the clean-up.
The ``block`` task announces its run in a file and waits for a release
file; it writes to the database (``counts``) only after the release.
"""
import time
import unittest

from ZODB.POSException import ConflictError

from lovely.remotetask.tests import faultsupport
from lovely.remotetask.tests.faultsupport import waitFor
from lovely.remotetask.tests.test_faults import LostWorker
from lovely.remotetask.tests.test_faults import ProcessTestCase
from lovely.remotetask.tests.test_faults import ZEOStorage
from lovely.remotetask.tests.test_faults import fresh


class CancelRunning(ZEOStorage, ProcessTestCase):
    """A cancel request reaches a job running in another process."""

    waitStarted = LostWorker.waitStarted
    release = LostWorker.release

    def cancel(self, tm, service, jobid):
        """Cancel in a transaction of its own, repeated on a conflict as
        the publisher repeats a request."""
        for attempt in range(10):
            tm.begin()
            try:
                answer = service.cancel(jobid)
                tm.commit()
                return answer
            except ConflictError:
                tm.abort()
                time.sleep(0.05)
        self.fail('the cancel kept conflicting')

    def test_a_running_job_ends_cancelled_its_writes_rolled_back(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        self.startWorker('worker')
        jobid = service.add(faultsupport.BLOCK, {'name': 'stop'})
        tm.commit()
        self.waitStarted('stop', 1)
        self.assertTrue(self.cancel(tm, service, jobid))
        tm.begin()
        self.assertEqual(service.getStatus(jobid), 'processing')
        self.assertTrue(service.isCancelled(jobid))
        # The task returns, having written to the database: the worker
        # does not complete the job, and its writes are rolled back.
        self.release('stop')
        waitFor(fresh(tm, lambda: service.getStatus(jobid) == 'cancelled'),
                30, message='the job cancelled')
        tm.begin()
        self.assertNotIn(jobid, conn.root()['counts'])
        self.assertIsNone(service.getResult(jobid))
        self.assertEqual(service.jobs[jobid].attempts, 1)
        self.assertEqual([a.outcome for a in service.jobs[jobid].history],
                         ['cancelled'])
        self.assertEqual(faultsupport.readSideEffects(self.dir)[jobid], 1)

    def test_a_requested_job_of_a_killed_worker_ends_cancelled(self):
        db, oid, tm, conn = self.setUpService()
        service = faultsupport.service(conn)
        first = self.startWorker('first')
        jobid = service.add(faultsupport.BLOCK, {'name': 'doomed'})
        tm.commit()
        self.waitStarted('doomed', 1)
        self.assertTrue(self.cancel(tm, service, jobid))
        self.startWorker('second')
        self.procs.kill(first)
        # The second worker takes the job back when its lease expires:
        # it ends cancelled, and is not run again.
        waitFor(fresh(tm, lambda: service.getStatus(jobid) == 'cancelled'),
                self.leaseTime + 30, message='the job cancelled')
        tm.begin()
        self.assertEqual(service.jobs[jobid].attempts, 1)
        self.assertNotIn(jobid, conn.root()['counts'])
        self.assertEqual(faultsupport.readSideEffects(self.dir)[jobid], 1)


def test_suite():
    return unittest.defaultTestLoader.loadTestsFromTestCase(CancelRunning)
