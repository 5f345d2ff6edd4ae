"""Suite-wide test settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test runs torch on one intra-op thread: on a loaded 2-core CI machine two threads wait for each
    other and the many tiny tensor ops of these tests run 10-50x slower. The setting is restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def start_slow_subprocesses_early(request, tmp_path_factory):
    """A selected test module with a `start_early(tmp_path_factory)` function gets it called before the first
    test: its long subprocess (e.g. a whole Snakemake study) then runs on the second core beside the suite's
    single-threaded tests, and its test only waits for the result. Whatever is still running at the end of
    the session (a test that never waited, -x) is stopped."""
    modules = {item.module for item in request.session.items if hasattr(item.module, "start_early")}
    started = [module.start_early(tmp_path_factory) for module in sorted(modules, key=lambda m: m.__name__)]
    yield
    for handle in started:
        handle.stop()
