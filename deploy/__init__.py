"""Serving the app from several processes behind nginx: see deploy/serve.py and the README."""
