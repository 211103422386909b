"""Sphinx configuration of the documentation site (``make docs``).

The pages are Markdown read by MyST; the reference pages for the CLI and the settings are written from the code at
build time (docs/_ext/coordinator_reference.py), so they cannot drift from what the package does.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))

project = "airflow-etcd-coordinator"
author = "airflow-etcd-coordinator contributors"
copyright = "2026, airflow-etcd-coordinator contributors"  # Sphinx reads this name

extensions = ["myst_parser", "coordinator_reference"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Heading anchors (``#some-heading``) for links between pages and within one, as GitHub renders them.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]
# Every cross-reference must resolve: -n and -W turn a missing one into a failed build.
nitpicky = True

html_theme = "furo"
html_title = "airflow-etcd-coordinator"
smartquotes = False  # option names such as --from stay as typed (no en dashes), quotes stay straight
