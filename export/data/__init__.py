"""Importers of public data formats into the site-series CSV, and the SYNTHETIC series generator."""
