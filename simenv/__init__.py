"""recloop's world: the simulator, its environments, metrics, runs, plots and command line.

Importing ``simenv`` is light: the world, environments and heavy optional backends load on use.
"""

__version__ = "0.1.0"
