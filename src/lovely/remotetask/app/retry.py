"""How the server's publisher retries a request that hit a ConflictError.

zope.publisher retries a conflicting request three times, at once.  Under
a heavy load of concurrent adds and claims (measured by the fault tests:
two threads adding jobs non-stop while workers claim them), a request can
conflict more often than that, and retrying at once on RelStorage meets
the same rows still locked.  The server therefore retries up to
``RETRIES`` times and pauses before each retry for a random time that
doubles with each attempt (at most about ``STAGGER * 2**RETRIES``
seconds in all), so that conflicting requests fall out of step.

This is the policy of the ``remotetask serve`` process; an application
that publishes the package with its own server keeps its own policy.
"""
import random
import time

from zope.publisher.http import HTTPRequest


RETRIES = 8
STAGGER = 0.01   # seconds: the first pause is at most this long


_original = None   # HTTPRequest's own retry and retry_max_count


def install():
    """Give every HTTP request of this process staggered retries (once)."""
    global _original
    if _original is not None:
        return
    _original = HTTPRequest.retry, HTTPRequest.retry_max_count
    original = _original[0]

    def retry(self):
        count = getattr(self, '_retry_count', 0)
        time.sleep(random.uniform(0, STAGGER * 2 ** count))
        return original(self)
    HTTPRequest.retry = retry
    HTTPRequest.retry_max_count = RETRIES


def uninstall():
    """Restore zope.publisher's own retries (for tests)."""
    global _original
    if _original is not None:
        HTTPRequest.retry, HTTPRequest.retry_max_count = _original
        _original = None
