"""The release data: the tree under releases/, patches/ and images/, loaded and checked.

Plain data in, plain data out; the only external program used here is git
(through :mod:`airlock.ext.git`).
"""
