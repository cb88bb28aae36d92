"""The command line tool (app/cli/README.rst), run as processes, and its
edge cases."""
import doctest
import json
import os
import subprocess
import sys
import tempfile
import unittest

from lovely.remotetask.app.tests.test_server import environment


TIMEOUT = 120.0
FLAGS = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
         | doctest.REPORT_NDIFF)


def remotetask(directory, *args):
    """Run ``remotetask ARGS`` in ``directory``; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, '-m', 'lovely.remotetask.app', *args],
        cwd=directory, env=environment(), capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=TIMEOUT)


def setUp(test):
    test.tmp = tempfile.TemporaryDirectory(prefix='remotetask-cli-')
    directory = test.tmp.name
    test.cwd = os.getcwd()
    subprocess.run([sys.executable, '-c',
                    'from lovely.remotetask.app import instance; '
                    'instance.make()'], cwd=directory, check=True,
                   env=environment(), timeout=TIMEOUT)
    os.chdir(directory)

    def run(*args, quiet=False):
        """Print what the command printed (and its exit status unless 0);
        with ``quiet``, return its standard output instead."""
        done = remotetask(directory, *args)
        if quiet:
            if done.returncode:
                raise AssertionError(done.stdout + done.stderr)
            return done.stdout
        text = done.stdout + done.stderr
        for jobid, name in names.items():
            text = text.replace(str(jobid), name)
        print(text.rstrip('\n') if text.strip() else '', end='')
        if done.returncode:
            print(f'\nexit status {done.returncode}')
        elif text.strip():
            print()
    names = {}
    test.globs.update(run=run, json=json, os=os, names=names)


def tearDown(test):
    os.chdir(test.cwd)
    test.tmp.cleanup()


def test_suite():
    return doctest.DocFileSuite(
        '../cli/README.rst', setUp=setUp, tearDown=tearDown,
        optionflags=FLAGS)
