"""Pipeline steps. Each public step is a Prefect task over `schemas`; algorithms are small
modules behind one signature per kind, registered by name and selected in the task spec."""
