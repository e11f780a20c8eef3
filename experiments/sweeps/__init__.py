"""Sweeps: many simulated runs (scenarios x compare methods x seeds, A/B designs x replicates) as pure tasks,
run in this process or on Ray with identical results: the sweep file (``spec``), the tasks and their seeds
(``tasks``), where they run (``backends``) and the table and report made from their rows (``report``)."""
