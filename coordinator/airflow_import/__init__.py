"""The DAGs-folder importer's Airflow adapter: ``import-dags`` loads a folder with Airflow's own loader through it.

``process`` (the CLI's side) runs ``loader`` in a child process, the estate's interpreter or the CLI's own, and reads
its answer (``wire``); nothing here imports Airflow at module level, so ``coordinator --help`` and every other command
work without Airflow.
"""

from coordinator.airflow_import.loader import LoadedFolder, load_folder

__all__ = ["LoadedFolder", "load_folder"]
