"""The only owners of external programs and services.

git (git), buildx (docker buildx, the engine), containers (docker run,
pull), registry (the Registry HTTP API; skopeo for copies), index (pip),
uv (uv); every program runs through exec.run (a timeout, a missing program
named by its Debian package, a redacted log).

Nothing here imports the release data or the inputs: callers pass plain data.
"""
