"""``import-dags --rewrite``'s edit of DAG files: sensors to the permit's wait, with LibCST (formatting preserved).

``sensors`` rewrites one file's text (pure: text and targets in, text and outcomes out); ``patch`` makes the reviewable
unified diff. The CLI (``coordinator.cli.import_rewrite``) reads and writes the files. LibCST is imported by these
modules only, and they only by the command, so every other command works without it.
"""
