"""A job's stored state: what it leaves out, and what it reads back."""
import unittest

import transaction
import ZODB
from ZODB.DemoStorage import DemoStorage

from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.job import Job


class StoredStateTests(unittest.TestCase):

    def test_attributes_at_their_class_default_are_not_stored(self):
        job = Job(7, 'echo', 'x', maxRetries=None, retryDelay=None)
        job.uniqueKey = None
        job.runAnyway = False
        job.lease = None
        job.attempts = 0     # a default that is not None or False: kept
        state = job.__getstate__()
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
        state = job.__getstate__()
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
