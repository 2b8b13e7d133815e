"""The alembic revisions, one file per schema change, applied in order by `mda db upgrade`."""
