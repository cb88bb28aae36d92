"""The endpoints of the JSON API: each reads its call and calls the
service.

An endpoint takes a ``view.Call`` and returns ``(status, data,
headers)``; bad input raises ``errors.APIError``.  The service's own
exceptions (unknown task or job, bad schedule, input too large) are
turned into answers by the view.
"""
import base64
import binascii
import inspect
import json
import math
import reprlib

from lovely.remotetask import bulk
from lovely.remotetask.history import RETRYABLE
from lovely.remotetask.interfaces import CANCELLABLE
from lovely.remotetask.interfaces import DuplicateJob
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import InvalidDependency
from lovely.remotetask.interfaces import MAX_COUNT
from lovely.remotetask.interfaces import STARTLATER
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.jsonapi import data
from lovely.remotetask.jsonapi.errors import BadRequest
from lovely.remotetask.jsonapi.errors import Conflict
from lovely.remotetask.priorities import DEFAULT as DEFAULT_PRIORITY
from lovely.remotetask.priorities import PRIORITIES
from lovely.remotetask.timeset import MAXID
from lovely.remotetask.uniqueness import MAX_KEY_LENGTH
from lovely.remotetask.uniqueness import ON_DUPLICATE


#: Jobs on a page of ``GET jobs``: the Jobs tab's default and maximum.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: The schedule fields of a cron job.
CRON_FIELDS = ('minute', 'hour', 'dayOfMonth', 'month', 'dayOfWeek')
TRUE, FALSE = ('true', '1', 'yes'), ('false', '0', 'no', '')


def ok(result, status=200, headers=()):
    return status, result, headers


# -- reading parameters -------------------------------------------------------

def checkNames(given, allowed, what):
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise BadRequest(f'Unknown {what}: {", ".join(unknown)} (known: '
                         f'{", ".join(sorted(allowed))})')


def integer(query, name, default, low, high=None):
    text = query.get(name)
    if text is None:
        return default
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise BadRequest(f'{name} must be a whole number, not {text!r}')
    value = int(text)
    if value < low or (high is not None and value > high):
        top = '' if high is None else f' to {high}'
        raise BadRequest(f'{name} must be from {low}{top}, not {value}')
    return value


def flag(query, name):
    text = query.get(name, '').strip().lower()
    if text in TRUE + FALSE:
        return text in TRUE
    raise BadRequest(f'{name} must be true or false, not {text!r}')


def date(query, name):
    text = query.get(name)
    if text is None:
        return None
    try:
        return data.parseDate(text)
    except ValueError as error:
        raise BadRequest(f'{name}: {error}') from None


def status(value, name='status'):
    if value is not None and value not in STATUSES:
        raise BadRequest(f'{name} must be one of {", ".join(STATUSES)}, '
                         f'not {value!r}')
    return value


def text(body, name, required=False):
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f'{name} must be a non-empty string')
    return value


def seconds(body, name):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise BadRequest(f'{name} must be a number of seconds >= 0, not '
                         f'{value!r}')
    return value


def count(body, name):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f'{name} must be a whole number >= 0, not '
                         f'{value!r}')
    if value > MAX_COUNT:
        raise BadRequest(f'{name} must be a whole number from 0 to '
                         f'{MAX_COUNT}, not {value!r}')
    return value


def encodeCursor(cursor):
    """A cursor of ``listJobs`` as an opaque token for a URL."""
    raw = json.dumps(cursor, separators=(',', ':')).encode('utf-8')
    return base64.urlsafe_b64encode(raw).decode('ascii').rstrip('=')


def decodeCursor(token):
    try:
        raw = base64.urlsafe_b64decode(token + '=' * (-len(token) % 4))
        cursor = json.loads(raw)
    except (ValueError, binascii.Error):
        raise BadRequest(f'after: {token!r} is not a cursor of this API')
    if isinstance(cursor, list):
        cursor = tuple(cursor)
    if isinstance(cursor, bool) or not isinstance(
            cursor, (int, str, tuple)):
        raise BadRequest(f'after: {token!r} is not a cursor of this API')
    return cursor


# -- reading ------------------------------------------------------------------

def summary(call):
    """The service: its tasks, counts, pause flag and settings."""
    service = call.service
    return ok({
        'name': call.raw.__name__,
        'tasks': sorted(service.getAvailableTasks()),
        'paused': bool(service.isPaused()),
        'processing': bool(service.isProcessing()),
        'counts': countsOf(service),
        'settings': {name: getattr(service, name) for name in (
            'maxRetries', 'retryDelay', 'leaseTime', 'maxDataSize',
            'maxConflictRetries')},
        'links': {name: f'{call.url}/{name}' for name in (
            'jobs', 'counts', 'workers', 'openapi.json')},
    })


def countsOf(service, **filters):
    filters = {k: v for k, v in filters.items() if v is not None}
    return {'total': service.countJobs(**filters),
            'statuses': {s: service.countJobs(status=s, **filters)
                         for s in STATUSES}}


