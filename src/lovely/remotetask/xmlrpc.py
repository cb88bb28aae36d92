"""The XML-RPC API of a task service (see xmlrpc.rst).

Every method is called by a POST to the service's URL.  Methods that look
(``getAvailableTasks``, ``getStatus``, ``getResult``, ``getError``,
``getJob``, ``getProgress``,
``system.*``) need ``lovely.remotetask.View``; methods that change the
queue (``add``, ``addCronJob``, ``startJob``, ``cancel``, ``retry``,
``retryAll``) need
``lovely.remotetask.Manage``.  The permission of each method is declared
once, with the method (``published``); the traverser of the service
enforces it.

Bad input is answered with a ``Fault`` whose code says what was wrong
(``FAULT_*`` below) and the transaction is aborted, so nothing is stored.
Faults are answers, not errors of the server: they are returned to the
publisher (never raised through it), so they leave no traceback in the
log.

The publisher's own part, reading the request, answers the codes of the
XML-RPC interoperability conventions too (``XMLRPCRequest``): a body that
is not XML (-32700), not a method call (-32600), a method name that
cannot name a method (-32601).  An unexpected error of the server is
logged as before, and answered with -32603 and no details.
"""
import contextlib
import datetime
import inspect
import reprlib
import xmlrpc.client
from xml.parsers.expat import ExpatError

import transaction
import zope.component
import zope.publisher.xmlrpc
from zope.location import Location
from zope.publisher.interfaces.xmlrpc import IXMLRPCPublisher
from zope.publisher.xmlrpc import XMLRPCView
from zope.authentication.interfaces import IUnauthenticatedPrincipal
from zope.interface import implementer
from zope.security import checkPermission
from zope.security.checker import CheckerPublic
from zope.security.checker import Checker
from zope.security.interfaces import Unauthorized
from zope.security.proxy import removeSecurityProxy

from lovely.remotetask import bulk
from lovely.remotetask import history
from lovely.remotetask.interfaces import DataTooLarge
from lovely.remotetask.interfaces import InvalidJobId
from lovely.remotetask.interfaces import InvalidSchedule
from lovely.remotetask.interfaces import MANAGE
from lovely.remotetask.interfaces import NoSuchJob
from lovely.remotetask.interfaces import NotRetryable
from lovely.remotetask.interfaces import UnknownTask
from lovely.remotetask.interfaces import VIEW


#: The task name is not a task of the service.
FAULT_UNKNOWN_TASK = 1
#: No job has this id (never had, or it was cleaned).
FAULT_NO_SUCH_JOB = 2
#: A job id must be an integer in [1, 2**31).
FAULT_INVALID_JOB_ID = 3
#: The cron schedule is out of range or never matches.
FAULT_INVALID_SCHEDULE = 4
#: The caller is logged in but lacks the permission (as HTTP's 403).
FAULT_FORBIDDEN = 403
#: The job's input is larger than the service takes (its maxDataSize).
FAULT_DATA_TOO_LARGE = 5
#: Only a job in error or cancelled can be retried (or a bad status for
#: retryAll).
FAULT_NOT_RETRYABLE = 6
#: The body is not well-formed XML (the XML-RPC interoperability codes
#: follow).
FAULT_PARSE_ERROR = -32700
#: The body is XML, but not an XML-RPC method call.
FAULT_INVALID_REQUEST = -32600
#: No such method.
FAULT_NO_SUCH_METHOD = -32601
#: An argument has the wrong type or value, or their number is wrong.
FAULT_INVALID_PARAMS = -32602
#: An unexpected error of the server (it is in the server's log).
FAULT_INTERNAL_ERROR = -32603
#: The result cannot be sent: nested deeper than ``MAX_DEPTH``.
FAULT_APPLICATION_ERROR = -32500

_FAULTS = (
    (UnknownTask, FAULT_UNKNOWN_TASK),
    (NoSuchJob, FAULT_NO_SUCH_JOB),
    (InvalidJobId, FAULT_INVALID_JOB_ID),
    (InvalidSchedule, FAULT_INVALID_SCHEDULE),
    (DataTooLarge, FAULT_DATA_TOO_LARGE),
    (NotRetryable, FAULT_NOT_RETRYABLE),
)
_ERRORS = tuple(exception for exception, code in _FAULTS)

#: The range of XML-RPC's <int> (i4).
MININT, MAXINT = -2 ** 31, 2 ** 31 - 1
#: Arrays and structs are nested at most this deep, in input and results.
MAX_DEPTH = 100


UTC = datetime.timezone.utc

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60


