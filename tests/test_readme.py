"""The README's Python code blocks run, in order, as one script: they cannot go stale.

A block whose first line is ``# NAME.py`` (a plugin file the text describes) is written to
that file instead of run; so is a TOML block whose first line is ``# NAME.toml`` (a study
file the next blocks load). A block preceded by the line ``<!-- readme-test: skip -->`` is
left out (for code that would take long; none does today)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
SKIP = "<!-- readme-test: skip -->"


def python_blocks(text: str) -> list[tuple[str, bool]]:
    """(code, skipped) for each ```python block, in order."""
    out = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        before = text[: m.start()].rstrip().rsplit("\n", 1)[-1].strip()
        out.append((m.group(1), before == SKIP))
    return out


def test_readme_has_python_blocks_and_the_parser_sees_markers():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 4
    assert python_blocks(f"x\n{SKIP}\n```python\n1\n```\n") == [("1\n", True)]


def test_readme_python_blocks_compile_and_name_real_attributes():
    """The cheap check, in ``make test``: every block compiles, and every ``ablab.X``,
    ``study.X`` and ``results.X`` it names exists."""
    import dataclasses
    import importlib.util

    import ablab
    from ablab.results import StudyResults

    Study = ablab.Study  # what ablab.load_study gives: the study plus run (ablab.runner)
    owners = {"ablab": ablab, "study": Study, "results": StudyResults}
    for code, _ in python_blocks(README.read_text()):
        compile(code, "README.md", "exec")
        for owner, attr in re.findall(r"\b(ablab|study|results)\.(\w+)", re.sub(r"#.*", "", code)):
            cls = owners[owner]
            fields = {f.name for f in dataclasses.fields(cls)} if owner == "study" else set()
            submodule = owner == "ablab" and importlib.util.find_spec(f"ablab.{attr}")
            assert hasattr(cls, attr) or attr in fields or submodule, (
                f"README names {owner}.{attr}"
            )


@pytest.mark.slow  # trains the README's 12-run study and writes its report: minutes here
def test_readme_python_blocks_run(tmp_path):
    script = []
    for code, skipped in python_blocks(README.read_text()):
        first = code.split("\n", 1)[0]
        m = re.fullmatch(r"#\s*(\w+\.py)\b.*", first)
        if m:
            (tmp_path / m.group(1)).write_text(code)
        elif not skipped:
            script.append(code)
    for m in re.finditer(r"^```toml\n#\s*(\w[\w.-]*\.toml)\n(.*?)^```", README.read_text(),
                         flags=re.S | re.M):
        (tmp_path / m.group(1)).write_text(m.group(2))
    main = tmp_path / "readme_blocks.py"
    main.write_text(  # runs spawn worker processes: the code goes under a main guard
        "CODE = " + repr("\n".join(script)) + "\n"
        'if __name__ == "__main__":\n'
        '    exec(compile(CODE, "README.md", "exec"), {"__name__": "readme"})\n'
    )
    proc = subprocess.run([sys.executable, str(main)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "runs" in proc.stdout and "of" in proc.stdout  # printed what the README says