def counts(call):
    """The number of jobs in each status (of one task)."""
    checkNames(call.query, ('task',), 'parameters')
    return ok(countsOf(call.service, task=call.query.get('task')))


LIST_PARAMETERS = ('status', 'task', 'start', 'size', 'reverse', 'after',
                   'sort', 'createdAfter', 'createdBefore')


def takes(method, name):
    """Does ``method`` take the keyword argument ``name``?"""
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def listJobs(call):
    """A page of jobs, filtered, ordered and paged as the Jobs tab."""
    query = call.query
    checkNames(query, LIST_PARAMETERS, 'parameters')
    filters = {'status': status(query.get('status')),
               'task': query.get('task')}
    # Passed on only when given: a service without the Jobs tab's search
    # takes none of them (400, instead of listing unfiltered).
    extra = {name: value for name, value in (
        ('createdAfter', date(query, 'createdAfter')),
        ('createdBefore', date(query, 'createdBefore'))) if value}
    sort = query.get('sort') or None
    if sort is not None:
        extra['sort'] = sort
    service = call.service
    for name in extra:
        if not takes(call.raw.listJobs, name):
            raise BadRequest(f'{name}: this service cannot list jobs by '
                             f'{name}')
    start = integer(query, 'start', 0, 0, MAX_COUNT)
    size = integer(query, 'size', PAGE_SIZE, 1, MAX_PAGE_SIZE)
    # One more than asked: is there a next page?
    options = dict(filters, start=start, size=size + 1,
                   reverse=flag(query, 'reverse'), **extra)
    if 'after' in query:
        options['after'] = decodeCursor(query['after'])
    try:
        jobs = service.listJobs(**options)
    except (TypeError, ValueError) as error:
        # A cursor of another list (another status, another order).
        raise BadRequest(f'These jobs cannot be listed: {error}') from None
    nextCursor = None
    if len(jobs) > size:
        jobs = jobs[:size]
        nextCursor = encodeCursor(service.cursor(
            jobs[-1], **filters, **({'sort': sort} if sort else {})))
    countFilters = {k: v for k, v in extra.items() if k != 'sort'}
    return ok({
        'total': service.countJobs(**filters, **countFilters),
        'start': start, 'size': size,
        'jobs': [data.jobSummary(job) for job in jobs],
        'next': nextCursor,
    })


def getJob(call):
    """Everything about one job."""
    return ok(data.jobDetail(call.raw._job(call.jobid)))


def workers(call):
    """The workers of the service and its pause flag."""
    service = call.service
    return ok({'paused': bool(service.isPaused()),
               'workers': [data.worker(w) for w in service.listWorkers()]})


def openapi(call):
    """The OpenAPI description of this API."""
    from lovely.remotetask.jsonapi.openapi import description
    return ok(description(call.url))


# -- changing -----------------------------------------------------------------

#: The fields of job control (see jobcontrol.rst) and what each
#: defaults to.
JOB_CONTROL = {'priority': DEFAULT_PRIORITY, 'uniqueKey': None,
               'onDuplicate': 'return', 'after': [], 'runAnyway': False}
ADD_FIELDS = ('task', 'input', 'startLater', 'maxRetries', 'retryDelay',
              'delay') + tuple(JOB_CONTROL)


def created(call, jobid, status=201):
    location = f'{call.url}/jobs/{jobid}'
    job = data.jobDetail(call.raw._job(jobid))
    return ok(job, status, [('Location', location)])


def shown(value):
    """A value of the body in an error message, abbreviated.

    >>> shown(list(range(100)))
    '[0, 1, 2, 3, 4, 5, ...]'
    """
    return reprlib.repr(value)


def boolean(body, name, default=False):
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f'{name} must be true or false, not '
                         f'{shown(value)}')
    return value


def jobIds(body, name):
    """An array of job ids (400 for anything else, as for an id that can
    be no job's)."""
    value = body.get(name, [])
    if not isinstance(value, list) or not all(
            isinstance(jobid, int) and not isinstance(jobid, bool)
            and 0 < jobid < MAXID for jobid in value):
        raise BadRequest(f'{name} must be an array of job ids (whole '
                         f'numbers from 1 to {MAXID - 1}), not '
                         f'{shown(value)}')
    return value


