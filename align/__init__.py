"""Alignment: the demo model, round orchestration, TRL stage runners, the worker and the ``geoalign`` CLI."""
