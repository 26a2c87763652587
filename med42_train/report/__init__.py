"""The run report: collect a run directory, draw its figures, render one HTML page and a markdown twin."""
