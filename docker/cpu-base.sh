#!/bin/sh
# A CPU stand-in for the CUDA PyTorch base image of Dockerfile.gpu-worker, made from Debian packages
# and the CPU torch wheel pip resolves here, for machines that can pull no registry image (this
# project's CI). It has what the production base has and the Dockerfile relies on: Python 3.11 with
# pip and torch in the environment that `python` and `pip` name, apt-get, and nothing of align4d.
#
#   sh docker/cpu-base.sh              # prints the tag to build on; builds only what Docker lacks
#
# Two images: the Debian root with torch (slow to make, kept), and on top of it this machine's own
# certificate authorities (/usr/local/share/ca-certificates), so that pip inside `docker build`
# trusts the same TLS endpoints as pip here. Its tag carries a hash of those certificates: when they
# change, only that thin layer is made again.
#
# Root is needed (debootstrap, chroot). DOCKER_HOST picks the daemon, as for the docker CLI.
set -eu
torch_version=${TORCH_VERSION:-2.13.0}
suite=${DEBIAN_SUITE:-bookworm} # Python 3.11, the version of the production base image
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cas=/usr/local/share/ca-certificates
tag=align4d/cpu-base:$suite-torch$torch_version
trusted=$tag-ca$(cat "$cas"/*.crt 2>/dev/null | sha256sum | cut -c1-12)

trust() { # the thin layer: this machine's certificate authorities on top of "$tag"
  if ! docker image inspect "$trusted" >/dev/null 2>&1; then
    context=$(mktemp -d)
    mkdir "$context/cas"
    cp "$cas"/*.crt "$context/cas/" 2>/dev/null || true
    printf '%s\n' "FROM $tag" "COPY cas/ /usr/local/share/ca-certificates/" "RUN update-ca-certificates >/dev/null" \
      "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" >"$context/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -t "$trusted" "$context" >"$context.log" 2>&1 || {
      tail -20 "$context.log" >&2
      exit 1
    }
    rm -f "$context.log"
    rm -rf "$context"
  fi
  echo "$trusted"
}

if docker image inspect "$tag" >/dev/null 2>&1; then
  trust
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  echo "cpu-base: debootstrap is missing (apt-get install debootstrap)" >&2
  exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
root="$work/root"

echo "cpu-base: debootstrap $suite (minbase, python3) into $root" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}

# torch and its pure-Python dependencies as wheels, resolved by this machine's pip (which finds the
# CPU build), then installed offline inside the root: the chroot needs no network.
echo "cpu-base: torch==$torch_version and its dependencies" >&2
mkdir -p "$root/tmp/wheels"
python3 -m pip download --quiet --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
  -d "$root/tmp/wheels" "torch==$torch_version"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; } # no host pip settings
in_root /usr/bin/python3 -m venv /opt/venv
in_root /opt/venv/bin/pip install --quiet --no-index --find-links /tmp/wheels "torch==$torch_version"
in_root /opt/venv/bin/python -W ignore -c "import torch; print('cpu-base: torch', torch.__version__)" >&2
rm -rf "$root/tmp/wheels" "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*

# The Debian mirror apt-get uses inside images built on this base.
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"

tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV VIRTUAL_ENV=/opt/venv' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
trust
