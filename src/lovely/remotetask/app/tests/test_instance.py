"""The instance directory and its zope.conf."""
import os
import stat

import ZConfig
import zope.app.appsetup

from lovely.remotetask.app import instance
from lovely.remotetask.app.tests import InTemporaryDirectory


def loadConfig(path):
    """Parse a zope.conf with the schema zope.app.wsgi uses."""
    schema = ZConfig.loadSchema(os.path.join(
        os.path.dirname(zope.app.appsetup.__file__), 'schema', 'schema.xml'))
    return ZConfig.loadConfig(schema, path)[0]


class InstanceTests(InTemporaryDirectory):

    def test_make_writes_a_private_directory_and_the_files(self):
        written = instance.make()
        self.assertEqual(written, ['var/zope.conf', 'var/site.zcml',
                                   'var/mytasks.py.example'])
        self.assertEqual(stat.S_IMODE(os.stat('var').st_mode), 0o700)

    def test_make_never_overwrites(self):
        os.mkdir('var')
        with open('var/zope.conf', 'w') as f:
            f.write('mine')
        self.assertEqual(instance.make(), ['var/site.zcml',
                                           'var/mytasks.py.example'])
        with open('var/zope.conf') as f:
            self.assertEqual(f.read(), 'mine')
        self.assertEqual(instance.make(), [])

    def test_zope_conf(self):
        instance.make()
        options = loadConfig('var/zope.conf')
        # Relative paths: relative to the directory remotetask runs in.
        self.assertEqual(options.site_definition, 'var/site.zcml')
        self.assertFalse(options.devmode)
        [database] = options.databases
        storage = database.config.storage.config
        self.assertEqual(storage.path, 'var/Data.fs')
        products = {p.getSectionName(): p.mapping
                    for p in options.product_config}
        self.assertEqual(products['lovely.remotetask'],
                         {'autostart': '*@*'})
        self.assertEqual(products['lovely.remotetask.app'],
                         {'admin-credentials': 'var/admin-credentials'})

    def test_zope_conf_elsewhere(self):
        instance.make('other/dir')
        options = loadConfig('other/dir/zope.conf')
        self.assertEqual(options.site_definition, 'other/dir/site.zcml')

    def test_site_zcml_includes_the_shipped_one(self):
        instance.make()
        with open('var/site.zcml') as f:
            text = f.read()
        self.assertIn(
            '<include package="lovely.remotetask.app" file="site.zcml" />',
            text)

    def test_no_absolute_paths_and_no_passwords_shipped(self):
        for name in os.listdir(instance.SKEL):
            with open(os.path.join(instance.SKEL, name)) as f:
                text = f.read()
            self.assertNotIn(os.path.dirname(instance.SKEL), text)
            self.assertNotIn('password ', text.lower())

    def test_resolve_creates_the_default(self):
        self.assertEqual(instance.resolve(), 'var/zope.conf')
        self.assertTrue(os.path.isfile('var/site.zcml'))

    def test_resolve_without_create(self):
        with self.assertRaises(instance.ConfigurationMissing) as e:
            instance.resolve(create=False)
        self.assertIn("'var/zope.conf'", str(e.exception))
        self.assertFalse(os.path.exists('var'))

    def test_resolve_never_creates_a_named_config(self):
        with self.assertRaises(instance.ConfigurationMissing):
            instance.resolve('typo/zope.conf')
        self.assertFalse(os.path.exists('typo'))
        instance.make('elsewhere')
        self.assertEqual(instance.resolve('elsewhere/zope.conf'),
                         'elsewhere/zope.conf')
