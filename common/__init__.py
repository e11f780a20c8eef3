"""What every part of fusionsim shares and none owns: file I/O (``io``: atomic writes, strict JSON, the
completion record of a run folder). It imports nothing from envs, agents, recommenders or experiments."""