def shortRepr(value):
    """A repr for a message: short, whatever ``value`` is.

    >>> shortRepr('x' * 100)
    "'xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx'"
    >>> shortRepr([[[[[[[[1]]]]]]]])
    '[[[[[[[...]]]]]]]'
    """
    return _repr.repr(value)


class TooDeep(Exception):
    """Data nested deeper than ``MAX_DEPTH``."""


# -- conversions --------------------------------------------------------------

def fromXMLRPC(value, name='input', depth=0):
    """An argument as the data to store.

    XML-RPC's ``dateTime.iso8601`` becomes an aware datetime in UTC
    (XML-RPC dates have no time zone: they are UTC, as every time of this
    API), ``base64`` becomes ``bytes``; arrays are lists, structs dicts.
    Data nested deeper than ``MAX_DEPTH`` and dates that are not ISO 8601
    are refused with ``FAULT_INVALID_PARAMS``.
    """
    if isinstance(value, xmlrpc.client.DateTime):
        return _datetime(value.value, name)
    if isinstance(value, xmlrpc.client.Binary):
        return value.data
    if isinstance(value, (list, dict)):
        if depth >= MAX_DEPTH:
            raise xmlrpc.client.Fault(
                FAULT_INVALID_PARAMS,
                f'{name}: arrays and structs nested deeper than '
                f'{MAX_DEPTH} levels')
        if isinstance(value, list):
            return [fromXMLRPC(item, name, depth + 1) for item in value]
        return {key: fromXMLRPC(item, name, depth + 1)
                for key, item in value.items()}
    return value


def _datetime(text, name):
    """An ISO 8601 date (XML-RPC's ``20240229T12:00:00`` or another ISO
    form) as an aware datetime in UTC."""
    if isinstance(text, str):
        for parse in (
                lambda text: datetime.datetime.strptime(
                    text, '%Y%m%dT%H:%M:%S'),
                datetime.datetime.fromisoformat):
            try:
                value = parse(text.strip())
            except ValueError:
                continue
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC)
            return value.astimezone(UTC)
    raise xmlrpc.client.Fault(
        FAULT_INVALID_PARAMS,
        f'{name}: {shortRepr(text)} is not an ISO 8601 date')


def marshallable(value, depth=0):
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
      ISO 8601 in UTC when aware); Binary and DateTime stay what they are;
    - anything else becomes its ``repr()``.

    Arrays and structs nested deeper than ``MAX_DEPTH`` (or a structure
    that contains itself) raise ``TooDeep``.
    """
    if value is None:
        return ''
    if isinstance(value, bool) or isinstance(value, (str, float)):
        return value
    if isinstance(value, int):
        return value if MININT <= value <= MAXINT else str(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if depth >= MAX_DEPTH:
            raise TooDeep()
        depth += 1
        if isinstance(value, dict):
            return {str(key): marshallable(item, depth)
                    for key, item in value.items()}
        if isinstance(value, (set, frozenset)):
            value = sorted(value, key=repr)
        return [marshallable(item, depth) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return xmlrpc.client.Binary(bytes(value))
    if isinstance(value, xmlrpc.client.Binary):
        return xmlrpc.client.Binary(value.data)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return xmlrpc.client.DateTime(value.strftime('%Y%m%dT%H:%M:%S'))
    if isinstance(value, xmlrpc.client.DateTime):
        return xmlrpc.client.DateTime(value.value)
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
            f'{shortRepr(value)}')
    return value


def _schedule(name, value):
    """A cron field: an int or an array of ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    _check(name, value, list, tuple)
    return tuple(_check(name, item, int) for item in value)


# -- the methods --------------------------------------------------------------

def published(returns, *params, permission):
    """Publish a method: the XML-RPC types of its result and parameters,
    and the permission it needs.

    ``system.methodSignature`` lists one signature for every number of
    arguments the method takes (its optional parameters are last).
    """
    def decorate(method):
        method.xmlrpcTypes = (returns,) + params
        method.xmlrpcPermission = permission
        return method
    return decorate


def signatures(method):
    """All signatures of a method declared with ``published``."""
    returns, *params = method.xmlrpcTypes
    optional = len(method.__defaults__ or ())
    return [[returns, *params[:count]]
            for count in range(len(params) - optional, len(params) + 1)]


def publishedMethods(cls, prefix=''):
    """``{name: (cls, attribute)}`` of the methods ``cls`` publishes."""
    return {prefix + name: (cls, name) for name, value in vars(cls).items()
            if hasattr(value, 'xmlrpcPermission')}


#: What ``getJob`` tells about a job.
JOB_DATA = ('id', 'task', 'status', 'addedBy', 'created', 'started',
            'completed', 'attempts', 'worker', 'error')


