"""What determines a tune's numbers: the protocol (as a benchmark's), the samplers, the budget, the study."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from brainmri.errors import ConfigError
from brainmri.runs.config import BenchmarkConfig, DataSettings
from brainmri.tuning.study import check_sampler, redact


@dataclass(frozen=True, kw_only=True)
class TuneConfig(DataSettings):
    """Everything that determines a tune's numbers (written to ``results.json``).

    Parameters
    ----------
    data, seed, preprocess, duplicates, max_pixels, allow_outside_paths, bids_label, bids_suffix
        As :class:`~brainmri.runs.config.DataSettings`.
    method : str
        Registered method name.
    samplers : tuple of str
        ``--sampler`` (one), or the samplers of ``--compare``.
    trials : int
        Finished (complete or pruned) trials per study.
    split, cv, test_data, n_boot
        The protocol, as in :class:`~brainmri.runs.config.BenchmarkConfig`.
    pruner : {"none", "median", "halving"}
    storage : str or None
        ``--storage``; None keeps the study in ``OUT/study.journal``.
    study : str or None
        ``--study``, the study name (default: the method's name).
    space_file : str or None
        ``--space``: a JSON search space replacing the method's.
    params : dict or None
        ``--params``: settings of the method held fixed during the search
        (e.g. ``epochs``); none of them may be in the search space.
    """

    method: str
    samplers: tuple[str, ...] = ("tpe",)
    trials: int = 30
    split: str = "cv"
    cv: int = 5
    test_data: str | None = None
    n_boot: int = 1000
    pruner: str = "none"
    storage: str | None = None
    study: str | None = None
    space_file: str | None = None
    params: dict | None = None

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "samplers", tuple(self.samplers))
        for name in self.samplers:
            check_sampler(name)
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"--trials must be a positive integer, got {self.trials!r}")
        self.benchmark_config(self.params)  # the protocol's own checks

    def benchmark_config(self, params: dict | None = None) -> BenchmarkConfig:
        """The benchmark configuration of the protocol, with the fixed ``--params`` and ``params`` as the method's settings."""
        params = {**(self.params or {}), **(params or {})}
        return BenchmarkConfig(
            **self.data_settings(),
            methods=(self.method,),
            split=self.split,
            cv=self.cv,
            test_data=self.test_data,
            n_boot=self.n_boot,
            params={self.method: params} if params else None,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samplers"] = list(self.samplers)
        d["storage"] = redact(self.storage) if self.storage else None
        return d
