"""What a run reports: one row per (item, method), the paper's tables, figures and the report page.

:mod:`.rows` (a row from an object folder's markers), :mod:`.tables` (Tables II-V as CSV,
Markdown, LaTeX), :mod:`.run_plots` (run-level figures), :mod:`.report` (``report.html``) and
:mod:`.publish` (all of it from a run folder: ``align4d tables``).
"""