class TaskServiceAPI(XMLRPCView):
    """The XML-RPC methods of a task service."""

    @published('array', permission=VIEW)
    def getAvailableTasks(self):
        """The names of the tasks jobs can be added for, sorted."""
        return sorted(self.context.getAvailableTasks())

    @published('int', 'string', 'any', 'boolean', permission=MANAGE)
    def add(self, task, input=None, startLater=False):
        """Add a job for `task` with `input`; return its id.

        With `startLater` true the job waits for startJob(id).
        """
        _check('task', task, str)
        _check('startLater', startLater, bool)
        input = fromXMLRPC(input)
        with faults():
            return self.context.add(task, input, startLater)

    @published('int', 'string', 'any', 'array', 'array', 'array', 'array',
               'array', 'double', permission=MANAGE)
    def addCronJob(self, task, input=None, minute=(), hour=(),
                   dayOfMonth=(), month=(), dayOfWeek=(), delay=None):
        """Add a cron job for `task` with `input`; return its id.

        The five schedule fields are arrays of integers; times are UTC;
        dayOfWeek counts 0 = Monday to 6 = Sunday (Python's weekday(), not
        crontab's).  The job runs when all given fields match, stepping by
        the finest field given: empty finer fields mean their lowest value
        (hour [2, 13] runs at 02:00 and 13:00), empty coarser fields any
        value.  With a `delay` in seconds the job runs once, that long
        after it was added, instead.
        """
        _check('task', task, str)
        schedule = {name: _schedule(name, value) for name, value in (
            ('minute', minute), ('hour', hour), ('dayOfMonth', dayOfMonth),
            ('month', month), ('dayOfWeek', dayOfWeek))}
        if delay is not None:
            _check('delay', delay, int, float)
        input = fromXMLRPC(input)
        with faults():
            return self.context.addCronJob(task, input, delay=delay,
                                           **schedule)

    @published('boolean', 'int', permission=MANAGE)
    def startJob(self, jobid):
        """Queue a job added with startLater; false if it was not waiting.
        """
        return self._call('startJob', jobid)

    @published('boolean', 'int', permission=MANAGE)
    def cancel(self, jobid):
        """Cancel a job; true if it was cancelled (a running job: asked to
        stop, it ends cancelled when its task returns), false if it is
        finished."""
        return self._call('cancel', jobid)

    @published('boolean', 'int', permission=MANAGE)
    def retry(self, jobid):
        """Queue a job in error or cancelled again (its attempts start
        again from none); returns true.  A job in another status is a
        fault (6)."""
        self._call('retry', jobid)
        return True

    @published('int', 'string', 'string', permission=MANAGE)
    def retryAll(self, status='error', task=''):
        """Retry the jobs in `status` ('error' or 'cancelled') of `task`
        ('': any task), in batches of their own transactions; return how
        many were queued again."""
        _check('status', status, str)
        _check('task', task, str)
        try:
            history.checkStatus(status)
        except ValueError as error:
            raise xmlrpc.client.Fault(FAULT_NOT_RETRYABLE, str(error))
        return bulk.retryAll(removeSecurityProxy(self.context), status,
                             task or None)

    @published('string', 'int', permission=VIEW)
    def getStatus(self, jobid):
        """The status of a job."""
        return self._call('getStatus', jobid)

    @published('any', 'int', permission=VIEW)
    def getResult(self, jobid):
        """The output of a job ('' until it completed)."""
        # Reading the output is what getResult is protected for; the
        # proxies would hide the types that marshallable() converts.
        output = removeSecurityProxy(self._call('getResult', jobid))
        try:
            return marshallable(output)
        except TooDeep:
            raise xmlrpc.client.Fault(
                FAULT_APPLICATION_ERROR,
                f'The result is nested deeper than {MAX_DEPTH} levels: '
                f'XML-RPC cannot carry it')

    @published('string', 'int', permission=VIEW)
    def getError(self, jobid):
        """The error message of a job; '' if it has none."""
        return marshallable(self._call('getError', jobid))

    @published('struct', 'int', permission=VIEW)
    def getJob(self, jobid):
        """What is known about a job, without its input and output: id,
        task, status, addedBy (the principal who added it), created,
        started, completed, attempts, worker, error; '' where not set."""
        _check('jobid', jobid, int)
        with faults():
            job = removeSecurityProxy(self.context)._job(jobid)
        return marshallable({name: getattr(job, name) for name in JOB_DATA})

    @published('struct', 'int', permission=VIEW)
    def getProgress(self, jobid):
        """The progress the job's task last reported: fraction (0 to 1,
        '' if it gave none), message ('' if none) and updated; an empty
        struct if it reported none."""
        report = self._call('getProgress', jobid)
        return {} if report is None else marshallable(
            removeSecurityProxy(report))

    @published('array', permission=VIEW)
    def listWorkers(self):
        """The workers registered with the service: structs with id, host,
        pid, services, threads, started, version, running (job ids), done,
        failed, heartbeat (sequence number), lastHeartbeat, age (seconds)
        and status (alive, stopping, late or dead)."""
        return marshallable(removeSecurityProxy(
            self.context.listWorkers()))

    @published('boolean', permission=MANAGE)
    def pause(self):
        """Pause the service for every worker of every process: no job is
        claimed until resume() (running jobs finish).  Returns true."""
        self.context.pause()
        return True

    @published('boolean', permission=MANAGE)
    def resume(self):
        """Let every worker claim jobs of the service again.  Returns
        true."""
        self.context.resume()
        return True

    @published('boolean', permission=VIEW)
    def isPaused(self):
        """Is the service paused for every worker?"""
        return bool(self.context.isPaused())

    def _call(self, method, jobid):
        _check('jobid', jobid, int)
        with faults():
            return getattr(self.context, method)(jobid)


