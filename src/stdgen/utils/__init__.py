"""Small shared helpers: argument checks, atomic file output, image I/O."""
