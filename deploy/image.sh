#!/usr/bin/env bash
# Build the `adbench serve` image (deploy/Dockerfile) without network inside the build:
#   1. a wheelhouse in build/wheels: requirements.txt (the core and `deploy` dependencies,
#      with TORCH_REQ in place of the CUDA torch pin) and every wheel they need, fetched
#      with this machine's pip (its index and local wheels); the iadbench wheel in build/app;
#   2. a base image: BASE where it is present or can be pulled, else a minimal Debian
#      with Python (mmdebstrap from this machine's apt mirror, then `import`);
#   3. the build itself, with --network=none.
# Settings (environment): IMAGE, BASE, TORCH_REQ, PYTHON, BUILDER (podman or docker; buildah
# builds the same Dockerfile: `buildah bud --format docker --build-arg BASE=...`).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-iadbench:latest}
BASE=${BASE:-python:3.11-slim}
# The CPU build of torch that lies on this machine's disk, and the torchvision of its release.
TORCH_REQ=${TORCH_REQ:-torch==2.13.0 torchvision==0.28.0}
PYTHON=${PYTHON:-python3}
DEBIAN_BASE=localhost/iadbench-base:bookworm  # what step 2 makes: Debian 12's Python is 3.11
WHEELS=build/wheels

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }

if [ -z "${BUILDER:-}" ]; then
  for b in podman docker; do
    if command -v "$b" >/dev/null 2>&1 && { [ "$b" != docker ] || docker info >/dev/null 2>&1; }; then BUILDER=$b; break; fi
  done
fi
[ -n "${BUILDER:-}" ] || die "no podman and no running docker engine (apt-get install podman)"
case "$BUILDER" in podman | docker) ;; *) die "BUILDER must be podman or docker, not $BUILDER" ;; esac

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PYTHON is not Python 3.11: the wheelhouse must match the image's Python (3.11)"

# 1. the wheelhouse: dependencies in build/wheels (fetched again only when their list
# changes, so that the image's dependency layer stays cached), iadbench in build/app
mkdir -p "$WHEELS"
"$PYTHON" - "$WHEELS/requirements.new" "$TORCH_REQ" <<'PY'
import re, sys, tomllib
out, torch_req = sys.argv[1], sys.argv[2].split()
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
name = lambda req: re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-")
deps = [d for d in project["dependencies"] + project["optional-dependencies"]["deploy"] if name(d) not in ("torch", "torchvision")]
open(out, "w").write("\n".join(torch_req + deps) + "\n")
PY
if cmp -s "$WHEELS/requirements.new" "$WHEELS/requirements.txt"; then
  rm "$WHEELS/requirements.new"
  say "wheelhouse: $WHEELS is up to date"
else
  find "$WHEELS" -name '*.whl' -delete
  mv "$WHEELS/requirements.new" "$WHEELS/requirements.txt"
  say "wheelhouse: $(tr '\n' ' ' < "$WHEELS/requirements.txt")"
  if ! "$PYTHON" -m pip wheel -q -w "$WHEELS" -r "$WHEELS/requirements.txt"; then
    rm -f "$WHEELS/requirements.txt"; die "could not fetch the wheels listed above"
  fi
fi
rm -rf build/app && "$PYTHON" -m pip wheel -q --no-deps -w build/app .
rm -rf build/lib build/bdist.* 2>/dev/null || true
say "wheelhouse: $(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)"

# 2. the base
if ! "$BUILDER" image inspect "$BASE" >/dev/null 2>&1 && ! "$BUILDER" pull -q "$BASE" >/dev/null 2>&1; then
  say "cannot pull $BASE; using $DEBIAN_BASE (Debian 12 with python3, made from Debian's packages)"
  BASE=$DEBIAN_BASE
  if ! "$BUILDER" image inspect "$BASE" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null 2>&1 || die "no base image and no mmdebstrap to make one (apt-get install mmdebstrap)"
    tar=$(mktemp --suffix=.tar)
    # minbase + Python (venv for the build stage); merged /usr without usrmerge's perl; no docs
    mmdebstrap --variant=minbase --include=python3,python3-venv --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/info/*' -q bookworm "$tar" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" </dev/null
    "$BUILDER" import "$tar" "$BASE" >/dev/null
    rm -f "$tar"
  fi
fi

# 3. the image. Podman's RUN steps are containers: where its defaults cannot start one
# (a sandbox without CAP_SYS_RESOURCE refuses podman's raised ulimits; crun refuses hybrid
# cgroups, runc copes), take the first options that can (deploy/podman-options.sh).
opts=()
if [ "$BUILDER" = podman ]; then
  o=$(deploy/podman-options.sh "$BASE") || die "podman cannot start a container from $BASE here"
  read -r -a opts <<< "$o"
fi
say "building $IMAGE from $BASE with $BUILDER ${opts[*]}"
previous=$("$BUILDER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
# which source the image holds (tests/line/test_container.py compares it with the checkout)
label="iadbench.source=$("$PYTHON" deploy/source_digest.py)"
case "$BUILDER" in
  docker) docker build --network=none --label "$label" --build-arg "BASE=$BASE" -f deploy/Dockerfile -t "$IMAGE" . ;;
  *) podman build "${opts[@]}" --layers --format docker --network=none --label "$label" --build-arg "BASE=$BASE" -f deploy/Dockerfile -t "$IMAGE" . ;;
esac
# the image this one replaces (its 1.4 GB venv layer) goes, unless a container uses it;
# the dependency layers stay cached for the next build (`podman image prune` frees them)
now=$("$BUILDER" image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$previous" ] && [ "$previous" != "$now" ]; then "$BUILDER" rmi "$previous" >/dev/null 2>&1 || true; fi
say "built $IMAGE ($("$BUILDER" image inspect --format '{{.Size}}' "$IMAGE") bytes)"
