"""Raster data for the susceptibility map: loaders, the on-disk tile format, synthetic scenes."""
