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
