"""The administrator's credentials."""
import os
import shutil
import stat
import tempfile
import unittest

import zope.component
import zope.testing.cleanup
from zope.app.appsetup.product import setProductConfiguration
from zope.password.interfaces import IPasswordManager
from zope.password.password import SSHAPasswordManager

from lovely.remotetask.app import credentials


class ParseTests(unittest.TestCase):

    def test_login_password(self):
        self.assertEqual(credentials.parse('admin:s3cret', 'X'),
                         ('admin', 's3cret'))

    def test_password_may_hold_colons(self):
        self.assertEqual(credentials.parse(' me:a:b:c \n', 'X'),
                         ('me', 'a:b:c'))

    def test_invalid(self):
        for text in ['', 'admin', 'admin:', ':secret', ' :secret']:
            with self.assertRaises(credentials.InvalidCredentials) as e:
                credentials.parse(text, 'SOURCE')
            self.assertIn('SOURCE', str(e.exception))

    def test_message_never_shows_the_password(self):
        with self.assertRaises(credentials.InvalidCredentials) as e:
            credentials.parse(':TopSecret', 'X')
        self.assertNotIn('TopSecret', str(e.exception))

    def test_environment(self):
        self.assertIsNone(credentials.from_environment({}))
        self.assertIsNone(
            credentials.from_environment({'REMOTETASK_ADMIN': ''}))
        self.assertEqual(
            credentials.from_environment({'REMOTETASK_ADMIN': 'a:b'}),
            ('a', 'b', 'REMOTETASK_ADMIN', False))
        with self.assertRaises(credentials.InvalidCredentials):
            credentials.from_environment({'REMOTETASK_ADMIN': 'nocolon'})


class FileTests(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self._tmp.name, 'admin-credentials')

    def tearDown(self):
        self._tmp.cleanup()
        zope.testing.cleanup.cleanUp()

    def test_generated_on_first_start(self):
        first = credentials.obtain(self.path, environ={})
        self.assertTrue(first.generated)
        self.assertEqual(first.login, 'admin')
        self.assertEqual(first.source, self.path)
        self.assertGreaterEqual(len(first.password), 24)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        # Later starts read the same ones.
        second = credentials.obtain(self.path, environ={})
        self.assertFalse(second.generated)
        self.assertEqual(second[:2], first[:2])

    def test_passwords_differ(self):
        self.assertNotEqual(credentials.generate(),
                            credentials.generate())

    def test_environment_wins_and_writes_nothing(self):
        admin = credentials.obtain(
            self.path, environ={'REMOTETASK_ADMIN': 'boss:pw'})
        self.assertEqual(admin, ('boss', 'pw', 'REMOTETASK_ADMIN', False))
        self.assertFalse(os.path.exists(self.path))

    def test_file_never_overwritten(self):
        credentials.write(self.path, 'a', 'b')
        with self.assertRaises(FileExistsError):
            credentials.write(self.path, 'c', 'd')
        self.assertEqual(credentials.read(self.path)[:2], ('a', 'b'))

    def test_file_edited_by_hand(self):
        with open(self.path, 'w') as f:
            f.write('# mine\n\n  boss:pass:word\n')
        os.chmod(self.path, 0o600)
        self.assertEqual(credentials.read(self.path),
                         ('boss', 'pass:word', self.path, False))

    def test_empty_file(self):
        with open(self.path, 'w') as f:
            f.write('# nothing\n')
        with self.assertRaises(credentials.InvalidCredentials):
            credentials.read(self.path)

    def test_readable_by_others_warns(self):
        credentials.write(self.path, 'a', 'b')
        os.chmod(self.path, 0o644)
        with self.assertLogs('lovely.remotetask.app', 'WARNING') as logs:
            credentials.read(self.path)
        self.assertIn('chmod 600', logs.output[0])

    def test_path_from_zope_conf(self):
        self.assertEqual(credentials.path_for('etc/zope.conf'),
                         'etc/admin-credentials')
        setProductConfiguration('lovely.remotetask.app',
                                {'admin-credentials': 'var/admin'})
        self.assertEqual(credentials.path_for('etc/zope.conf'), 'var/admin')

    def test_describe(self):
        generated = credentials.Credentials('admin', 'PW', 'var/x', True)
        # Issue 9: the lines go where the log goes: never the password.
        self.assertNotIn('PW', '\n'.join(credentials.describe(generated)))
        self.assertIn('cat var/x', '\n'.join(credentials.describe(generated)))
        stored = generated._replace(generated=False)
        self.assertNotIn('PW', '\n'.join(credentials.describe(stored)))
        self.assertIn('var/x', '\n'.join(credentials.describe(stored)))
        env = credentials.Credentials('admin', 'PW', 'REMOTETASK_ADMIN')
        self.assertNotIn('PW', '\n'.join(credentials.describe(env)))


class RegisterTests(unittest.TestCase):

    def setUp(self):
        from zope.authentication.interfaces import IAuthentication
        from zope.principalregistry.principalregistry import \
            principalRegistry
        zope.component.provideUtility(
            SSHAPasswordManager(), IPasswordManager, 'SSHA')
        from zope.securitypolicy.interfaces import IRole
        from zope.securitypolicy.role import Role
        zope.component.provideUtility(principalRegistry, IAuthentication)
        zope.component.provideUtility(
            Role('zope.Manager', 'Site Manager'), IRole, 'zope.Manager')

    def tearDown(self):
        zope.testing.cleanup.cleanUp()

    def test_register(self):
        from zope.principalregistry.principalregistry import \
            principalRegistry
        from zope.securitypolicy.interfaces import Allow
        from zope.securitypolicy.principalrole import principalRoleManager

        credentials.register(
            credentials.Credentials('boss', 'pw', 'REMOTETASK_ADMIN'))
        principal = principalRegistry.getPrincipalByLogin('boss')
        self.assertEqual(principal.id, 'lovely.remotetask.admin')
        self.assertTrue(principal.validate('pw'))
        self.assertFalse(principal.validate('PW'))
        self.assertFalse(principal.validate(principal._Principal__pw))
        self.assertTrue(principal._Principal__pw.startswith(b'{SSHA}'))
        self.assertEqual(
            principalRoleManager.getRolesForPrincipal(principal.id),
            [('zope.Manager', Allow)])

    def test_a_worker_registers_the_administrator_for_its_jobs(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        configfile = os.path.join(tmp, 'zope.conf')
        # Without credentials (a worker on another machine): the
        # principal exists, with a password nobody knows; no file is
        # written.
        principal = credentials.registerForJobs(configfile, {})
        self.assertEqual(principal.id, 'lovely.remotetask.admin')
        self.assertEqual(principal.getLogin(), 'lovely.remotetask.admin')
        self.assertEqual(os.listdir(tmp), [])

    def test_a_worker_takes_the_login_it_knows(self):
        principal = credentials.registerForJobs(
            'zope.conf', {'REMOTETASK_ADMIN': 'boss:pw'})
        self.assertEqual(principal.getLogin(), 'boss')
