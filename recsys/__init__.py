"""recsys: the library behind the nightly recommendation pipeline (no Prefect in here).

The published tables are Delta tables under ``<lake>/recommendations/``: read them with any Delta
reader (``deltalake.DeltaTable(path).to_pandas()``), or with ``recsys.publish.read_latest(lake_root)``.
"""
