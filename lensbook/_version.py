"""lensbook's version, apart from the package root so that records and reports can stamp it
without importing the public surface (which imports them)."""

__version__ = "0.1.0"
