"""The DAGs-folder importer's Airflow adapter: ``import-dags`` loads a folder with Airflow's own loader through it.

Imported lazily by the CLI command only: ``coordinator --help`` and every other command work without Airflow.
"""

from coordinator.airflow_import.loader import LoadedFolder, load_folder

__all__ = ["LoadedFolder", "load_folder"]
