"""Small utilities: logging, plotting, image I/O."""
