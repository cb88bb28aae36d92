"""Virtual hosting turned on, through the guards and the real publisher
(the functional layer's application wrapped as ``make_app`` wraps it).
"""
import base64
import unittest

import webtest

from lovely.remotetask import testing
from lovely.remotetask.app import wsgi
from lovely.remotetask.app.settings import parse


MGR = 'Basic ' + base64.b64encode(b'mgr:mgrpw').decode()
PUBLIC = '/++vh++https:tasks.example.com:443/++'


class VirtualHostingOnTests(unittest.TestCase):

    layer = testing.layer

    def setUp(self):
        settings = parse({'public-url': 'https://tasks.example.com',
                          'virtual-hosting': 'on'})
        self.app = webtest.TestApp(
            wsgi.protect(testing.wsgiApp(), settings),
            extra_environ={'HTTP_HOST': '127.0.0.1:8080',
                           'HTTP_AUTHORIZATION': MGR})

    def test_pages_name_the_public_url(self):
        page = self.app.get(PUBLIC + '/@@contents.html')
        self.assertIn(
            '<script type="text/javascript" '
            'src="https://tasks.example.com/@@/zope3.js">', page.text)
        self.assertNotIn('127.0.0.1', page.text)

    def test_another_host_is_refused(self):
        for path in ('/++vh++https:evil.example:443/++/@@contents.html',
                     '/++vh++http:tasks.example.com:80/++/@@contents.html'):
            self.app.get(path, status=400)

    def test_the_public_origin_is_the_own_one(self):
        form = {'type_name': 'BrowserAdd__lovely.remotetask.service.'
                             'TaskService', 'new_value': 'tasks'}
        self.app.post(PUBLIC + '/@@contents.html', form, status=403,
                      headers={'Origin': 'http://127.0.0.1:8080'})
        self.app.post(PUBLIC + '/@@contents.html', form,
                      headers={'Origin': 'https://tasks.example.com'},
                      status=302)
        self.assertIn('tasks', testing.getRootFolder())
