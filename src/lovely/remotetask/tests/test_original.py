"""The doctests of lovely.remotetask 0.5.2, ported to Python 3.

``tests/original/`` holds README.txt, processor.txt, startlater.txt,
TESTING.txt and xmlrpc.txt of the 0.5.2 release, changed mechanically for
Python 3 and today's toolkit (each file's head lists how).  Every
assertion is kept.  Where this package differs from 0.5.2 on purpose, the
example says so in a comment starting ``# 0.5.2:`` with the old expected
output, and shows the new one; each such difference is listed in
CHANGES.txt, "Upgrading from 0.5".  No assertion of these files depends
on tasks running in a security interaction (processor.txt only ends and
begins interactions around the calls, which still works); should one be
added, mark it ``PENDING(interaction)`` until tasks run in one.
"""
import doctest
import random
import unittest

import transaction
import zope.component
import zope.component.testing
from zope.component.hooks import setHooks
from zope.component.hooks import setSite
from zope.interface import Interface
from zope.interface.interfaces import IComponentLookup
from zope.site.folder import rootFolder
from zope.site.site import LocalSiteManager
from zope.site.site import SiteManagerAdapter
from zope.testing.loggingsupport import InstalledHandler

from lovely.remotetask import processor
from lovely.remotetask import service
from lovely.remotetask import testing


FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS | doctest.REPORT_NDIFF


def placefulSetUp():
    """What zope.app.testing's ``placefulSetUp(site=True)`` gave 0.5.2's
    tests: the component hooks, a root folder that is a site, the current
    site."""
    zope.component.testing.setUp()
    setHooks()
    zope.component.provideAdapter(SiteManagerAdapter, (Interface,),
                                  IComponentLookup)
    root = rootFolder()
    root.setSiteManager(LocalSiteManager(root))
    setSite(root)
    return root


def setUp(test):
    test.globs['root'] = placefulSetUp()
    log_info = InstalledHandler('lovely.remotetask')
    # port: 0.5.2 had no audit trail and logged no completed jobs; those
    # lines are not in these logs.
    log_info.addFilter(lambda record: record.name not in (
        'lovely.remotetask.audit', 'lovely.remotetask.completed'))
    test.globs['log_info'] = log_info
    test.origArgs = service.TaskService.processorArguments
    service.TaskService.processorArguments = {'waitTime': 0.0}
    random.seed(27)


def tearDown(test):
    random.seed()
    transaction.abort()
    processor.stopAll()
    setSite(None)
    zope.component.testing.tearDown()
    log_info = test.globs['log_info']
    log_info.clear()
    log_info.uninstall()
    service.TaskService.processorArguments = test.origArgs
    for name in ('conn', 'db'):
        obj = test.globs.get(name)
        if obj is not None:
            obj.close()


def functionalSetUp(test):
    testing.setUp(test)
    random.seed(27)


def functionalTearDown(test):
    random.seed()
    registry = zope.component.getGlobalSiteManager()
    from lovely.remotetask.interfaces import ITask
    for name in ('echo', 'error'):
        registry.unregisterUtility(provided=ITask, name=name)
    # The package's own echo task, which xmlrpc.txt replaces.
    from lovely.remotetask.task import echo
    registry.registerUtility(echo, ITask, 'echo')
    testing.tearDown(test)


def test_suite():
    unit = doctest.DocFileSuite(
        'original/README.txt', 'original/startlater.txt',
        'original/processor.txt', 'original/TESTING.txt',
        setUp=setUp, tearDown=tearDown, optionflags=FLAGS)
    functional = testing.FunctionalDocFileSuite(
        'original/xmlrpc.txt', package=__name__,
        setUp=functionalSetUp, tearDown=functionalTearDown)
    return unittest.TestSuite([unit, functional])
