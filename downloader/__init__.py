"""gio-downloader: GrowingIO raw-data export (/v2/insights) downloader."""

__version__ = "0.1.0"
