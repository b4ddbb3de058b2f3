"""The scene: cameras (the one convention, DESIGN.md §4), Gaussians, the deformation field, the renderer.

:mod:`.cameras` builds every camera; :mod:`.gaussians` holds the 3D Gaussians; :mod:`.deformation`
is the HexPlane field that moves them over time; :mod:`.render` draws them (gsplat on CUDA, our own
differentiable rasterizer on CPU, a float64 reference beside it).
"""
