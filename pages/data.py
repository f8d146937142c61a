"""Data: import real data (CSV bundle, SDTM, FHIR) with a validation report, snapshot history and rollback."""
from ui import components, data_page, frame

frame.require()
data_page.render(components.current_snapshot())
