"""mdivicom-site-provenance: an example hook package for mdivicomtools."""
