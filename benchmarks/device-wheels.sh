#!/bin/sh
# The wheels benchmarks/device.sh installs on a GPU machine that reaches no registry: what its image
# lacks of align4d's needs (the device tool's KINDS.md lists what it has: torch with CUDA, nvcc,
# ninja, transformers, safetensors, scipy, pandas, matplotlib, torchmetrics, pytest, ...), for its
# Python 3.12. Run here, from the repository root; `.whl/` is git-ignored and travels as `carry`.
#
#   sh benchmarks/device-wheels.sh && du -sh .whl     # well under the 64 MiB a call carries
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
mkdir -p .whl
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64"
# gsplat (kernels compiled there, on first use), diffusers (Zero123), the mesh and PLY readers,
# imageio's ffmpeg (videos; 0.5.1 is 27 MB where 0.8 is 68 MB, over what a call carries), and what
# diffusers needs beyond the image
# shellcheck disable=SC2086 # the list is meant to split
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  $platforms -d .whl \
  "gsplat==1.5.3" "diffusers>=0.30" "trimesh>=4.0" "plyfile>=1.0" "imageio-ffmpeg==0.5.1" "importlib-metadata" "zipp"
ls .whl
