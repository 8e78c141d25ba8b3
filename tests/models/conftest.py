import json

import pytest

from brainmri.cli import main


@pytest.fixture
def benchmark_end_to_end(demo_data, tmp_path, capsys):
    """``run(methods, method, settings, size)``: ``brainmri benchmark`` on the demo data (2-fold CV) with
    ``method``'s ``settings`` as ``--params``; checks what every such run must show and returns the method's
    entry of results.json."""

    def run(methods: str, method: str, settings: dict, size: int) -> dict:
        params = ",".join(f"{method}.{k}={json.dumps(v)}" for k, v in settings.items())
        code = main(
            [
                "benchmark",
                str(demo_data),
                "--methods",
                methods,
                "--cv",
                "2",
                "--params",
                params,
                "--out",
                str(tmp_path / "out"),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--jobs",
                "1",
                "--n-boot",
                "20",
                "--size",
                str(size),
            ]
        )
        assert code == 0
        results = json.loads((tmp_path / "out" / "results.json").read_text())
        entry = results["methods"][method]
        assert 0 <= entry["metrics"]["accuracy"]["value"] <= 1
        assert results["config"]["params"] == {method: settings}
        assert method in capsys.readouterr().out
        return entry

    return run