#: The methods of the API (without ``system.*``) by the permission they
#: need.
READ_METHODS = tuple(sorted(
    name for name, (cls, attribute) in publishedMethods(TaskServiceAPI).items()
    if getattr(cls, attribute).xmlrpcPermission == VIEW))
MANAGE_METHODS = tuple(sorted(
    name for name, (cls, attribute) in publishedMethods(TaskServiceAPI).items()
    if getattr(cls, attribute).xmlrpcPermission == MANAGE))


class Introspection(XMLRPCView):
    """``system.listMethods``, ``system.methodHelp`` and
    ``system.methodSignature`` for the API of a task service."""

    methods = tuple(sorted(publishedMethods(TaskServiceAPI)))

    def _method(self, name):
        _check('name', name, str)
        if name not in self.methods:
            raise xmlrpc.client.Fault(
                FAULT_NO_SUCH_METHOD, f'No such method: {shortRepr(name)}')
        return getattr(TaskServiceAPI, name)

    @published('array', permission=VIEW)
    def listMethods(self):
        """The names of the methods of the API."""
        return list(self.methods)

    @published('string', 'string', permission=VIEW)
    def methodHelp(self, name):
        """The documentation of a method."""
        return inspect.getdoc(self._method(name))

    @published('array', 'string', permission=VIEW)
    def methodSignature(self, name):
        """The signatures of a method: [[returns, param, ...], ...]."""
        return signatures(self._method(name))


#: Every method of a service, ``system.*`` included: name -> (class of
#: the view, attribute).  0.5.2 answered the introspection methods by
#: their bare names (``listMethods``) too; so does this package.
METHODS = {**publishedMethods(TaskServiceAPI),
           **publishedMethods(Introspection, 'system.'),
           **publishedMethods(Introspection)}


# -- publishing ---------------------------------------------------------------

class FaultCall:
    """What the publisher calls to answer a Fault.

    The Fault is the result of the call, not an exception: an exception
    would be logged with its traceback, and bad input from a client is
    no error of the server.  The transaction is doomed: nothing is stored.
    """

    __Security_checker__ = Checker({'__call__': CheckerPublic})

    def __init__(self, code, message):
        self.fault = xmlrpc.client.Fault(code, message)

    def __call__(self):
        transaction.doom()
        return self.fault


class MethodCall(Location):
    """The call of a published method with the arguments of the request.

    A Fault that the method raises is its answer (see ``FaultCall``).
    """

    def __init__(self, service, name, method, args, permission):
        self.__parent__ = service
        self.__name__ = name
        self.method = method
        self.args = args
        self.__Security_checker__ = Checker({
            '__call__': permission,
            '__parent__': CheckerPublic,
            '__name__': CheckerPublic})

    def __call__(self):
        try:
            return self.method(*self.args)
        except xmlrpc.client.Fault as fault:
            transaction.doom()
            return fault


def _takeArguments(request):
    """The arguments of the call; the publisher passes none to the
    object it calls then (``MethodCall`` and ``FaultCall`` hold them).

    The publisher (``mapply``) would fill the parameters the client left
    out with values of the same name from cookies or the environment.
    """
    args = request.getPositionalArguments()
    request._args = ()
    return args


def _arity(method):
    """(required, most) positional arguments of a bound method."""
    params = list(inspect.signature(method).parameters.values())
    required = sum(1 for p in params if p.default is p.empty)
    return required, len(params)


