"""Console entry points: thin wrappers that compose a config and call :mod:`lightdet.api`."""

import os

# OpenMP threads that spin while idle fight the DataLoader workers for the cores; on a small CPU machine
# that made training steps vary between 0.5 and 5 s. Passive waiting keeps them steady. Set before torch
# loads OpenMP; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
