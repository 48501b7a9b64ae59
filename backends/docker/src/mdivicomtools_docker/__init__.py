"""mdivicomtools-docker: run container plugins on Docker Engine through docker-py."""
