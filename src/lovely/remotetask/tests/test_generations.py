"""Schema evolution: stored services of an older generation evolve."""
import datetime
import unittest

import transaction
import zope.component.testing
from ZODB.DB import DB
from ZODB.DemoStorage import DemoStorage
from zope.app.publication.zopepublication import ZopePublication
from zope.site.folder import rootFolder
from zope.site.site import LocalSiteManager

from lovely.remotetask import interfaces
from lovely.remotetask import task
from lovely.remotetask.generations import evolve2
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.readyqueue import ReadyQueue
from lovely.remotetask.service import TaskService
from lovely.remotetask.timeset import timeIds
from lovely.remotetask.timeset import timeKey


UTC = datetime.timezone.utc


class Context:
    def __init__(self, conn):
        self.connection = conn


class Evolve2Tests(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp(self)
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')
        self.db = DB(DemoStorage())
        self.conn = self.db.open()
        self.root = rootFolder()
        self.conn.root()[ZopePublication.root_name] = self.root

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        zope.component.testing.tearDown(self)

    def generation1(self, service):
        """Make ``service`` look as generation 1 stored it: ready queues,
        and a repeat waiting for its backoff in the schedule."""
        ready = service._ready = (ReadyQueue(),)
        now = datetime.datetime.now(UTC)
        queued = service.add('echo', 'now')
        ready[0].put((0, queued))
        waiting = service.jobs[service.add('echo', 'later')]
        service._index[QUEUED].remove(waiting._statusKey)
        waiting._statusKey = timeKey(now, waiting.id)
        service._index[QUEUED].add(waiting._statusKey)
        waiting.due = now + datetime.timedelta(seconds=600)
        service._schedule.add(timeKey(waiting.due, waiting.id))
        return queued, waiting.id

    def test_services_in_folders_and_site_managers_evolve(self):
        self.root['tasks'] = top = TaskService()
        self.root.setSiteManager(LocalSiteManager(self.root))
        default = self.root.getSiteManager()['default']
        default['local'] = local = TaskService()
        old = [self.generation1(top), self.generation1(local)]
        transaction.commit()
        evolve2.evolve(Context(self.conn))
        transaction.commit()
        for service, (queued, waiting) in zip((top, local), old):
            self.assertNotIn('_ready', vars(service))
            self.assertEqual(list(timeIds(service._schedule)), [])
            # The waiting repeat is keyed by its due time: after the job
            # that may run now, and not claimable before it is due.
            self.assertEqual(list(timeIds(service._index[QUEUED])),
                             [queued, waiting])
            self.assertEqual(service.countJobs(QUEUED), 2)
            self.assertEqual(
                [j.id for j in service.claimGroup('w', 10)], [queued])
            later = service.jobs[waiting].due + datetime.timedelta(seconds=1)
            self.assertEqual(
                [j.id for j in service.claimGroup('w', 10, later)],
                [waiting])

    def test_evolving_twice_changes_nothing(self):
        self.root['tasks'] = service = TaskService()
        self.generation1(service)
        evolve2.evolve(Context(self.conn))
        before = list(service._index[QUEUED])
        evolve2.evolve(Context(self.conn))
        self.assertEqual(list(service._index[QUEUED]), before)
