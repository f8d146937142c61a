"""Model card: intended use, population, validation with CIs, subgroups, limitations, versions."""
from ui import components, frame, model_card

frame.require()
snap = components.current_snapshot()
model_card.render(snap, components.horizon_setting())
