"""Run the loader in the estate's interpreter (``--python``, else the CLI's own) and read its JSON answer.

Rules:
- **A child process.** The folder always loads in a child process: the estate's own Python (an Airflow 2.11 venv, an
  image's python) where its providers are installed, or this one. The CLI's process never imports Airflow, so Airflow's
  logging, its ``sys.path`` and ``sys.modules`` changes and whatever a DAG file does at import stay in the child.
- **This package's loader.** The child runs this package's loader from this package's folder, whatever that Python has
  installed: only the ``coordinator`` package is put in its ``sys.modules`` (not this environment's site-packages), so
  the estate's own libraries answer every other import. The loader needs Python 3.11+, pydantic 2 and croniter there
  (Airflow 2.9+ brings croniter; pydantic only with its ``[pydantic]`` extra, so a plain Airflow 2.11 lacks it); without
  them, or without Airflow, the child answers what to install and the command exits 2.
- **No working directory on the path.** The working directory is not put on the child's ``sys.path`` (``python -c``
  would): Airflow's scheduler does not have it either, and an estate's ``yaml/`` folder there would shadow PyYAML.
- **Airflow's output on request.** Airflow's output (stderr) is shown only with ``verbose``; when the child dies without
  an answer, the error quotes the end of it. A load has a time limit, so nothing waits forever.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import coordinator
from coordinator.airflow_import import wire
from coordinator.airflow_import.loader import LoadedFolder
from coordinator.errors import ConfigError

#: A 700-file estate loads in about a minute on two cores; an hour only stops a load that hangs (a DAG file that
#: waits on a network call at import, say).
LOAD_TIMEOUT_S = 3600.0
#: Lines of the child's stderr quoted when it died without an answer.
TAIL_LINES = 15
PACKAGE = Path(coordinator.__file__).resolve().parent

# Written for any Python 3 (the version check must run before the package's 3.11 syntax is compiled).
BOOTSTRAP = """
import importlib.util, json, sys
ANSWER = "@ANSWER@"
if sys.path and sys.path[0] == "":
    del sys.path[0]
def answer(error):
    sys.stdout.write(ANSWER + json.dumps({"error": error}) + "\\n")
    sys.exit(0)
if sys.version_info < (3, 11):
    answer("this Python (%s) is %d.%d: import-dags's loader needs Python 3.11 or newer; use an environment of the "
           "estate with Python 3.11+" % (sys.executable, sys.version_info[0], sys.version_info[1]))
if importlib.util.find_spec("airflow") is None:
    answer("Airflow is not installed in this Python environment (%s): import-dags loads the folder with Airflow's "
           "own DAG loader; point --python at the python of an environment where your DAGs run (a scheduler "
           "image's, an Airflow venv's)" % sys.executable)
package = sys.argv[1]
spec = importlib.util.spec_from_file_location("coordinator", package + "/__init__.py",
                                              submodule_search_locations=[package])
module = importlib.util.module_from_spec(spec)
sys.modules["coordinator"] = module
spec.loader.exec_module(module)
try:
    from coordinator.airflow_import.__main__ import main
except ImportError as exc:
    answer("the loader cannot import %r in %s (%s): import-dags's loader needs pydantic 2 and croniter in the "
           "estate's Python; Airflow 2.9+ brings croniter, but pydantic only with its [pydantic] extra (not in a "
           "plain Airflow 2.11): install them there with pip install 'pydantic>=2.7,<3' 'croniter>=2', or "
           "apache-airflow[pydantic] under Airflow's constraints file for that version"
           % (exc.name, sys.executable, exc))
sys.exit(main(sys.argv[1:]))
""".replace("@ANSWER@", wire.ANSWER)


def run_loader(folder: Path, python: Path, *, verbose: bool = False, timeout: float = LOAD_TIMEOUT_S) -> LoadedFolder:
    """The folder as ``python``'s Airflow loads it (every rule of the module); ConfigError when it cannot."""
    command = [str(python), "-c", BOOTSTRAP, str(PACKAGE), str(folder.resolve())]
    try:
        done = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=None if verbose else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
    except OSError as exc:
        raise ConfigError(f"--python {python}: cannot run it: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"loading {folder} with {python} took more than {timeout:.0f} s: a DAG file may wait at import "
            f"(run with --verbose to see where)"
        ) from None
    line = wire.answer_line(done.stdout)
    if done.returncode == 0 and line is not None:
        try:
            answer = wire.loads(line)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"the loader in {python} answered something unreadable: {exc}") from None
        if isinstance(answer, str):
            raise ConfigError(answer)
        return answer
    tail = "\n".join((done.stderr or "").strip().splitlines()[-TAIL_LINES:])
    raise ConfigError(
        f"the loader died in {python} (exit {done.returncode}) without an answer"
        + (f"; its last lines:\n{tail}" if tail else "")
        + "\n(--verbose shows all of Airflow's output)"
    )
