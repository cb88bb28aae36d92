"""Edge cases of the JSON API (jsonapi/README.rst tells the story)."""
import datetime
import doctest
import unittest

from lovely.remotetask.jsonapi import data
from lovely.remotetask.jsonapi import endpoints
from lovely.remotetask.jsonapi import openapi
from lovely.remotetask.jsonapi import view
from lovely.remotetask.jsonapi.errors import APIError


class RouteTests(unittest.TestCase):

    def test_routes(self):
        self.assertEqual(view.route(('jobs', '42'), 'GET')[2], 42)
        self.assertIs(view.route(('jobs', '42', 'cancel'), 'POST')[0],
                      endpoints.cancel)
        self.assertIs(view.route((), 'HEAD')[0], endpoints.summary)

    def test_unknown_paths_are_404(self):
        for path in (('jobs', 'x'), ('jobs', '-1'), ('jobs', '1' * 11),
                     ('jobs', '١٢'), ('nothing',), ('jobs', '1', 'x')):
            with self.assertRaises(APIError) as caught:
                view.route(path, 'GET')
            self.assertEqual(caught.exception.status, 404, path)

    def test_wrong_methods_are_405_with_allow(self):
        with self.assertRaises(APIError) as caught:
            view.route(('pause',), 'GET')
        self.assertEqual(caught.exception.status, 405)
        self.assertEqual(caught.exception.headers, (('Allow', 'POST'),))
        with self.assertRaises(APIError) as caught:
            view.route(('jobs',), 'PUT')
        self.assertEqual(caught.exception.headers,
                         (('Allow', 'GET, POST'),))

    def test_the_description_names_every_route(self):
        described = {(path, method) for path, method in openapi.OPERATIONS}
        routes = set()
        for pattern, method, endpoint, permission in view.ROUTES:
            path = ''.join('/{jobid}' if name is view.ID else f'/{name}'
                           for name in pattern)
            routes.add((path, method.lower()))
        self.assertEqual(described, routes)


class CursorTests(unittest.TestCase):

    def test_round_trip(self):
        for cursor in (42, 2 ** 62, 'x', (3, 'a')):
            self.assertEqual(
                endpoints.decodeCursor(endpoints.encodeCursor(cursor)),
                cursor)

    def test_garbage_is_400(self):
        for token in ('!', 'bnVsbA', 'e30', 'dHJ1ZQ'):  # null, {}, true
            with self.assertRaises(APIError) as caught:
                endpoints.decodeCursor(token)
            self.assertEqual(caught.exception.status, 400, token)


class FakeService:
    """Records what listJobs is asked; takes the Jobs tab's search."""

    def __init__(self):
        self.asked = []

    def listJobs(self, status=None, task=None, start=0, size=None,
                 reverse=False, after=None, sort=None, createdAfter=None,
                 createdBefore=None):
        self.asked.append(dict(sort=sort, createdAfter=createdAfter,
                               createdBefore=createdBefore))
        return []

    def countJobs(self, status=None, task=None, createdAfter=None,
                  createdBefore=None):
        return 0


class OldService(FakeService):

    def listJobs(self, status=None, task=None, start=0, size=None,
                 reverse=False, after=None):
        return []


class Call:

    def __init__(self, service, query):
        self.service = self.raw = service
        self.query = query


class SearchTests(unittest.TestCase):

    def test_passed_on_only_when_given(self):
        service = FakeService()
        endpoints.listJobs(Call(service, {}))
        endpoints.listJobs(Call(service, {
            'sort': 'task', 'createdAfter': '2024-01-01',
            'createdBefore': '2024-02-01T12:00:00+01:00'}))
        utc = datetime.timezone.utc
        self.assertEqual(service.asked, [
            dict(sort=None, createdAfter=None, createdBefore=None),
            dict(sort='task',
                 createdAfter=datetime.datetime(2024, 1, 1, tzinfo=utc),
                 createdBefore=datetime.datetime(2024, 2, 1, 11,
                                                 tzinfo=utc))])

    def test_a_service_without_search_says_so(self):
        endpoints.listJobs(Call(OldService(), {'status': 'queued'}))
        for name in ('sort', 'createdAfter'):
            with self.assertRaises(APIError) as caught:
                endpoints.listJobs(Call(OldService(), {
                    name: '2024-01-01'}))
            self.assertEqual(caught.exception.status, 400)
            self.assertIn('this service cannot list jobs by',
                          caught.exception.detail)


class DataTests(unittest.TestCase):

    def test_deep_data_is_noted_not_sent(self):
        deep = []
        for i in range(200):
            deep = [deep]
        self.assertEqual(data.safely(deep), {
            'unreadable': 'nested deeper than 100 levels'})

    def test_floats_json_cannot_write(self):
        self.assertEqual(data.jsonable([float('inf'), float('nan'), 1.5]),
                         ['inf', 'nan', 1.5])


