"""What a build reads and the Mirror Factory gathers: sources, wheels, debs, base image.

Each module makes one kind of input from the release data (:mod:`airlock.data`)
through the external programs of :mod:`airlock.ext`.
"""