@implementer(IXMLRPCPublisher)
class TaskServiceXMLRPCTraverser:
    """Finds the method a call names, and answers for it.

    A caller without ``lovely.remotetask.View`` on the service is asked
    to authenticate (401) before anything else, and one without the
    method's permission likewise; a caller who is logged in and still
    lacks the permission gets ``FAULT_FORBIDDEN`` instead (logging in
    again would not help).  Unknown methods and the wrong number
    of arguments are answered with Faults (instead of an HTTP 404 or a
    publisher error, which XML-RPC clients report badly).

    The whole dotted name is resolved here (``system.listMethods``).  A
    name that is no method of the API is looked up as a view of the
    service: an application can publish more XML-RPC views on services.
    """

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def publishTraverse(self, request, name):
        service = self.context
        if not checkPermission(VIEW, service):
            return self._refuse(name, VIEW)
        rest = request.getTraversalStack()
        dotted = '.'.join([name] + rest[::-1])
        if dotted not in METHODS:
            view = zope.component.queryMultiAdapter((service, request),
                                                    name=name)
            if view is not None:
                return view
        request.setTraversalStack([])
        args = _takeArguments(request)
        if dotted not in METHODS:
            return FaultCall(FAULT_NO_SUCH_METHOD,
                             f'No such method: {shortRepr(dotted)}')
        cls, attribute = METHODS[dotted]
        method = getattr(cls(service, request), attribute)
        permission = method.xmlrpcPermission
        if not checkPermission(permission, service):
            return self._refuse(dotted, permission)
        required, most = _arity(method)
        if not required <= len(args) <= most:
            expected = (str(most) if required == most else
                        f'{required} to {most}')
            plural = '' if expected == '1' else 's'
            return FaultCall(FAULT_INVALID_PARAMS,
                             f'{dotted}: expected {expected} '
                             f'argument{plural}, got {len(args)}')
        return MethodCall(service, dotted, method, args, permission)

    def _refuse(self, name, permission):
        """401 for anonymous callers, a Fault for those logged in."""
        if IUnauthenticatedPrincipal.providedBy(self.request.principal):
            raise Unauthorized(self.context, name, permission)
        self.request.setTraversalStack([])
        _takeArguments(self.request)
        return FaultCall(FAULT_FORBIDDEN,
                         f'Forbidden: {name} needs the permission '
                         f'{permission}')


class XMLRPCRequest(zope.publisher.xmlrpc.XMLRPCRequest):
    """zope.publisher's XML-RPC request, which answers what it cannot read
    with the Faults of the XML-RPC interoperability conventions.

    ``xmlrpc.zcml`` makes it the XML-RPC request of the application (the
    ``IXMLRPCRequestFactory`` utility of zope.app.publication).  A method
    name is dotted Python identifiers that do not start with ``_``: no
    traversal namespaces, no ``..``.
    """

    fault = None

    def _createResponse(self):
        return XMLRPCResponse()

    def processInputs(self):
        # Line by line, as zope.publisher reads it (see there why).
        lines = []
        while True:
            line = self._body_instream.readline()
            if not line:
                break
            lines.append(line)
        try:
            args, method = xmlrpc.client.loads(b''.join(lines))
        except ExpatError as error:
            self.fault = (FAULT_PARSE_ERROR, f'Parse error: {error}')
            return
        except Exception:
            self.fault = (FAULT_INVALID_REQUEST,
                          'Invalid request: not an XML-RPC method call')
            return
        if not isinstance(method, str) or not method:
            self.fault = (FAULT_INVALID_REQUEST,
                          'Invalid request: no methodName')
            return
        names = method.split('.')
        if not all(name.isidentifier() and not name.startswith('_')
                   for name in names):
            self.fault = (FAULT_NO_SUCH_METHOD,
                          f'No such method: {shortRepr(method)}')
            return
        self._args = args
        self.setPathSuffix(names)

    def traverse(self, obj):
        if self.fault is not None:
            return FaultCall(*self.fault)
        return super().traverse(obj)


class XMLRPCResponse(zope.publisher.xmlrpc.XMLRPCResponse):
    """Answers an unexpected error with -32603 and the name of its type
    only: the message of an error of the server (object reprs, paths) is
    for its log, not for the client."""

    def handleException(self, exc_info):
        error = exc_info[1]
        if not isinstance(error, xmlrpc.client.Fault):
            name = getattr(type(error), '__name__', 'error')
            fault = xmlrpc.client.Fault(FAULT_INTERNAL_ERROR,
                                        f'Internal error ({name})')
            exc_info = (type(fault), fault, None)
        super().handleException(exc_info)
