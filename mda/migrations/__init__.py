"""mda's alembic environment (`env.py`, `script.py.mako`) and its revisions (`versions/`).

Shipped inside the `mda` package so that an installed mda finds its schema revisions
wherever it runs from; `mda.store.migrate` points alembic's script_location here. Nothing
imports these modules: alembic loads `env.py` and the revision files itself.
"""
