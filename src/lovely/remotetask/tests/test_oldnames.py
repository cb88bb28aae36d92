"""The names of lovely.remotetask 0.5.2 that applications import."""
import datetime
import unittest
import warnings

import transaction
import ZODB
import zope.component.testing
from ZODB.DemoStorage import DemoStorage
from zope.interface.verify import verifyObject

from lovely.remotetask import interfaces
from lovely.remotetask import processor
from lovely.remotetask import task
from lovely.remotetask.job import CronJob


UTC = datetime.timezone.utc


class Deprecated:

    def assertDeprecated(self, func, *args, **kw):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            result = func(*args, **kw)
        self.assertTrue(
            [w for w in caught if issubclass(w.category, DeprecationWarning)
             and '0.5.2' in str(w.message)], caught)
        return result


class ModuleNames(Deprecated, unittest.TestCase):

    def test_task_service_from_the_package(self):
        from lovely.remotetask import TaskService
        from lovely.remotetask.service import TaskService as real
        self.assertIs(TaskService, real)

    def test_unknown_package_name(self):
        import lovely.remotetask
        with self.assertRaises(AttributeError):
            lovely.remotetask.NoSuchThing

    def test_service_module_names(self):
        from lovely.remotetask import service, startup
        self.assertIs(self.assertDeprecated(
            getattr, service, 'getAutostartServiceNames'),
            startup.getAutostartServiceNames)
        self.assertIs(self.assertDeprecated(
            getattr, service, 'bootStrapSubscriber'),
            startup.databaseOpened)
        with self.assertRaises(AttributeError):
            service.noSuchName

    def test_thread_startup_wait(self):
        self.assertEqual(self.assertDeprecated(
            getattr, processor, 'THREAD_STARTUP_WAIT'), 0.05)
        with self.assertRaises(ImportError):
            from lovely.remotetask.processor import NO_SUCH_NAME  # noqa

    def test_testing_stubs(self):
        from lovely.remotetask import testing
        for name in ('TaskServiceStub', 'ITaskStub', 'QueueStub',
                     'ExceptionTask'):
            self.assertTrue(hasattr(testing, name), name)


class CronJobNames(Deprecated, unittest.TestCase):

    def test_time_of_next_call(self):
        job = CronJob(1, 'echo', hour=(2, 13))
        self.assertEqual(
            self.assertDeprecated(job.timeOfNextCall, 0), 2 * 3600)
        self.assertEqual(
            self.assertDeprecated(job.timeOfNextCall, 2 * 3600), 13 * 3600)
        delayed = CronJob(2, 'echo', delay=10)
        self.assertEqual(self.assertDeprecated(delayed.timeOfNextCall, 5), 15)
        now = datetime.datetime.now(UTC).timestamp()
        self.assertGreater(self.assertDeprecated(job.timeOfNextCall), now)


class ProcessorNames(Deprecated, unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp(self)
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')
        self.db = ZODB.DB(DemoStorage())
        conn = self.db.open()
        from lovely.remotetask.service import TaskService
        conn.root()['tasks'] = self.service = TaskService()
        transaction.commit()
        self.oid = self.service._p_oid
        self.conn = conn

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        zope.component.testing.tearDown(self)

    def add(self):
        jobid = self.service.add('echo', 'hi')
        transaction.commit()
        return jobid

    def test_running_and_interface(self):
        for factory in (processor.SimpleProcessor, processor.MultiProcessor):
            proc = factory(self.db, self.oid)
            self.assertTrue(verifyObject(interfaces.IProcessor, proc))
            self.assertTrue(proc.running)
            proc.stop()
            self.assertFalse(proc.running)

    def test_has_jobs_waiting_claim_and_process(self):
        proc = processor.SimpleProcessor(self.db, self.oid)
        self.assertFalse(proc.hasJobsWaiting())
        jobid = self.add()
        self.assertTrue(proc.hasJobsWaiting())
        self.assertEqual(self.assertDeprecated(proc.claimNextJob), jobid)
        self.assertTrue(self.assertDeprecated(proc.processNext, jobid))
        transaction.begin()
        self.assertEqual(self.service.getStatus(jobid), 'completed')
        other = self.add()
        self.assertTrue(self.assertDeprecated(proc.processNext))
        self.assertFalse(self.assertDeprecated(proc.processNext))
        transaction.begin()
        self.assertEqual(self.service.getResult(other), 'hi')
        proc.stop()

    def test_multiprocessor_threads(self):
        proc = processor.MultiProcessor(self.db, self.oid, maxThreads=2)
        self.assertEqual(proc.threads, [])
        self.add()
        self.assertTrue(proc.step())
        proc.join(10)
        self.assertEqual(proc.threads, [])
        proc.stop()


class UnstoredService(unittest.TestCase):

    def test_stop_processing_does_nothing(self):
        from lovely.remotetask.service import TaskService
        service = TaskService()
        self.assertFalse(service.isProcessing())
        self.assertIsNone(service.stopProcessing())
        with self.assertRaises(ValueError):
            service.startProcessing()
