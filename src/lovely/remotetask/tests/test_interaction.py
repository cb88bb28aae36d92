"""Edge cases of running jobs in a security interaction (interaction.rst).
"""
import unittest

import transaction
import ZODB
import zope.component
import zope.component.testing
import zope.interface
from ZODB.DemoStorage import DemoStorage
from zope.authentication.interfaces import IAuthentication
from zope.principalregistry.principalregistry import principalRegistry
from zope.security.management import endInteraction
from zope.security.management import getInteraction
from zope.security.management import newInteraction
from zope.security.management import queryInteraction
from zope.security.management import system_user
from zope.security.testing import Participation

from lovely.remotetask import interaction
from lovely.remotetask import interfaces
from lovely.remotetask import processor
from lovely.remotetask.service import TaskService


seen = []


@zope.interface.implementer(interfaces.ITask)
class Recorder:
    """Records the principals of the interaction it runs in."""

    def __call__(self, service, jobid, input):
        current = getInteraction()
        seen.append([p.principal for p in current.participations])
        if input == 'fail':
            raise ValueError('failed as asked')
        return current.participations[0].principal.id


class InteractionTests(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp()
        zope.component.provideUtility(Recorder(), interfaces.ITask, 'who')
        self.db = ZODB.DB(DemoStorage())
        self.conn = self.db.open()
        self.conn.root()['tasks'] = self.service = TaskService()
        transaction.commit()
        del seen[:]

    def tearDown(self):
        transaction.abort()
        if queryInteraction() is not None:
            endInteraction()
        processor.stopAll(db=self.db)
        self.conn.close()
        self.db.close()
        zope.component.testing.tearDown()

    def withRegistry(self):
        zope.component.provideUtility(principalRegistry, IAuthentication)
        principalRegistry.defineDefaultPrincipal('zope.anybody', 'Anybody')
        return principalRegistry.definePrincipal('alice', 'Alice',
                                                 login='alice')

    def addAs(self, principal, input=None):
        newInteraction(Participation(principal))
        try:
            return self.service.add('who', input)
        finally:
            endInteraction()

    def test_a_processor_thread_runs_the_job_as_its_adder(self):
        alice = self.withRegistry()
        jobid = self.addAs(alice)
        transaction.commit()
        proc = processor.SimpleProcessor(self.db, self.service._p_oid)
        try:
            self.assertTrue(proc.step())
        finally:
            proc.stop()
        transaction.begin()
        self.assertEqual(self.service.getResult(jobid), 'alice')
        self.assertEqual(seen, [[alice]])

    def test_process_next_in_a_request_restores_the_request(self):
        alice = self.withRegistry()
        jobid = self.addAs(alice)
        request = Participation(principalRegistry.getPrincipal(
            'zope.anybody'))
        newInteraction(request)
        outer = getInteraction()
        self.assertTrue(self.service.processNext())
        self.assertIs(getInteraction(), outer)
        self.assertEqual(self.service.getResult(jobid), 'alice')

    def test_a_failing_task_leaves_no_interaction(self):
        alice = self.withRegistry()
        jobid = self.addAs(alice, 'fail')
        self.service.jobs[jobid].maxRetries = 0
        self.assertTrue(self.service.processNext())
        self.assertIsNone(queryInteraction())
        self.assertEqual(self.service.getStatus(jobid), 'error')
        self.assertEqual(self.service.getError(jobid),
                         'ValueError: failed as asked')

    def test_without_authentication_the_job_runs_as_nobody(self):
        jobid = self.service.add('who')
        self.assertIsNone(self.service.jobs[jobid].addedBy)
        self.service.processNext()
        self.assertEqual(self.service.getResult(jobid),
                         'lovely.remotetask.nobody')
        self.assertEqual(seen, [[interaction.nobody]])

    def test_an_unknown_adder_without_authentication_runs_as_nobody(self):
        jobid = self.addAs(_Principal('carol'))
        self.assertEqual(self.service.jobs[jobid].addedBy, 'carol')
        self.service.processNext()
        self.assertEqual(self.service.getResult(jobid),
                         'lovely.remotetask.nobody')

    def test_the_system_user_stays_the_system_user(self):
        self.withRegistry()
        jobid = self.addAs(system_user)
        self.assertEqual(self.service.jobs[jobid].addedBy, system_user.id)
        self.service.processNext()
        self.assertEqual(seen, [[system_user]])

    def test_current_principal_id(self):
        self.assertIsNone(interaction.currentPrincipalId())
        newInteraction()
        self.assertIsNone(interaction.currentPrincipalId())
        endInteraction()
        newInteraction(Participation(None), Participation(_Principal('x')))
        self.assertEqual(interaction.currentPrincipalId(), 'x')

    def test_the_participation_names_the_job(self):
        jobid = self.service.add('who')
        job = self.service.jobs[jobid]
        with interaction.runningAs(self.service, job) as participation:
            self.assertIs(participation.interaction, getInteraction())
            self.assertEqual(participation.jobid, jobid)
            self.assertIs(participation.service, self.service)
        self.assertIsNone(queryInteraction())


class _Principal:

    def __init__(self, id):
        self.id = id
        self.title = id
