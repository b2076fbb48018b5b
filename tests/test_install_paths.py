"""Install paths as a newcomer meets them: the package without its optional extras (each feature
that needs one names it, before any work; the core paths work), ``python -m mtgfast`` and the
``mtgfast`` script from another working directory, ``MTGFAST_DATA`` unset or pointing at a missing
folder (the data tests skip naming it; the demo never needs it), and (slow) an editable install
whose ``_core`` imports and rebuilds after a C++ change."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: hides the optional extras from this interpreter the way an environment without them does:
#: ``importlib.util.find_spec`` returns None and ``import ray`` raises ModuleNotFoundError
_HIDE_EXTRAS = """
import importlib.abc, sys
BLOCKED = {"matplotlib", "ray", "triton", "pyarrow", "fastparquet"}
class _Hide(importlib.abc.MetaPathFinder):
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None
    def invalidate_caches(self):
        if hasattr(self.inner, "invalidate_caches"):
            self.inner.invalidate_caches()
sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
"""

_NO_EXTRAS_PROBE = _HIDE_EXTRAS + """
import contextlib, io, json, os, sys
import importlib.util
out = {"found": [m for m in sorted(BLOCKED) if importlib.util.find_spec(m) is not None]}

def cli(*argv):
    from mtgfast import cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(list(argv))
    return {"rc": rc, "err": err.getvalue(), "torch": "torch" in sys.modules}

def error(fn):
    try:
        fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

out["plot"] = cli("demo", "--plot", "pictures")
out["demo_ray"] = cli("demo", "--executor", "ray")
out["study_ray"] = cli("study", "--suite", "digits", "--budget", "2", "--executor", "ray",
                       "--store", "s.db")
from mtgfast.study.executors import RayExecutor, make_executor
out["RayExecutor"] = error(RayExecutor)
out["make_executor"] = error(lambda: make_executor("ray"))
import pandas as pd
from mtgfast import GainTable, group
pd.DataFrame({"mask": [1], "task": ["t0"], "gain": [0.0]}).to_csv("x.parquet")
out["read_parquet"] = error(lambda: GainTable.from_tidy("x.parquet"))
from mtgfast.generate import synthetic_gain_tables
tables = synthetic_gain_tables(4, n_random=None, seed=0)
out["write_parquet"] = error(lambda: tables.valid.to_csv("y.parquet"))
from mtgfast.estimators import MTGNet
net = MTGNet(dim=8, n_estimators=1, max_epochs=3, patience=2, seed=0).fit(tables.valid)
out["triton"] = error(lambda: net.predict(tables.valid.masks, backend="triton"))
# the core paths: search, the self-test, the torch predictor, a study, the demo's parser
g = group(tables.valid.masks, tables.valid.gains, 2)
out["group"] = [int(m) for m in g.groups]
out["predict_shape"] = list(net.predict(tables.valid.masks).shape)
from mtgfast import selftest
out["selftest"] = selftest.main(["--quiet"])
from mtgfast import Study

def train(tasks, seed):
    return {t: 1.0 - 0.01 * len(tasks) for t in tasks}

with Study(train, task_names=["a", "b", "c"], store="study.db", estimator="oracle",
           metric="loss", higher_is_better=False, progress=False) as st:
    st.run()
    out["study_groups"] = [list(grp) for grp in st.result(2).groups]
