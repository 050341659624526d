"""The package version, in a leaf module so that what reports it (tracing) need not import the package facade."""

__version__ = "0.1.0"
