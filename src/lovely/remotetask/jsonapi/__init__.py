"""The JSON API of task services: ``SERVICE/@@api/...`` (see README.rst).
"""
