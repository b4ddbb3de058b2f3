"""The Align4D method (paper Section III), one module per idea.

* :mod:`.oda` — Object Distance Alignment: VAOD (eq. 4, :func:`~.oda.search_vaod`) and MAOD
  (eq. 5/11, :func:`~.oda.search_maod`).
* :mod:`.mgja` — Motion-Geometry Joint Alignment: KSVA (eq. 6), USVA with L_mot and L_geo
  (eq. 7-9), their sum (eq. 10, :func:`~.mgja.mgja_loss`).
* :mod:`.optimize` — Asynchronous Optimization (Section III-D) and the training loop; with
  :mod:`.densify` (Section IV-A), :mod:`.trainable` (parameters and Adam state) and
  :mod:`.checkpoint` (resume).

The multiview prior itself is :mod:`align4d_core.guidance`.
"""
