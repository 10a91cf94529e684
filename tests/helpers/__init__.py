"""Shared test helpers: tiny random checkpoints and synthetic data (no test collects here).

Test modules import these as `helpers.checkpoints` and `helpers.data` (pytest puts tests/ on
sys.path). Tests never import `benchmarks`: the generators the suite needs are copied here.
"""
