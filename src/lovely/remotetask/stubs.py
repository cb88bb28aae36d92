"""Stubs for the tests of applications (0.5.2's ``lovely.remotetask.
testing`` stubs, imported from there).

``TaskServiceStub`` is a task service whose tasks are ``ITaskStub``
utilities instead of ``ITask`` ones, so that a test set-up can register
stand-ins for the real tasks; its job ids count from 1.  It answers as
0.5.2's stub did (TESTING.txt): ``add`` of an unknown task raises
``ValueError('Task does not exist')``, ``cancel`` and ``process`` return
None and ``cancel`` of an unknown job does nothing.  It is the real
service otherwise, and it does not start processing threads: tests call
``process()``.

``QueueStub`` is a list-backed ``zc.queue`` queue; ``ExceptionTask``
always raises ``ZeroDivisionError``.
"""
import zc.queue.interfaces
from zope.interface import implementer

from lovely.remotetask import interfaces
from lovely.remotetask.service import TaskService
from lovely.remotetask.task import TaskBase


class ExceptionTask(TaskBase):
    """A task that always fails (to test error handling)."""

    def __call__(self, service, id, input):
        return 1 / 0


@implementer(zc.queue.interfaces.IQueue)
class QueueStub:
    """A queue in a tuple: ``put``, ``pull(index=0)``, ``len``, iteration
    and indexing."""

    def __init__(self):
        self._data = ()

    def pull(self, index=0):
        if index < 0:
            index += len(self._data)
            if index < 0:
                raise IndexError(index - len(self._data))
        result = self._data[index]
        self._data = self._data[:index] + self._data[index + 1:]
        return result

    def put(self, item):
        self._data += (item,)

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def __getitem__(self, index):
        return self._data[index]

    def __bool__(self):
        return bool(self._data)


class ITaskStub(interfaces.ITask):
    """The tasks of a ``TaskServiceStub``."""


class TaskServiceStub(TaskService):
    """A task service over ``ITaskStub`` utilities, ids from 1."""

    taskInterface = ITaskStub

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._counter = 1

    def _newId(self):
        jobid = self._counter
        self._counter += 1
        return jobid

    def _getTask(self, name):
        try:
            return super()._getTask(name)
        except interfaces.UnknownTask:
            raise ValueError('Task does not exist') from None

    def cancel(self, jobid):
        if isinstance(jobid, int) and jobid in self.jobs:
            super().cancel(jobid)

    def process(self, now=None):
        super().process(now)

    def startProcessing(self):
        raise NotImplementedError("Stub doesn't startProcessing")
