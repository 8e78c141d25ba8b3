"""Training that generalises across sources (issue 23, item 3): each option trained on brain-tumor-mri, tested elsewhere.

Usage: .venv/bin/python bench/generalise.py OUT LGG_DIR [CONFIG ...] [--epochs 6] [--seed 0] [--data DIR]

Every CONFIG is ``transfer-finetune`` with its defaults, ``epochs`` as given (6 by default, half the method's default,
so that each option costs about 15 minutes on the 2-core CPU) and these settings:

    appearance          augment=appearance (the configuration the README recommended before this work)
    tissue              augment=appearance,tissue-contrast
    mixstyle            augment=appearance, style=mixstyle
    dsu                 augment=appearance, style=dsu
    tissue-mixstyle     augment=appearance,tissue-contrast, style=mixstyle
    tissue-dsu          augment=appearance,tissue-contrast, style=dsu

Each is trained with ``brainmri train`` on all of brain-tumor-mri's Training folder (4 classes) and tested on
fixed, seeded sets that share no image with it (the model never sees them before):

* brain-tumor-mri's official test (1,311 images; in-domain, copies included): 4-class accuracy;
* lgg-tcga (another publisher, 5 TCGA institutions, 3 sequences; LGG_DIR built by the recipe of
  ../shared/datasets/README.md): glioma slices whose mask covers >= 1% of the slice, all of them, and 300
  tumour-free slices per sequence (of the same patients: not healthy brains);
* alzheimer-mri's Non_Demented slices (OASIS, another source and scanner), 600 drawn with the seed: normal brains.

Tumour vs normal (tumour probability = 1 - P(notumor), call = the predicted class): sensitivity is the mean over the
three lgg-tcga sequences of the share of large gliomas called a tumour, specificity the share of alzheimer normals
called notumor, balanced accuracy their mean; AUC and ECE of the tumour probability on large gliomas against
alzheimer normals. Intervals: 95% percentile bootstrap, resampling lgg-tcga patients and alzheimer images (the set
has no subject ids, so its interval is too narrow), 1,000 draws, seeded. Every configuration is compared with the
first one by the paired bootstrap of the balanced-accuracy difference (the same draws for both) and an exact
McNemar test of the tumour-vs-normal calls (every external image: large gliomas, tumour-free slices, normals),
Holm-adjusted over the configurations compared. Results: OUT/generalise.json, a table on stdout; each configuration's
bundle and predictions stay in OUT/<config>/ (a finished one is not trained again).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from brainmri.evaluation.metrics import classification_metrics
from brainmri.evaluation.stats import holm, mcnemar
from brainmri.models.bundle import load_model
from brainmri.models.predict import FLAG_QUANTILE

CONFIGS = {
    "appearance": {"augment": "appearance"},
    "tissue": {"augment": "appearance,tissue-contrast"},
    "mixstyle": {"augment": "appearance", "style": "mixstyle"},
    "dsu": {"augment": "appearance", "style": "dsu"},
    "tissue-mixstyle": {"augment": "appearance,tissue-contrast", "style": "mixstyle"},
    "tissue-dsu": {"augment": "appearance,tissue-contrast", "style": "dsu"},
}
SEQUENCES = ("t1pre", "flair", "t1post")
MASK_MIN = 655  # 1% of a 256 x 256 slice, as bench/lgg_tcga.py
N_FREE, N_NORMAL, N_BOOT = 300, 600, 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("lgg", type=Path)
    parser.add_argument("configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sets = test_sets(args.data, args.lgg, args.seed)
    report = {"epochs": args.epochs, "seed": args.seed, "n": {k: len(v) for k, v in sets.items()}, "configs": {}}
    calls = {}
    for name in args.configs:
        folder = args.out / name
        bundle = train(folder, args.data / "brain-tumor-mri" / "Training", CONFIGS[name], args.epochs, args.seed)
        rows = predict(bundle, sets, folder / "predictions.csv")
        report["configs"][name] = {"settings": CONFIGS[name], **scores(rows, args.seed)}
        report["configs"][name]["train_seconds"] = json.loads((folder / "train_seconds.json").read_text())
        calls[name] = rows
    first = args.configs[0]
    for name in args.configs[1:]:
        report["configs"][name]["against_" + first] = paired(calls[first], calls[name], args.seed)
    tests = [report["configs"][name]["against_" + first]["mcnemar"] for name in args.configs[1:]]
    for test, adjusted in zip(tests, holm([t["p_value"] for t in tests]), strict=True):
        test["p_holm"] = round(adjusted, 6)  # every option against the first, as one family
    (args.out / "generalise.json").write_text(json.dumps(report, indent=1))
    print_table(report)


def test_sets(data: Path, lgg: Path, seed: int) -> dict[str, list[dict]]:
    """The fixed test items: path, set, true class, group (patient or image), sequence."""
    rng = np.random.default_rng(seed)
    btm = sorted((data / "brain-tumor-mri" / "Testing").glob("*/*.jpg"))
    sets = {"btm-test": [{"path": p, "truth": p.parent.name, "group": p.name} for p in btm]}
    manifest = [r for r in csv.DictReader(open(lgg / "manifest.csv")) if r["status"] == "kept"]
    for seq in SEQUENCES:
        large = [
            r for r in manifest if r["sequence"] == seq and r["class"] == "glioma" and int(r["mask_pixels"]) >= MASK_MIN
        ]
        free = [r for r in manifest if r["sequence"] == seq and r["class"] == "nomask"]
        free = [free[k] for k in sorted(rng.choice(len(free), N_FREE, replace=False))]
        for name, part, truth in ((f"lgg-{seq}", large, "tumour"), (f"lgg-free-{seq}", free, "notumor")):
            sets[name] = [{"path": lgg / r["file"], "truth": truth, "group": r["case"], "sequence": seq} for r in part]
    normals = sorted((data / "alzheimer-mri" / "Non_Demented").glob("*.jpg"))
    sets["alzheimer-normal"] = [
        {"path": normals[k], "truth": "notumor", "group": normals[k].name}
        for k in sorted(rng.choice(len(normals), N_NORMAL, replace=False))
    ]
    return sets


def train(folder: Path, training: Path, settings: dict, epochs: int, seed: int) -> Path:
    """The bundle of one configuration (trained unless it is there), and its training time in train_seconds.json."""
    bundle = folder / "bundle"
    if (folder / "train_seconds.json").exists():
        return bundle
    folder.mkdir(parents=True, exist_ok=True)
    params = folder / "params.json"
    params.write_text(json.dumps({"transfer-finetune": {**settings, "epochs": epochs}}))
    brainmri = Path(sys.executable).with_name("brainmri")
    start = time.perf_counter()
    command = [str(brainmri), "train", str(training), "--method", "transfer-finetune", "--params", str(params)]
    subprocess.run([*command, "--out", str(bundle), "--device", "cpu", "--seed", str(seed), "-q"], check=True)
    (folder / "train_seconds.json").write_text(json.dumps(round(time.perf_counter() - start, 1)))
    return bundle


def predict(bundle: Path, sets: dict, out: Path) -> list[dict]:
    """Every test item with its probabilities, call and OOD flag (read from ``out`` when it is there)."""
    if not out.exists():
        model = load_model(bundle, device="cpu")
        rows = []
        for name, items in sets.items():
            for start in range(0, len(items), 256):
                batch = items[start : start + 256]
                proba, ood = model.predict_with_ood([str(i["path"]) for i in batch])
                for k, item in enumerate(batch):
                    p = dict(zip(model.classes_, proba[k].tolist(), strict=True))
                    rows.append(
                        {
                            "set": name,
                            "path": str(item["path"]),
                            "group": item["group"],
                            "truth": item["truth"],
                            "predicted": max(p, key=p.get),
                            "p_notumor": p["notumor"],
                            "confidence": max(p.values()),
                            "flagged": bool(ood is not None and ood[k] > FLAG_QUANTILE),
                        }
                    )
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    rows = list(csv.DictReader(open(out)))
    for r in rows:
        r["p_notumor"], r["confidence"] = float(r["p_notumor"]), float(r["confidence"])
        r["flagged"] = r["flagged"] == "True"
        r["tumour_call"] = r["predicted"] != "notumor"
        r["right"] = (
            r["tumour_call"] == (r["truth"] != "notumor") if r["set"] != "btm-test" else r["predicted"] == r["truth"]
        )
    return rows


def _rate(rows: list[dict], key: str = "right") -> float:
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def _balanced(rows: list[dict]) -> float:
    sensitivity = np.mean([_rate([r for r in rows if r["set"] == f"lgg-{s}"]) for s in SEQUENCES])
    return float((sensitivity + _rate([r for r in rows if r["set"] == "alzheimer-normal"])) / 2)


def _auc_ece(rows: list[dict]) -> tuple[float, float]:
    """AUC and ECE of the tumour probability, large gliomas against normals (brainmri's own metrics)."""
    part = [r for r in rows if r["set"] in {f"lgg-{s}" for s in SEQUENCES} | {"alzheimer-normal"}]
    truth = ["tumour" if r["truth"] != "notumor" else "normal" for r in part]
    proba = np.array([[r["p_notumor"], 1 - r["p_notumor"]] for r in part])
    metrics = classification_metrics(truth, proba, ["normal", "tumour"])["metrics"]
    return float(metrics["auc"]), float(metrics["ece"])


def _external(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["set"] != "btm-test"]


def _draws(rows: list[dict], seed: int) -> list[np.ndarray]:
    """Bootstrap resamples of the external rows by group: arrays of row indices."""
    groups = sorted({r["group"] for r in rows})
    members = {g: [] for g in groups}
    for k, r in enumerate(rows):
        members[r["group"]].append(k)
    rng = np.random.default_rng(seed)
    return [
        np.concatenate([members[groups[g]] for g in rng.integers(0, len(groups), len(groups))]) for _ in range(N_BOOT)
    ]


def scores(rows: list[dict], seed: int) -> dict:
    external = _external(rows)
    draws = _draws(external, seed)
    boot = [_balanced([external[k] for k in d]) for d in draws]
    auc, ece = _auc_ece(external)
    wrong = [r for r in external if not r["right"]]
    return {
        "btm_test_accuracy": round(_rate([r for r in rows if r["set"] == "btm-test"]), 4),
        "glioma_called_tumour": {s: round(_rate([r for r in rows if r["set"] == f"lgg-{s}"]), 4) for s in SEQUENCES},
        "tumour_free_called_notumor": round(_rate([r for r in rows if r["set"].startswith("lgg-free")]), 4),
        "normal_called_notumor": round(_rate([r for r in rows if r["set"] == "alzheimer-normal"]), 4),
        "balanced_accuracy": round(_balanced(external), 4),
        "balanced_accuracy_ci": [round(float(v), 4) for v in np.percentile(boot, [2.5, 97.5])],
        "auc": round(auc, 4),
        "ece": round(ece, 4),
        "flagged": round(_rate(external, "flagged"), 4),
        "wrong_flagged": round(_rate(wrong, "flagged"), 4),
    }


def paired(base: list[dict], other: list[dict], seed: int) -> dict:
    """The balanced-accuracy difference (other - base) with a paired bootstrap interval, and McNemar's test."""
    a, b = _external(base), _external(other)
    assert [r["path"] for r in a] == [r["path"] for r in b]
    draws = _draws(a, seed)
    diff = [_balanced([b[k] for k in d]) - _balanced([a[k] for k in d]) for d in draws]
    test = mcnemar([r["right"] for r in b], [r["right"] for r in a])
    return {
        "difference": round(_balanced(b) - _balanced(a), 4),
        "ci": [round(float(v), 4) for v in np.percentile(diff, [2.5, 97.5])],
        "share_of_draws_above_0": round(float(np.mean(np.array(diff) > 0)), 4),
        "mcnemar": test,
    }


def print_table(report: dict) -> None:
    print(f"transfer-finetune, {report['epochs']} epochs, seed {report['seed']}; test sets {report['n']}")
    print(
        "config | btm test | glioma t1pre / flair / t1post | free->notumor | normal->notumor | bal. acc. [CI] | AUC | "
        "ECE | flagged | wrong flagged | train s"
    )
    for name, c in report["configs"].items():
        g = c["glioma_called_tumour"]
        ci = c["balanced_accuracy_ci"]
        print(
            f"{name} | {c['btm_test_accuracy']:.3f} | {g['t1pre']:.3f} / {g['flair']:.3f} / {g['t1post']:.3f} | "
            f"{c['tumour_free_called_notumor']:.3f} | {c['normal_called_notumor']:.3f} | "
            f"{c['balanced_accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | {c['auc']:.3f} | {c['ece']:.3f} | "
            f"{c['flagged']:.3f} | {c['wrong_flagged']:.3f} | {c['train_seconds']:.0f}"
        )
    for name, c in report["configs"].items():
        for key, value in c.items():
            if key.startswith("against_"):
                print(f"{name} {key}: {value}")


if __name__ == "__main__":
    main()
