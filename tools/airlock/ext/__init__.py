"""The only owners of external programs: git, docker/buildx, skopeo, pip and uv.

Nothing here imports the release data or the inputs: callers pass plain data.
"""
