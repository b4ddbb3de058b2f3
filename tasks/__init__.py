"""Prefect tasks of align4d: one per pipeline stage, passing URIs and small JSON, never tensors.

Each task loads its inputs from storage, calls the matching stage of ``align4d_core`` and writes
its outputs and ``done.json`` (DESIGN.md §1, §2). The stages arrive with the orchestration issue;
this package exists now so that the distribution's layout is fixed from the start.
"""
