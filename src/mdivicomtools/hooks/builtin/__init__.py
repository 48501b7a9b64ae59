"""The core's own behaviour as hook modules, registered like any site's.

Reading them is the quickest way to learn the hooks: `validation`
(mdivicom_validate_run), `host` (mdivicom_capture_provenance), `inventory` and
`bundles` (mdivicom_finalize_outputs), `python_backend`
(mdivicom_execution_backends).
"""
