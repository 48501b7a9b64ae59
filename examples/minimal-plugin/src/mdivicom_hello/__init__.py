"""mdivicom-hello: the smallest complete mdivicomtools plugin package."""
