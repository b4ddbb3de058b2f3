"""align4d's library: every stage of the Align4D pipeline as plain functions on tensors and URIs.

Nothing here imports Prefect (DESIGN.md §1); the Prefect tasks and flows in ``tasks/`` and
``flows/`` are thin wrappers around these modules, so that a notebook can run any stage alone::

    from align4d_core import Gaussians, orbit_cameras, render
    from align4d_core.method.oda import search_vaod

The packages, from the bottom up (imports point down only; ``tests/test_layers.py`` checks it):
``config`` (typed settings) · ``io`` and ``scene`` (files, storage, markers; cameras, Gaussians,
renderer) · ``guidance``, ``metrics``, ``sample`` · ``method`` (ODA, MGJA, AO: the paper's
Section III) · ``pairs`` (X → video-3D pair) · ``pipeline`` (stages, generate, runs) ·
``reporting`` (rows, tables, report).
"""

from importlib.metadata import PackageNotFoundError, version

from align4d_core.errors import InputError
from align4d_core.scene.cameras import Cameras, orbit_cameras
from align4d_core.scene.gaussians import Gaussians
from align4d_core.scene.render import RenderOutput, rasterize, render

try:
    __version__ = version("align4d")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["Cameras", "Gaussians", "InputError", "RenderOutput", "orbit_cameras", "rasterize", "render"]
