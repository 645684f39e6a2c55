#!/usr/bin/env bash
# Print the podman run/build options under which a container from image $1 starts here:
# none where podman's defaults work, else lower ulimits (podman raises nofile/nproc, which
# needs CAP_SYS_RESOURCE), else those with runc (crun refuses hybrid cgroup v1+v2).
# Exit 1, printing the last error on stderr, where none works.
set -uo pipefail
image=$1
ulimits="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096"
candidates=("" "$ulimits")
command -v runc >/dev/null 2>&1 && candidates+=("--runtime runc $ulimits")
for opts in "${candidates[@]}"; do
  # shellcheck disable=SC2086 # word splitting of the options is wanted
  if err=$(podman run --rm --network=none --no-healthcheck --entrypoint true $opts "$image" 2>&1); then echo "$opts"; exit 0; fi
done
echo "$err" >&2
exit 1
