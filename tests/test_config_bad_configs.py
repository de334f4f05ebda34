"""Every bad config in tests/bad_configs/ through the real `dlcli validate`.

Each fixture starts with comment lines that say what must happen:

    # expect: <fragment of the one error line>
    # line: <the line the error names>        (optional)
    # key: <the dotted key the error names>   (optional)
    # where: <file:line fragment>             (optional, e.g. a base file)
    # set: <key=value passed as --set>        (optional)
    # <what is wrong, in words>
"""

from __future__ import annotations

from pathlib import Path

import pytest

BAD = Path(__file__).resolve().parent / "bad_configs"
FIXTURES = sorted(BAD.glob("*.yaml"))


def _header(path: Path) -> dict[str, str]:
    info: dict[str, str] = {}
    for raw in path.read_bytes().splitlines():
        line = raw.decode("utf-8", "replace")
        if not line.startswith("# "):
            break
        key, sep, value = line[2:].partition(": ")
        if sep and key in ("expect", "line", "key", "where", "set"):
            info[key] = value
    return info


def test_corpus_is_large_and_documented():
    assert len(FIXTURES) >= 40
    for path in FIXTURES:
        assert "expect" in _header(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_bad_config_fails_with_one_located_line(path, runner, app, tmp_cwd):
    info = _header(path)
    args = ["validate", str(path)]
    if "set" in info:
        args += ["--set", info["set"]]
    result = runner.invoke(app, args)

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ")
    assert "Traceback" not in result.output
    assert info["expect"] in line
    if "where" in info:
        assert info["where"] in line
    elif "set" in info:
        assert "--set" in line
    elif "line" in info:
        assert f"{path.name}:{info['line']}: " in line
    else:
        assert f"{path.name}" in line
    if "key" in info:
        assert f": {info['key']}: " in line
    # Nothing is written where the command ran (and no tag was executed).
    assert list(tmp_cwd.iterdir()) == []
