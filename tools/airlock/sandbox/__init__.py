"""Local stand-ins for a site's services, for development and the functional tests.

Not used by a build: an operator starts them by hand (``tools/zuul-sandbox``)
and the tests start them for themselves. Each runs with the system Python
and the standard library only, so it works before airlock is installed.
"""
