"""Prefect flows of align4d: ``align4d`` (deployment ``x4d``) over a dataset, ``align4d-item``
(deployment ``x4d-item``, GPU pool) for one (item, method). See DESIGN.md §8."""
