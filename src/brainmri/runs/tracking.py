"""``--mlflow [URI]``: a benchmark, a training or a search recorded as an MLflow run.

What a run records: the configuration as parameters (flattened: ``preprocess.size``, ``params.rf.n_estimators``),
every metric of every method with its 95% interval (``rf.accuracy``, ``rf.accuracy.ci_low``,
``rf.accuracy.ci_high``; MLflow keeps one number per key), the outputs as artefacts (``results.json``,
``report.html``, ``predictions.csv``, ``best_params.json``), and for ``train`` the bundle as an MLflow model whose
``pyfunc`` flavour predicts with brainmri's own loader (:class:`~brainmri.runs.mlflow_model.BundleModel`: image
paths in, one probability column per class out). brainmri's version and command are tags. The run is written after
the command's own outputs, so a tracking server that is down costs the record, not the results: the error says so.

The URI is any MLflow tracking URI (a folder, ``sqlite:///mlflow.db``, ``http://host:5000``); without one, MLflow's
own default (``$MLFLOW_TRACKING_URI``, else its local store). The experiment is ``brainmri`` unless
``$MLFLOW_EXPERIMENT_NAME`` names another.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from brainmri.errors import ConfigError
from brainmri.version import __version__

#: The experiment of brainmri's runs when ``$MLFLOW_EXPERIMENT_NAME`` is not set.
EXPERIMENT = "brainmri"
#: MLflow's limit on a parameter's value (longer values are cut, and say so).
MAX_PARAM = 6000


def mlflow_module():
    """The ``mlflow`` module, or a one-line error naming the extra."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError(
            "--mlflow needs the mlflow package; install it with: pip install 'brainmri[mlflow]'"
        ) from None
    return mlflow


def flat_params(settings: dict, prefix: str = "") -> dict[str, str]:
    """``settings`` as MLflow parameters: nested keys joined by dots, values as JSON text (cut to :data:`MAX_PARAM`).

    >>> flat_params({"seed": 0, "preprocess": {"size": 224, "crop": True}, "methods": ["rf"]})
    {'seed': '0', 'preprocess.size': '224', 'preprocess.crop': 'true', 'methods': '["rf"]'}
    """
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name] = text if len(text) <= MAX_PARAM else text[: MAX_PARAM - 12] + "...(cut)"
    return flat


def method_metrics(results: dict) -> dict[str, float]:
    """Every method's metrics with their intervals, keyed ``method.metric`` (and ``.ci_low``, ``.ci_high``)."""
    metrics = {}
    for name, entry in results.get("methods", {}).items():
        for metric, value in entry.get("metrics", {}).items():
            for part, key in (("value", ""), ("ci_low", ".ci_low"), ("ci_high", ".ci_high")):
                if isinstance(value.get(part), (int, float)):
                    metrics[f"{_key(name)}.{metric}{key}"] = float(value[part])
    return metrics


def log_run(
    uri: str | None,
    *,
    command: str,
    name: str,
    config: dict,
    metrics: dict[str, float],
    artifacts: list[Path],
    bundle: Path | None = None,
) -> str:
    """Record one command as an MLflow run; its id.

    ``bundle`` (``train``) is also logged as an MLflow model (artefact path ``model``) with
    :class:`~brainmri.runs.mlflow_model.BundleModel`.

    Raises
    ------
    ConfigError
        mlflow is missing, or the tracking store refuses the run (unreachable server, unwritable folder).
    """
    mlflow = mlflow_module()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # brainmri's progress is on stderr already
    try:
        with warnings.catch_warnings():
            # MLflow's and its database layer's notes about their own internals (deprecations) are not the user's.
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")  # e.g. on untyped pyfunc input
            return _log(mlflow, uri, command, name, config, metrics, artifacts, bundle)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow's errors are of many kinds; each becomes one line
        where = uri or mlflow.get_tracking_uri()
        raise ConfigError(
            f"--mlflow {where}: the run was not recorded ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
            "the command's own outputs are written; check the tracking URI or server and run again"
        ) from None


def _log(mlflow, uri, command, name, config, metrics, artifacts, bundle) -> str:
    """:func:`log_run`'s calls of MLflow."""
    if uri:
        mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags({"brainmri.version": __version__, "brainmri.command": command})
        mlflow.log_params(flat_params(config))
        if metrics:
            mlflow.log_metrics(metrics)
        for path in artifacts:
            if path.is_file():
                mlflow.log_artifact(str(path))
        if bundle is not None:
            from brainmri.runs.mlflow_model import BundleModel  # imports mlflow.pyfunc: only to log a bundle

            mlflow.pyfunc.log_model(
                name="model", python_model=BundleModel(), artifacts={"bundle": str(bundle)}, pip_requirements=[]
            )
        return run.info.run_id


def _key(name: str) -> str:
    """A method name as an MLflow metric key: spaces become underscores (``glcm-svm tuned by tpe``)."""
    return name.replace(" ", "_")
