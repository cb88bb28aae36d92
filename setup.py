"""lovely.remotetask: a ZODB-native job queue for Zope Toolkit applications."""
import os

from setuptools import find_namespace_packages
from setuptools import setup


def read(*parts):
    with open(os.path.join(os.path.dirname(__file__), *parts)) as f:
        return f.read()


TESTS_REQUIRE = [
    'zope.testrunner',
    'zope.testing',  # without it two layers in one run fail (DuplicateLogin)
    'zope.testbrowser[wsgi]',
    'webtest',
    'beautifulsoup4',  # the browser doctests read pages with it
    'coverage',
    # The real-browser test of the Jobs tab drives Debian's chromium with
    # it (never Playwright's own browser download).
    'playwright',
]

setup(
    name='lovely.remotetask',
    version='1.0.0.dev0',
    description='A ZODB-native job queue for Zope Toolkit applications',
    long_description=read('README.rst') + '\n\n' + read('CHANGES.txt'),
    long_description_content_type='text/x-rst',
    author='Lovely Systems and the lovely.remotetask developers',
    license='ZPL-2.1',
    classifiers=[
        'Framework :: Zope :: 3',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
    ],
    package_dir={'': 'src'},
    packages=find_namespace_packages('src', include=['lovely.*']),
    include_package_data=True,
    zip_safe=False,
    python_requires='>=3.9',
    install_requires=[
        'setuptools',
        'persistent',
        'BTrees',
        'transaction',
        'ZODB',
        'ZEO',
        'zc.queue',
        'zope.interface',
        'zope.component',
        'zope.schema',
        'zope.configuration',
        'zope.container',
        'zope.location',
        'zope.security',
        'zope.securitypolicy',
        'zope.principalregistry',
        'zope.traversing',
        'zope.publisher',
        'zope.generations',
        'zope.app.appsetup',
        'zope.app.generations',
        'zope.app.publication',
        'zope.app.publisher',
        'zope.app.wsgi',
        'zope.app.zcmlfiles',
        'zope.app.rotterdam',
        'z3c.table',
        'z3c.batching',
        'zope.browserresource',
        'waitress',
        # /metrics: the exposition format and its parser (metrics.py).
        'prometheus_client',
    ],
    extras_require={
        'test': TESTS_REQUIRE,
        # psycopg2-binary: the psycopg2 module RelStorage uses, as a wheel
        # (plain psycopg2 compiles against libpq, which a clean machine
        # may not have).
        'relstorage': ['RelStorage', 'psycopg2-binary'],
        # The peers `make bench` compares with (benchmarks/peers.py); never
        # a dependency of the package itself.
        'bench': ['huey>=3,<4', 'celery[redis]>=5,<6', 'rq>=2,<3', 'redis'],
    },
    entry_points={
        'console_scripts': [
            'remotetask = lovely.remotetask.app.main:main',
        ],
        'paste.app_factory': [
            'main = lovely.remotetask.app.wsgi:app_factory',
        ],
    },
)
