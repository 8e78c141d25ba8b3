"""Which attribution map of a cnn3d ranks the planted regions of a ``demo-data --3d`` folder first (docs/benchmarks.md,
"Region masks"): every map of ``brainmri regions --attribution`` plus the absolute saliency, each with the class-wise
signed aggregation of ``brainmri regions`` and with a plain mean; one line per combination (planted regions among the
top ones, their ranks, the lowest planted relevance over the highest other one, seconds).

Usage: python bench/regions_attribution.py DATA BUNDLE TAG
       (DATA from ``brainmri demo-data --3d``, BUNDLE from ``brainmri train DATA --method cnn3d``)
"""

import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from brainmri.data.dataset import load_dataset
from brainmri.data.io import read_image
from brainmri.regions.features import RegionAttribution, class_relevance

root, model, tag = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
planted = json.loads((root / ".regions/planted_regions.json").read_text())["planted_regions"]
atlas = np.asarray(nib.load(str(root / ".regions/atlas.nii.gz")).dataobj).astype(np.int64)
regions = np.unique(atlas[atlas > 0])
items = load_dataset(root).items
y = np.array([it.label for it in items])
maps = {
    "gradient": RegionAttribution(model, method="gradient", device="cpu"),
    "integrated-gradients": RegionAttribution(model, method="integrated-gradients", device="cpu"),
    "gradcam": RegionAttribution(model, method="gradcam", device="cpu"),
}
absolute = RegionAttribution(model, method="gradient", device="cpu")
absolute.attribution = absolute.view.attribution("saliency")  # brainmri explain's saliency: |gradient|
maps["saliency(abs)"] = absolute
volumes = [read_image(it.path)[0] for it in items]
for name, attribution in maps.items():
    t = time.perf_counter()
    d = np.stack([attribution(v, it.label, atlas, regions) for v, it in zip(volumes, items, strict=True)])
    s = time.perf_counter() - t
    for agg, score in (("class-wise signed", class_relevance(d, y)[0]), ("mean", d.mean(axis=0))):
        order = [int(regions[i]) for i in np.argsort(-score, kind="stable")]
        hit = len(set(order[: len(planted)]) & set(planted))
        ranks = [order.index(p) + 1 for p in planted]
        pl, other = score[np.isin(regions, planted)], score[~np.isin(regions, planted)]
        print(
            f"{tag}\t{name}\t{agg}\t{hit}/{len(planted)}\tranks {ranks}\tmargin {pl.min() / other.max():.2f}\t{s:.1f} s"
        )
