"""X -> video-3D pair generation with off-the-shelf diffusers pipelines (DESIGN.md §6, paper III-E).

Any input modality becomes the video-3D pair the optimizer aligns to:

* :mod:`.text_to_image` — SDXL; :mod:`.image_to_video` — Stable Video Diffusion;
  :mod:`.image_to_3d` — Shap-E (mesh, sampled into Gaussians when the pair is loaded), open to other
  backends; :mod:`.views` — a video's first frame and a 3D object's front view; :mod:`.caption` —
  an optional captioner for the prompt;
* :mod:`.masks` — the foreground rule (alpha, else background removal, else a white-background
  threshold) and compositing on white;
* :mod:`.weights` / :mod:`.model_cache` — ``from_pretrained`` from a hub id, a local folder or an
  ``s3://`` model cache, one model in memory at a time;
* :mod:`.route` — which modality is made from which; :mod:`.stage` — the resumable stage that writes
  a pair into a run (``<run>/items/<id>/pair/``) or into ``align4d generate``'s output.
"""

from align4d_core.pairs.route import ROUTES, plan
from align4d_core.pairs.stage import item_pair, pairs_stage
from align4d_core.pairs.weights import ModelMissingError

__all__ = ["ROUTES", "ModelMissingError", "item_pair", "pairs_stage", "plan"]
