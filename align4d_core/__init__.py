"""align4d's library: every stage of the Align4D pipeline as plain functions on tensors and URIs.

Nothing here imports Prefect (DESIGN.md §1); the Prefect tasks and flows in ``tasks/`` and
``flows/`` are thin wrappers around these modules, so that a notebook can run any stage alone::

    from align4d_core import Gaussians, orbit_cameras, render
"""

from importlib.metadata import PackageNotFoundError, version

from .cameras import Cameras, orbit_cameras
from .errors import InputError
from .gaussians import Gaussians
from .render import RenderOutput, rasterize, render

try:
    __version__ = version("align4d")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["Cameras", "Gaussians", "InputError", "RenderOutput", "orbit_cameras", "rasterize", "render"]
