"""The implementations provide the interfaces they claim."""
import unittest

from zope.interface.verify import verifyObject

from lovely.remotetask import interfaces
from lovely.remotetask import processor
from lovely.remotetask import task
from lovely.remotetask.job import CronJob
from lovely.remotetask.job import Job
from lovely.remotetask.service import TaskService


class InterfaceTests(unittest.TestCase):

    def test_service(self):
        self.assertTrue(verifyObject(interfaces.ITaskService, TaskService()))

    def test_jobs(self):
        self.assertTrue(verifyObject(interfaces.IJob, Job(1, 'echo')))
        self.assertTrue(verifyObject(interfaces.ICronJob,
                                     CronJob(2, 'echo', minute=(5,))))

    def test_tasks(self):
        self.assertTrue(verifyObject(interfaces.ITask, task.echo))
        self.assertTrue(verifyObject(interfaces.ITask,
                                     task.SimpleTask(len)))

    def test_processors(self):
        for factory in (processor.SimpleProcessor, processor.MultiProcessor):
            self.assertTrue(verifyObject(interfaces.IProcessor,
                                         factory(None, b'oid')))

    def test_exceptions_are_the_builtin_kinds(self):
        self.assertTrue(issubclass(interfaces.UnknownTask, ValueError))
        self.assertTrue(issubclass(interfaces.NoSuchJob, KeyError))
        self.assertTrue(issubclass(interfaces.InvalidJobId, ValueError))
        self.assertTrue(issubclass(interfaces.InvalidSchedule, ValueError))
        self.assertEqual(str(interfaces.NoSuchJob(7)), 'No such job: 7')
