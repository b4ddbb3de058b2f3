"""Running the method on a pair and on a dataset, resumably (DESIGN.md §2, §8, §9).

:mod:`.stages` (search → optimize → render → evaluate, each behind its marker), :mod:`.pair`
(an item's files into the optimizer's pair), :mod:`.devices` (the guidance backend that runs),
:mod:`.export` (the 4D object's files and videos), :mod:`.plots` (an item's figures),
:mod:`.generate` (one pair to one object) and :mod:`.runs` (a dataset-wide run's folder and items).
"""
