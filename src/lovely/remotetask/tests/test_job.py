"""A job's stored state: what it leaves out, and what it reads back."""
import datetime
import pickle
import unittest

import persistent
import transaction
import ZODB
from ZODB.DemoStorage import DemoStorage

from lovely.remotetask import history
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.job import CronJob
from lovely.remotetask.job import Job
from lovely.remotetask.job import Lease


UTC = datetime.timezone.utc


def stored(job):
    """The attributes ``job`` stores: its state with the packed part
    unpacked."""
    state = dict(job.__getstate__())
    state.update(pickle.loads(state.pop('_packed')))
    return state


class StoredStateTests(unittest.TestCase):

    def test_attributes_at_their_class_default_are_not_stored(self):
        job = Job(7, 'echo', 'x', maxRetries=None, retryDelay=None)
        job.uniqueKey = None
        job.runAnyway = False
        job.lease = None
        job.attempts = 0     # a default that is not None or False: kept
        state = stored(job)
        for name in ('maxRetries', 'retryDelay', 'uniqueKey', 'runAnyway',
                     'lease'):
            self.assertNotIn(name, state)
        self.assertEqual(state['attempts'], 0)
        self.assertEqual((state['id'], state['task'], state['input'],
                          state['status']), (7, 'echo', 'x', QUEUED))
        # The object itself still has them.
        self.assertIn('uniqueKey', vars(job))

    def test_values_other_than_the_default_are_stored(self):
        job = Job(7, 'echo', None, maxRetries=0)
        job.runAnyway = True
        job.error = ''
        state = stored(job)
        self.assertNotIn('input', state)       # None, the default
        self.assertEqual((state['maxRetries'], state['runAnyway'],
                          state['error']), (0, True, ''))

    def test_a_stored_job_reads_back_the_same(self):
        db = ZODB.DB(DemoStorage())
        self.addCleanup(db.close)
        conn = db.open()
        job = conn.root()['job'] = Job(7, 'echo', 'x', maxRetries=3)
        job.lease = None
        job.runAnyway = False
        transaction.commit()
        other = db.open()
        self.addCleanup(other.close)
        copy = other.root()['job']
        for name in ('id', 'task', 'input', 'status', 'created',
                     'maxRetries', 'retryDelay', 'lease', 'runAnyway',
                     'uniqueKey', 'priority'):
            self.assertEqual(getattr(copy, name), getattr(job, name), name)
        transaction.abort()
        conn.close()

    def open(self):
        db = ZODB.DB(DemoStorage())
        self.addCleanup(db.close)
        conn = db.open()
        self.addCleanup(conn.close)
        self.addCleanup(transaction.abort)
        return db, conn

    def reread(self, db, conn, job):
        """``job`` committed, then read through another connection."""
        conn.root()['job'] = job
        transaction.commit()
        other = db.open()
        self.addCleanup(other.close)
        return other.root()['job']

    def test_the_service_s_attributes_are_packed_into_one_pickle(self):
        # The ZODB's pickler calls a Python hook per object of a state:
        # the job's own attributes reach it as one bytes object; its
        # input, output and persistent parts stay as they are.
        now = datetime.datetime(2026, 12, 3, 12, 0, 0, 123456, UTC)
        job = Job(7, 'echo', {'to': 'x'}, created=now)
        job.started = job.completed = now
        job.attempts = job.claims = 1
        job.worker = 'w1'
        job.lease = Lease('w1', now)
        history.recordAttempt(job, history.COMPLETED, now)
        state = job.__getstate__()
        self.assertEqual(sorted(state), ['_packed', 'input', 'lease'])
        self.assertIsInstance(state['_packed'], bytes)
        packed = pickle.loads(state['_packed'])
        self.assertFalse(any(isinstance(value, persistent.Persistent)
                             for value in packed.values()))
        self.assertEqual(packed['created'], now)
        self.assertIs(packed['created'].tzinfo, UTC)

    def test_a_packed_job_reads_back_the_same(self):
        db, conn = self.open()
        now = datetime.datetime(2026, 12, 3, 12, 0, 0, 123456, UTC)
        job = Job(7, 'echo', ['in'], created=now, maxRetries=2,
                  retryDelay=1.5, priority=8)
        job.started = now
        job.due = now + datetime.timedelta(seconds=3)
        job.error, job.traceback = 'ValueError: x', 'Traceback ...'
        job.after, job._dependants = (1, 2), (3,)
        job.uniqueKey, job.addedBy = 'invoice-42', 'zope.mgr'
        job.lease = Lease('w1', now)
        history.recordAttempt(job, history.FAILED, now, 'ValueError: x')
        copy = self.reread(db, conn, job)
        for name in ('id', 'task', 'input', 'status', 'created', 'started',
                     'due', 'error', 'traceback', 'after', '_dependants',
                     'uniqueKey', 'addedBy', 'maxRetries', 'retryDelay',
                     'priority', 'history', 'attempts', 'output'):
            self.assertEqual(getattr(copy, name), getattr(job, name), name)
        self.assertIs(copy.created.tzinfo, UTC)
        self.assertEqual(copy.lease.worker, 'w1')
        self.assertIsNot(copy.lease, job.lease)  # the same object, reread

    def test_a_cron_job_s_schedule_reads_back(self):
        db, conn = self.open()
        job = CronJob(9, 'echo', None, minute=(0, 30), hour=(3,))
        copy = self.reread(db, conn, job)
        self.assertEqual(copy.schedule, job.schedule)
        self.assertEqual((copy.status, copy.delay), (job.status, None))

    def test_a_class_gone_from_a_packed_state_reads_as_broken(self):
        # As in the rest of a record: the database's class factory.
        import sys
        import types
        from ZODB.broken import Broken
        module = types.ModuleType('lovely_remotetask_gone')
        sys.modules[module.__name__] = module
        self.addCleanup(sys.modules.pop, module.__name__)

        class Text(str):
            pass
        Text.__module__, Text.__qualname__ = module.__name__, 'Text'
        module.Text = Text
        db, conn = self.open()
        job = Job(7, 'echo', None)
        job.addedBy = Text('someone')
        copy = self.reread(db, conn, job)
        del module.Text
        copy._p_invalidate()
        self.assertEqual(copy.task, 'echo')
        self.assertIsInstance(copy.addedBy, Broken)

    def test_attributes_stored_plain_win_over_the_packed_part(self):
        # A release before the packing changed a packed job: it stored
        # the attribute plain, and the packed part beside it unchanged.
        job = Job(5, 'echo', 'x')
        state = job.__getstate__()
        state['status'] = 'completed'
        copy = Job.__new__(Job)
        copy.__setstate__(state)
        self.assertEqual(copy.status, 'completed')

    def test_a_record_stored_before_the_packing_reads_as_it_was(self):
        # Generation 9 and older: every attribute in the state itself.
        job = Job.__new__(Job)
        now = datetime.datetime(2020, 1, 2, tzinfo=UTC)
        job.__setstate__({'id': 5, 'task': 'echo', 'input': 'x',
                          'status': QUEUED, 'created': now,
                          'attempts': 2})
        self.assertEqual((job.id, job.task, job.input, job.status,
                          job.created, job.attempts),
                         (5, 'echo', 'x', QUEUED, now, 2))
        self.assertEqual(stored(job)['attempts'], 2)
