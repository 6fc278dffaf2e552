"""Pixels -> faces -> aligned chips: imaging, detection, alignment, quality, and the engine facade."""
