"""recloop's world: the simulator, its environments, metrics, runs, plots and command line.

Importing ``simenv`` is light: the world, environments and heavy optional backends load on use.
"""

__version__ = "0.1.0"
from simenv.envs import register_envs as register_envs  # registers the recloop/* envs
