"""TensorFlow's native start-up lines are dropped from stderr; real native
errors and everything else pass through."""

from __future__ import annotations

import pytest

from dlcli.cli.stderr_filter import is_noise

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796222466.154728    2678 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1796222466.155813    2678 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    b"E0000 00:00:1796222471.427307    2678 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"E0000 00:00:1796224167.414212   13042 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512. Falling back to the "
    b"default Eigen-based implementation if present.",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
]
KEPT = [
    b"E0000 00:00:1796224167.414212   13042 util.cc:131] something else went wrong",
    b"W0000 00:00:1796224167.414212   13042 op_kernel.cc:1857] OP_REQUIRES failed: OOM when allocating tensor",
    b"error: config.yaml:3: data.path: does not exist",
    b"epoch 1/3 accuracy=0.8365 loss=0.6372",
]


@pytest.mark.parametrize("line", NOISE)
def test_start_up_chatter_is_dropped(line):
    assert is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_everything_else_passes(line):
    assert not is_noise(line)
