"""The dependencies page: the graph and each DAG's state for a partition, as server-rendered HTML + SVG.

- ``model``: pure, graph + view + plan -> typed page values (states, layout, details).
- ``layout``: pure, the layered layout (columns by depth, rows by barycentre) of DAGs and shared assets alike.
- ``assets``: pure, the recorded asset events and the delivery ledger -> the shared assets' nodes and their places.
- ``render``: pure, page values -> one self-contained HTML document (no asset from the internet, no JavaScript needed);
  ``render_assets`` draws the shared assets in it, ``palette`` holds the sizes and colours both use.
- ``service``: reads one etcd snapshot per request and renders; no web framework, no Airflow, so the Airflow plugin
  (``coordinator.airflow_plugin.page_app``) and, later, the watcher's HTTP listener serve the same page.
"""
