"""The audit log under concurrent transactions, and its edge cases
(audit.rst tells the story)."""
import logging
import unittest

import transaction
import ZODB
import zope.component
import zope.component.testing
from ZODB.DemoStorage import DemoStorage
from zope.security.management import endInteraction
from zope.security.management import newInteraction
from zope.security.testing import Participation
from zope.security.testing import Principal

from lovely.remotetask import audit
from lovely.remotetask import interfaces
from lovely.remotetask import task
from lovely.remotetask.service import TaskService


class ConcurrencyTests(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp()
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')
        # DemoStorage resolves conflicts (MappingStorage does not).
        self.db = ZODB.DB(DemoStorage())
        self.tms = [transaction.TransactionManager() for i in range(2)]
        self.conns = [self.db.open(transaction_manager=tm)
                      for tm in self.tms]
        self.conns[0].root()['tasks'] = TaskService()
        audit.record(self.conns[0].root()['tasks'], 'start')
        self.tms[0].commit()
        for tm in self.tms:
            tm.begin()

    def tearDown(self):
        for tm in self.tms:
            tm.abort()
        for conn in self.conns:
            conn.close()
        self.db.close()
        zope.component.testing.tearDown()

    def services(self):
        return [conn.root()['tasks'] for conn in self.conns]

    def test_concurrent_appends_merge(self):
        for i in range(5):
            for service in self.services():
                audit.record(service, 'stop')
            for tm in self.tms:
                tm.commit()
        self.tms[0].begin()
        self.assertEqual(len(audit.auditLog(self.services()[0])), 11)
        self.assertEqual(len(list(audit.entries(self.services()[0]))), 11)

    def test_a_trim_and_an_append_merge(self):
        service = self.services()[0]
        auditlog = audit.auditLog(service)
        auditlog.maxEntries = 100
        for i in range(108):
            auditlog.append(None, 'stop')
        self.tms[0].commit()
        for tm in self.tms:
            tm.begin()
        first, second = self.services()
        # 110 + 1 = 111 > 100 + 100 // 10: this one trims to 100 ...
        audit.record(first, 'start')
        audit.record(first, 'stop')
        self.tms[0].commit()
        # ... while this one (110 + 1 in its view) appends only.
        audit.record(second, 'cancel', [1])
        self.tms[1].commit()
        self.tms[0].begin()
        entries = list(audit.entries(first))
        self.assertEqual([e.action for e in entries[:3]],
                         ['cancel', 'stop', 'start'])
        self.assertEqual(len(audit.auditLog(first)), 101)
        self.assertEqual(len(entries), 101)


class RecordTests(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp()
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')

    def tearDown(self):
        transaction.abort()
        zope.component.testing.tearDown()

    def test_a_service_outside_a_database_records_at_once(self):
        service = TaskService()
        jobid = service.add('echo')
        self.assertTrue(service.cancel(jobid))
        entry, = audit.entries(service)
        self.assertEqual((entry.action, entry.jobids, entry.principal),
                         ('cancel', (jobid,), None))

    def test_a_service_stored_before_the_audit_log_gets_one(self):
        service = TaskService()
        del service._audit
        self.assertEqual(list(audit.entries(service)), [])
        self.assertIsNone(audit.auditLog(service))
        audit.record(service, 'start')
        self.assertEqual(len(audit.auditLog(service)), 1)

    def test_the_sentinel_stays(self):
        auditlog = audit.AuditLog()
        auditlog.maxEntries = 1
        for i in range(10):
            auditlog.append('p', 'stop')
        self.assertIn(0, auditlog._entries)
        self.assertEqual(len(auditlog), len(list(auditlog.entries())))
        self.assertEqual(auditlog.principals(), {'p'})

    def test_records_of_one_transaction_merge_per_principal(self):
        db = ZODB.DB(DemoStorage())
        conn = db.open()
        try:
            conn.root()['tasks'] = service = TaskService()
            transaction.commit()
            jobids = [service.add('echo') for i in range(30)]
            for jobid in jobids[:25]:
                service.cancel(jobid)
            newInteraction(Participation(Principal('bob')))
            try:
                for jobid in jobids[25:]:
                    service.cancel(jobid)
            finally:
                endInteraction()
            transaction.commit()
            bob, nobody = audit.entries(service)
            self.assertEqual((bob.principal, bob.count, bob.jobids),
                             ('bob', 5, tuple(jobids[25:])))
            self.assertEqual((nobody.principal, nobody.count, nobody.jobids),
                             (None, 25, tuple(jobids[:audit.MAX_IDS])))
        finally:
            transaction.abort()
            conn.close()
            db.close()

    def test_what_a_savepoint_rolls_back_is_not_recorded(self):
        db = ZODB.DB(DemoStorage())
        conn = db.open()
        try:
            conn.root()['tasks'] = service = TaskService()
            transaction.commit()
            first, second, third = [service.add('echo') for i in range(3)]
            early = transaction.savepoint()     # before any record
            service.cancel(first)
            late = transaction.savepoint()
            service.cancel(second)
            late.rollback()
            service.cancel(third)
            transaction.commit()
            entry, = audit.entries(service)
            self.assertEqual((entry.count, set(entry.jobids)),
                             (2, {first, third}))
            jobid = service.add('echo')
            early = transaction.savepoint()
            service.cancel(jobid)
            early.rollback()
            transaction.commit()
            self.assertEqual(len(list(audit.entries(service))), 1)
        finally:
            transaction.abort()
            conn.close()
            db.close()

    def test_a_failed_task_in_process_next_records_nothing(self):
        db = ZODB.DB(DemoStorage())
        conn = db.open()
        try:
            conn.root()['tasks'] = service = TaskService()
            victim = service.add('echo', startLater=True)

            def cancelThenFail(input):
                service.cancel(victim)
                raise ValueError('and fail')
            zope.component.provideUtility(
                task.SimpleTask(cancelThenFail), interfaces.ITask, 'bad')
            service.add('bad', maxRetries=0)
            transaction.commit()
            self.assertEqual(service.process(), 1)
            transaction.commit()
            self.assertEqual(service.getStatus(victim), 'start later')
            self.assertEqual(list(audit.entries(service)), [])
        finally:
            transaction.abort()
            conn.close()
            db.close()

    def test_the_log_line_escapes_what_comes_from_outside(self):
        service = TaskService()
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logger = logging.getLogger('lovely.remotetask')
        logger.addHandler(handler)
        old = logger.level
        logger.setLevel(logging.INFO)
        try:
            audit.record(service, 'stop',
                         principal='x\n2030-01-01 CRITICAL forged')
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old)
        message = records[0].getMessage()
        self.assertNotIn('\n', message)
        self.assertIn(r"'x\n2030-01-01 CRITICAL forged'", message)
