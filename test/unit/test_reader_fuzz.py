"""Fuzzing the g2o and BAL readers: bad input gets exactly one typed error, never another
exception, never a hang, never a partial result; the CLI prints one line and exits 1.

Explicit cases cover each class of bad input named in the issue (truncated lines, NaN/inf, huge
and negative ids, duplicate vertices, edges to missing vertices, empty files, binary garbage,
CRLF line endings, tabs); Hypothesis mutates valid files at random (deterministic: derandomized).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mp_slam_ros.cli.main import main
from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.io.bal import BALProblem, read_bal
from mp_slam_ros.io.g2o import read_g2o

_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_INFO_3 = "400 0 0 400 0 900"
_INFO_6 = "100 0 0 0 0 0 100 0 0 0 0 100 0 0 0 900 0 0 900 0 900"
_G2O_2D = (
    "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0.1\nVERTEX_SE2 2 2 0 0.2\n"
    f"EDGE_SE2 0 1 1 0 0.1 {_INFO_3}\nEDGE_SE2 1 2 1 0 0.1 {_INFO_3}\nEDGE_SE2 0 2 2 0 0.2 {_INFO_3}\nFIX 0\n"
)
_G2O_3D = (
    "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 1 1 0 0 0 0 0 1\n"
    f"EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 {_INFO_6}\n"
)
_EDGES_ONLY_2D = "".join(line + "\n" for line in _G2O_2D.splitlines() if line.startswith("EDGE"))
_BAL = "2 2 3\n0 0 1.5 -2.0\n1 0 0.5 1.0\n1 1 -3.0 2.5\n" + "\n".join(
    ["0.01", "0.02", "0.03", "0.1", "0.2", "-5", "500", "0", "0"] * 2 + ["1", "2", "3", "-1", "0.5", "2"]
) + "\n"


def _write(tmp_path: Path, content: str | bytes, name: str = "fuzz.txt") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
    return path


def _edge_lines(text: str) -> int:
    """How many lines of ``text`` are pose-graph edges (what a complete graph must hold)."""
    lines = text.removeprefix("\ufeff").splitlines()
    return sum(1 for line in lines if line.split("#", 1)[0].split()[:1] in (["EDGE_SE2"], ["EDGE_SE3:QUAT"]))


def _check_g2o(path: Path, text: str | None, strict: bool) -> None:
    """A complete, valid graph or one FileFormatError: nothing else."""
    try:
        graph = read_g2o(path, strict=strict)
    except FileFormatError as error:
        assert error.path == str(path) and "\n" not in str(error)
        return
    graph.validate(require_connected=False)
    if text is not None:
        assert graph.num_edges == _edge_lines(text)


def _check_bal(path: Path) -> None:
    try:
        bal = read_bal(path)
    except FileFormatError as error:
        assert error.path == str(path) and "\n" not in str(error)
        return
    _assert_complete_bal(bal)


def _assert_complete_bal(bal: BALProblem) -> None:
    num_cams, num_points = len(bal.camera_params), len(bal.points)
    assert bal.camera_params.shape == (num_cams, 9) and bal.points.shape == (num_points, 3)
    assert bal.obs_xy.shape == (len(bal.obs_cam), 2) == (len(bal.obs_point), 2)
    for values in (bal.camera_params, bal.points, bal.obs_xy):
        assert np.all(np.isfinite(values))
    assert np.all((bal.obs_cam >= 0) & (bal.obs_cam < num_cams))
    assert np.all((bal.obs_point >= 0) & (bal.obs_point < num_points))


# ---- explicit cases ---------------------------------------------------------------------------

def _truncations(text: str) -> list[str]:
    """``text`` with one line cut after each of its tokens (a file written halfway)."""
    lines = text.splitlines()
    cases = []
    for index, line in enumerate(lines):
        tokens = line.split()
        cases += [
            "\n".join(lines[:index] + [" ".join(tokens[:cut])] + lines[index + 1:]) + "\n"
            for cut in range(1, len(tokens))
        ]
    return cases


_BAD_G2O = {
    "empty": "",
    "blank": "\n \t\r\n# only a comment\n",
    "nan": _G2O_2D.replace("1 0 0.1", "nan 0 0.1", 1),
    "inf": _G2O_3D.replace("1 0 0 0 0 0 1 1", "1 inf 0 0 0 0 1 1"),
    "overflow": _G2O_2D.replace("400 0 0", "1e400 0 0", 1),
    "huge-id-float": _G2O_2D.replace("VERTEX_SE2 2 ", "VERTEX_SE2 1e30 "),
    "huge-id-int": _G2O_2D.replace("VERTEX_SE2 2 ", f"VERTEX_SE2 {2**70} "),
    "id-past-int64": _EDGES_ONLY_2D.replace("EDGE_SE2 1 2", f"EDGE_SE2 1 {2**63}"),
    "huge-id-digits": _G2O_2D.replace("VERTEX_SE2 2 ", "VERTEX_SE2 " + "9" * 5000 + " "),
    "negative-id": _G2O_2D.replace("EDGE_SE2 1 2", "EDGE_SE2 -1 2"),
    "duplicate-vertex": _G2O_2D + "VERTEX_SE2 1 5 5 0\n",
    "missing-vertex": _G2O_2D + f"EDGE_SE2 2 9 1 0 0 {_INFO_3}\n",
    "self-edge": _EDGES_ONLY_2D + f"EDGE_SE2 2 2 1 0 0 {_INFO_3}\n",
    "binary": b"\x00\xff\xfe\x89PNG\r\n\x1a\n\x00\x00",
    "nul-in-line": _G2O_2D.replace("VERTEX_SE2 1", "VERTEX_SE2\x00 1"),
    "lowercase-tag": _G2O_2D.replace("EDGE_SE2 0 2", "edge_se2 0 2"),
    "unicode-digit-id": _G2O_2D.replace("VERTEX_SE2 2 ", "VERTEX_SE2 \u0662 "),
    "mixed-dims": _G2O_2D + _G2O_3D,
    "zero-information": _G2O_2D.replace(_INFO_3, "0 0 0 0 0 0", 1),
    "bal-file": _BAL,
}
_BAD_G2O.update({f"truncated-{i}": text for i, text in enumerate(_truncations(_G2O_3D))})


@pytest.mark.parametrize("content", list(_BAD_G2O.values()), ids=list(_BAD_G2O))
def test_bad_g2o_files_raise_one_file_format_error(tmp_path: Path, content: str | bytes) -> None:
    path = _write(tmp_path, content, "bad.g2o")
    for strict in (False, True):
        with pytest.raises(FileFormatError) as caught:
            read_g2o(path, strict=strict)
        assert caught.value.path == str(path)


def test_largest_int64_id_is_accepted(tmp_path: Path) -> None:
    graph = read_g2o(_write(tmp_path, _EDGES_ONLY_2D.replace("EDGE_SE2 1 2", f"EDGE_SE2 1 {2**63 - 1}")))
    assert graph.node_ids.tolist() == [0, 1, 2, 2**63 - 1]


@pytest.mark.parametrize("text", [_G2O_2D, _G2O_3D, _EDGES_ONLY_2D], ids=["2d", "3d", "edges-only"])
def test_crlf_tabs_and_a_byte_order_mark_read_like_the_plain_file(tmp_path: Path, text: str) -> None:
    plain = read_g2o(_write(tmp_path, text, "plain.g2o"), strict=True)
    variant = "\ufeff" + text.replace(" ", " \t").replace("\n", "\r\n")
    other = read_g2o(_write(tmp_path, variant, "variant.g2o"), strict=True)
    np.testing.assert_array_equal(other.T_world_node, plain.T_world_node)
    np.testing.assert_array_equal(other.information, plain.information)


_BAD_BAL = {
    "empty": "",
    "header-only": "2 2 3\n",
    "header-float": "2.0 2 3\n",
    "header-huge": f"{2**70} 2 3\n",
    "header-huge-float": "1e30 2 3\n",
    "header-negative": "-1 2 3\n",
    "nan-observation": _BAL.replace("1.5 -2.0", "nan -2.0"),
    "inf-parameter": _BAL.replace("500", "inf", 1),
    "overflow-parameter": _BAL.replace("500", "1e400", 1),
    "missing-camera": _BAL.replace("\n1 1 -3.0", "\n7 1 -3.0"),
    "missing-point": _BAL.replace("\n1 1 -3.0", "\n1 9 -3.0"),
    "negative-index": _BAL.replace("\n1 1 -3.0", "\n-1 1 -3.0"),
    "huge-index": _BAL.replace("\n1 1 -3.0", f"\n{2**70} 1 -3.0"),
    "float-index": _BAL.replace("\n1 1 -3.0", "\n1.5 1 -3.0"),
    "uneven-observations": _BAL.replace("1 0 0.5 1.0\n1 1 -3.0 2.5", "1 0 0.5\n1.0 1 1 -3.0 2.5"),
    "trailing-values": _BAL + "7\n",
    "binary": b"\x00\xff\xfe\x89PNG\r\n\x1a\n\x00\x00",
    "utf8-garbage": _BAL.replace("500", "\u0665\u0660\u0660", 1),
    "g2o-file": _G2O_2D,
}
_BAD_BAL.update({f"truncated-{cut}": _BAL[:cut] for cut in range(5, len(_BAL) - 2, 7)})


@pytest.mark.parametrize("content", list(_BAD_BAL.values()), ids=list(_BAD_BAL))
def test_bad_bal_files_raise_one_file_format_error(tmp_path: Path, content: str | bytes) -> None:
    path = _write(tmp_path, content, "bad.bal")
    with pytest.raises(FileFormatError) as caught:
        read_bal(path)
    assert caught.value.path == str(path)


def test_bal_crlf_and_tabs_read_like_the_plain_file(tmp_path: Path) -> None:
    plain = read_bal(_write(tmp_path, _BAL, "plain.bal"))
    other = read_bal(_write(tmp_path, _BAL.replace(" ", "\t").replace("\n", "\r\n"), "variant.bal"))
    np.testing.assert_array_equal(other.camera_params, plain.camera_params)
    np.testing.assert_array_equal(other.obs_xy, plain.obs_xy)


@pytest.mark.parametrize(
    ("command", "content"),
    [("pgo", _BAD_G2O[name]) for name in ("empty", "nan", "huge-id-int", "missing-vertex", "binary", "truncated-3")]
    + [("ba", _BAD_BAL[name]) for name in ("empty", "nan-observation", "missing-camera", "binary", "truncated-12")],
)
def test_cli_prints_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: str | bytes
) -> None:
    path = _write(tmp_path, content, "bad.input")
    code = main([command, str(path), "-o", str(tmp_path / "out.txt")])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith(f"mp-slam {command}: error: {path}")


# ---- random mutations (Hypothesis) --------------------------------------------------------------

_TOKENS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "1e30", str(2**63 - 1), str(2**63), str(2**64), str(2**70), "nan", "inf", "-inf", "1e400", "0.5", "-0", "x",
                     "", "EDGE_SE2", "VERTEX_SE2", "FIX", "#", "\t", "\x00", "\ufeff", "1_0", "0x10", "+3"]),
    st.integers(min_value=-(2**65), max_value=2**65).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)


@st.composite
def _mutated(draw: st.DrawFn, base: str) -> str:
    """``base`` with a few tokens replaced, inserted or deleted, lines cut, dropped or doubled,
    and line endings and separators varied."""
    lines = [line.split(" ") for line in base.splitlines()]
    for _ in range(draw(st.integers(1, 4))):
        line = lines[draw(st.integers(0, len(lines) - 1))]
        action = draw(st.sampled_from(["replace", "insert", "delete", "cut", "drop", "double"]))
        position = draw(st.integers(0, max(len(line) - 1, 0)))
        if action == "replace" and line:
            line[position] = draw(_TOKENS)
        elif action == "insert":
            line.insert(position, draw(_TOKENS))
        elif action == "delete" and line:
            del line[position]
        elif action == "cut":
            del line[position:]
        elif action == "drop" and len(lines) > 1:
            lines.remove(line)
        elif action == "double":
            lines.append(list(line))
    separator = draw(st.sampled_from([" ", "\t", "  "]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(separator.join(line) for line in lines) + draw(st.sampled_from(["", newline]))


@_SETTINGS
@given(text=st.one_of(_mutated(_G2O_2D), _mutated(_G2O_3D), _mutated(_EDGES_ONLY_2D)), strict=st.booleans())
def test_mutated_g2o_files_give_a_complete_graph_or_one_typed_error(tmp_path: Path, text: str, strict: bool) -> None:
    _check_g2o(_write(tmp_path, text, "mutated.g2o"), text, strict)


@_SETTINGS
@given(text=_mutated(_BAL))
def test_mutated_bal_files_give_a_complete_problem_or_one_typed_error(tmp_path: Path, text: str) -> None:
    _check_bal(_write(tmp_path, text, "mutated.bal"))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_never_escape_as_another_exception(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, data, "random.bin")
    _check_g2o(path, None, strict=False)
    _check_bal(path)


_IDS = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, 2**63 - 1, 2**63, 2**64, -1]))


@_SETTINGS
@given(pairs=st.lists(st.tuples(_IDS, _IDS), min_size=1, max_size=6))
def test_any_integer_ids_are_read_exactly_or_rejected(tmp_path: Path, pairs: list[tuple[int, int]]) -> None:
    text = "".join(f"EDGE_SE2 {i} {j} 1 0 0 {_INFO_3}\n" for i, j in pairs)
    valid = all(0 <= node < 2**63 for pair in pairs for node in pair) and all(i != j for i, j in pairs)
    try:
        graph = read_g2o(_write(tmp_path, text, "ids.g2o"))
    except FileFormatError:
        assert not valid
        return
    assert valid
    assert graph.edge_from.tolist() == [i for i, _ in pairs] and graph.edge_to.tolist() == [j for _, j in pairs]
