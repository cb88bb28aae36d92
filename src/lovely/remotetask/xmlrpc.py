"""The XML-RPC API of a task service (see xmlrpc.rst).

Every method is an XML-RPC view of the service: POST to the service's
URL.  Methods that look (``getAvailableTasks``, ``getStatus``,
``getResult``, ``getError``, ``system.*``) need ``lovely.remotetask.View``;
methods that change the queue (``add``, ``addCronJob``, ``startJob``,
``cancel``) need ``lovely.remotetask.Manage``.

Bad input is answered with a ``Fault`` whose code says what was wrong
(``FAULT_*`` below) and the transaction is aborted, so nothing is stored.
"""
import contextlib
import datetime
import inspect
import xmlrpc.client

import zope.component
from zope.app.publication.traversers import SimpleComponentTraverser
from zope.publisher.xmlrpc import XMLRPCView
from zope.security.proxy import removeSecurityProxy

from lovely.remotetask.interfaces import InvalidJobId
from lovely.remotetask.interfaces import InvalidSchedule
from lovely.remotetask.interfaces import NoSuchJob
from lovely.remotetask.interfaces import UnknownTask


#: The task name is not a task of the service.
FAULT_UNKNOWN_TASK = 1
#: No job has this id (never had, or it was cleaned).
FAULT_NO_SUCH_JOB = 2
#: A job id must be an integer in [1, 2**31).
FAULT_INVALID_JOB_ID = 3
#: The cron schedule is out of range or never matches.
FAULT_INVALID_SCHEDULE = 4
#: No such method (the XML-RPC interoperability code).
FAULT_NO_SUCH_METHOD = -32601
#: An argument has the wrong type (the XML-RPC interoperability code).
FAULT_INVALID_PARAMS = -32602

_FAULTS = (
    (UnknownTask, FAULT_UNKNOWN_TASK),
    (NoSuchJob, FAULT_NO_SUCH_JOB),
    (InvalidJobId, FAULT_INVALID_JOB_ID),
    (InvalidSchedule, FAULT_INVALID_SCHEDULE),
)
_ERRORS = tuple(exception for exception, code in _FAULTS)

#: The range of XML-RPC's <int> (i4).
MININT, MAXINT = -2 ** 31, 2 ** 31 - 1