class HeadTests(unittest.TestCase):
    """HEAD on every route, through the server's guards: as GET without
    a body on GET routes, 405 with ``Allow`` on POST-only ones, 404 on
    unknown paths; never a 500."""

    from lovely.remotetask.testing import layer

    def setUp(self):
        import transaction
        from webtest import TestApp
        from lovely.remotetask.app.wsgi import protect
        from lovely.remotetask.service import TaskService
        from lovely.remotetask.testing import getRootFolder
        from lovely.remotetask.testing import wsgiApp
        root = getRootFolder()
        root['tasks'] = service = TaskService()
        self.jobid = service.add('echo', 'x')
        transaction.commit()
        self.app = TestApp(protect(wsgiApp()))
        self.app.authorization = ('Basic', ('mgr', 'mgrpw'))

    def tearDown(self):
        import transaction
        transaction.abort()

    def paths(self, verb):
        for pattern, method, endpoint, permission in view.ROUTES:
            if method == verb:
                yield '/tasks/@@api' + ''.join(
                    f'/{self.jobid}' if name is view.ID else f'/{name}'
                    for name in pattern)

    def test_head_of_get_routes_is_get_without_body(self):
        paths = list(self.paths('GET'))
        self.assertEqual(len(paths), 6)
        for path in paths:
            got = self.app.get(path)
            head = self.app.head(path)
            self.assertEqual(head.status, got.status, path)
            self.assertEqual(head.content_type, 'application/json', path)
            self.assertEqual(head.headers['Content-Length'],
                             str(len(got.body)), path)
            self.assertEqual(head.body, b'', path)

    def test_head_of_post_routes_is_405(self):
        paths = list(self.paths('POST'))
        self.assertEqual(len(paths), 8)
        # jobs is a GET route too.
        paths.remove('/tasks/@@api/jobs')
        allowed = 'POST'
        for path in paths:
            head = self.app.head(path, status=405)
            self.assertEqual(head.headers['Allow'], allowed, path)
            self.assertEqual(head.content_type,
                             'application/problem+json', path)
            self.assertEqual(head.body, b'', path)
            # What a GET of it answers, with the body.
            got = self.app.get(path, status=405)
            self.assertEqual(got.json['status'], 405, path)
            self.assertEqual(got.headers['Allow'], allowed, path)

    def test_head_of_unknown_paths_is_404(self):
        for path in ('/tasks/@@api/nothing', '/tasks/@@api/jobs/x',
                     '/tasks/@@api/jobs/1/2/3', '/tasks/@@api/jobs/7',
                     f'/tasks/@@api/jobs/{self.jobid}/x'):
            head = self.app.head(path, status=404)
            self.assertEqual(head.body, b'', path)
            self.assertNotIn(b'Traceback', head.body)

    def test_head_without_the_guards(self):
        # An application that includes the package without the server's
        # guards: the publication empties the answer to a HEAD, which
        # it can only do for text and JSON types.
        from webtest import TestApp
        from lovely.remotetask.testing import wsgiApp
        app = TestApp(wsgiApp())
        app.authorization = ('Basic', ('mgr', 'mgrpw'))
        head = app.head('/tasks/@@api/pause', status=405)
        self.assertEqual(head.headers['Allow'], 'POST')
        self.assertEqual(head.content_type, 'application/json')
        self.assertEqual(head.body, b'')
        head = app.head('/tasks/@@api/jobs/7', status=404)
        self.assertEqual(head.body, b'')
        self.assertEqual(app.head('/tasks/@@api/jobs').status_int, 200)

    def test_head_of_anonymous_is_401(self):
        from webtest import TestApp
        from lovely.remotetask.app.wsgi import protect
        from lovely.remotetask.testing import wsgiApp
        anonymous = TestApp(protect(wsgiApp()))
        for path in ('/tasks/@@api', '/tasks/@@api/pause',
                     '/tasks/@@api/nothing'):
            head = anonymous.head(path, status=401)
            self.assertEqual(head.body, b'', path)


