"""The OpenAPI 3.1 description of the JSON API (``@@api/openapi.json``).

It is built from the routes of ``view.ROUTES``, so that it names every
path and method the view answers (a test compares them).
"""
from lovely.remotetask.interfaces import MAX_COUNT
from lovely.remotetask.interfaces import STATUSES


def _ref(name):
    return {'$ref': f'#/components/schemas/{name}'}


def _json(schema, description='OK'):
    return {'description': description,
            'content': {'application/json': {'schema': schema}}}


PROBLEM = {'description': 'An error (RFC 9457 problem details)',
           'content': {'application/problem+json': {
               'schema': _ref('Problem')}}}

ERRORS = {'400': 'bad input: parameters, JSON body, unknown task, bad '
                 'schedule',
          '401': 'not logged in', '403': 'lacking the permission',
          '404': 'no such job or path', '405': 'method not allowed',
          '409': 'the job is in the wrong status; or (onDuplicate '
                 '"raise") another job holds the unique key',
          '413': 'the input or the body is too large',
          '415': 'a POST without Content-Type application/json'}

JOBID = {'name': 'jobid', 'in': 'path', 'required': True,
         'schema': {'type': 'integer', 'minimum': 1,
                    'maximum': 2 ** 31 - 1}}


def _query(name, schema, description):
    return {'name': name, 'in': 'query', 'required': False,
            'schema': schema, 'description': description}


LIST_PARAMETERS = [
    _query('status', {'enum': list(STATUSES)}, 'only jobs in this status'),
    _query('task', {'type': 'string'}, 'only jobs of this task'),
    _query('start', {'type': 'integer', 'minimum': 0,
                     'maximum': MAX_COUNT},
           'skip this many jobs (after the cursor, if given)'),
    _query('size', {'type': 'integer', 'minimum': 1, 'maximum': 500},
           'jobs on the page (default 50)'),
    _query('reverse', {'type': 'boolean'}, 'newest first'),
    _query('after', {'type': 'string'},
           'the "next" cursor of the previous page'),
    _query('sort', {'type': 'string'},
           'the order, as the Jobs tab sorts (where the service has it)'),
    _query('createdAfter', {'type': 'string', 'format': 'date-time'},
           'only jobs created at or after this time'),
    _query('createdBefore', {'type': 'string', 'format': 'date-time'},
           'only jobs created before this time'),
]

OPERATIONS = {
    ('', 'get'): ('The service: tasks, counts, pause flag, settings',
                  None, _json({'type': 'object'})),
    ('/jobs', 'get'): ('A page of jobs', LIST_PARAMETERS,
                       _json(_ref('JobPage'))),
    ('/jobs', 'post'): ('Add a job', _ref('NewJob'),
                        _json(_ref('Job'), 'Created'),
                        {'200': _json(_ref('Job'), 'Not added: the job '
                                      'that holds the uniqueKey '
                                      '(onDuplicate "return")')}),
    ('/jobs/{jobid}', 'get'): ('One job', [JOBID], _json(_ref('Job'))),
    ('/jobs/{jobid}/cancel', 'post'): (
        'Cancel a job (queued, delayed, cronjob, start later)', [JOBID],
        _json(_ref('Job'))),
    ('/jobs/{jobid}/retry', 'post'): ('Queue a failed job again', [JOBID],
                                      _json(_ref('Job'))),
    ('/jobs/{jobid}/start', 'post'): ('Queue a job added with startLater',
                                      [JOBID], _json(_ref('Job'))),
    ('/cron', 'post'): ('Add a cron job', _ref('NewCronJob'),
                        _json(_ref('Job'), 'Created')),
    ('/counts', 'get'): ('The number of jobs in each status', [
        _query('task', {'type': 'string'}, 'only jobs of this task')],
        _json(_ref('Counts'))),
    ('/workers', 'get'): ('The workers and the pause flag', None,
                          _json({'type': 'object'})),
    ('/pause', 'post'): ('Pause the service for every worker', None,
                         _json({'type': 'object'})),
    ('/resume', 'post'): ('Let every worker claim jobs again', None,
                          _json({'type': 'object'})),
    ('/retry', 'post'): ('Queue the failed jobs again', _ref('RetryAll'),
                         _json({'type': 'object', 'properties': {
                             'retried': {'type': 'integer'}}})),
    ('/openapi.json', 'get'): ('This description', None,
                               _json({'type': 'object'})),
}

