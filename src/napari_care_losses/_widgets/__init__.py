"""napari widgets (Qt). Everything under here may import Qt; the core must not."""
