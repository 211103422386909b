"""``import-dags``' pure half: facts recorded while a DAGs folder loads, turned into grids, edges and findings.

One module an idea: ``facts`` (what the loader records), ``schedule`` (schedules -> grids), ``fit`` (an edge proved
against a sensor's own date arithmetic), ``edges`` and ``operators`` (sensors, markers, triggers, assets -> edges),
``translate`` (the whole folder -> a spec and a report), ``merge`` (onto an existing file). Nothing is re-exported.
"""
