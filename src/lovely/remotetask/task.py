"""Task base classes and the tasks every application has."""
from zope.interface import implementer

from lovely.remotetask import interfaces
from lovely.remotetask.interfaces import TaskError  # noqa: F401 (API)


@implementer(interfaces.ITask)
class TaskBase:
    """Base class for tasks: subclass and implement ``__call__``.

    See ITask.
    """

    inputSchema = None
    outputSchema = None
    # The limits of the task's jobs (see ITask, tasklimits.py): none.
    maxConcurrent = None
    rateLimit = None
    keepCompleted = None
    keepFailed = None

    def __call__(self, service, jobid, input):
        raise NotImplementedError

    def __repr__(self):
        return f'<{self.__class__.__name__}>'


class SimpleTask(TaskBase):
    """A task that calls a plain function with the job's input.

    >>> double = SimpleTask(lambda input: input * 2)
    >>> double(None, 1, 21)
    42
    """

    def __init__(self, func):
        self.func = func

    def __call__(self, service, jobid, input):
        return self.func(input)

    def __repr__(self):
        name = getattr(self.func, '__qualname__', repr(self.func))
        return f'<SimpleTask {name}>'


class EchoTask(TaskBase):
    """Returns its input: registered as ``echo``.

    >>> EchoTask()(None, 1, {'foo': 'bar'})
    {'foo': 'bar'}
    """

    def __call__(self, service, jobid, input):
        return input


echo = EchoTask()
