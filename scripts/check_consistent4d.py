"""Compare ``align4d evaluate`` with Consistent4D's image-metric arithmetic run by that era's torchmetrics.

    pip install --no-deps --target /tmp/tm12 torchmetrics==1.2.0 lightning-utilities
    python scripts/check_consistent4d.py --pred PRED --gt GT --torchmetrics /tmp/tm12 [--rgba]

PRED and GT are folders of object folders in the Consistent4D layout (``OBJ/eval_<k>/<t>.png``).
The official side follows ``evaluation/compute_image_level_metrics.py`` (yanqinJiang/Consistent4D):
``Image.open``, alpha 0 → white with ``--rgba``, ``resize((512, 512))`` on the 8-bit image, float
0–255, torchmetrics' ``peak_signal_noise_ratio`` and ``structural_similarity_index_measure`` with no
data range, per-view frame means summed over the four views and divided by 4, the mean over objects.
It runs in a child process, so that the torchmetrics under ``--torchmetrics`` is the one imported.
Prints both and the largest difference per metric (the issue-13 goal: 0.01 dB, 0.001 SSIM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

OFFICIAL = r"""
import json, os, sys
import numpy as np, torch
from PIL import Image
import torchmetrics
from torchmetrics.functional import peak_signal_noise_ratio, structural_similarity_index_measure

def load(path, rgba):
    image = Image.open(path)
    if rgba:
        tmp = np.array(image)
        rgb = tmp[..., :3]
        rgb[tmp[..., -1] == 0] = 255
        image = Image.fromarray(rgb)
    image = image.resize((512, 512))
    return torch.from_numpy(np.array(image)).float().permute(2, 0, 1).unsqueeze(0)

gt_root, pred_root, rgba = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
scores = {"psnr": {}, "ssim": {}, "torchmetrics": torchmetrics.__version__}
for obj in sorted(os.listdir(gt_root)):
    total = {"psnr": 0.0, "ssim": 0.0}
    for view in range(4):
        gt_view, pred_view = (os.path.join(r, obj, f"eval_{view}") for r in (gt_root, pred_root))
        names = sorted(os.listdir(gt_view), key=lambda n: int(n[:-4]))
        per_frame = {"psnr": [], "ssim": []}
        for name in names:
            p, g = load(os.path.join(pred_view, name), rgba), load(os.path.join(gt_view, name), rgba)
            per_frame["psnr"].append(float(peak_signal_noise_ratio(p, g)))
            per_frame["ssim"].append(float(structural_similarity_index_measure(p, g)))
        for metric in total:
            total[metric] += float(np.mean(per_frame[metric]))
    for metric in total:
        scores[metric][obj] = total[metric] / 4
print(json.dumps(scores))
"""


def official(pred: str, gt: str, torchmetrics: str, rgba: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([torchmetrics, os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-W", "ignore", "-c", OFFICIAL, gt, pred, "1" if rgba else "0"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pred", required=True)
    parser.add_argument("--gt", required=True)
    parser.add_argument("--torchmetrics", required=True, help="a folder holding torchmetrics 1.2.0 (--target)")
    parser.add_argument("--rgba", action="store_true", help="the script's rgba=True path")
    args = parser.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from align4d_core.config import MetricsConfig
    from align4d_core.metrics.protocol import evaluate_objects

    theirs = official(args.pred, args.gt, args.torchmetrics, args.rgba)
    ours = evaluate_objects(args.pred, args.gt, MetricsConfig(compute=("psnr", "ssim")))["objects"]
    print(f"official arithmetic with torchmetrics {theirs['torchmetrics']} against align4d (consistent4d)")
    print(f"{'object':<16}{'PSNR official':>15}{'align4d':>12}{'SSIM official':>15}{'align4d':>12}")
    for obj in sorted(ours):
        print(
            f"{obj:<16}{theirs['psnr'][obj]:>15.4f}{ours[obj]['psnr']:>12.4f}"
            f"{theirs['ssim'][obj]:>15.5f}{ours[obj]['ssim']:>12.5f}"
        )
    for metric, unit in (("psnr", " dB"), ("ssim", "")):
        worst = max(abs(ours[o][metric] - theirs[metric][o]) for o in ours)
        print(f"largest |difference| {metric.upper()}: {worst:.2e}{unit}")


if __name__ == "__main__":
    main()
