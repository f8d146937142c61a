"""Cohorts: Table 1, PFS curves, swimmer plot, ctDNA lead time and PRO trajectories, with filters."""
from ui import cohorts, components, frame

frame.require()
cohorts.render(components.current_snapshot())
