"""Tumor board: who meets the criteria for stopping, why, ranked by estimated chance, exportable."""
from ui import components, frame, tumor_board

frame.require()
tumor_board.render(components.current_snapshot(), components.horizon_setting())