class UnencodableTests(unittest.TestCase):
    """Lone surrogates, which ``json.loads`` accepts, anywhere in a body
    are refused with 400: no page or log could show them."""

    layer = HeadTests.layer
    setUp = HeadTests.setUp
    tearDown = HeadTests.tearDown

    def post(self, body):
        return self.app.post('/tasks/@@api/jobs', body,
                             content_type='application/json', status=400)

    def test_a_lone_surrogate_is_400(self):
        import transaction
        from lovely.remotetask.testing import getRootFolder
        for body in (b'{"task": "echo", "input": "\\ud800"}',
                     b'{"task": "echo", "uniqueKey": "k\\udfff"}',
                     b'{"task": "echo", "input": {"a\\ud800": 1}}',
                     b'{"task": "echo", "input": [[{"x": ["\\udc00"]}]]}',
                     b'{"task": "echo", "input": "\xed\xa0\x80"}'):
            answer = self.post(body)
            self.assertEqual(answer.content_type,
                             'application/problem+json', body)
            self.assertEqual(answer.json['status'], 400, body)
            self.assertIn('lone surrogate', answer.json['detail'], body)
        transaction.abort()
        self.assertEqual(
            getRootFolder()['tasks'].countJobs(), 1)

    def test_a_surrogate_pair_is_text(self):
        answer = self.app.post(
            '/tasks/@@api/jobs', b'{"task": "echo", "input": "\\ud83d'
            b'\\ude00"}', content_type='application/json')
        self.assertIn(answer.status_int, (200, 201))


class JobControlTests(unittest.TestCase):
    """The fields of job control of ``POST jobs`` (README.rst has the
    story)."""

    def check(self, **body):
        return endpoints.jobControl(body)

    def refused(self, **body):
        with self.assertRaises(APIError) as caught:
            self.check(**body)
        self.assertEqual(caught.exception.status, 400, body)
        return caught.exception.detail

    def test_defaults(self):
        changed, control = self.check()
        self.assertEqual(changed, [])
        self.assertEqual(control, {
            'priority': 5, 'uniqueKey': None, 'onDuplicate': 'return',
            'after': [], 'runAnyway': False})

    def test_defaults_given_change_nothing(self):
        # A delayed job takes them: they are what it gets anyway.
        changed, control = self.check(priority=5, uniqueKey=None, after=[],
                                      runAnyway=False, onDuplicate='return')
        self.assertEqual(changed, [])
        changed, control = self.check(priority=0, after=[3],
                                      runAnyway=True)
        self.assertEqual(sorted(changed), ['after', 'priority', 'runAnyway'])

    def test_job_ids_are_ints_below_2_31(self):
        self.assertEqual(self.check(after=[1, 2 ** 31 - 1])[1]['after'],
                         [1, 2 ** 31 - 1])
        for after in ([2 ** 31], [True], [1.0], ['1'], None, {'1': 1}):
            self.assertIn('after must be an array of job ids',
                          self.refused(after=after))

    def test_long_values_are_abbreviated_in_the_message(self):
        detail = self.refused(after=[0] * 100000)
        self.assertLess(len(detail), 200)
        detail = self.refused(uniqueKey='k' * 201)
        self.assertLess(len(detail), 200)
        self.assertIn('at most 200 characters', detail)

    def test_priorities(self):
        for priority in (0, 9):
            self.assertEqual(self.check(priority=priority)[1]['priority'],
                             priority)
        for priority in (-1, 10, 5.0, '5', None, False):
            self.assertIn('priority must be a whole number from 0 to 9',
                          self.refused(priority=priority))

    def test_unique_keys_and_duplicates(self):
        self.assertEqual(self.check(uniqueKey='k' * 200)[1]['uniqueKey'],
                         'k' * 200)
        for key in ('', 42, ['k']):
            self.refused(uniqueKey=key)
        for onDuplicate in ('ignore', None, True):
            self.refused(onDuplicate=onDuplicate)

    def test_problems_may_name_a_job(self):
        from lovely.remotetask.jsonapi.errors import Conflict
        self.assertEqual(Conflict('held', jobid=7).data(), {
            'jobid': 7, 'status': 409, 'title': 'Conflict',
            'detail': 'held'})


class DescriptionTests(unittest.TestCase):

    def test_every_field_of_a_job_is_described(self):
        from lovely.remotetask.job import Job
        described = openapi.SCHEMAS['Job']['properties']
        self.assertEqual(set(data.jobDetail(Job(1, 'echo'))) - {'schedule'},
                         set(described) - {'schedule'})

    def test_adding_answers_201_or_200(self):
        responses = openapi.description('http://x')['paths']['/jobs'][
            'post']['responses']
        self.assertIn('201', responses)
        self.assertIn('200', responses)
        self.assertIn('jobid', openapi.SCHEMAS['Problem']['properties'])


def test_suite():
    return unittest.TestSuite([
        unittest.defaultTestLoader.loadTestsFromName(__name__),
        doctest.DocTestSuite('lovely.remotetask.jsonapi.data'),
        doctest.DocTestSuite('lovely.remotetask.jsonapi.endpoints'),
        doctest.DocTestSuite('lovely.remotetask.jsonapi.view'),
        doctest.DocTestSuite('lovely.remotetask.app.apipath'),
        doctest.DocTestSuite('lovely.remotetask.app.progress'),
    ])