out["csv"] = error(lambda: tables.valid.to_csv("z.csv"))
print("PROBE " + json.dumps(out))
"""


def _probe(code: str, cwd: Path, env: dict[str, str] | None = None,
           python: str | Path = sys.executable) -> dict:
    proc = subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(lines[-1][6:])


def test_without_the_optional_extras_each_feature_names_its_extra(tmp_path):
    out = _probe(_NO_EXTRAS_PROBE, tmp_path, {**os.environ, "TRITON_INTERPRET": "0"})
    assert out["found"] == []
    for key, extra in (("plot", "plot"), ("demo_ray", "ray"), ("study_ray", "ray")):
        r = out[key]
        assert r["rc"] == 2 and f'pip install "mtgfast[{extra}]"' in r["err"], (key, r)
        assert r["err"].count("\n") == 1 and r["err"].startswith("mtgfast: error: "), (key, r)
        assert not r["torch"], f"{key}: torch was imported before the missing extra was named"
    assert not (tmp_path / "pictures").exists() and not (tmp_path / "s.db").exists()
    for key, extra in (("RayExecutor", "ray"), ("make_executor", "ray"),
                       ("read_parquet", "parquet"), ("write_parquet", "parquet"),
                       ("triton", "triton")):
        assert out[key] is not None and f"mtgfast[{extra}]" in out[key], (key, out[key])
    assert out["read_parquet"].startswith("InputError")
    assert out["group"] and out["predict_shape"][0] == 15 and out["selftest"] == 0
    assert out["study_groups"] and out["csv"] is None


def test_python_m_mtgfast_and_the_script_work_from_another_folder(tmp_path):
    env = {**os.environ}
    for cmd in ([sys.executable, "-m", "mtgfast", "--version"],
                [sys.executable, "-m", "mtgfast", "selftest", "--quiet"]):
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env=env)
        assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    version = subprocess.run([sys.executable, "-m", "mtgfast", "--version"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, env=env).stdout
    import mtgfast

    assert mtgfast.__version__ in version
    script = shutil.which("mtgfast", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the mtgfast script is not installed next to this interpreter (an in-place "
                    "build on PYTHONPATH); pip install . installs it")
    proc = subprocess.run([script, "--version"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0 and mtgfast.__version__ in proc.stdout, (proc.stdout, proc.stderr)


def _run_data_tests(tmp_path: Path, data: str | None) -> tuple[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "MTGFAST_DATA"}
    if data is not None:
        env["MTGFAST_DATA"] = data
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "",
         "tests/test_gains.py::test_release_files_load",
         "tests/test_gains.py::test_parquet_round_trip",
         "tests/test_trainer.py::test_ett_run_forecasts_better_than_the_mean"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    reasons = re.findall(r"^SKIPPED \[\d+\] \S+: (.*)$", proc.stdout, re.M)
    return proc.stdout, reasons


def test_data_tests_skip_naming_a_missing_data_folder(tmp_path):
    missing = tmp_path / "no-such-data"
    out, reasons = _run_data_tests(tmp_path, str(missing))
    assert "3 skipped" in out and "failed" not in out and "error" not in out, out
    assert len(reasons) == 3 and all(f"MTGFAST_DATA={missing} (no such folder)" in r
                                     for r in reasons), reasons


def test_data_tests_skip_naming_the_default_folder_when_unset(tmp_path):
    default = REPO.parent / "shared" / "data"
    if (default / "mtgnet").is_dir():
        pytest.skip(f"the default data folder {default} exists here")
    out, reasons = _run_data_tests(tmp_path, None)
    assert "3 skipped" in out and "failed" not in out, out
    assert len(reasons) == 3 and all(f"at {default}, the default beside the repository" in r
                                     and "set MTGFAST_DATA" in r for r in reasons), reasons


@pytest.mark.slow
def test_the_demo_needs_no_data_folder(tmp_path):
    """``mtgfast demo`` from a folder with no ``../shared`` and ``MTGFAST_DATA`` at a missing
    folder: real training on scikit-learn's bundled digits."""
    env = {**os.environ, "MTGFAST_DATA": str(tmp_path / "missing")}
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "mtgfast", "demo", "--rounds", "1", "--quiet"],
                          cwd=work, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "training runs" in proc.stdout and "group" in proc.stdout.lower(), proc.stdout


_EDIT_PROBE = textwrap.dedent("""
    import json, mtgfast, mtgfast._core as core
    print("PROBE " + json.dumps({"package": mtgfast.__file__, "core": core.__file__,
                                 "doc": core.__doc__}))
""")


@pytest.mark.slow
def test_editable_install_imports_the_core_and_rebuilds_after_a_cxx_change(tmp_path):
    """``pip install --no-build-isolation -e .`` of a copy of the tree into a venv that sees this
    environment's packages (no downloads): ``mtgfast._core`` imports from another folder, the
    script and ``python -m mtgfast`` run, a Python edit is live at once; a C++ edit is live after
    ``pip install -e .`` again (default) or at the next import with ``-Ceditable.rebuild=true``."""
    pytest.importorskip("scikit_build_core")
    import sysconfig

    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        rel = f.decode()
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_parent_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    away = tmp_path / "elsewhere"
    away.mkdir()

    def install(*extra: str) -> None:
        proc = subprocess.run([str(py), "-m", "pip", "install", "--no-build-isolation",
                               "--no-deps", *extra, "-e", str(src)], capture_output=True,
                              text=True, env=env, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    install()
    probe = _probe(_EDIT_PROBE, away, env, py)
    assert probe["package"].startswith(str(src)), probe
    assert "EDITED" not in probe["doc"]
    for cmd in ([str(venv / "bin" / "mtgfast"), "--version"],
                [str(py), "-m", "mtgfast", "selftest", "--quiet"]):
        proc = subprocess.run(cmd, cwd=away, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    # a Python edit: live at once
    with (src / "python" / "mtgfast" / "checks.py").open("a") as fh:
        fh.write("EDITED_MARK = 1\n")
    proc = subprocess.run([str(py), "-c", "import mtgfast.checks as c; print(c.EDITED_MARK)"],
                          cwd=away, capture_output=True, text=True, env=env, timeout=300)
    assert proc.stdout.strip() == "1", proc.stderr
    # a C++ edit: live after reinstalling (an incremental build in build/)
    module_cpp = src / "csrc" / "bindings" / "module.cpp"
    text = module_cpp.read_text()
    assert 'm.doc() = "mtgfast compiled core' in text
    module_cpp.write_text(text.replace('m.doc() = "mtgfast compiled core',
                                       'm.doc() = "EDITED mtgfast compiled core'))
    assert "EDITED" not in _probe(_EDIT_PROBE, away, env, py)["doc"]   # not rebuilt by itself
    install()
    assert _probe(_EDIT_PROBE, away, env, py)["doc"].startswith("EDITED")
    # rebuild on import: scikit-build-core's editable.rebuild (needs no build isolation)
    install("-Ceditable.rebuild=true")
    module_cpp.write_text(text.replace('m.doc() = "mtgfast compiled core',
                                       'm.doc() = "REBUILT mtgfast compiled core'))
    assert _probe(_EDIT_PROBE, away, env, py)["doc"].startswith("REBUILT")
