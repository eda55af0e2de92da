"""The image build: input digests, the build itself, publishing and the summary.
"""
