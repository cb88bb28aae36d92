"""The functional doctests: the ZMI and the XML-RPC API, through the WSGI
application of lovely.remotetask.testing."""
import unittest

import zope.component
from zope.interface import Interface
from zope.publisher.interfaces.browser import IBrowserView
from zope.publisher.interfaces.browser import IDefaultBrowserLayer

from lovely.remotetask import testing
from lovely.remotetask.interfaces import IJob
from lovely.remotetask.interfaces import ITask


DETAIL = dict(required=(IJob, IDefaultBrowserLayer), provided=Interface,
              name='detail')


def setUp(test):
    testing.setUp(test)
    # The package's own ``detail`` view of jobs, which a doctest replaces
    # with an application's.
    registry = zope.component.getGlobalSiteManager()
    test.globs['_detail'] = registry.adapters.lookup(
        DETAIL['required'], DETAIL['provided'], DETAIL['name'])


def tearDown(test):
    """Remove what the doctests register globally, even if they failed."""
    registry = zope.component.getGlobalSiteManager()
    registry.unregisterAdapter(required=(IJob, IDefaultBrowserLayer),
                               provided=IBrowserView, name='echo_detail')
    registry.unregisterAdapter(**DETAIL)
    original = test.globs['_detail']
    if original is not None:
        registry.registerAdapter(original, **DETAIL)
    registry.unregisterUtility(provided=ITask, name='fail')
    testing.tearDown(test)


def test_suite():
    return unittest.TestSuite([
        testing.FunctionalDocFileSuite(
            'browser/README.rst', 'browser/jobs.rst', 'browser/cron.rst',
            'browser/audit.rst',
            'browser/workers.rst', 'browser/job.rst',
            'xmlrpc.rst', package='lovely.remotetask', setUp=setUp,
            tearDown=tearDown),
    ])
