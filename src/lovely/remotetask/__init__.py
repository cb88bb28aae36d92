"""lovely.remotetask: a ZODB-native job queue for Zope Toolkit applications."""


def __getattr__(name):
    # ``from lovely.remotetask import TaskService``, as in 0.5.2; imported
    # when asked for, so that importing a submodule stays light.
    if name == 'TaskService':
        from lovely.remotetask.service import TaskService
        return TaskService
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
