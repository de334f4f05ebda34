"""Keep TensorFlow's native start-up chatter off the user's terminal.

The pip TensorFlow build logs from C++ before its own log level applies
("All log messages before absl::InitializeLog() ...", "Could not find cuda
drivers", "failed call to cuInit" on machines without a GPU). Those lines
are written straight to file descriptor 2, so `TF_CPP_MIN_LOG_LEVEL`
cannot stop them. While a command runs, fd 2 is a pipe read by a thread
that drops exactly those lines and passes everything else through; Python's
own `sys.stderr` (Rich, progress bars, error messages) keeps writing to the
real terminal, so colour and terminal detection are unaffected.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Iterator

# Native log lines: "I0000 00:00:1795969110.707612    4119 cudart_stub.cc:31] ..."
_NATIVE = re.compile(rb"^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+)\.cc:\d+\] ")
_NOISY_SOURCES = {
    b"cudart_stub",
    b"cuda_platform",
    b"cuda_executor",
    b"cuda_diagnostics",
    b"cuda_dnn",
    b"cuda_fft",
    b"cuda_blas",
    b"cpu_feature_guard",
    b"port",
    b"gpu_device",
    b"cuda_driver",
}
_NOISE = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(rb"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."),
    # Logged as an error, but only says an int32 op runs on Eigen instead of oneDNN.
    re.compile(rb"^E\d{4} [\d:.]+\s+\d+ util\.cc:\d+\] oneDNN supports DT_\w+ only on platforms with AVX-512\."),
)


def is_noise(line: bytes) -> bool:
    """True for TensorFlow's native start-up lines that tell a user nothing."""
    if any(p.match(line) for p in _NOISE):
        return True
    m = _NATIVE.match(line)
    if not m:
        return False
    level, source = m.group(1), m.group(2)
    return level == b"I" or source in _NOISY_SOURCES


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Filter fd 2 for the duration of the block (no-op where unsupported)."""
    if os.environ.get("DLCLI_RAW_STDERR") or not hasattr(os, "pipe"):
        yield
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        r, w = os.pipe()
    except OSError:
        yield
        return
    # Python-level writes keep going to the real stderr (same tty-ness).
    old_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding=old_stderr.encoding or "utf-8", errors="backslashreplace")
    os.dup2(w, 2)
    os.close(w)

    def pump() -> None:
        with os.fdopen(r, "rb", buffering=0) as src:
            buf = b""
            while True:
                chunk = src.read(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not is_noise(line))
                if out:
                    os.write(real, out)
            if buf and not is_noise(buf):
                os.write(real, buf)

    thread = threading.Thread(target=pump, name="dlcli-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(real, 2)  # closes the pipe's last write end: the pump ends
        thread.join(timeout=2)
        sys.stderr = old_stderr
        os.close(real)
