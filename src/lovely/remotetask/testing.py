"""The functional test layer of lovely.remotetask, for reuse.

Applications that add their own tasks and views test them against the
real WSGI application with this layer (or a layer made the same way over
their own ``ftesting.zcml``)::

    from lovely.remotetask.testing import FunctionalLayer
    from lovely.remotetask.testing import FunctionalDocFileSuite

    def test_suite():
        return FunctionalDocFileSuite('README.rst', package=__name__)

The layer's ZCML (``ftesting.zcml``) sets up the Rotterdam ZMI with the
Zope security policy, a manager ``mgr`` (password ``mgrpw``), a viewer
``viewer`` (password ``viewerpw``, who may only look at task services),
and the ``exception`` task, which always fails with a
``ZeroDivisionError``.  Anonymous users get nothing (401).

Processors that a test starts are stopped when the test ends, before
its database is closed.

The stubs of 0.5.2 are here too (see stubs.py): ``TaskServiceStub``,
``ITaskStub``, ``QueueStub`` and ``ExceptionTask``.
"""
import doctest
import time

import transaction
import zope.app.wsgi.testlayer
import zope.testbrowser.wsgi
from zope.app.publisher.xmlrpc.testing import ServerProxy as _ServerProxy

import lovely.remotetask
from lovely.remotetask import processor
from lovely.remotetask.stubs import ExceptionTask  # noqa: F401 (0.5.2)
from lovely.remotetask.stubs import ITaskStub  # noqa: F401
from lovely.remotetask.stubs import QueueStub  # noqa: F401
from lovely.remotetask.stubs import TaskServiceStub  # noqa: F401
from lovely.remotetask.task import SimpleTask


#: The option flags of the functional doctests.
FLAGS = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
         | doctest.REPORT_NDIFF)


def divide_by_zero(input):
    """The ``exception`` task: fails every time it runs."""
    return 1 / 0


exceptionTask = SimpleTask(divide_by_zero)


class FunctionalLayer(zope.testbrowser.wsgi.TestBrowserLayer,
                      zope.app.wsgi.testlayer.BrowserLayer):
    """The WSGI application over a ZCML file, a fresh database per test.

    ``zope.testbrowser.wsgi.Browser()`` works without arguments in the
    layer's tests.  Every processor started during a test is stopped
    when it ends, before the test's database is closed.
    """

    def testTearDown(self):
        processor.stopAll(db=self.db)
        super().testTearDown()


layer = FunctionalLayer(lovely.remotetask, allowTearDown=True)


def getRootFolder():
    """The root folder of the current test's database."""
    return layer.getRootFolder()


def wsgiApp():
    """The WSGI application of the current test."""
    return zope.testbrowser.wsgi.Layer.get_app()


def http(request_string, handle_errors=True):
    """Send a raw HTTP request (a string) to the application.

    Leading whitespace is ignored, so that a doctest can write::

        >>> print(http(r'''
        ... GET /@@contents.html HTTP/1.0
        ... Authorization: Basic mgr:mgrpw
        ... '''))
        HTTP/1.0 200 Ok
        ...

    Returns a response whose ``str()`` is the status line, the headers and
    the body; ``getStatus()``, ``getHeader(name)`` and ``getBody()`` give
    the parts.
    """
    if isinstance(request_string, str):
        request_string = request_string.encode('utf-8')
    return zope.app.wsgi.testlayer.http(
        wsgiApp(), request_string.lstrip(), handle_errors=handle_errors)


def ServerProxy(url, handleErrors=True, **kw):
    """An ``xmlrpc.client.ServerProxy`` talking to the application.

    Credentials go into the URL: ``ServerProxy('http://mgr:mgrpw@localhost
    /tasks/')``.
    """
    return _ServerProxy(wsgiApp(), url, handleErrors=handleErrors, **kw)


def waitFor(condition, timeout=30.0, interval=0.01):
    """Poll until ``condition()`` is true; False if ``timeout`` passes.

    A transaction boundary precedes every poll, so that the condition sees
    what other connections (processor threads) have committed meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        transaction.begin()
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def setUp(test):
    """Give a functional doctest its globals.

    ``http``, ``getRootFolder``, ``Browser`` (zope.testbrowser's WSGI
    browser), ``ServerProxy`` and ``waitFor``.
    """
    test.globs.update(
        http=http,
        getRootFolder=getRootFolder,
        Browser=zope.testbrowser.wsgi.Browser,
        ServerProxy=ServerProxy,
        waitFor=waitFor,
    )


def tearDown(test):
    """Abort what the doctest left uncommitted."""
    transaction.abort()


def FunctionalDocFileSuite(*paths, package, **kw):
    """A doctest suite of files (relative to ``package``), run in the
    functional layer with this module's ``setUp`` and ``FLAGS``."""
    kw.setdefault('setUp', setUp)
    kw.setdefault('tearDown', tearDown)
    kw.setdefault('optionflags', FLAGS)
    kw.setdefault('encoding', 'utf-8')
    suite = doctest.DocFileSuite(*paths, package=package, **kw)
    suite.layer = layer
    return suite
