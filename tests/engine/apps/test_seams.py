"""apps/ passes typed values between its steps: no function returns a tuple of more than two values, none takes
more than eight parameters (a dataclass carries what belongs together), and the heatmap-folder convention and the
"run a batch or raise" step are spelled once."""

import ast
import re
from pathlib import Path

APPS = Path(__file__).resolve().parents[3] / "tonno_engine" / "apps"
MAX_PARAMETERS = 8
MAX_RETURNED = 2


def _functions():
    for path in sorted(APPS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def _parameters(fn) -> int:
    a = fn.args
    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def _long_tuples(fn):
    """``return`` statements of ``fn`` itself (not of functions inside it) with a tuple of more than two values."""
    todo = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple) and len(node.value.elts) > MAX_RETURNED:
            yield node.lineno
        todo.extend(ast.iter_child_nodes(node))


def test_no_function_in_apps_returns_a_tuple_of_more_than_two_values():
    found = [f"{path.name}:{line} {fn.name}" for path, fn in _functions() for line in _long_tuples(fn)]
    assert found == [], "return a dataclass instead: " + ", ".join(found)


def test_no_function_in_apps_takes_more_than_eight_parameters():
    found = [f"{path.name}:{fn.lineno} {fn.name} ({n})" for path, fn in _functions()
             if (n := _parameters(fn)) > MAX_PARAMETERS]
    assert found == [], "pass a dataclass instead: " + ", ".join(found)


def test_the_checks_catch_a_planted_offender():
    planted = ast.parse("def f(a, b, c, d, e, f, g, h, i):\n    def inner():\n        return 1, 2, 3\n"
                        "    return a, b, c\n").body[0]
    assert _parameters(planted) == 9 and list(_long_tuples(planted)) == [4]


def test_the_heatmap_file_name_is_spelled_once():
    """``<case>_<label>.nii.gz`` lives in tonno_engine.data.heatmap_folder; apps/ and evaluation call it."""
    engine = APPS.parent
    # (the label has no format spec: nnU-Net's image name {case}_{channel:04d} is another name)
    spelled = re.compile(r"f\"\{[^}]*case[^}]*\}_\{[^}:]*\}(\.nii\.gz|\{[A-Z_]*ENDING\})\"")
    found = [str(p.relative_to(engine)) for p in sorted(engine.rglob("*.py")) if spelled.search(p.read_text())]
    assert found == ["data/heatmap_folder.py"]


def test_run_a_batch_or_raise_is_written_once():
    raising = [p.name for p in sorted(APPS.glob("*.py")) if re.search(r"\.failed\[0\]", p.read_text())]
    assert raising == []
