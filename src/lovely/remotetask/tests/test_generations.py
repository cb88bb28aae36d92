"""Schema generations: generation 2 moves stored cron jobs to 0.5.2's
due times, in the service's schedule index too; generation 3 drops the
old ready queues; generation 7 links waiting jobs to their parents."""
import datetime
import types
import unittest

import transaction
import ZODB
from ZODB.DemoStorage import DemoStorage
import zope.component.testing
from zope.site.folder import Folder
from zope.site.folder import rootFolder
from zope.site.site import LocalSiteManager

from lovely.remotetask import inbox
from lovely.remotetask import interfaces
from lovely.remotetask import task
from lovely.remotetask.generations import evolve2
from lovely.remotetask.generations import evolve3
from lovely.remotetask.generations import evolve7
from lovely.remotetask.generations import evolve8
from lovely.remotetask.generations import evolve9
from lovely.remotetask import dependencies
from lovely.remotetask.generations.utility import taskServices
from lovely.remotetask.generations import manager
from lovely.remotetask.service import TaskService

from zope.app.publication.zopepublication import ZopePublication
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.readyqueue import ReadyQueue
from lovely.remotetask.timeset import timeIds
from lovely.remotetask.timeset import timeKey

UTC = datetime.timezone.utc


def at(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


class Evolve2Tests(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp(self)
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')
        self.db = ZODB.DB(DemoStorage())
        self.conn = self.db.open()
        self.conn.root()['Application'] = app = rootFolder()
        app.setSiteManager(LocalSiteManager(app))
        app['rootservice'] = self.rootService = TaskService()
        app['site1'] = site = Folder()
        site.setSiteManager(LocalSiteManager(site))
        sm = site.getSiteManager()
        sm['default']['tasks'] = self.siteService = TaskService()
        sm.registerUtility(self.siteService, interfaces.ITaskService, 'tasks')
        transaction.commit()

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        zope.component.testing.tearDown(self)

    def oldCronJob(self, service, oldDue, **schedule):
        """A cron job as the previous generation scheduled it."""
        jobid = service.addCronJob('echo', **schedule)
        job = service.jobs[jobid]
        service._scheduleAt(job, interfaces.CRONJOB, at(oldDue))
        return job

    def test_generation(self):
        self.assertEqual(manager.generation, 11)
        self.assertEqual(manager.minimum_generation, 11)

    def test_finds_services_in_folders_and_site_managers(self):
        found = list(taskServices(self.conn.root()['Application']))
        self.assertEqual({id(s) for s in found},
                         {id(self.rootService), id(self.siteService)})

    def test_moves_due_times_and_the_schedule_index(self):
        nightly = self.oldCronJob(self.siteService, '2026-11-27 03:17',
                                  hour=(3,))
        firstOfMonth = self.oldCronJob(self.rootService, '2026-12-01 00:00',
                                       dayOfMonth=(1,))
        mondays = self.oldCronJob(self.rootService, '2026-11-30 05:42',
                                  dayOfWeek=(0,))
        everyTen = self.oldCronJob(self.rootService, '2026-11-27 10:10',
                                   minute=(10,))
        may = self.oldCronJob(self.rootService, '2027-05-03 00:00',
                              month=(5,))
        delayed = self.rootService.addCronJob('echo', delay=60)
        delayedDue = self.rootService.jobs[delayed].due
        transaction.commit()

        evolve2.evolve(types.SimpleNamespace(connection=self.conn))
        transaction.commit()

        self.assertEqual(nightly.due, at('2026-11-28 03:00'))
        self.assertEqual(firstOfMonth.due, at('2026-12-01 00:00'))
        self.assertEqual(mondays.due, at('2026-12-07 00:00'))
        self.assertEqual(everyTen.due, at('2026-11-27 10:10'))
        self.assertEqual(may.due, at('2028-05-01 00:00'))
        self.assertEqual(self.rootService.jobs[delayed].due, delayedDue)
        # The schedule index has the new times: nothing is due at the old
        # one, and each job is due at its new one.
        self.assertFalse(self.siteService.hasJobsWaiting(
            at('2026-11-27 03:17')))
        self.assertEqual(self.siteService.nextScheduled(),
                         at('2026-11-28 03:00'))
        self.assertTrue(self.siteService.hasJobsWaiting(
            at('2026-11-28 03:00')))
        self.assertEqual(self.siteService.claim('w', at('2026-11-28 03:00')),
                         nightly)
        self.assertEqual(self.rootService.nextScheduled(),
                         at('2026-11-27 10:10'))


class Context:
    def __init__(self, conn):
        self.connection = conn


class Evolve3Tests(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp(self)
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')
        self.db = ZODB.DB(DemoStorage())
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
        inbox.index(service)   # generation 1 had no inbox
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
        evolve3.evolve(Context(self.conn))
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

    def assertAddedOnce(self, service, name, generation):
        """The evolve module ``generation`` gives a service without
        ``name`` one, and keeps it when run again."""
        delattr(service, name)
        transaction.commit()
        generation.evolve(Context(self.conn))
        transaction.commit()
        added = getattr(service, name)
        generation.evolve(Context(self.conn))
        self.assertIs(getattr(service, name), added)

    def test_evolving_twice_changes_nothing(self):
        self.root['tasks'] = service = TaskService()
        self.generation1(service)
        evolve3.evolve(Context(self.conn))
        before = list(service._index[QUEUED])
        evolve3.evolve(Context(self.conn))
        self.assertEqual(list(service._index[QUEUED]), before)


class Evolve7Tests(Evolve3Tests):
    """Generation 7 links the waiting jobs to their parents in the
    service's ``_followers``; a parent's old ``dependants`` stay
    readable."""

    def generation6(self, service):
        """A parent, its waiting child and a finished chain, as generation
        6 stored them (``dependants`` on the parent, no links)."""
        parent = service.add('echo', 'parent')
        child = service.add('echo', 'child', after=[parent])
        done = service.add('echo', 'done')
        service.processNext(jobid=done)
        old = service.add('echo', 'old')
        for jobid in (parent, done):
            job = service.jobs[jobid]
            job.__dict__['dependants'] = (child,) if jobid == parent \
                else (old,)
            job._p_changed = True
        del service._followers
        del service._uniqueKeys['']
        return parent, child, done, old

    def test_waiting_jobs_are_linked_again(self):
        self.root['tasks'] = service = TaskService()
        parent, child, done, old = self.generation6(service)
        transaction.commit()
        evolve7.evolve(Context(self.conn))
        transaction.commit()
        self.assertEqual(dependencies.linked(service, parent), [child])
        self.assertIn('', service._uniqueKeys)
        self.assertEqual(service.jobs[parent].dependants, (child,))
        self.assertEqual(service.jobs[done].dependants, (old,))
        service.processNext(jobid=parent)
        self.assertEqual(service.getStatus(child), QUEUED)
        # Evolving again changes nothing.
        evolve7.evolve(Context(self.conn))
        self.assertEqual(dependencies.linked(service, parent), [child])


class Evolve8Tests(Evolve3Tests):
    """Generation 8 adds the service's map of progress reports."""

    def test_the_map_is_added_once(self):
        self.root['tasks'] = service = TaskService()
        jobid = service.add('echo', 'x')
        self.assertAddedOnce(service, '_progress', evolve8)
        service.claim('w')
        service.setProgress(jobid, 0.5, 'half')
        self.assertEqual(service.getProgress(jobid)['message'], 'half')


class Evolve9Tests(Evolve3Tests):
    """Generation 9 adds the service's inbox of new jobs."""

    def test_the_inbox_is_added_once(self):
        self.root['tasks'] = service = TaskService()
        old = service.add('echo', 'old')
        inbox.index(service)
        self.assertAddedOnce(service, '_inbox', evolve9)
        new = service.add('echo', 'new')
        self.assertEqual(service.countJobs(QUEUED), 2)
        self.assertEqual([j.id for j in service.claimGroup('w', 10)],
                         [old, new])


class Evolve10Tests(unittest.TestCase):
    """Generation 10 marks the packed jobs: an older release refuses the
    database instead of misreading them."""

    def test_an_older_release_refuses_the_evolved_database(self):
        from zope.generations.generations import GenerationTooHigh
        from zope.generations.generations import SchemaManager
        from zope.generations.generations import evolve
        from zope.generations.generations import evolveMinimumSubscriber
        from zope.generations.interfaces import ISchemaManager
        zope.component.testing.setUp()
        self.addCleanup(zope.component.testing.tearDown)
        db = ZODB.DB(DemoStorage())
        self.addCleanup(db.close)
        package = 'lovely.remotetask.generations'
        zope.component.provideUtility(manager, ISchemaManager, package)
        evolveMinimumSubscriber(types.SimpleNamespace(database=db))
        older = SchemaManager(minimum_generation=9, generation=9,
                              package_name=package)
        zope.component.provideUtility(older, ISchemaManager, package)
        with self.assertRaises(GenerationTooHigh):
            evolve(db)