def jobControl(body):
    """The fields of job control of a new job, checked (400), and the
    names of those given other than their defaults."""
    given = {name: body[name] for name in JOB_CONTROL if name in body}
    control = dict(JOB_CONTROL, **given)
    priority = control['priority']
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or priority not in PRIORITIES:
        raise BadRequest(f'priority must be a whole number from '
                         f'{PRIORITIES[0]} to {PRIORITIES[-1]}, not '
                         f'{shown(priority)}')
    key = control['uniqueKey']
    if key is not None and (not isinstance(key, str) or not key
                            or len(key) > MAX_KEY_LENGTH):
        raise BadRequest(f'uniqueKey must be a non-empty string of at most '
                         f'{MAX_KEY_LENGTH} characters, not {shown(key)}')
    if control['onDuplicate'] not in ON_DUPLICATE:
        raise BadRequest(f'onDuplicate must be one of '
                         f'{", ".join(ON_DUPLICATE)}, not '
                         f'{shown(control["onDuplicate"])}')
    control['after'] = jobIds(body, 'after')
    control['runAnyway'] = boolean(body, 'runAnyway')
    changed = [name for name in given if control[name] != JOB_CONTROL[name]]
    return changed, control


def addJob(call):
    """Add a job (``startLater``: it waits for ``start``; ``delay``: it
    runs once that many seconds from now; the fields of job control).

    201 with the new job; with a ``uniqueKey`` that a job holds, 200 with
    that job (``onDuplicate`` 'return', the default) or 409 ('raise').
    """
    body = call.body
    checkNames(body, ADD_FIELDS, 'fields')
    task = text(body, 'task', required=True)
    startLater = boolean(body, 'startLater')
    delay = seconds(body, 'delay')
    maxRetries, retryDelay = count(body, 'maxRetries'), seconds(
        body, 'retryDelay')
    changed, control = jobControl(body)
    if delay is not None:
        if startLater or maxRetries is not None or retryDelay is not None \
                or changed:
            raise BadRequest('A delayed job takes no startLater, '
                             'maxRetries, retryDelay, or fields of job '
                             'control (' + ', '.join(JOB_CONTROL) + ')')
        jobid = call.service.addCronJob(task, body.get('input'),
                                        delay=delay)
        return created(call, jobid)
    wanted = control['onDuplicate']
    try:
        # 'raise' always: the answer says whether a job was added.
        jobid = call.service.add(
            task, body.get('input'), startLater,
            maxRetries=maxRetries, retryDelay=retryDelay,
            priority=control['priority'], uniqueKey=control['uniqueKey'],
            onDuplicate='raise', after=control['after'],
            runAnyway=control['runAnyway'])
    except DuplicateJob as duplicate:
        if wanted == 'raise':
            raise Conflict(str(duplicate), jobid=duplicate.jobid) from None
        return created(call, duplicate.jobid, 200)
    except InvalidDependency as error:
        raise BadRequest(str(error)) from None
    except ValueError as error:
        if type(error) is not ValueError:
            raise
        raise BadRequest(str(error)) from None
    return created(call, jobid)


def addCronJob(call):
    """Add a cron job: the five schedule fields are arrays of integers
    (UTC; dayOfWeek 0 is Monday)."""
    body = call.body
    checkNames(body, ('task', 'input') + CRON_FIELDS, 'fields')
    task = text(body, 'task', required=True)
    schedule = {}
    for name in CRON_FIELDS:
        value = body.get(name, [])
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool)
                for v in value):
            raise BadRequest(f'{name} must be an array of whole numbers')
        schedule[name] = tuple(value)
    return created(call, call.service.addCronJob(task, body.get('input'),
                                                 **schedule))


def _job(call):
    return data.jobDetail(call.raw._job(call.jobid))


def cancel(call):
    """Cancel a queued, delayed, cron or start-later job; 409 otherwise."""
    if not call.service.cancel(call.jobid):
        raise Conflict(f'Job {call.jobid} is {_status(call)}: only jobs '
                       f'that are {", ".join(CANCELLABLE)} can be '
                       f'cancelled')
    return ok(_job(call))


def start(call):
    """Queue a job added with ``startLater``; 409 if it is not waiting."""
    if not call.service.startJob(call.jobid):
        raise Conflict(f'Job {call.jobid} is {_status(call)}, not '
                       f'{STARTLATER}')
    return ok(_job(call))


def retry(call):
    """Queue a job in error or cancelled again; 409 otherwise."""
    call.service.retry(call.jobid)
    return ok(_job(call))


def retryAll(call):
    """Queue the failed (or cancelled) jobs again, of one task, at most
    ``limit``; without a limit in batches of their own transactions."""
    body = call.body
    checkNames(body, ('status', 'task', 'limit'), 'fields')
    wanted = body.get('status', ERROR)
    if wanted not in RETRYABLE:
        raise BadRequest(f'status must be one of {", ".join(RETRYABLE)}, '
                         f'not {wanted!r}')
    task, limit = text(body, 'task'), count(body, 'limit')
    if limit is None:
        retried = bulk.retryAll(call.raw, wanted, task)
    else:
        retried = call.service.retryAll(status=wanted, task=task,
                                        limit=limit)
    return ok({'retried': retried})


def pause(call):
    """Pause the service for every worker."""
    call.service.pause()
    return ok({'paused': True})


def resume(call):
    """Let every worker claim jobs again."""
    call.service.resume()
    return ok({'paused': False})


def _status(call):
    return call.raw._job(call.jobid).status