def marshallable(value):
    """``value`` as data that any XML-RPC client can read.

    XML-RPC has strings, 32-bit integers, floats, booleans, dates, binary
    data, arrays and structs with string keys, and nothing else: no None,
    no big integers, no objects.  A task's output is arbitrary, so:

    - None becomes the empty string;
    - integers beyond 32 bits become their decimal string;
    - tuples, lists, sets and frozensets become arrays (sets sorted
      by their items' repr, to be stable);
    - dict keys become strings (``str(key)``);
    - ``bytes`` become Binary, aware or naive datetimes DateTime (as
      ISO 8601 in UTC when aware);
    - anything else becomes its ``repr()``.
    """
    if value is None:
        return ''
    if isinstance(value, bool) or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if MININT <= value <= MAXINT else str(value)
    if isinstance(value, (list, tuple)):
        return [marshallable(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return [marshallable(item) for item in sorted(value, key=repr)]
    if isinstance(value, dict):
        return {str(key): marshallable(item) for key, item in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return xmlrpc.client.Binary(bytes(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        return xmlrpc.client.DateTime(value.strftime('%Y%m%dT%H:%M:%S'))
    return repr(value)


@contextlib.contextmanager
def faults():
    """Turn the service's errors about bad input into Faults."""
    try:
        yield
    except _ERRORS as error:
        code = next(code for exception, code in _FAULTS
                    if isinstance(error, exception))
        raise xmlrpc.client.Fault(code, str(error)) from error


def _check(name, value, *types):
    """``value`` if it is of one of ``types``, else a Fault."""
    if isinstance(value, bool) and bool not in types or \
            not isinstance(value, types):
        expected = ' or '.join(t.__name__ for t in types)
        raise xmlrpc.client.Fault(
            FAULT_INVALID_PARAMS,
            f'{name}: expected {expected}, got {type(value).__name__} '
            f'{value!r}')
    return value


def _schedule(name, value):
    """A cron field: an int or an array of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    _check(name, value, list, tuple)
    return tuple(_check(name, item, int) for item in value)


def signature(returns, *params):
    """Declare the XML-RPC types of a method's result and parameters.

    ``system.methodSignature`` lists one signature for every number of
    arguments the method takes (its optional parameters are last).
    """
    def decorate(method):
        method.xmlrpcTypes = (returns,) + params
        return method
    return decorate


def signatures(method):
    """All signatures of a method declared with ``signature``."""
    returns, *params = method.xmlrpcTypes
    optional = len(method.__defaults__ or ())
    return [[returns, *params[:count]]
            for count in range(len(params) - optional, len(params) + 1)]


class TaskServiceAPI(XMLRPCView):
    """The XML-RPC methods of a task service."""

    @signature('array')
    def getAvailableTasks(self):
        """The names of the tasks jobs can be added for, sorted."""
        return sorted(self.context.getAvailableTasks())

    @signature('int', 'string', 'any', 'boolean')
    def add(self, task, input=None, startLater=False):
        """Add a job for `task` with `input`; return its id.

        With `startLater` true the job waits for startJob(id).
        """
        _check('task', task, str)
        _check('startLater', startLater, bool)
        with faults():
            return self.context.add(task, input, startLater)

    @signature('int', 'string', 'any', 'array', 'array', 'array', 'array',
               'array', 'double')
    def addCronJob(self, task, input=None, minute=(), hour=(),
                   dayOfMonth=(), month=(), dayOfWeek=(), delay=None):
        """Add a cron job for `task` with `input`; return its id.

        The five schedule fields are arrays of integers (empty: any value;
        dayOfWeek 0 is Monday; times are UTC).  The job runs whenever all
        fields match.  With a `delay` in seconds the job runs once, that
        long after it was added, instead.
        """
        _check('task', task, str)
        schedule = {name: _schedule(name, value) for name, value in (
            ('minute', minute), ('hour', hour), ('dayOfMonth', dayOfMonth),
            ('month', month), ('dayOfWeek', dayOfWeek))}
        if delay is not None:
            _check('delay', delay, int, float)
        with faults():
            return self.context.addCronJob(task, input, delay=delay,
                                           **schedule)

    @signature('boolean', 'int')
    def startJob(self, jobid):
        """Queue a job added with startLater; false if it was not waiting.
        """
        return self._call('startJob', jobid)

    @signature('boolean', 'int')
    def cancel(self, jobid):
        """Cancel a job; true if it was cancelled, false if it is running
        or finished."""
        return self._call('cancel', jobid)

    @signature('string', 'int')
    def getStatus(self, jobid):
        """The status of a job."""
        return self._call('getStatus', jobid)

    @signature('any', 'int')
    def getResult(self, jobid):
        """The output of a job ('' until it completed)."""
        # Reading the output is what getResult is protected for; the
        # proxies would hide the types that marshallable() converts.
        return marshallable(removeSecurityProxy(
            self._call('getResult', jobid)))

    @signature('string', 'int')
    def getError(self, jobid):
        """The error message of a job; '' if it has none."""
        return marshallable(self._call('getError', jobid))

    def _call(self, method, jobid):
        _check('jobid', jobid, int)
        with faults():
            return getattr(self.context, method)(jobid)


class TaskServiceTraverser(SimpleComponentTraverser):
    """Finds the XML-RPC methods of a service; a Fault for other names
    (instead of an HTTP 404, which XML-RPC clients report badly)."""

    def publishTraverse(self, request, name):
        view = zope.component.queryMultiAdapter((self.context, request),
                                                name=name)
        if view is None:
            raise xmlrpc.client.Fault(FAULT_NO_SUCH_METHOD,
                                      f'No such method: {name!r}')
        return view


#: The methods of the API and the permission each needs.
READ_METHODS = ('getAvailableTasks', 'getStatus', 'getResult', 'getError')
MANAGE_METHODS = ('add', 'addCronJob', 'startJob', 'cancel')


class Introspection(XMLRPCView):
    """``system.listMethods``, ``system.methodHelp`` and
    ``system.methodSignature`` for the API of a task service.

    XML-RPC publishes ``system.listMethods`` as the method
    ``listMethods`` of the view ``system``.
    """

    methods = tuple(sorted(READ_METHODS + MANAGE_METHODS))

    def _method(self, name):
        _check('name', name, str)
        if name not in self.methods:
            raise xmlrpc.client.Fault(
                FAULT_NO_SUCH_METHOD, f'No such method: {name!r}')
        return getattr(TaskServiceAPI, name)

    def listMethods(self):
        """The names of the methods of the API."""
        return list(self.methods)

    def methodHelp(self, name):
        """The documentation of a method."""
        return inspect.getdoc(self._method(name))

    def methodSignature(self, name):
        """The signatures of a method: [[returns, param, ...], ...]."""
        return signatures(self._method(name))
