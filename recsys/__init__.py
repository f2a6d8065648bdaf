"""recsys: the library behind the nightly recommendation pipeline (no Prefect in here).

Read the latest published table with ``recsys.publish.read_latest(lake_root)``.
"""
