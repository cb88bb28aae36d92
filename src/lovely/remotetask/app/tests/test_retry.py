"""The server's staggered retries of conflicting requests."""
import io
import unittest
from unittest import mock

from zope.publisher.http import HTTPRequest

from lovely.remotetask.app import retry


class RetryTests(unittest.TestCase):

    def tearDown(self):
        retry.uninstall()
        self.assertEqual(HTTPRequest.retry_max_count, 3)

    def test_more_retries_with_growing_random_pauses(self):
        retry.install()
        retry.install()  # once is enough; twice changes nothing
        request = HTTPRequest(io.BytesIO(b''), {})
        pauses = []
        with mock.patch.object(retry.time, 'sleep', pauses.append), \
                mock.patch.object(retry.random, 'uniform',
                                  lambda low, high: high):
            for count in range(retry.RETRIES):
                self.assertTrue(request.supportsRetry())
                request = request.retry()
        self.assertFalse(request.supportsRetry())
        self.assertEqual(
            pauses, [retry.STAGGER * 2 ** n for n in range(retry.RETRIES)])
