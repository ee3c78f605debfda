"""Fixtures for the reader tests: a GeoTIFF writer."""

import numpy as np
import pytest


@pytest.fixture
def write_geotiff():
    """``write_geotiff(path, bands (C, H, W), dtype='uint8', crs='EPSG:32633', transform=None) -> path``."""
    rasterio = pytest.importorskip('rasterio')
    from rasterio.transform import from_origin

    def write(path, bands, dtype='uint8', crs='EPSG:32633', transform=None):
        transform = transform or from_origin(500000, 4200000, 0.5, 0.5)
        bands = np.asarray(bands)
        with rasterio.open(
            path,
            'w',
            driver='GTiff',
            height=bands.shape[1],
            width=bands.shape[2],
            count=bands.shape[0],
            dtype=dtype,
            crs=crs,
            transform=transform,
        ) as dst:
            dst.write(bands.astype(dtype))
        return str(path)

    return write