SCHEMAS = {
    'Problem': {'type': 'object', 'required': ['status', 'title', 'detail'],
                'properties': {'status': {'type': 'integer'},
                               'title': {'type': 'string'},
                               'detail': {'type': 'string'},
                               'jobid': {'type': 'integer',
                                         'description': 'the job that '
                                                        'holds the unique '
                                                        'key (409)'}}},
    'Job': {'type': 'object', 'properties': {
        'id': {'type': 'integer'}, 'task': {'type': 'string'},
        'status': {'enum': list(STATUSES)},
        'addedBy': {'type': ['string', 'null']},
        'created': {'type': 'string', 'format': 'date-time'},
        'started': {'type': ['string', 'null'], 'format': 'date-time'},
        'completed': {'type': ['string', 'null'], 'format': 'date-time'},
        'attempts': {'type': 'integer'},
        'worker': {'type': ['string', 'null']},
        'error': {'type': ['string', 'null']},
        'input': {}, 'output': {},
        'traceback': {'type': ['string', 'null']},
        'maxRetries': {'type': ['integer', 'null']},
        'retryDelay': {'type': ['number', 'null']},
        'leaseExpires': {'type': ['string', 'null'], 'format': 'date-time'},
        'cron': {'type': 'boolean'}, 'schedule': {'type': 'object'},
        'priority': {'type': 'integer', 'minimum': 0, 'maximum': 9},
        'uniqueKey': {'type': ['string', 'null']},
        'after': {'type': 'array', 'items': {'type': 'integer'},
                  'description': 'the jobs it waits or waited for'},
        'waitingFor': {'type': 'array', 'items': {'type': 'integer'},
                       'description': 'those of after that have not '
                                      'ended'},
        'runAnyway': {'type': 'boolean'},
        'dependants': {'type': 'array', 'items': {'type': 'integer'},
                       'description': 'the jobs added to run after it'},
        'heldBack': {'type': ['string', 'null'],
                     'description': 'why the limits of its task hold the '
                                    'queued job back'},
        'progress': {'oneOf': [{'type': 'null'}, _ref('Progress')]},
        'history': {'type': 'array', 'items': _ref('Attempt'),
                    'description': 'the last attempts, oldest first'}}},
    'Progress': {'type': 'object', 'properties': {
        'fraction': {'type': ['number', 'null'], 'minimum': 0,
                     'maximum': 1},
        'message': {'type': ['string', 'null']}}},
    'Attempt': {'type': 'object', 'properties': {
        'number': {'type': 'integer'},
        'started': {'type': ['string', 'null'], 'format': 'date-time'},
        'ended': {'type': 'string', 'format': 'date-time'},
        'worker': {'type': ['string', 'null']},
        'outcome': {'enum': ['completed', 'failed', 'cancelled']},
        'error': {'type': ['string', 'null']}}},
    'JobPage': {'type': 'object', 'properties': {
        'total': {'type': 'integer'}, 'start': {'type': 'integer'},
        'size': {'type': 'integer'},
        'jobs': {'type': 'array', 'items': _ref('Job')},
        'next': {'type': ['string', 'null'],
                 'description': 'the cursor of the next page (after=)'}}},
    'Counts': {'type': 'object', 'properties': {
        'total': {'type': 'integer'},
        'statuses': {'type': 'object', 'additionalProperties': {
            'type': 'integer'}}}},
    'NewJob': {'type': 'object', 'required': ['task'],
               'additionalProperties': False, 'properties': {
                   'task': {'type': 'string'}, 'input': {},
                   'startLater': {'type': 'boolean'},
                   'maxRetries': {'type': 'integer', 'minimum': 0,
                                  'maximum': MAX_COUNT},
                   'retryDelay': {'type': 'number', 'minimum': 0},
                   'delay': {'type': 'number', 'minimum': 0,
                             'description': 'run once, this many seconds '
                                            'from now'},
                   'priority': {'type': 'integer', 'minimum': 0,
                                'maximum': 9, 'default': 5},
                   'uniqueKey': {'type': 'string', 'minLength': 1,
                                 'maxLength': 200,
                                 'description': 'no second job while one '
                                                'with the key has not '
                                                'ended'},
                   'onDuplicate': {'enum': ['return', 'raise'],
                                   'default': 'return'},
                   'after': {'type': 'array', 'items': {
                       'type': 'integer', 'minimum': 1,
                       'maximum': 2 ** 31 - 1},
                       'description': 'wait until these jobs completed'},
                   'runAnyway': {'type': 'boolean', 'default': False,
                                 'description': 'run when the jobs of '
                                                'after ended, however'}}},
    'NewCronJob': {'type': 'object', 'required': ['task'],
                   'additionalProperties': False, 'properties': dict(
                       {'task': {'type': 'string'}, 'input': {}},
                       **{name: {'type': 'array',
                                 'items': {'type': 'integer'}}
                          for name in ('minute', 'hour', 'dayOfMonth',
                                       'month', 'dayOfWeek')})},
    'RetryAll': {'type': 'object', 'additionalProperties': False,
                 'properties': {'status': {'const': 'error'},
                                'task': {'type': 'string'},
                                'limit': {'type': 'integer',
                                          'minimum': 0,
                                          'maximum': MAX_COUNT}}},
}


def _operation(summary, parameters, success, method, more=None):
    operation = {'summary': summary, 'responses': {
        '201' if success['description'] == 'Created' else '200': success,
        **(more or {}),
        **{code: dict(PROBLEM, description=text)
           for code, text in ERRORS.items()}}}
    if isinstance(parameters, dict):
        operation['requestBody'] = {'required': True, 'content': {
            'application/json': {'schema': parameters}}}
    elif parameters:
        operation['parameters'] = parameters
    if method == 'post' and 'requestBody' not in operation:
        operation['requestBody'] = {'required': False, 'content': {
            'application/json': {'schema': {'type': 'object'}}}}
    return operation


def description(url):
    """The OpenAPI document of the API at ``url``."""
    paths = {}
    for (path, method), operation in OPERATIONS.items():
        paths.setdefault(path or '/', {})[method] = _operation(
            *operation[:3], method, *operation[3:])
    return {
        'openapi': '3.1.0',
        'info': {'title': 'lovely.remotetask JSON API', 'version': '1',
                 'description': 'The jobs of one task service.  POSTs '
                                'need Content-Type application/json.'},
        'servers': [{'url': url}],
        'security': [{'basic': []}],
        'paths': paths,
        'components': {'schemas': SCHEMAS, 'securitySchemes': {
            'basic': {'type': 'http', 'scheme': 'basic'}}},
    }
