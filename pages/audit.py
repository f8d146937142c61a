"""Audit log (admins): every patient view, export, import, rollback, retraining and refusal, append-only."""
from ui import audit_page, frame

frame.require()
audit_page.render()
