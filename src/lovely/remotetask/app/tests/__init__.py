"""Tests of the runnable application."""
import os
import tempfile
import unittest


class InTemporaryDirectory(unittest.TestCase):
    """Runs each test in a new, empty current directory."""

    def setUp(self):
        self._cwd = os.getcwd()
        self._tmp = tempfile.TemporaryDirectory()
        os.chdir(self._tmp.name)

    def tearDown(self):
        os.chdir(self._cwd)
        self._tmp.cleanup()
