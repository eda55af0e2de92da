# Bench only (tools/bench.py): keystone installed the common way, as LOCI
# and Kolla do, to set airlock's build beside it. Never shipped.
#
# One stage on the Debian base image (python3, no compiler needed: the
# wheelhouse is airlock's, every sdist already a wheel): the runtime OS
# packages, a venv made with pip, the prepared sources built into wheels
# with pip, and everything installed with pip from the wheelhouse, all in
# the image that ships. What airlock keeps out of the runtime (pip,
# setuptools and wheel in the venv, the build's leftovers, the Debian
# documentation) stays in. The step runs on the target platform: arm64
# under QEMU. pip compiles bytecode (its default, as in Kolla; LOCI passes
# --no-compile and deletes *.pyc).
#
# No network: every input is a named build context, bind-mounted:
#   wheels       airlock's wheelhouse of keystone (any/, <arch>/, constraints)
#   sources      the prepared trees, NN-<component>/, with .airlock/source.json
#   debs         <arch>/: keystone's runtime packages as a flat apt repository
#   pip          a pip wheel, to put pip into the venv (ensurepip's, from the
#                bench's Python: the base image has no python3-venv)
# No "# syntax=" line: the built-in frontend works offline.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG TARGETARCH
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=bind,from=sources,target=/src \
    --mount=type=bind,from=debs,target=/debs \
    --mount=type=bind,from=pip,target=/pip \
    set -eu; \
    echo "deb [trusted=yes] file:/debs/${TARGETARCH} ./" > /etc/apt/sources.list.d/local.list; \
    apt_opts="-o Dir::Etc::SourceList=/etc/apt/sources.list.d/local.list -o Dir::Etc::SourceParts=/dev/null -o APT::Sandbox::User=root"; \
    pkgs=$(grep -v '^#' "/debs/${TARGETARCH}/packages.txt" || true); \
    if [ -n "$pkgs" ]; then \
        apt-get $apt_opts -q update; \
        DEBIAN_FRONTEND=noninteractive apt-get $apt_opts -q -y --no-install-recommends install $pkgs; \
    fi; \
    rm -rf /etc/apt/sources.list.d/local.list /var/lib/apt/lists/*; \
    python3 -m venv --without-pip /var/lib/openstack; \
    pip_whl=$(ls /pip/pip-*.whl | head -n 1); \
    /var/lib/openstack/bin/python "$pip_whl/pip" install -q --no-index "$pip_whl"; \
    find_links="--no-index --find-links /wheels/any --find-links /wheels/${TARGETARCH}"; \
    mkdir -p /tmp/built; \
    for src in /src/*/; do \
        version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$src/.airlock/source.json"); \
        cp -a "$src" /tmp/tree; \
        PBR_VERSION=$version PIP_CONSTRAINT=/wheels/build-constraints.txt \
            /var/lib/openstack/bin/pip wheel -q --no-cache-dir --no-deps $find_links -w /tmp/built /tmp/tree; \
        rm -rf /tmp/tree; \
    done; \
    extra=""; [ -s /wheels/install.txt ] && extra="-r /wheels/install.txt"; \
    /var/lib/openstack/bin/pip install -q --no-cache-dir --only-binary :all: $find_links \
        -c /wheels/constraints.txt $extra /tmp/built/*.whl; \
    rm -rf /tmp/built; \
    groupadd -g 42424 keystone; \
    useradd -u 42424 -g 42424 -d /var/lib/keystone -M -s /usr/sbin/nologin keystone; \
    mkdir -p /var/lib/keystone; chown 42424:42424 /var/lib/keystone
ENV PATH=/var/lib/openstack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 42424:42424
WORKDIR /var/lib/keystone
CMD ["keystone-manage", "--version"]
