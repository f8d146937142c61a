"""The layer pages call (architecture.md): who may see what, which model answers, which importer reads.

No Streamlit inside: every rule here is tested without a browser or a server.
"""
