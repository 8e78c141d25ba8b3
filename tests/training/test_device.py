import pytest
import torch

from brainmri.errors import ConfigError
from brainmri.training.device import check_threads, resolve_device, torch_threads, tune_malloc


def test_cpu_and_auto_are_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device cuda: torch sees no CUDA GPU.*use --device cpu") as info:
        resolve_device("cuda")
    assert "\n" not in str(info.value)
    assert resolve_device("auto").type != "cuda"


@pytest.mark.parametrize("name", ["gpu", "cpu:0", "tpu", ""])
def test_unknown_devices_are_refused(name):
    with pytest.raises(ConfigError, match="is not a device; use one of auto, cpu, cuda, mps"):
        resolve_device(name)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(threads):
    with pytest.raises(ConfigError, match="--threads must be a positive integer"):
        check_threads(threads)


def test_threads_are_restored_after_the_block():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_malloc_is_tuned_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt exists in glibc only")
    assert tune_malloc() is True


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_is_bfloat16_only_where_the_cpu_has_it(native, monkeypatch, caplog):
    from brainmri.training import batches, device

    monkeypatch.setattr(device, "cpu_has_bf16", lambda: native)
    device._warn_emulated_bf16.cache_clear()
    cpu = torch.device("cpu")
    with caplog.at_level("WARNING", logger="brainmri.training.device"):
        assert batches.autocast_dtype("bf16", cpu) == (torch.bfloat16 if native else None)
        assert batches.autocast_dtype("bf16", cpu) == (torch.bfloat16 if native else None)
    assert batches.autocast_dtype("fp32", cpu) is None and batches.autocast_dtype("auto", cpu) is None
    emulated = [r for r in caplog.records if "no native bfloat16" in r.getMessage()]
    assert len(emulated) == (0 if native else 1)  # said once, not per batch


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    from brainmri.training import device

    for flags, native in (("fpu sse2 avx2 fma", False), ("fpu avx512f avx512_bf16 amx_tile", True)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        real = device.Path
        monkeypatch.setattr(device, "Path", lambda p, real=real, info=info: info if p == "/proc/cpuinfo" else real(p))
        device.cpu_has_bf16.cache_clear()
        assert device.cpu_has_bf16() is native
    device.cpu_has_bf16.cache_clear()
