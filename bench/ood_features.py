"""Which features of a fine-tuned network would let the out-of-distribution flag catch a new source (issue 23)?

Usage: .venv/bin/python bench/ood_features.py BUNDLE PREDICTIONS_CSV OUT [--data DIR]

BUNDLE is a ``transfer-finetune`` bundle and PREDICTIONS_CSV the ``predictions.csv`` that ``bench/generalise.py``
wrote for it (its rows: set, path, truth, predicted). For the training images (brain-tumor-mri's ``Training``
folder) and every row, the script passes the image through the network's backbone and keeps, for each stage's
feature map, the channel means and standard deviations over positions (float32; cached in ``OUT/stats.npz``). On
each set of features it fits brainmri's detector (:class:`~brainmri.robust.ood.MahalanobisOOD`: class-conditional,
Ledoit-Wolf, calibrated on cross-fitted training distances) and reports, at brainmri's flag
(:data:`~brainmri.robust.ood.FLAG_QUANTILE` of the training distances): the share of the in-domain test flagged,
of the external images (every other set) flagged, and of their wrong tumour-vs-normal calls flagged; and the AUC of
the distance, in-domain test against lgg-tcga. Results: ``OUT/ood_features.json`` and a table on stdout.

The last stage's means are the embedding brainmri's detector reads today; its standard deviations are what the
global pool throws away; the early stages hold the feature statistics that MixStyle and DSU perturb.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from brainmri.models.bundle import load_model
from brainmri.robust.ood import MahalanobisOOD
from brainmri.steps import split_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader(open(args.predictions)))
    training = sorted((args.data / "brain-tumor-mri" / "Training").glob("*/*.jpg"))
    train, test = stage_statistics(args.bundle, training, [r["path"] for r in rows], args.out / "stats.npz")
    y = np.array([p.parent.name for p in training])
    last = len(train) - 1
    half = train[last].shape[1] // 2
    candidates = {f"stage {k} (mean and std)": (train[k], test[k]) for k in range(len(train))}
    candidates["last map: mean (the embedding today)"] = (train[last][:, :half], test[last][:, :half])
    candidates["last map: std"] = (train[last][:, half:], test[last][:, half:])
    candidates["every stage, side by side"] = (np.hstack(train), np.hstack(test))
    report = {name: evaluate(rows, *features, y) for name, features in candidates.items()}
    (args.out / "ood_features.json").write_text(json.dumps(report, indent=1))
    print("features | dims | in-domain flagged | external flagged | external wrong flagged | AUC in-domain vs lgg")
    for name, r in report.items():
        print(
            f"{name} | {r['dimensions']} | {r['in_domain_flagged']:.3f} | {r['external_flagged']:.3f} | "
            f"{r['external_wrong_flagged']:.3f} | {r['auc_in_domain_vs_lgg']:.3f}"
        )


def stage_statistics(bundle: Path, training: list[Path], tests: list[str], cache: Path):
    """Per stage, the (n, 2C) channel means and standard deviations of the training images and of the test rows."""
    if cache.exists():
        z = np.load(cache)
        n = len([k for k in z.files if k.startswith("train")])
        return [z[f"train{k}"] for k in range(n)], [z[f"test{k}"] for k in range(n)]
    import torch

    prep, final = split_model(load_model(bundle, device="cpu").model)
    backbone = final.module_.eval().float().backbone

    def statistics(paths: list) -> list[np.ndarray]:
        batches = []
        for start in range(0, len(paths), 128):
            x = torch.as_tensor(np.asarray(prep.transform([str(p) for p in paths[start : start + 128]]), np.float32))
            with torch.inference_mode():
                maps = backbone(x[:, None] if x.ndim == 3 else x)
            batches.append([torch.cat([m.float().mean((2, 3)), m.float().std((2, 3))], 1).numpy() for m in maps])
            print(f"{min(start + 128, len(paths))}/{len(paths)} images", flush=True)
        return [np.concatenate([b[k] for b in batches]) for k in range(len(batches[0]))]

    train, test = statistics(training), statistics(tests)
    np.savez(cache, **{f"train{k}": a for k, a in enumerate(train)}, **{f"test{k}": a for k, a in enumerate(test)})
    return train, test


def evaluate(rows: list[dict], train: np.ndarray, test: np.ndarray, y: np.ndarray) -> dict:
    """brainmri's detector on these features: who it flags, and how well it separates lgg-tcga from in-domain."""
    sets = np.array([r["set"] for r in rows])
    inside, lgg = sets == "btm-test", np.char.startswith(sets.astype(str), "lgg")
    wrong = np.array(
        [(r["predicted"] == "notumor") if r["truth"] == "tumour" else (r["predicted"] != r["truth"]) for r in rows]
    )
    ood = MahalanobisOOD(seed=0).fit(train, y)
    flagged, distance = ood.flag(test), ood.distance(test)
    return {
        "dimensions": int(train.shape[1]),
        "in_domain_flagged": round(float(flagged[inside].mean()), 4),
        "external_flagged": round(float(flagged[~inside].mean()), 4),
        "external_wrong_flagged": round(float(flagged[~inside & wrong].mean()), 4),
        "auc_in_domain_vs_lgg": round(
            float(
                roc_auc_score(np.r_[np.zeros(inside.sum()), np.ones(lgg.sum())], np.r_[distance[inside], distance[lgg]])
            ),
            4,
        ),
    }


if __name__ == "__main__":
    main()
