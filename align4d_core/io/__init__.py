"""Inputs and outputs: storage on any fsspec URI, the files of a dataset, and the models the project loads.

:mod:`.storage` (atomic writes, safe paths) and :mod:`.hashing`; :mod:`.media` (images, masks,
videos), :mod:`.ply`, :mod:`.mesh` and :mod:`.objects` (3D inputs as Gaussians); :mod:`.manifest`
(the X4D item, DESIGN.md §3), :mod:`.dataset` (validation) and :mod:`.consistent4d` (import);
:mod:`.settings` (config files); :mod:`.markers` (``done.json``: how every stage resumes); :mod:`.lease`
(one worker at a time: the shared pair is generated once);
:mod:`.weights` (pretrained models, loaded whole or not at all).
"""
