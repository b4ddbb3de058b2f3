"""Prefect flows of align4d: flow ``align4d`` (deployment ``x4d``) composes the tasks over a dataset.

See DESIGN.md §8. The flows arrive with the orchestration issue; this package exists now so that
the distribution's layout is fixed from the start.
"""
