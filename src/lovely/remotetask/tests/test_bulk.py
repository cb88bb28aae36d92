"""Cancel all and clean in batches, each batch its own transaction."""
import threading

from ZODB.POSException import ConflictError

from lovely.remotetask import bulk
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.tests.test_concurrency import ServiceTestCase


class BulkTests(ServiceTestCase):

    def test_cancel_all_in_batches(self):
        ids = self.addJobs(250, 1000)
        conn = self.open()
        service = self.service(conn)
        self.assertEqual(bulk.cancelAll(service, size=100), 250)
        service = self.fresh()
        self.assertEqual(service.countJobs(CANCELLED), 250)
        self.assertEqual({service.getStatus(i) for i in ids}, {CANCELLED})
        self.assertConsistent(service)

    def test_the_newest_are_cancelled_first(self):
        ids = self.addJobs(10, 1000)
        self.assertEqual(self.transact(lambda s: s.cancelAll(limit=4)), 4)
        service = self.fresh()
        self.assertEqual([service.getStatus(i) for i in ids],
                         [QUEUED] * 6 + [CANCELLED] * 4)
        self.assertConsistent(service)

    def test_clean_in_batches(self):
        ids = self.addJobs(230, 1000)
        self.transact(lambda s: [s.cancel(i) for i in ids[:130]])
        conn = self.open()
        self.assertEqual(
            bulk.clean(self.service(conn), (CANCELLED, COMPLETED), size=50),
            130)
        service = self.fresh()
        self.assertEqual(service.countJobs(), 100)
        self.assertEqual(sorted(service.jobs.keys()), ids[130:])
        self.assertConsistent(service)

    def test_a_batch_that_conflicts_is_repeated(self):
        self.addJobs(30, 1000)
        conn = self.open()
        service = self.service(conn)
        conflicts = []

        def step(service, size):
            if len(conflicts) < 2:
                conflicts.append(size)
                raise ConflictError('provoked')
            return service.cancelAll(limit=size)
        self.assertEqual(bulk.inBatches(service, step, size=20), 30)
        self.assertEqual(conflicts, [20, 20])
        self.assertEqual(self.fresh().countJobs(CANCELLED), 30)

    def test_a_bad_status_removes_nothing(self):
        self.addJobs(3, 1000)
        conn = self.open()
        with self.assertRaises(ValueError):
            bulk.clean(self.service(conn), (QUEUED,))
        self.assertEqual(self.fresh().countJobs(QUEUED), 3)

    def test_cancel_all_while_a_processor_drains(self):
        # Processors claim the oldest jobs, the batches cancel the newest:
        # every job ends cancelled or completed, none is lost or doubled.
        ids = self.addJobs(600, 1000)
        proc = self.processor(maxGroup=20)
        thread = threading.Thread(target=proc, daemon=True)
        thread.start()
        conn = self.open()
        cancelled = bulk.cancelAll(self.service(conn), size=50)
        proc.stop()
        thread.join(30)
        service = self.fresh()
        statuses = [service.getStatus(i) for i in ids]
        self.assertEqual(statuses.count(CANCELLED), cancelled)
        self.assertEqual(set(statuses) - {CANCELLED, PROCESSING},
                         {COMPLETED} if cancelled < 600 else set())
        self.assertEqual(sorted(self.runs),
                         sorted(i for i, s in zip(ids, statuses)
                                if s == COMPLETED))
        self.assertConsistent(service)
