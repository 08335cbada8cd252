"""The shared runtime of review packs: settings, the per-process runtime and logging.

Importing this package, or any module in it, reads no environment variable and
touches no file; workers, beat, the CLI and a producer build what they need
when they first need it.
"""

__version__ = "0.1.0"
