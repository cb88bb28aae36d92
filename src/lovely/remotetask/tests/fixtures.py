"""A task service in a FileStorage of its own, for unit tests that run
processors against it (each connection with its own transaction
manager, as processor threads have); one in a DemoStorage for the
others."""
import shutil
import tempfile
import unittest

import transaction
import ZODB
import zope.component
import zope.component.testing
import zope.interface
from ZODB.DemoStorage import DemoStorage
from ZODB.FileStorage import FileStorage

from lovely.remotetask import interfaces
from lovely.remotetask import processor
from lovely.remotetask.service import TaskService


def provide(name, func):
    """Register ``func`` as the task ``name``."""
    zope.interface.alsoProvides(func, interfaces.ITask)
    zope.component.provideUtility(func, interfaces.ITask, name)


class ServiceInDemoStorage(unittest.TestCase):
    """``self.service``, a TaskService committed as ``root['tasks']`` of
    a DemoStorage, in ``self.conn`` (the thread's transaction manager)."""

    def setUp(self):
        zope.component.testing.setUp()
        self.db = ZODB.DB(DemoStorage())
        self.conn = self.db.open()
        self.conn.root()['tasks'] = self.service = TaskService()
        transaction.commit()

    def tearDown(self):
        transaction.abort()
        self.conn.close()
        self.db.close()
        zope.component.testing.tearDown()


class ServiceInFileStorage(unittest.TestCase):
    """``root['tasks']``, a TaskService; ``populate(root)`` adds more."""

    def setUp(self):
        zope.component.testing.setUp()
        self.tmp = tempfile.mkdtemp()
        self.db = ZODB.DB(FileStorage(f'{self.tmp}/Data.fs'))
        conn, tm = self.open()
        self.populate(conn.root())
        conn.root()['tasks'] = TaskService()
        tm.commit()
        self.oid = conn.root()['tasks']._p_oid
        conn.close()

    def populate(self, root):
        """Add what the tests need next to the service."""

    def tearDown(self):
        processor.stopAll(db=self.db)
        self.db.close()
        shutil.rmtree(self.tmp)
        zope.component.testing.tearDown()

    def open(self):
        tm = transaction.TransactionManager()
        return self.db.open(transaction_manager=tm), tm

    def service(self):
        conn, tm = self.open()
        self.addCleanup(conn.close)
        self.addCleanup(tm.abort)
        return conn.get(self.oid), tm
