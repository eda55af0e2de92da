# shellcheck shell=bash
# Sourced by the scripts of tools/: what they share, written once.

# retry N CMD...: the one retry policy for infrastructure steps (apt, pip, a
# mirror): N attempts, 5, 10, ... s apart. Tests and builds are never retried:
# a flaky test must fail.
retry() {
    local n=$1 i
    shift
    for ((i = 1; i <= n; i++)); do
        "$@" && return 0
        echo "$(basename "$0"): attempt $i/$n failed: $*" >&2
        [ "$i" = "$n" ] || sleep $((i * 5))
    done
    return 1
}

# airlock_py MODULE ARGS...: ask the airlock package (from this checkout, with
# the system python3, before airlock is installed) for a fact it owns, such
# as the apt mirror or the local registry's address.
airlock_py() {
    PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" python3 -m "$@"
}
