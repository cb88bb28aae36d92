"""The narrative documentation next to the code, run as tests."""
import doctest
import logging
import os
import unittest

import transaction
import ZODB
from ZODB.DemoStorage import DemoStorage
import zope.component.testing

from lovely.remotetask import processor


FLAGS = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
         | doctest.REPORT_NDIFF)


def setUp(test):
    zope.component.testing.setUp(test)
    # DemoStorage resolves conflicts (MappingStorage does not).
    db = ZODB.DB(DemoStorage())
    conn = db.open()
    test.globs.update(db=db, conn=conn, root=conn.root())


def tearDown(test):
    transaction.abort()
    processor.stopAll(db=test.globs['db'])
    test.globs['conn'].close()
    test.globs['db'].close()
    logger = logging.getLogger('lovely.remotetask')
    logger.setLevel(logging.NOTSET)
    zope.component.testing.tearDown(test)


def test_suite():
    narrative = doctest.DocFileSuite(
        '../service.rst', '../processor.rst', '../cron.rst',
        '../startup.rst', '../interaction.rst', '../audit.rst',
        '../workers.rst', '../jobcontrol.rst', '../retry.rst',
        '../metrics.rst', '../priorities.rst', '../tasklimits.rst',
        '../retention.rst', '../progress.rst',
        setUp=setUp, tearDown=tearDown, optionflags=FLAGS)
    # docs/guarantees.rst, in a checkout (an installed package has no docs/).
    guarantees = os.path.join(os.path.dirname(__file__), os.pardir,
                              os.pardir, os.pardir, os.pardir, 'docs',
                              'guarantees.rst')
    if os.path.exists(guarantees):
        narrative.addTest(doctest.DocFileSuite(
            guarantees, module_relative=False,
            setUp=setUp, tearDown=tearDown, optionflags=FLAGS))
    modules = unittest.TestSuite([
        doctest.DocTestSuite('lovely.remotetask.' + name, optionflags=FLAGS)
        for name in ('cron', 'task', 'startup', 'limits', 'priorities',
                     'tasklimits', 'retention', 'interfaces')])
    return unittest.TestSuite([narrative, modules])
